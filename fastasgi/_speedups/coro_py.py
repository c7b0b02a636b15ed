"""What a request's Task drives: the app's coroutine, and the cycle told how it ended.

Pure-Python twin of ``coro_c`` (a hand-written ``.pyx``: it fills a type slot
and calls CPython's C API, which plain Python cannot).  Both define
:class:`AppRun` with the same contract; ``http_py.py`` imports the one of its
own set.

Each request's app runs in an ``asyncio.Task`` of its own (as under uvicorn:
``current_task()``, cancellation, done callbacks and the context are that
request's).  The Task drives an :class:`AppRun` rather than a wrapping ``async
def``: no second coroutine frame per request, and compiled, no
``StopIteration`` when the app returns.
"""

from __future__ import annotations

from collections.abc import Coroutine
from types import CoroutineType
from typing import Any


def awaitable_iter(obj: Any) -> Any:
    """What ``await obj`` iterates over (``obj`` itself for a generator-based coroutine)."""
    if hasattr(obj, "send") and hasattr(obj, "throw"):
        return obj
    get = getattr(type(obj), "__await__", None)
    if get is None:
        raise TypeError(f"ASGI app returned {type(obj).__name__!r}, which can't be used in 'await' expression")
    return get(obj)


class AppRun:
    """The coroutine-like object a request's Task runs: ``app(scope, receive, send)``.

    The Task's first ``send`` calls the app; each ``send``/``throw`` steps the
    app's coroutine.  When it returns or raises, the cycle hears of it
    (``cycle.app_returned(value)`` / ``cycle.app_raised(exc)``, which answers
    500 or closes) and the Task ends with ``None``, or with the exception when
    ``app_raised`` says it must propagate (cancellation of a closed connection,
    ``KeyboardInterrupt``...).
    """

    __slots__ = ("app", "coro", "cycle")

    def __init__(self, cycle: Any, app: Any) -> None:
        self.cycle = cycle
        self.app = app
        self.coro: Any = None

    def send(self, value: Any) -> Any:
        coro = self.coro
        if coro is None:
            # the Task's first step: the app starts here
            app = self.app
            if app is None:
                raise StopIteration
            self.app = None
            cycle = self.cycle
            try:
                coro = app(cycle.scope, cycle.receive, cycle.send)
                if type(coro) is not CoroutineType:
                    coro = awaitable_iter(coro)
            except BaseException as exc:
                self._raised(exc)
                raise StopIteration from None
            self.coro = coro
        try:
            return coro.send(value)
        except StopIteration as stop:
            self.coro = None
            self.cycle.app_returned(stop.value)
        except BaseException as exc:
            self._raised(exc)
        raise StopIteration

    def throw(self, exc: Any, *args: Any) -> Any:
        if isinstance(exc, type):  # the old throw(type[, value[, traceback]]) form
            exc = args[0] if args and isinstance(args[0], exc) else exc(*args[:1])
        coro = self.coro
        if coro is None:
            # thrown before the first step (the Task was cancelled before it ran):
            # the app never starts, as a coroutine thrown into before it began
            self.app = None
            self.cycle.forget_task()  # the Task leaves the server's set as it ends
            raise exc
        try:
            return coro.throw(exc)
        except StopIteration as stop:
            self.coro = None
            self.cycle.app_returned(stop.value)
        except BaseException as err:
            self._raised(err)
        raise StopIteration

    def _raised(self, exc: BaseException) -> None:
        self.coro = None
        if self.cycle.app_raised(exc):
            raise exc

    def close(self) -> None:
        coro = self.coro
        if coro is not None:
            self.coro = None
            coro.close()

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)


# asyncio.Task accepts what is a Coroutine (asyncio.iscoroutine)
Coroutine.register(AppRun)

new_app_run = AppRun


def new_task(task_type: Any, run: Any, kwargs: dict, base_context: Any) -> Any:
    """``task_type(run, context=base_context.copy(), **kwargs)``: a request's Task (Python 3.11+)."""
    return task_type(run, context=base_context.copy(), **kwargs)


class Sender:
    """Base of the HTTP request cycle: its ``send``, a coroutine function.

    Twin of ``coro_c.Sender`` (which gives the app the cycle itself as ``send``,
    returning a light awaitable); here ``send`` is a plain ``async def``.
    ``send_message`` handles the message and returns None, or an awaitable to
    wait on (the transport's drain).
    """

    __slots__ = ()

    async def send(self, message: Any) -> None:
        if self.disconnected:
            return
        waiter = self.send_message(message if type(message) is dict else dict(message))
        if waiter is not None:
            await waiter
