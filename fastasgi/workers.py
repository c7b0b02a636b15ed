"""gunicorn worker classes: ``gunicorn -k fastasgi.workers.FastASGIWorker app:app``.

``FastASGIWorker`` runs the default implementation set (compiled llhttp protocol and
uvloop when available); ``FastASGIH11Worker`` forces the pure-Python path (h11 and
asyncio), for PyPy or a build without the extension.

gunicorn settings honoured: ``bind`` / ``backlog`` (gunicorn binds and hands us the
sockets), ``timeout`` (the worker heartbeats from its event loop, so a worker whose
loop is blocked for ``timeout`` seconds is killed by the arbiter), ``graceful_timeout``
(-> ``timeout_graceful_shutdown``), ``keepalive`` (-> ``timeout_keep_alive``),
``max_requests`` / ``max_requests_jitter``, ``limit_request_line``,
``limit_request_fields``, ``limit_request_field_size`` (a request over a limit gets
400, as gunicorn's own workers answer), ``forwarded_allow_ips`` and the TLS settings
(built by gunicorn's own ``ssl_context`` hook, so ``cert_reqs``, ``ca_certs``,
``ciphers`` and a custom ``ssl_context`` apply as they do for its sync worker),
``access_log_format`` (``--access-logformat``; when left at gunicorn's default the
line is uvicorn's, as under uvicorn's worker) and ``accesslog`` (no access log
file: no access records are made).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from fastasgi.config import Config
from fastasgi.errors import ConfigError
from fastasgi.server import run_with_loop_factory
from fastasgi.supervisors.worker import SupervisedServer

__all__ = ["FastASGIH11Worker", "FastASGIWorker"]


class RequestLimits:
    """gunicorn's ``limit_request_*`` checks, applied to the parsed request.

    The parser already bounds the whole header block (``h11_max_incomplete_event_size``,
    set from the same limits), so memory stays bounded; this middleware gives the exact
    per-line / per-field / count semantics and gunicorn's 400 answer.
    """

    def __init__(self, app: Any, line: int, fields: int, field_size: int) -> None:
        self.app = app
        self.line = line  # 0: unlimited (gunicorn's meaning)
        self.fields = fields
        self.field_size = field_size

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = self.check(scope)
            if problem is not None:
                if scope["type"] == "http":
                    body = problem.encode()
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 400,
                            "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)

    def check(self, scope: Any) -> str | None:
        if self.line:
            query = scope.get("query_string") or b""
            target = len(scope.get("raw_path") or scope["path"].encode()) + (len(query) + 1 if query else 0)
            length = (
                len(scope.get("method", "GET")) + 1 + target + 1 + len("HTTP/") + len(scope.get("http_version", "1.1"))
            )
            if length > self.line:
                return f"Request Line is too large ({length} > {self.line})"
        headers = scope.get("headers") or []
        if self.fields and len(headers) > self.fields:
            return "Request Header Fields Too Large: too many header fields"
        if self.field_size:
            for name, value in headers:
                if len(name) + 2 + len(value) > self.field_size:
                    return "Request Header Fields Too Large"
        return None


class FastASGIWorker(Worker):
    """A gunicorn worker that serves an ASGI app with fastasgi."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        for name, source in (("fastasgi.error", self.log.error_log), ("fastasgi.access", self.log.access_log)):
            logger = logging.getLogger(name)
            logger.handlers = source.handlers
            logger.setLevel(source.level)
            logger.propagate = False

        cfg = self.cfg
        line = int(cfg.limit_request_line or 0)
        fields = int(cfg.limit_request_fields or 0)
        field_size = int(cfg.limit_request_field_size or 0)
        self.limits = (line, fields, field_size)
        header_block = None
        if line and fields and field_size:
            header_block = line + 2 + fields * (field_size + 2) + 2

        config_kwargs: dict[str, Any] = {
            "app": None,
            "log_config": None,
            "timeout_keep_alive": cfg.keepalive,
            "timeout_notify": self.timeout,
            "callback_notify": self.callback_notify,
            # gunicorn already added max_requests_jitter (sys.maxsize means no limit)
            "limit_max_requests": self.max_requests if self.max_requests < sys.maxsize else None,
            "timeout_graceful_shutdown": cfg.graceful_timeout,
            "forwarded_allow_ips": ",".join(cfg.forwarded_allow_ips)
            if isinstance(cfg.forwarded_allow_ips, (list, tuple))
            else cfg.forwarded_allow_ips,
            "h11_max_incomplete_event_size": header_block,
            # gunicorn's access log has handlers only with --access-logfile (or a log config)
            "access_log": bool(self.log.access_log.handlers),
        }
        access_format = cfg.settings["access_log_format"]
        if access_format.value and access_format.value != access_format.default:
            config_kwargs["access_log_format"] = access_format.value
        if cfg.is_ssl:
            config_kwargs.update(self._ssl_kwargs())
        if cfg.settings["backlog"].value:
            config_kwargs["backlog"] = cfg.settings["backlog"].value
        config_kwargs.update(self.CONFIG_KWARGS)
        # This runs in the arbiter, before the fork: a bad setting is reported by the
        # worker process instead, as a boot error (the arbiter then stops, with the reason)
        self.config_error: str | None = None
        try:
            self.config = Config(**config_kwargs)
        except ConfigError as exc:
            self.config_error = str(exc)

    def _ssl_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        opts = cfg.ssl_options
        kwargs: dict[str, Any] = {
            "ssl_keyfile": opts.get("keyfile"),
            "ssl_certfile": opts.get("certfile"),
            "ssl_ca_certs": opts.get("ca_certs"),
            "ssl_ciphers": opts.get("ciphers"),
        }
        if opts.get("cert_reqs") is not None:
            kwargs["ssl_cert_reqs"] = opts["cert_reqs"]
        try:
            from gunicorn.sock import ssl_context as gunicorn_ssl_context
        except ImportError:  # older gunicorn: build it from the options above
            return kwargs
        # gunicorn's own factory runs its ``ssl_context`` hook, as for its other workers
        kwargs["ssl_context_factory"] = lambda config, default_factory: gunicorn_ssl_context(cfg)
        return kwargs

    def init_signals(self) -> None:
        # Server installs its own SIGINT / SIGTERM handlers; leave the rest at their
        # defaults so gunicorn sees the real exit status of the worker
        for s in self.SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = SupervisedServer(self.config, conn=None, drain=True)
        # SIGQUIT is gunicorn's "quick shutdown"
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, server.handle_exit, signal.SIGQUIT, None)
        try:
            self.config.load()
        except Exception as exc:  # reported to the arbiter as a boot error
            self.log.error("Could not load the application: %s", exc)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        if any(self.limits):
            self.config.loaded_app = RequestLimits(self.config.loaded_app, *self.limits)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def run(self) -> None:
        if self.config_error is not None:
            self.log.error("Invalid configuration: %s", self.config_error)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        run_with_loop_factory(self._serve(), self.config.get_loop_factory())

    async def callback_notify(self) -> None:
        self.notify()


class FastASGIH11Worker(FastASGIWorker):
    """The pure-Python path (h11 + asyncio): for PyPy or a build without the extension."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "asyncio", "http": "h11"}
