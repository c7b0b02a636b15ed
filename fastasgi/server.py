"""``fastasgi.Server``: sockets, TLS, signals, lifespan and graceful shutdown for one process.

It runs a loaded :class:`fastasgi.Config` (loading it first if needed) and knows it
only by that interface: it sits below the config in the layers and imports it for
type checking only.  The supervisors (``--workers``, ``--reload``) run one Server
in each process they spawn, on sockets bound by :mod:`fastasgi.sockets`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Generator, Sequence
from email.utils import formatdate
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable

from fastasgi import _speedups, metrics
from fastasgi.errors import STARTUP_FAILURE, ConfigError
from fastasgi.loops import loop_name
from fastasgi.protocols.http.negotiation import ProtocolNegotiator
from fastasgi.protocols.websockets import ws_library_name
from fastasgi.proxy_trust import ProxyTrust
from fastasgi.sockets import (
    bind_socket,  # noqa: F401 - importable from here as before
    bind_sockets,
    describe_listener,
    listener_plan,
    remove_unix_binds,
)
from fastasgi.systemd import Notifier

if TYPE_CHECKING:
    from fastasgi.config import Config

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
if sys.platform == "win32":  # pragma: no cover
    HANDLED_SIGNALS += (signal.SIGBREAK,)  # type: ignore[attr-defined]

logger = logging.getLogger("uvicorn.error")


class ServerState:
    """State shared by every connection of one server process."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[Any] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []
        self.default_headers_bytes = b""
        self.proxy_trust: Any = None
        # --metrics-port: this process's counter block (fastasgi.metrics), which the
        # protocols add to; None when metrics are off
        self.metrics: memoryview | None = None


