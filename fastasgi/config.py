"""``fastasgi.Config``: the settings of one server, and loading what they name.

The keywords and their defaults come from :mod:`fastasgi.settings`; this module
turns them into loaded objects: the app (with its interface adapter), the HTTP
and WebSocket protocol factories, the lifespan handler, the SSL context, the
event-loop factory, logging and sockets.  It sits above everything it loads and
below only the supervisors and the CLI: the errors and constants the lower layers
share live in :mod:`fastasgi.errors` (re-exported here, where uvicorn has them).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import logging.config
import os
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from collections.abc import Awaitable

from fastasgi.accesslog import AccessLog, compile_format
from fastasgi.connection import server_cert_pem
from fastasgi.errors import STARTUP_FAILURE, TRACE_LOG_LEVEL, ConfigError
from fastasgi.importer import ImportFromStringError, import_from_string
from fastasgi.lifespan import resolve_lifespan
from fastasgi.loops import resolve_loop_factory
from fastasgi.middleware.asgi2 import ASGI2Middleware
from fastasgi.middleware.message_logger import MessageLoggerMiddleware
from fastasgi.protocols.http import resolve_http2_protocol, resolve_http_protocol
from fastasgi.protocols.websockets import resolve_ws_protocol
from fastasgi.reload_patterns import resolve_reload_config
from fastasgi.settings import (
    HTTP_CHOICES,
    INTERFACE_CHOICES,
    LIFESPAN_CHOICES,
    LOG_FORMAT_CHOICES,
    LOOP_CHOICES,
    SETTINGS,
    SETTINGS_BY_NAME,
    WS_CHOICES,
)
from fastasgi.sockets import BindAddress, bind_socket, check_binds, parse_bind

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "fastasgi.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "fastasgi.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

# --log-format json: the same loggers and streams, every record one JSON object per line
LOGGING_CONFIG_JSON: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "fastasgi.logging.JsonFormatter"}},
    "handlers": {
        "default": {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
    },
    "loggers": LOGGING_CONFIG["loggers"],
}

logger = logging.getLogger("uvicorn.error")

# fastasgi 0.1 logged under "fastasgi", "fastasgi.error", "fastasgi.access" and
# "fastasgi.asgi"; since 0.2 the loggers have uvicorn's names.
_OLD_LOGGER_NAMES = {f"fastasgi{tail}": f"uvicorn{tail}" for tail in ("", ".error", ".access", ".asgi")}


def _with_uvicorn_logger_names(config: Any) -> Any:
    """A dictConfig whose ``loggers`` name fastasgi 0.1's loggers, with uvicorn's names
    (a logger configured under both names keeps the uvicorn entry)."""
    loggers = config.get("loggers") if isinstance(config, dict) else None
    if not isinstance(loggers, dict) or not any(name in _OLD_LOGGER_NAMES for name in loggers):
        return config
    renamed = {}
    for name, value in loggers.items():
        new = _OLD_LOGGER_NAMES.get(name, name)
        if new != name and new in loggers:
            continue
        renamed[new] = value
    return {**config, "loggers": renamed}


def _default_of(name: str) -> Any:
    default = SETTINGS_BY_NAME[name].default
    if name == "log_config":
        return LOGGING_CONFIG
    return default


def _build_signature() -> inspect.Signature:
    params = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("app", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
    params += [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=_default_of(s.name)) for s in SETTINGS]
    return inspect.Signature(params)


class Config:
    """Same keywords and defaults as ``uvicorn.Config`` (see :data:`fastasgi.settings.SETTINGS`)."""

    # The settings, for type checkers only: __init__ sets each one of SETTINGS with setattr
    # (workers and headers are annotated where __init__ normalises them).
    host: str
    port: int
    uds: str | None
    fd: int | None
    bind: list[str] | None  # --bind, as given; parsed into bind_addresses by validate()
    loop: str
    http: Any  # a name, "module:attr" or a protocol class
    http2: bool
    ws: Any  # a name, "module:attr" or a protocol class
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_per_message_deflate: bool
    lifespan: str
    env_file: str | os.PathLike[str] | None
    log_config: Any  # a dictConfig dict, a file path, or None
    log_level: str | int | None
    access_log: bool
    access_log_format: str | None
    log_format: str
    use_colors: bool | None
    interface: str
    reload: bool
    reload_dirs: list[Path]  # resolved by __init__; what was passed stays in reload_dirs_given
    reload_includes: list[str]
    reload_excludes: list[str]
    reload_dirs_excludes: list[Path]
    reload_dirs_given: Any
    reload_delay: float
    reuse_port: bool
    metrics_port: int | None
    metrics_host: str
    proxy_headers: bool
    forwarded_host: bool
    server_header: bool
    date_header: bool
    forwarded_allow_ips: list[str] | str  # None is replaced by __init__
    root_path: str
    limit_concurrency: int | None
    limit_max_requests: int | None
    limit_max_requests_jitter: int
    limit_max_rss: int | None
    limit_max_rss_jitter: int
    limit_max_lifetime: float | None
    limit_max_lifetime_jitter: float
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    limit_request_header_size: int | None
    limit_chunk_extension_size: int
    limit_request_body: int | None
    backlog: int
    timeout_keep_alive: int
    timeout_request_header: float
    timeout_request_body: float
    timeout_response_body: float
    timeout_notify: float
    timeout_graceful_shutdown: float | None
    timeout_worker_healthcheck: float
    callback_notify: Callable[[], Awaitable[None]] | None
    ssl_keyfile: str | os.PathLike[str] | None
    ssl_certfile: str | os.PathLike[str] | None
    ssl_keyfile_password: str | None
    ssl_version: int
    ssl_cert_reqs: int
    ssl_ca_certs: str | os.PathLike[str] | None
    ssl_ciphers: str | None
    ssl_context_factory: Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None
    factory: bool
    h11_max_incomplete_event_size: int | None
    reset_contextvars: bool

    def __init__(self, app: Any, **kwargs: Any) -> None:
        unknown = set(kwargs) - SETTINGS_BY_NAME.keys()
        if unknown:
            raise TypeError(f"Config() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        self.app = app
        for s in SETTINGS:
            value = kwargs[s.name] if s.name in kwargs else _default_of(s.name)
            setattr(self, s.name, value)

        # normalisations uvicorn users rely on
        self.workers: int = kwargs.get("workers") or 1
        if kwargs.get("workers") is None and "WEB_CONCURRENCY" in os.environ:
            try:
                self.workers = int(os.environ["WEB_CONCURRENCY"])
            except ValueError:
                raise ConfigError(
                    f"WEB_CONCURRENCY must be an integer, got {os.environ['WEB_CONCURRENCY']!r}"
                ) from None
        self.headers: list[tuple[str, str]] = [tuple(h) for h in (self.headers or [])]  # type: ignore[misc]
        self.encoded_headers: list[tuple[bytes, bytes]] = []
        if self.forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        if self.ws == "websockets-sansio":
            self.ws = "websockets"
        self.bind_addresses: list[BindAddress] = []
        self.loaded = False
        self._app_object: Any = None  # what load_app() imported (or a factory returned), for load()
        self.validate()
        self.log_config = self._default_log_config()
        self.configure_logging()

        self.reload_dirs_given = self.reload_dirs
        self.reload_dirs, self.reload_includes, self.reload_excludes, self.reload_dirs_excludes = self._reload_patterns(
            kwargs.get("reload_dirs"), kwargs.get("reload_includes"), kwargs.get("reload_excludes")
        )
        if self.env_file is not None:
            try:
                from dotenv import load_dotenv
            except ImportError:  # pragma: no cover - python-dotenv is a dependency
                raise ConfigError("--env-file needs python-dotenv: pip install 'fastasgi[standard]'") from None
            if not os.path.isfile(self.env_file):
                raise ConfigError(f"Environment file {os.fspath(self.env_file)!r} does not exist")
            logger.info("Loading environment from '%s'", self.env_file)
            load_dotenv(dotenv_path=self.env_file)
        # --reload with --workers > 1 is refused by fastasgi.supervisors.run_reloader

    __init__.__signature__ = _build_signature()  # type: ignore[attr-defined]

    # -- validation -----------------------------------------------------------------

    def validate(self) -> None:
        def choice(name: str, allowed: list[str]) -> None:
            value = getattr(self, name)
            if (
                isinstance(value, str)
                and value not in allowed
                and not (name in ("loop", "http", "ws") and ":" in value)
            ):
                raise ConfigError(f"Invalid value for {name}: {value!r} (choose from {', '.join(allowed)})")

        choice("http", HTTP_CHOICES)
        choice("ws", WS_CHOICES)
        choice("lifespan", LIFESPAN_CHOICES)
        choice("interface", INTERFACE_CHOICES)
        choice("loop", LOOP_CHOICES)
        choice("log_format", LOG_FORMAT_CHOICES)
        if self.access_log_format is not None:
            try:
                compile_format(self.access_log_format)
            except ValueError as exc:
                raise ConfigError(f"Invalid --access-log-format: {exc}") from None
        if isinstance(self.log_level, str) and self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"Invalid log level {self.log_level!r} (choose from {', '.join(LOG_LEVELS)})")
        for name in (
            "port",
            "backlog",
            "ws_max_size",
            "ws_max_queue",
            "limit_max_requests_jitter",
            "limit_max_rss_jitter",
            "timeout_keep_alive",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"Invalid value for {name}: {value!r} (must be a non-negative integer)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"Invalid port {self.port}: must be between 0 and 65535")
        for name in (
            "limit_request_line",
            "limit_request_fields",
            "limit_request_field_size",
            "limit_chunk_extension_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Invalid value for {name}: {value!r} (must be a positive integer)")
        for name in ("limit_request_header_size", "limit_request_body", "h11_max_incomplete_event_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"Invalid value for {name}: {value!r} (must be a positive integer)")
        for name in ("timeout_request_header", "timeout_request_body", "timeout_response_body"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"Invalid value for {name}: {value!r} (must be a non-negative number)")
        value = self.limit_max_rss
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"Invalid value for limit_max_rss: {value!r} (must be a positive number of MiB)")
        value = self.limit_max_lifetime
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0):
            raise ConfigError(f"Invalid value for limit_max_lifetime: {value!r} (must be a positive number of seconds)")
        value = self.limit_max_lifetime_jitter
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ConfigError(f"Invalid value for limit_max_lifetime_jitter: {value!r} (must be a non-negative number)")
        for name in ("limit_concurrency", "limit_max_requests", "timeout_graceful_shutdown"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"Invalid value for {name}: {value!r} (must be a non-negative number)")
        if self.workers < 1:
            raise ConfigError(f"Invalid number of workers: {self.workers} (must be at least 1)")
        self._validate_bind()
        self._validate_metrics()
        for name, value in self.headers:
            if not name or any(c in name for c in " \t\r\n:") or any(c in str(value) for c in "\r\n\0"):
                raise ConfigError(f"Invalid --header {name}:{value!r}: expected 'Name:Value' without CR/LF")

    def _validate_bind(self) -> None:
        """--bind: each address valid, none twice, and not mixed with uvicorn's single listener."""
        binds = self.bind
        if not binds:
            self.bind = None
            return
        if isinstance(binds, str):
            binds = [binds]
        self.bind = list(binds)
        self.bind_addresses = [parse_bind(text) for text in self.bind]
        check_binds(self.bind_addresses)
        if self.uds or self.fd is not None:
            raise ConfigError(
                "--bind cannot be combined with --uds or --fd: give them as --bind unix:PATH or --bind fd://N"
            )
        if self.host != SETTINGS_BY_NAME["host"].default or self.port != SETTINGS_BY_NAME["port"].default:
            raise ConfigError("--bind cannot be combined with --host/--port: give the address as --bind HOST:PORT")
        if self.reuse_port:
            raise ConfigError("--reuse-port works with --host/--port only, not with --bind")

    def _validate_metrics(self) -> None:
        port = self.metrics_port
        if port is None:
            return
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"Invalid --metrics-port {port!r}: must be between 0 and 65535")
        if port != 0 and port == self.port and self.uds is None and self.fd is None and not self.bind_addresses:
            raise ConfigError(
                f"--metrics-port {port} is the app's --port: metrics need a port of their own "
                "(and are never served on the app's socket)"
            )
        if port != 0 and any(a.kind == "tcp" and a.port == port for a in self.bind_addresses):
            raise ConfigError(
                f"--metrics-port {port} is the port of a --bind address: metrics need a port of their own "
                "(and are never served on the app's sockets)"
            )
        if not isinstance(self.metrics_host, str) or not self.metrics_host:
            raise ConfigError(f"Invalid --metrics-host {self.metrics_host!r}")
        import importlib.util  # (only with --metrics-port: a plain start stays light)

        if importlib.util.find_spec("prometheus_client") is None:
            raise ConfigError("--metrics-port needs prometheus_client: pip install 'fastasgi[standard]'")

    def _reload_patterns(
        self, dirs: Any, includes: Any, excludes: Any
    ) -> tuple[list[Path], list[str], list[str], list[Path]]:
        if (dirs or includes or excludes) and not self.should_reload:
            logger.warning(
                "Current configuration will not reload as not all conditions are met, please refer to documentation."
            )
        if not self.should_reload:
            return [], [], [], []
        return resolve_reload_config(dirs, includes, excludes)

    # -- properties -----------------------------------------------------------------

    @property
    def asgi_version(self) -> str:
        return {"asgi2": "2.0", "asgi3": "3.0", "wsgi": "3.0"}[self.interface]

    @property
    def header_size_limit(self) -> int:
        """The total header-block limit: --limit-request-header-size, else --h11-max-incomplete-event-size, else 16384."""
        return self.limit_request_header_size or self.h11_max_incomplete_event_size or 16384

    def parser_limits(self) -> dict[str, int]:
        """Keyword arguments of both ``RequestParser`` constructors (one place, so both parsers get the same)."""
        cached: dict[str, int] | None = self.__dict__.get("_parser_limits")
        if cached is not None:
            return cached
        self._parser_limits: dict[str, int] = {
            "max_header_size": self.header_size_limit,
            "max_request_line": self.limit_request_line,
            "max_headers": self.limit_request_fields,
            "max_field_size": self.limit_request_field_size,
            "max_chunk_ext": self.limit_chunk_extension_size,
            "max_body_size": self.limit_request_body if self.limit_request_body is not None else -1,
        }
        return self._parser_limits

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def use_subprocess(self) -> bool:
        return bool(self.reload or self.workers > 1 or self.recycles_workers)

    @property
    def recycles_workers(self) -> bool:
        """--limit-max-rss / --limit-max-lifetime: the supervisor replaces workers, so it runs even for one."""
        return self.limit_max_rss is not None or self.limit_max_lifetime is not None

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and self.reload

    # -- logging --------------------------------------------------------------------

    def _default_log_config(self) -> Any:
        """The logging configuration to apply: a --log-config given wins; the default one
        follows --log-format, and prints a custom --access-log-format line as it is."""
        if self.log_config is not LOGGING_CONFIG:
            return self.log_config
        if self.log_format == "json":
            return copy.deepcopy(LOGGING_CONFIG_JSON)
        if self.access_log_format is not None:
            config = copy.deepcopy(LOGGING_CONFIG)
            config["formatters"]["access"]["fmt"] = "%(message)s"
            return config
        return self.log_config

    def configure_logging(self) -> None:
        logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")
        dict_config = _with_uvicorn_logger_names  # (fastasgi 0.1's logger names, renamed)
        if self.log_config is not None:
            if isinstance(self.log_config, os.PathLike):
                self.log_config = os.fspath(self.log_config)
            try:
                if isinstance(self.log_config, dict):
                    if self.use_colors in (True, False):
                        formatters = self.log_config.get("formatters", {})
                        for key in ("default", "access"):
                            if key in formatters:
                                formatters[key]["use_colors"] = self.use_colors
                    logging.config.dictConfig(dict_config(self.log_config))
                elif isinstance(self.log_config, str) and self.log_config.endswith(".json"):
                    with open(self.log_config) as file:
                        logging.config.dictConfig(dict_config(json.load(file)))
                elif isinstance(self.log_config, str) and self.log_config.endswith((".yaml", ".yml")):
                    try:
                        import yaml
                    except ImportError:  # pragma: no cover
                        raise ConfigError(
                            "--log-config with YAML needs PyYAML: pip install 'fastasgi[standard]'"
                        ) from None
                    with open(self.log_config) as file:
                        logging.config.dictConfig(dict_config(yaml.safe_load(file)))
                else:
                    logging.config.fileConfig(self.log_config, disable_existing_loggers=False)
            except ConfigError:
                raise
            except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as exc:
                raise ConfigError(f"Invalid --log-config {self.log_config!r}: {exc}") from None
            except Exception as exc:  # configparser / yaml errors
                raise ConfigError(f"Invalid --log-config {self.log_config!r}: {exc}") from None

        if self.log_level is not None:
            level = LOG_LEVELS[self.log_level.lower()] if isinstance(self.log_level, str) else self.log_level
            logging.getLogger("uvicorn.error").setLevel(level)
            logging.getLogger("uvicorn.access").setLevel(level)
            logging.getLogger("uvicorn.asgi").setLevel(level)
        if self.access_log is False:
            logging.getLogger("uvicorn.access").handlers = []
            logging.getLogger("uvicorn.access").propagate = False

    # -- loading --------------------------------------------------------------------

    def create_ssl_context(self) -> ssl.SSLContext:
        def default_factory() -> ssl.SSLContext:
            ctx = ssl.SSLContext(self.ssl_version)
            password = self.ssl_keyfile_password
            get_password = (lambda: password) if password else None
            # a missing certfile fails in load_cert_chain (TypeError, reported as a ConfigError)
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, get_password)  # type: ignore[arg-type]
            ctx.verify_mode = ssl.VerifyMode(self.ssl_cert_reqs)
            if self.ssl_ca_certs:
                ctx.load_verify_locations(self.ssl_ca_certs)
            if self.ssl_ciphers:
                ctx.set_ciphers(self.ssl_ciphers)
            return ctx

        for label, path in (
            ("--ssl-certfile", self.ssl_certfile),
            ("--ssl-keyfile", self.ssl_keyfile),
            ("--ssl-ca-certs", self.ssl_ca_certs),
        ):
            if path and not os.path.isfile(path):
                raise ConfigError(f"TLS file for {label} not found or not a file: {os.fspath(path)}")
        try:
            if self.ssl_context_factory is not None:
                ctx = self.ssl_context_factory(self, default_factory)
            elif not self.ssl_certfile:
                raise ConfigError(
                    "TLS needs --ssl-certfile (and --ssl-keyfile unless the key is in the certificate file)"
                )
            else:
                ctx = default_factory()
            if self.http2:
                # RFC 7301 / RFC 9113 §3.2: h2 preferred, HTTP/1.1 for the clients without it
                ctx.set_alpn_protocols(["h2", "http/1.1"])
            return ctx
        except ConfigError:
            raise
        except FileNotFoundError as exc:
            raise ConfigError(f"TLS file not found: {exc.filename}") from None
        except ssl.SSLError as exc:
            raise ConfigError(f"Invalid TLS certificate, key or password: {exc}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"Invalid TLS configuration: {exc}") from None

    def load(self) -> None:
        assert not self.loaded
        self.ssl: ssl.SSLContext | None = self.create_ssl_context() if self.is_ssl else None
        # server_cert of the ASGI TLS extension (read here once, not per connection)
        self.tls_server_cert = server_cert_pem(self.ssl_certfile) if self.ssl is not None else None

        encoded = [(str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in self.headers]
        self.encoded_headers = (
            encoded if b"server" in dict(encoded) or not self.server_header else [(b"server", b"fastasgi")] + encoded
        )

        # compiled here, in the process that serves (the format was checked in validate())
        self.access_log_writer = AccessLog(self.access_log_format, self.encoded_headers)
        self.http_protocol_class = resolve_http_protocol(self.http)
        # --http2: the HTTP/2 protocol of the same implementation set; None without it
        self.http2_protocol_class = resolve_http2_protocol(self.http_protocol_class) if self.http2 else None
        self.ws_protocol_class = resolve_ws_protocol(self.ws)

        # the app run() already loaded to fail fast, if it did: loading it again would call
        # a factory a second time, and factories open pools and register metrics once per process
        app, self._app_object = self._app_object, None
        self.loaded_app = app if app is not None else self.load_app_object()
        self.interface = self._detect_interface(self.loaded_app)
        if self.interface == "wsgi":
            try:
                from fastasgi.middleware.wsgi import WSGIMiddleware
            except ImportError:  # a2wsgi is a dependency: only an install with --no-deps lacks it
                raise ConfigError("--interface wsgi needs a2wsgi: pip install a2wsgi") from None
            self.loaded_app = WSGIMiddleware(self.loaded_app)
            self.ws_protocol_class = None
        elif self.interface == "asgi2":
            self.loaded_app = ASGI2Middleware(self.loaded_app)

        if logger.getEffectiveLevel() <= TRACE_LOG_LEVEL:
            self.loaded_app = MessageLoggerMiddleware(self.loaded_app)

        self.lifespan_class = resolve_lifespan(self.lifespan)
        self.loaded = True

    def load_app(self) -> None:
        """Import the app now (run() does this before starting, to fail fast); load() uses it."""
        if self._app_object is None:
            self._app_object = self.load_app_object()
        self.loaded_app = self._app_object

    def load_app_object(self) -> Any:
        app = self.app
        if isinstance(app, str):
            try:
                app = import_from_string(app)
            except ImportFromStringError as exc:
                raise ConfigError(f"Error loading ASGI app. {exc}") from None
        if self.factory:
            if not callable(app):
                raise ConfigError(f"Error loading ASGI app factory: {self.app!r} is not callable (used with --factory)")
            try:
                app = app()
            except TypeError as exc:
                raise ConfigError(f"Error loading ASGI app factory: {exc}") from None
        elif isinstance(self.app, str) and inspect.isfunction(app) and not _looks_like_app(app):
            logger.warning(
                "ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly."
            )
            app = app()
        if not callable(app):
            raise ConfigError(f"Error loading ASGI app: {self.app!r} is not callable")
        return app

    def _detect_interface(self, app: Any) -> str:
        if self.interface != "auto":
            return self.interface
        if inspect.isclass(app):
            use_asgi3 = hasattr(app, "__await__")
        elif inspect.isfunction(app):
            use_asgi3 = asyncio.iscoroutinefunction(app)
        else:
            call = getattr(app, "__call__", None)  # noqa: B004 - the method itself, not a callable() test
            use_asgi3 = asyncio.iscoroutinefunction(call)
        return "asgi3" if use_asgi3 else "asgi2"

    # -- event loop and sockets ---------------------------------------------------

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        return resolve_loop_factory(self.loop)

    def bind_socket(self) -> socket.socket:
        return bind_socket(self)


def _looks_like_app(func: Any) -> bool:
    """A plain function taking (scope, receive, send) or (scope) is an app, not a factory."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return True
    return len(params) > 0 or asyncio.iscoroutinefunction(func)


__all__ = ["LOGGING_CONFIG", "LOGGING_CONFIG_JSON", "LOG_LEVELS", "STARTUP_FAILURE", "TRACE_LOG_LEVEL", "Config", "ConfigError"]
