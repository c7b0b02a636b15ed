"""The worker side of the supervisors: one :class:`fastasgi.server.Server` in a spawned process.

The parent (:mod:`fastasgi.supervisors.multiprocess` or the reloader) and the worker
talk over one duplex pipe.  Worker -> parent messages:

``("hello", pid)``    the interpreter is up; health checks may start
``("ready", pid)``    lifespan startup is done and the sockets accept connections
``("pong", seq)``     answer to ``("ping", seq)``
``("retire", n)``     --limit-max-requests reached after ``n`` requests: please start my
                      replacement and then stop me (the worker keeps serving meanwhile)

A ping is answered from the event loop once the server runs, so a worker whose loop
is blocked (a handler stuck in synchronous code) fails its health check; during
startup (app import, lifespan) it is answered from the pipe thread, because blocking
work at startup is common and legitimate.

On SIGTERM a supervised worker *drains* before the normal graceful shutdown: it stops
accepting, then lets every open connection finish on its own terms -- a connection
that was accepted but has not sent its request yet, or an idle keep-alive connection
whose client is about to send, gets its next request answered with
``connection: close`` instead of being closed under the client's feet.  Closing such
connections at once is what makes uvicorn's rolling restart reset about one request
in twenty thousand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from asyncio import selector_events
from multiprocessing import reduction
from typing import Any

from fastasgi.config import Config
from fastasgi.errors import STARTUP_FAILURE
from fastasgi.server import Server

logger = logging.getLogger("uvicorn.error")


class SupervisedServer(Server):
    """A Server that reports readiness, answers health checks and drains on shutdown.

    ``conn`` is the worker end of the supervisor pipe, or None (gunicorn worker).
    ``drain`` turns the connection drain on shutdown on (off for the reloader, where a
    fast restart matters more than an idle browser connection).
    """

    def __init__(self, config: Config, conn: Any = None, drain: bool = True) -> None:
        super().__init__(config)
        self.conn = conn
        self.drain = drain
        self.loop: asyncio.AbstractEventLoop | None = None
        self._send_lock = threading.Lock()
        # with a supervisor, reaching --limit-max-requests asks for a replacement first
        self._request_limit = Server.limit_max_requests.fget(self)  # type: ignore[attr-defined]
        self._retire_sent = False
        self._drain_time = 0.0  # seconds shutdown() spent draining connections

    @property  # type: ignore[override]
    def limit_max_requests(self) -> int | None:
        return None if self.conn is not None else self._request_limit

    # -- pipe ---------------------------------------------------------------------------

    def send(self, message: tuple[Any, ...]) -> bool:
        if self.conn is None:
            return False
        try:
            with self._send_lock:
                self.conn.send(message)
            return True
        except (OSError, EOFError, ValueError):
            return False

    def start_pipe_thread(self) -> None:
        if self.conn is None:
            return
        self.send(("hello", os.getpid()))
        threading.Thread(target=self._answer_pings, name="fastasgi-health", daemon=True).start()

    def _answer_pings(self) -> None:
        assert self.conn is not None
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError, ValueError):
                # the supervisor is gone: nobody will stop or replace us, so stop now
                if not self.should_exit:
                    logger.warning("Supervisor process gone; shutting down worker [%d].", os.getpid())
                    self.should_exit = True
                return
            except Exception:  # pragma: no cover - a garbled message
                continue
            if message[0] != "ping":
                continue
            loop = self.loop
            if self.started and loop is not None and not loop.is_closed():
                answered = threading.Event()
                try:
                    loop.call_soon_threadsafe(answered.set)
                except RuntimeError:  # loop closed meanwhile: shutting down
                    pass
                else:
                    # no answer at all while the loop is blocked: the supervisor times out
                    while not answered.wait(1.0):
                        if loop.is_closed():
                            break
            self.send(("pong", message[1]))

    # -- Server hooks -------------------------------------------------------------------

    async def startup(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if self.started:
            self.send(("ready", os.getpid()))

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        limit = self._request_limit
        if (
            self.conn is not None
            and limit is not None
            and self.server_state.total_requests >= limit
            and not self._retire_sent
        ):
            self._retire_sent = True
            logger.info(
                "Maximum request limit of %d reached; asking the supervisor to replace worker [%d].",
                limit,
                os.getpid(),
            )
            if not self.send(("retire", self.server_state.total_requests)):
                return True  # no supervisor to ask: stop as a single server would
        return False

    async def shutdown(self, sockets: Any = None) -> None:
        if self.drain and not self.force_exit:
            started = time.monotonic()
            await self.drain_connections(sockets)
            self._drain_time = time.monotonic() - started
        await super().shutdown(sockets=sockets)

    def graceful_time_left(self) -> float | None:
        # the drain is part of the graceful shutdown: a request that outlives the drain
        # gets what is left of --timeout-graceful-shutdown, not the whole of it again
        graceful = self.config.timeout_graceful_shutdown
        if graceful is None:
            return None
        return max(0.0, graceful - self._drain_time)

    async def stop_accepting(self) -> None:
        """Stop accepting without dropping a connection the loop has just accepted.

        asyncio's own event loop (the one PyPy runs; CPython with ``--loop asyncio``)
        accepts a connection in one loop iteration and creates its transport in a task
        that runs in the next.  ``Server.close()`` in between makes that task fail
        (``Server._attach`` asserts that the server is open, CPython gh-109564); the
        failure is swallowed and the accepted socket is dropped without a word, so its
        client gets a connection reset -- on PyPy once the garbage collector or the
        worker's exit closes the socket.  So stop watching the listening sockets first,
        let the loop run the accept tasks already scheduled (they run before anything
        scheduled after them), and only then close.  uvloop creates the transport inside
        its accept callback: nothing is pending there.
        """
        loop = asyncio.get_running_loop()
        if not isinstance(loop, selector_events.BaseSelectorEventLoop):
            return
        for server in self.servers:
            for sock in server.sockets or ():
                loop.remove_reader(sock.fileno())
        await asyncio.sleep(0)

    async def drain_connections(self, sockets: Any = None) -> None:
        """Stop accepting, then let open connections end after their next response.

        Bounded by --timeout-keep-alive (an idle keep-alive connection is closed by its
        own timer by then) and by --timeout-graceful-shutdown.
        """
        await self.stop_accepting()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        config = self.config
        limit = float(config.timeout_keep_alive)
        if config.timeout_graceful_shutdown is not None:
            limit = min(limit, float(config.timeout_graceful_shutdown))
        deadline = time.monotonic() + limit
        state = self.server_state
        first = True
        while not self.force_exit:
            # connections the loop accepted just before the close get connection_made
            # only now (later still for a TLS handshake): flag them on every round
            for connection in list(state.connections):
                if hasattr(connection, "close_after_response"):
                    if not connection.close_after_response:
                        connection.close_after_response = True
                        active = getattr(connection, "active", None)
                        if active is not None and not active.response_started:
                            active.keep_alive = False
                else:  # a WebSocket: its own shutdown sends the close frame
                    connection.shutdown()
            if (not state.connections and not first) or time.monotonic() >= deadline:
                break
            first = False
            await asyncio.sleep(0.02)


def worker_main(
    config: Config, sockets: list[Any], conn: Any, drain: bool = True, metrics_path: str | None = None
) -> None:
    """Entry point of a spawned worker process (the ``target`` of ``spawn.Process``).

    ``metrics_path``: with --metrics-port, the counter block the supervisor created for
    this process (it serves the scrapes; the worker only records).
    """
    config.configure_logging()
    server = SupervisedServer(config, conn, drain=drain)
    server.metrics_path = metrics_path
    server.start_pipe_thread()
    try:
        server.run(sockets=sockets)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        # the terminal's Ctrl+C reached the worker too; Server re-raised it after its
        # graceful shutdown, and the parent is stopping everything anyway
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    except BaseException as exc:  # anything that escapes is fatal for this worker
        if not server.started:
            logger.error("Worker [%d] failed to start: %s: %s", os.getpid(), type(exc).__name__, exc)
            sys.exit(STARTUP_FAILURE)
        raise
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class SharedListener:
    """A listening socket on its way to a spawned worker (an argument of its ``Process``).

    Pickled as multiprocessing pickles a socket (its descriptor goes to the child), but
    rebuilt there without touching the descriptor's blocking mode.  The parent and
    every worker hold the same open file description, and ``O_NONBLOCK`` belongs to the
    description, not to one process: PyPy's ``socket.socket(fileno=fd)`` clears it
    (CPython leaves it).  A worker started while the others serve then turned the
    listener back to blocking under their feet, and the next worker that lost the race
    for a connection blocked in ``accept()`` inside its event loop -- holding the
    connections it had just accepted, unanswered, until the health check killed it
    and they were reset.  Asking for ``SOCK_NONBLOCK`` makes both interpreters leave
    the flag alone (``socket.setdefaulttimeout(0)`` where that constant is missing).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def __reduce__(self) -> tuple[Any, ...]:
        sock = self.sock
        return rebuild_listener, (reduction.DupFd(sock.fileno()), int(sock.family), int(sock.type), sock.proto)


def rebuild_listener(fd: Any, family: int, type: int, proto: int) -> socket.socket:
    """The worker side of :class:`SharedListener`."""
    nonblock = getattr(socket, "SOCK_NONBLOCK", 0)
    if nonblock:
        return socket.socket(family, type | nonblock, proto, fileno=fd.detach())
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.0)
    try:
        return socket.socket(family, type, proto, fileno=fd.detach())
    finally:
        socket.setdefaulttimeout(previous)


def share_listeners(sockets: list[socket.socket]) -> list[Any]:
    """``sockets`` as arguments of a spawned worker: non-blocking, and kept so (:class:`SharedListener`)."""
    for sock in sockets:
        sock.setblocking(False)  # the parent never accepts; non-blocking from the first worker on
    if sys.platform == "win32":  # Windows pickles sockets its own way (WSADuplicateSocket): left as it was
        return list(sockets)
    return [SharedListener(sock) for sock in sockets]


def exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"