def raise_nofile_limit(cap: int = 1 << 20) -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection costs one fd).

    The default soft limit (often 1024) caps a server at about a thousand
    concurrent connections however large the hard limit is.  Returns the new
    soft limit, or None when nothing could be done (logged as a warning when
    the attempt failed).  ``cap`` bounds an unlimited hard limit.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover
        return None
    target = cap if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        logger.warning(
            "Could not raise the open file limit from %d to %d (%s); at most about %d concurrent connections.",
            soft,
            target,
            exc,
            soft,
        )
        return None
    logger.debug("Raised the open file limit from %d to %d.", soft, target)
    return target


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState()
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.last_notified = 0.0
        self.servers: list[Any] = []
        self._captured_signals: list[int] = []
        self.lifespan: Any = None
        # --metrics-port: a supervisor sets the path of the block it reads for this process
        # (and serves the scrapes); without one, this process serves its own
        self.metrics_path: str | None = None
        self.metrics_listener: metrics.Listener | None = None
        # systemd's NOTIFY_SOCKET, for a server that is the service's main process
        # (fastasgi.run() sets it; never a supervised worker): None costs nothing
        self.notifier: Notifier | None = None
        self._bound_here = False  # startup() bound the --bind sockets itself (not given by a supervisor)

    @property
    def limit_max_requests(self) -> int | None:
        limit = self.config.limit_max_requests
        if limit is None:
            return None
        jitter = self.config.limit_max_requests_jitter
        if not hasattr(self, "_jittered_limit"):
            self._jittered_limit = limit + (random.randint(0, jitter) if jitter > 0 else 0)
        return self._jittered_limit

    # -- running ----------------------------------------------------------------------

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Run the server until it exits, in a new event loop (works from any thread)."""
        try:
            factory = self.config.get_loop_factory()
        except ConfigError as exc:
            logger.error("%s", exc)
            return
        run_with_loop_factory(self.serve(sockets=sockets), factory)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        process_id = os.getpid()
        config = self.config
        if not config.loaded:
            try:
                config.load()
            except ConfigError as exc:
                logger.error("%s", exc)
                raise SystemExit(STARTUP_FAILURE) from None

        raise_nofile_limit()
        self.lifespan = config.lifespan_class(config)
        message = "Started server process [%d]"
        color_message = "Started server process [\033[36m%d\033[0m]"
        logger.info(message, process_id, extra={"color_message": color_message})
        logger.info("Using %s", self.describe_runtime())

        await self.startup(sockets=sockets)
        if not self.started:
            return  # startup failed (lifespan or bind): nothing to shut down
        notifier = self.notifier
        if notifier is not None:
            notifier.ready(f"Serving on {self._listening_on()}")
        await self.main_loop()
        if notifier is not None:
            notifier.stopping("Shutting down")
        await self.shutdown(sockets=sockets)

        message = "Finished server process [%d]"
        color_message = "Finished server process [\033[36m%d\033[0m]"
        logger.info(message, process_id, extra={"color_message": color_message})

    def describe_runtime(self) -> str:
        tag = _speedups.tag_of(self.config.http_protocol_class)
        impl = "custom HTTP protocol" if tag is None else _speedups.describe(tag)
        try:
            loop = loop_name(asyncio.get_running_loop())
        except RuntimeError:  # pragma: no cover
            loop = "none"
        http2 = ""
        if getattr(self.config, "http2_protocol_class", None) is not None:
            http2 = f", HTTP/2: {_speedups.describe_http2(tag)}"
        return f"{impl}{http2}, {loop} event loop, WebSockets: {ws_library_name(self.config.ws_protocol_class)}"

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            self.should_exit = True
            return

        config = self.config
        state = self.server_state
        if config.proxy_headers:
            state.proxy_trust = ProxyTrust(config.forwarded_allow_ips, forwarded_host=config.forwarded_host)
        if config.metrics_port is not None and state.metrics is None:
            if self.metrics_path is not None:
                state.metrics = metrics.attach_block(self.metrics_path)
            else:
                state.metrics = metrics.private_block()
        self.update_default_headers()

        # --http2: each connection starts with the negotiator, which installs the HTTP/1.1
        # or the HTTP/2 protocol; without it, HTTP/1.1 directly (nothing in between)
        protocol_class = (
            ProtocolNegotiator
            if getattr(config, "http2_protocol_class", None) is not None
            else config.http_protocol_class
        )

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return protocol_class(  # type: ignore[no-any-return]
                config=config, server_state=state, app_state=self.lifespan.state, _loop=_loop
            )

        loop = asyncio.get_running_loop()
        listeners: Sequence[Any]
        try:
            # several listeners (--bind, systemd's sockets) are bound here, not by the loop
            plan = listener_plan(config) if sockets is None else None
            if plan is not None:
                sockets_here = bind_sockets(config)
                self._bound_here = True
                self.servers = []
                for sock in sockets_here:
                    server = await loop.create_server(
                        create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog
                    )
                    self.servers.append(server)
                listeners = sockets_here
            elif sockets is not None:
                self.servers = []
                for sock in sockets:
                    server = await loop.create_server(
                        create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog
                    )
                    self.servers.append(server)
                listeners = sockets
            elif config.fd is not None:
                sock = socket.socket(fileno=os.dup(config.fd))
                server = await loop.create_server(create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog)
                assert server.sockets is not None
                listeners = server.sockets
                self.servers = [server]
            elif config.uds is not None:
                uds_perms = 0o666
                if os.path.exists(config.uds):
                    uds_perms = os.stat(config.uds).st_mode
                server = await loop.create_unix_server(
                    create_protocol, path=config.uds, ssl=config.ssl, backlog=config.backlog
                )
                os.chmod(config.uds, uds_perms)
                assert server.sockets is not None
                listeners = server.sockets
                self.servers = [server]
            else:
                server = await loop.create_server(
                    create_protocol, host=config.host, port=config.port, ssl=config.ssl, backlog=config.backlog
                )
                assert server.sockets is not None
                listeners = server.sockets
                self.servers = [server]
        except ConfigError as exc:  # from bind_sockets: already one readable line
            logger.error("%s", exc)
            for server in self.servers:
                server.close()
            await self.lifespan.shutdown()
            self.should_exit = True
            return
        except OSError as exc:
            where = config.uds or (f"fd {config.fd}" if config.fd is not None else f"{config.host}:{config.port}")
            hint = (
                " (address already in use: is another server running on that port?)"
                if exc.errno in (98, 48, 10048)
                else ""
            )
            logger.error("Could not bind to %s: %s%s", where, exc.strerror or exc, hint)
            await self.lifespan.shutdown()
            self.should_exit = True
            return

        if config.metrics_port is not None and self.metrics_path is None and state.metrics is not None:
            try:
                self.metrics_listener = metrics.serve(
                    config.metrics_host, config.metrics_port, metrics.local_source(state.metrics)
                )
            except OSError as exc:
                logger.error(
                    "Could not bind the metrics listener to %s:%d: %s", config.metrics_host, config.metrics_port, exc
                )
                for server in self.servers:
                    server.close()
                await self.lifespan.shutdown()
                self.should_exit = True
                return

        if sockets is None:
            self._log_started_message(listeners)
        else:
            pass  # the supervisor logs the address once for all workers
        self.started = True

    def _listening_on(self) -> str:
        """Where this server listens, for systemd's STATUS= line."""
        names = []
        for server in self.servers:
            for sock in server.sockets or ():
                with contextlib.suppress(OSError):
                    names.append(describe_listener(sock, self.config.is_ssl))
        return ", ".join(names) or "no socket"

    def _log_started_message(self, listeners: Sequence[Any]) -> None:
        config = self.config
        if listener_plan(config) is not None:
            # one line per listener (--bind, socket activation), each with its own address
            for sock in listeners:
                where = describe_listener(sock, config.is_ssl)
                logger.info(
                    "fastasgi running on %s (Press CTRL+C to quit)",
                    where,
                    extra={"color_message": "fastasgi running on \033[1m%s\033[0m (Press CTRL+C to quit)"},
                )
            return
        if config.fd is not None:
            sock = listeners[0]
            logger.info("fastasgi running on socket %s (Press CTRL+C to quit)", sock.getsockname())
        elif config.uds is not None:
            logger.info("fastasgi running on unix socket %s (Press CTRL+C to quit)", config.uds)
        else:
            addr_format = "%s://%s:%d"
            host = "0.0.0.0" if config.host is None else config.host
            if ":" in host:
                addr_format = "%s://[%s]:%d"  # IPv6
            port = config.port
            if port == 0:
                port = listeners[0].getsockname()[1]
            protocol_name = "https" if config.is_ssl else "http"
            message = f"fastasgi running on {addr_format} (Press CTRL+C to quit)"
            color_message = "fastasgi running on " + "\033[1m" + addr_format + "\033[0m" + " (Press CTRL+C to quit)"
            logger.info(message, protocol_name, host, port, extra={"color_message": color_message})

    def update_default_headers(self) -> None:
        # the framing of the set the protocol runs (the active set's for a custom protocol)
        tag = _speedups.tag_of(self.config.http_protocol_class) or _speedups.active
        framing = _speedups.load(tag).framing
        state = self.server_state
        headers = []
        if self.config.date_header:
            headers.append((b"date", formatdate(usegmt=True).encode("ascii")))
        headers += self.config.encoded_headers
        state.default_headers = headers
        state.default_headers_bytes = framing.render_default_headers(headers)

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter += 1
            counter = counter % 864000
            await asyncio.sleep(0.1)
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        if self.notifier is not None:
            self.notifier.watchdog()
        # Update the default headers, once per second.
        if counter % 10 == 0:
            self.update_default_headers()
            if (
                self.config.callback_notify is not None
                and time.monotonic() >= self.last_notified + self.config.timeout_notify
            ):
                self.last_notified = time.monotonic()
                await self.config.callback_notify()

        if self.should_exit:
            return True
        max_requests = self.limit_max_requests
        if max_requests is not None and self.server_state.total_requests >= max_requests:
            logger.warning("Maximum request limit of %d exceeded. Terminating process.", max_requests)
            return True
        return False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")

        # Stop accepting new connections.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if self._bound_here:
            remove_unix_binds(self.config)

        # Request shutdown on all existing connections.
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)

        # When 3.10 is not supported anymore, use `async with asyncio.timeout(...):`.
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=self.graceful_time_left())
        except asyncio.TimeoutError:
            logger.error("Cancel %s running task(s), timeout graceful shutdown exceeded", len(self.server_state.tasks))
            for t in list(self.server_state.tasks):
                t.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort() if hasattr(transport, "abort") else transport.close()

        # Send the lifespan shutdown event, and wait for application shutdown.
        if not self.force_exit:
            await self.lifespan.shutdown()

        # metrics are scraped until the end of the shutdown (in-flight requests going down)
        listener = self.metrics_listener
        if listener is not None:
            self.metrics_listener = None
            listener.close()

    def graceful_time_left(self) -> float | None:
        """How long shutdown() waits for in-flight requests: --timeout-graceful-shutdown
        (None: no limit), less what a subclass already spent of it."""
        return self.config.timeout_graceful_shutdown

    async def _wait_tasks_to_complete(self) -> None:
        # Wait for existing connections to finish sending responses.
        if self.server_state.connections and not self.force_exit:
            msg = "Waiting for connections to close. (CTRL+C to force quit)"
            logger.info(msg)
            while self.server_state.connections and not self.force_exit:
                await asyncio.sleep(0.1)

        # Wait for existing tasks to complete.
        if self.server_state.tasks and not self.force_exit:
            msg = "Waiting for background tasks to complete. (CTRL+C to force quit)"
            logger.info(msg)
            while self.server_state.tasks and not self.force_exit:
                await asyncio.sleep(0.1)

        for server in self.servers:
            await server.wait_closed()

    # -- signals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals can only be listened to from the main thread.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # always use signal.signal, so the previous handlers can be restored afterwards
        original_handlers = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original_handlers.items():
                signal.signal(sig, handler)
        # Once shut down gracefully, re-raise the caught signal so a supervisor sees it (as uvicorn 0.54 does).
        for captured_signal in reversed(self._captured_signals):
            signal.raise_signal(captured_signal)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._captured_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def run_with_loop_factory(main: Any, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> Any:
    """``asyncio.run(main, loop_factory=...)`` for every supported Python."""
    if loop_factory is None:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main)
    loop = loop_factory()  # pragma: no cover - Python 3.9 / 3.10
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
