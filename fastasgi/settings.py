"""Every setting of fastasgi, declared once.

Each :class:`Setting` names a ``Config`` keyword, its default, and how it is
spelled on the command line.  ``Config.__init__``'s signature, ``run()``'s
keywords and the click options of the ``fastasgi`` command are all derived from
:data:`SETTINGS`, so a setting cannot drift between the three (uvicorn writes
each of its settings four times).  Names, defaults, environment variables and
help texts follow uvicorn 0.54.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import click

LOG_LEVEL_CHOICES = ["critical", "error", "warning", "info", "debug", "trace"]
HTTP_CHOICES = ["auto", "h11", "httptools"]
WS_CHOICES = ["auto", "none", "websockets", "websockets-sansio", "wsproto"]
LIFESPAN_CHOICES = ["auto", "on", "off"]
INTERFACE_CHOICES = ["auto", "asgi3", "asgi2", "wsgi"]
LOOP_CHOICES = ["auto", "asyncio", "uvloop"]
LOG_FORMAT_CHOICES = ["text", "json"]


class LoopChoice(click.ParamType):
    """``auto``, ``asyncio``, ``uvloop`` or a ``module:callable`` loop factory."""

    name = "loop"

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return "[auto|asyncio|uvloop|module:callable]"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value in LOOP_CHOICES or (isinstance(value, str) and ":" in value):
            return value
        self.fail(f"{value!r} is not one of auto, asyncio, uvloop or a 'module:callable' factory.", param, ctx)


@dataclass(frozen=True)
class Setting:
    name: str  # the Config / run() keyword
    default: Any
    help: str = ""
    # command line: None means "not a CLI option" (e.g. ssl_context_factory)
    flags: tuple[str, ...] | None = field(default=None)
    type: Any = None
    is_flag: bool = False
    multiple: bool = False
    envvar: str | None = None
    show_default: bool = True
    cli_default: Any = "same"  # default on the command line when it differs from Config's


def _opt(name: str, default: Any, help: str, *flags: str, **kw: Any) -> Setting:
    if not flags:
        flags = ("--" + name.replace("_", "-"),)
    return Setting(name, default, help, flags, **kw)


SETTINGS: list[Setting] = [
    _opt("host", "127.0.0.1", "Bind socket to this host.", type=str),
    _opt("port", 8000, "Bind socket to this port. If 0, an available port will be picked.", type=int),
    _opt("uds", None, "Bind to a UNIX domain socket.", type=str),
    _opt("fd", None, "Bind to socket from this file descriptor.", type=int),
    _opt(
        "bind",
        None,
        "Listen on this address; repeat it to serve several at once (same process or workers): HOST:PORT, "
        "[IPv6]:PORT, unix:PATH or fd://N. Replaces --host/--port/--uds/--fd, which cannot be combined with it "
        "(fastasgi addition).",
        "--bind",
        type=str,
        multiple=True,
        show_default=False,
    ),
    _opt("loop", "auto", "Event loop factory implementation.", type=LoopChoice()),
    _opt("http", "auto", "HTTP protocol implementation.", type=click.Choice(HTTP_CHOICES)),
    _opt(
        "http2",
        False,
        "Enable HTTP/2 support: h2 by ALPN over TLS, prior knowledge or Upgrade: h2c in cleartext, HTTP/1.1 on "
        "the same port for every other connection. Runs on libnghttp2 where the compiled extensions were built "
        "with it, else on the h2 package (fastasgi[http2]).",
        is_flag=True,
        show_default=False,
    ),
    _opt("ws", "auto", "WebSocket protocol implementation.", type=click.Choice(WS_CHOICES)),
    _opt("ws_max_size", 16777216, "WebSocket max size message in bytes", type=int),
    _opt("ws_max_queue", 32, "The maximum length of the WebSocket message queue.", type=int),
    _opt("ws_ping_interval", 20.0, "WebSocket ping interval in seconds.", type=float),
    _opt("ws_ping_timeout", 20.0, "WebSocket ping timeout in seconds.", type=float),
    _opt("ws_per_message_deflate", True, "WebSocket per-message-deflate compression", type=bool),
    _opt("lifespan", "auto", "Lifespan implementation.", type=click.Choice(LIFESPAN_CHOICES)),
    _opt("env_file", None, "Environment configuration file.", type=click.Path(exists=True), show_default=False),
    _opt(
        "log_config",
        "LOGGING_CONFIG",  # replaced by config.LOGGING_CONFIG in Config (kept lazy to avoid an import cycle)
        "Logging configuration file. Supported formats: .ini, .json, .yaml.",
        type=click.Path(exists=True),
        show_default=False,
        cli_default=None,
    ),
    _opt(
        "log_level",
        None,
        "Log level. [default: info]",
        type=click.Choice(LOG_LEVEL_CHOICES),
        show_default=False,
    ),
    _opt(
        "access_log",
        True,
        "Enable/Disable access log.",
        "--access-log/--no-access-log",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "access_log_format",
        None,
        "Access log line in gunicorn's format: atoms such as %(h)s %(t)s \"%(r)s\" %(s)s %(b)s %(D)s "
        "%({x-request-id}i)s (see the README for the list). Default: uvicorn's line.",
        type=str,
        show_default=False,
    ),
    _opt(
        "log_format",
        "text",
        "Output of the default logging configuration: 'text' (uvicorn's lines) or 'json' (one JSON object per "
        "line, access and error logs alike). --log-config, when given, decides instead.",
        type=click.Choice(LOG_FORMAT_CHOICES),
    ),
    _opt(
        "use_colors",
        None,
        "Enable/Disable colorized logging.",
        "--use-colors/--no-use-colors",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "interface",
        "auto",
        "Select ASGI3, ASGI2, or WSGI as the application interface.",
        type=click.Choice(INTERFACE_CHOICES),
    ),
    _opt("reload", False, "Enable auto-reload.", is_flag=True, show_default=False),
    _opt(
        "reload_dirs",
        None,
        "Set reload directories explicitly, instead of using the current working directory.",
        "--reload-dir",
        type=click.Path(exists=True),
        multiple=True,
        show_default=False,
    ),
    _opt(
        "reload_includes",
        None,
        "Set glob patterns to include while watching for files. Includes '*.py' by default; these defaults can be "
        "overridden with `--reload-exclude`. This option has no effect unless watchfiles is installed.",
        "--reload-include",
        type=str,
        multiple=True,
        show_default=False,
    ),
    _opt(
        "reload_excludes",
        None,
        "Set glob patterns to exclude while watching for files. Includes '.*, .py[cod], .sw.*, ~*' by default; these "
        "defaults can be overridden with `--reload-include`. This option has no effect unless watchfiles is installed.",
        "--reload-exclude",
        type=str,
        multiple=True,
        show_default=False,
    ),
    _opt(
        "reload_delay",
        0.25,
        "Delay between previous and next check if application needs to be. Defaults to 0.25s.",
        type=float,
    ),
    _opt(
        "workers",
        None,
        "Number of worker processes. Defaults to the $WEB_CONCURRENCY environment variable if available, or 1. "
        "Not valid with --reload.",
        type=int,
        envvar="WEB_CONCURRENCY",
        show_default=False,
    ),
    _opt(
        "reuse_port",
        False,
        "With --workers > 1: give each worker its own SO_REUSEPORT listening socket (Linux, BSD) so the kernel "
        "spreads connections evenly, instead of one shared socket. Not valid with --uds or --fd.",
        "--reuse-port/--no-reuse-port",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "metrics_port",
        None,
        "Serve Prometheus metrics at /metrics on this port: a listener of its own, never the app's port. Under "
        "--workers the supervisor serves the sum over all workers. Needs prometheus_client. Default: off.",
        type=int,
        show_default=False,
    ),
    _opt("metrics_host", "127.0.0.1", "Bind the --metrics-port listener to this host.", type=str),
    _opt(
        "proxy_headers",
        True,
        "Enable/Disable X-Forwarded-Proto, X-Forwarded-For (and -Port; Forwarded (RFC 7239) when neither of the "
        "first two is present) to populate url scheme and remote address info.",
        "--proxy-headers/--no-proxy-headers",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "forwarded_host",
        False,
        "With --proxy-headers, let a trusted proxy's X-Forwarded-Host (or Forwarded host=) set the Host header "
        "the app sees, and its X-Forwarded-Port the port of scope['server']. Off: the request's own Host and "
        "the server's port, as uvicorn.",
        "--forwarded-host/--no-forwarded-host",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "server_header",
        True,
        "Enable/Disable default Server header.",
        "--server-header/--no-server-header",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "date_header",
        True,
        "Enable/Disable default Date header.",
        "--date-header/--no-date-header",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "forwarded_allow_ips",
        None,
        "Comma separated list of IP Addresses, IP Networks, or literals (e.g. UNIX Socket path) to trust with proxy "
        "headers. Defaults to the $FORWARDED_ALLOW_IPS environment variable if available, or '127.0.0.1,::1'. "
        "The literal '*' means trust everything.",
        type=str,
        show_default=False,
    ),
    _opt(
        "root_path",
        "",
        "Set the ASGI 'root_path' for applications submounted below a given URL path.",
        type=str,
        show_default=False,
    ),
    _opt(
        "limit_concurrency",
        None,
        "Maximum number of concurrent connections or tasks to allow, before issuing HTTP 503 responses.",
        type=int,
        show_default=False,
    ),
    _opt(
        "limit_max_requests",
        None,
        "Maximum number of requests to service before terminating the process.",
        type=int,
        show_default=False,
    ),
    _opt(
        "limit_max_requests_jitter",
        0,
        "Maximum jitter to add to limit_max_requests. Staggers worker restarts to avoid all workers restarting "
        "simultaneously.",
        type=int,
    ),
    # -- worker recycling by memory and age (fastasgi; the supervisor replaces the worker) ----
    _opt(
        "limit_max_rss",
        None,
        "Replace a worker whose resident memory (RSS) exceeds this many MiB, checked every second; its "
        "replacement is ready before it stops accepting. Runs the worker supervisor even with one worker.",
        type=int,
        show_default=False,
    ),
    _opt(
        "limit_max_rss_jitter",
        0,
        "Maximum jitter in MiB to add to limit_max_rss, drawn for each worker.",
        type=int,
    ),
    _opt(
        "limit_max_lifetime",
        None,
        "Replace a worker after it has served for this many seconds; its replacement is ready before it stops "
        "accepting. Runs the worker supervisor even with one worker.",
        type=float,
        show_default=False,
    ),
    _opt(
        "limit_max_lifetime_jitter",
        0.0,
        "Maximum jitter in seconds to add to limit_max_lifetime, drawn for each worker, so that workers started "
        "together are not all due at once.",
        type=float,
    ),
    # -- request limits (fastasgi; names after gunicorn's --limit-request-*) -----------------
    _opt(
        "limit_request_line",
        8190,
        "Maximum size of the HTTP request line (method, target, version) in bytes; longer -> 414 and close.",
        type=int,
    ),
    _opt(
        "limit_request_fields",
        100,
        "Maximum number of header fields in a request (and of trailer fields); more -> 431 and close.",
        type=int,
    ),
    _opt(
        "limit_request_field_size",
        8190,
        "Maximum size of one request header field (name + value, without the surrounding whitespace) in bytes; "
        "larger -> 431 and close.",
        type=int,
    ),
    _opt(
        "limit_request_header_size",
        None,
        "Maximum size of the whole request header block (request line and fields; also of a trailer section) in "
        "bytes; larger -> 431 and close. Defaults to --h11-max-incomplete-event-size if given, else 16384.",
        type=int,
        show_default=False,
    ),
    _opt(
        "limit_chunk_extension_size",
        4096,
        "Maximum size of the chunk extensions on one chunk-size line of a chunked request body; larger -> 400.",
        type=int,
    ),
    _opt(
        "limit_request_body",
        None,
        "Maximum size of a request body in bytes (Content-Length or chunked); larger -> 413 and close, before the "
        "app reads past the limit. Default: no limit.",
        type=int,
        show_default=False,
    ),
    _opt("backlog", 2048, "Maximum number of connections to hold in backlog", type=int, show_default=False),
    _opt(
        "timeout_keep_alive",
        5,
        "Close Keep-Alive connections if no new data is received within this timeout (in seconds).",
        type=int,
    ),
    _opt(
        "timeout_request_header",
        30.0,
        "Close a connection whose request header block is not complete this many seconds after the server "
        "started waiting for it (connection accepted or previous response sent); 408 if some bytes arrived. "
        "0 disables.",
        type=float,
    ),
    _opt(
        "timeout_request_body",
        60.0,
        "Close a connection whose client sends no request body bytes for this many seconds while the body is "
        "incomplete and the server is reading (408 if the response has not started). 0 disables.",
        type=float,
    ),
    _opt(
        "timeout_response_body",
        60.0,
        "HTTP/2: reset a stream (RST_STREAM CANCEL) whose response cannot be sent for this many seconds because "
        "the client keeps its flow-control window closed, and close a connection whose client reads nothing for "
        "this long while a response waits. HTTP/1.1 is not affected. 0 disables (fastasgi addition).",
        type=float,
    ),
    Setting("timeout_notify", 30),
    _opt(
        "timeout_graceful_shutdown",
        None,
        "Maximum number of seconds to wait for graceful shutdown.",
        type=int,
        show_default=False,
    ),
    _opt(
        "timeout_worker_healthcheck",
        5,
        "Maximum number of seconds to wait for a worker to respond to a healthcheck.",
        type=int,
    ),
    Setting("callback_notify", None),
    _opt("ssl_keyfile", None, "SSL key file", type=str, show_default=False),
    _opt("ssl_certfile", None, "SSL certificate file", type=str, show_default=False),
    _opt("ssl_keyfile_password", None, "SSL keyfile password", type=str, show_default=False),
    _opt(
        "ssl_version",
        ssl.PROTOCOL_TLS_SERVER,
        "SSL version to use (see stdlib ssl module's)",
        type=int,
        cli_default=int(ssl.PROTOCOL_TLS_SERVER),
    ),
    _opt(
        "ssl_cert_reqs",
        ssl.CERT_NONE,
        "Whether client certificate is required (see stdlib ssl module's)",
        type=int,
        cli_default=int(ssl.CERT_NONE),
    ),
    _opt("ssl_ca_certs", None, "CA certificates file", type=str, show_default=False),
    _opt(
        "ssl_ciphers",
        None,
        "Ciphers to use (see stdlib ssl module's). Defaults to OpenSSL's safe defaults.",
        type=str,
        show_default=False,
    ),
    Setting("ssl_context_factory", None),
    _opt(
        "headers",
        None,
        "Specify custom default HTTP response headers as a Name:Value pair",
        "--header",
        type=str,
        multiple=True,
        show_default=False,
    ),
    _opt(
        "factory",
        False,
        "Treat APP as an application factory, i.e. a () -> <ASGI app> callable.",
        is_flag=True,
        show_default=False,
    ),
    _opt(
        "h11_max_incomplete_event_size",
        None,
        "For h11, the maximum number of bytes to buffer of an incomplete event. fastasgi applies it to the header "
        "block on both HTTP implementations (default 16384).",
        type=int,
        show_default=False,
    ),
    _opt(
        "reset_contextvars",
        False,
        "Run each ASGI request in a fresh contextvars.Context. Hides context set in the lifespan.",
        is_flag=True,
        show_default=False,
    ),
]

# Keywords that run() takes besides Config's.
RUN_ONLY = [Setting("app_dir", "", "Look for APP in the specified directory, by adding this to the PYTHONPATH.")]

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
