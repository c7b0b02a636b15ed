"""``--interface wsgi``: a WSGI app served through a2wsgi, plus what the server owes it.

a2wsgi turns the ASGI request into a WSGI ``environ`` and runs the app in a thread
pool, streaming ``wsgi.input`` from ``receive()``.  Three things are added here:

* ``environ["wsgi.input_terminated"] = True``.  A chunked request has no
  ``CONTENT_LENGTH``, and without this flag Werkzeug (Flask) and Django read such a
  body as empty.  The flag is true for every request: the server frames the body and
  ``wsgi.input`` reports end-of-file exactly where the request body ends (the
  convention of mod_wsgi and gunicorn).
* Because end-of-file now means "the whole body", a body cut short by the client
  (or by shutdown) must not look like one: ``wsgi.input`` raises
  :class:`ClientDisconnected` instead of returning a short body as complete.
* The app runs on daemon threads.  A request still running when
  ``--timeout-graceful-shutdown`` expires has its task cancelled, but its thread
  cannot be stopped; with the standard library's pool the interpreter would then
  wait for it at exit (after Ctrl+C, or when ``fastasgi.run()`` returns), however
  long the handler takes.  Until shutdown the server waits for every request as
  usual, so only requests the timeout already gave up on are abandoned.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Any, Callable

from a2wsgi import WSGIMiddleware as _A2WSGIMiddleware

__all__ = ["ClientDisconnected", "DaemonThreadPool", "WSGIMiddleware"]


class ClientDisconnected(OSError):
    """Raised by ``wsgi.input`` when the connection ends before the request body does."""


class DaemonThreadPool(concurrent.futures.Executor):
    """A thread pool of at most ``max_workers`` daemon threads (the one thing it adds).

    ``loop.run_in_executor`` only needs ``submit``.  Threads start on demand and
    are reused while idle, as ``ThreadPoolExecutor`` does.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "fastasgi-wsgi") -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one token per idle thread
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._run, name=f"{self._prefix}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            return future

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:  # shutdown
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                del future, fn, args, kwargs, item  # no reference to the request while idle
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()


def _terminated_input(app: Callable[..., Any]) -> Callable[..., Any]:
    def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return wsgi_app


class WSGIMiddleware(_A2WSGIMiddleware):
    """a2wsgi's ``WSGIMiddleware`` with the additions described in the module docstring."""

    def __init__(self, app: Callable[..., Any], workers: int = 10) -> None:
        super().__init__(_terminated_input(app), workers=workers)
        self.executor.shutdown(wait=False)  # a2wsgi's own pool: never used, holds no thread yet
        # a2wsgi annotates a ThreadPoolExecutor but only hands it to loop.run_in_executor
        self.executor = DaemonThreadPool(workers)  # type: ignore[assignment]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            receive = _body_receiver(receive)
        await super().__call__(scope, receive, send)


def _body_receiver(receive: Callable[[], Any]) -> Callable[[], Any]:
    # a2wsgi calls receive() only while the body has more to come, and takes a message
    # without "more_body" for the end of it: an http.disconnect would pass as the end
    async def receive_body() -> Any:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client disconnected before the request body was complete")
        return message

    return receive_body
