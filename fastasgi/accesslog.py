"""The access log: one record per HTTP response, shared by both implementation sets.

The request cycle (``fastasgi._speedups.http_c`` and its twin ``http_py``) counts the
response bytes and the time of each request and, when the access log is on, calls
:meth:`AccessLog.log` once per response.  That builds one ``LogRecord`` of the
``fastasgi.access`` logger:

* its message is uvicorn's line, ``'%s - "%s %s HTTP/%s" %d'`` with the 5-tuple of
  arguments uvicorn passes (so uvicorn-style formatters keep working), or, with
  ``--access-log-format``, the compiled gunicorn-style format and a dict of atoms;
* its fields are attributes of the record (:data:`fastasgi.logging.ACCESS_FIELDS`),
  for any formatter to use.

Everything that comes from the client (path, query, header values, a client
address taken from proxy headers) is escaped before it reaches a record: bytes
outside printable ASCII become ``\\xNN``; characters of decoded text (the
percent-decoded path) that are not printable become ``\\xNN``, ``\\uNNNN`` or
``\\UNNNNNNNN``.  No value can start a new log line (CVE-2020-7694 was that).

``--access-log-format`` is compiled once, at startup (:func:`compile_format`):
an unknown atom or a bad ``%`` directive is a ``ValueError`` then, never an
error per request.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import sys
import threading
import time
from typing import Any, Callable
from urllib.parse import quote

INFO = logging.INFO
UVICORN_MESSAGE = '%s - "%s %s HTTP/%s" %d'

# gunicorn's atoms (glogging.py ``atoms()``), for the format of ``--access-log-format``.
ATOMS: dict[str, str] = {
    "h": "remote address (the client host; from the proxy headers when trusted)",
    "l": "'-'",
    "u": "user name from HTTP Basic authorization, else '-'",
    "t": "date and time of the request, '[%d/%b/%Y:%H:%M:%S %z]' (local time)",
    "r": "request line: 'METHOD target HTTP/x' (the raw target, as sent)",
    "m": "request method",
    "U": "URL path, percent-decoded (without the query string)",
    "q": "query string ('' when none)",
    "H": "protocol, 'HTTP/1.1'",
    "s": "status code",
    "B": "response body length in bytes",
    "b": "response body length in bytes, '-' for 0",
    "f": "Referer header, else '-'",
    "a": "User-Agent header, else '-'",
    "T": "request time, whole seconds",
    "D": "request time, microseconds",
    "M": "request time, milliseconds",
    "L": "request time, decimal seconds ('0.000123')",
    "p": "process ID, '<1234>'",
    "{name}i": "request header 'name' (case-insensitive), else '-'",
    "{name}o": "response header 'name' (case-insensitive), else '-'",
    "{name}e": "environment variable 'name' of the server process, else '-'",
}

# characters urllib.parse.quote leaves as they are (with safe="/")
_URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/"
_DIRECTIVE = re.compile(r"%(%|\((?P<name>[^)]*)\)|)")
_HEADER_ATOM = re.compile(r"\{([^{}]+)\}([ioe])")

# -- escaping -------------------------------------------------------------------------


def _escape_char(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return "\\x%02x" % code
    if code < 0x10000:
        return "\\u%04x" % code
    return "\\U%08x" % code


def escape_text(text: str) -> str:
    """``text`` with every non-printable character (str.isprintable) as ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN``."""
    if text.isprintable():
        return text
    return "".join([c if c.isprintable() else _escape_char(c) for c in text])


def escape_bytes(value: bytes) -> str:
    """``value`` as text, every byte outside printable ASCII (0x20-0x7e) as ``\\xNN``."""
    text = value.decode("latin-1")
    if text.isascii() and text.isprintable():
        return text
    return "".join([c if " " <= c <= "~" else "\\x%02x" % ord(c) for c in text])


# -- compiling --access-log-format --------------------------------------------------------

Getter = Callable[[dict, dict, Any], Any]  # (fields, scope, response headers) -> atom value


def _quoted(value: str) -> str:
    # gunicorn escapes '"' in every string atom, so that "%(a)s" stays one field
    return value.replace('"', '\\"') if '"' in value else value


def _or_dash(value: str | None) -> str:
    return "-" if value is None else _quoted(value)


def _find_header(headers: Any, name: bytes) -> str:
    """The value of header ``name`` (lowercase) in ``headers`` (pairs of bytes), else '-'.

    Repeated fields are joined with ", " (RFC 9110 §5.3)."""
    found = None
    for key, value in headers or ():
        if key.lower() == name:
            found = value if found is None else found + b", " + value
    return "-" if found is None else _quoted(escape_bytes(found))


def _basic_user(fields: dict, scope: dict, response_headers: Any) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() != b"basic":
                return "-"
            try:
                user = base64.b64decode(credentials.strip(), validate=True).split(b":", 1)[0].decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return "-"
            return _quoted(escape_text(user))
    return "-"


class _Clock:
    """``[%d/%b/%Y:%H:%M:%S %z]`` for now, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def __call__(self, fields: dict, scope: dict, response_headers: Any) -> str:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(now))
        return self.text


def _request_line(fields: dict, scope: dict, response_headers: Any) -> str:
    target = escape_bytes(scope["raw_path"])
    qs = scope["query_string"]
    if qs:
        target = target + "?" + escape_bytes(qs)
    return _quoted(f"{fields['method']} {target} HTTP/{fields['http_version']}")


def _body_length_clf(fields: dict, scope: dict, response_headers: Any) -> str:
    sent = fields["response_bytes"]
    return str(sent) if sent else "-"


def _simple_getters() -> dict[str, Getter]:
    return {
        "h": lambda f, s, r: _or_dash(f["client_host"]),
        "l": lambda f, s, r: "-",
        "u": _basic_user,
        "t": _Clock(),
        "r": _request_line,
        "m": lambda f, s, r: _quoted(f["method"]),
        "U": lambda f, s, r: _quoted(f["path"]),
        "q": lambda f, s, r: _quoted(f["query_string"]),
        "H": lambda f, s, r: "HTTP/" + f["http_version"],
        "s": lambda f, s, r: f["status_code"],
        "B": lambda f, s, r: f["response_bytes"],
        "b": _body_length_clf,
        "f": lambda f, s, r: _or_dash(f["referer"]),
        "a": lambda f, s, r: _or_dash(f["user_agent"]),
        "T": lambda f, s, r: int(f["duration"]),
        "D": lambda f, s, r: int(f["duration"] * 1_000_000),
        "M": lambda f, s, r: int(f["duration"] * 1000),
        "L": lambda f, s, r: "%.6f" % f["duration"],
        "p": lambda f, s, r: "<%d>" % os.getpid(),
    }


# what each atom is replaced with to check a format at startup (numbers where the atom is one)
_SAMPLE_NUMBERS = {"s": 200, "B": 0, "T": 0, "D": 0, "M": 0}


def compile_format(fmt: str, extra_response_headers: Any = ()) -> tuple[str, list[tuple[str, Getter]]]:
    """``fmt`` (gunicorn's ``%(atom)s`` syntax) -> (the %-format, [(atom, getter)]).

    ``ValueError`` with a readable reason for an unknown atom, a ``%`` that names
    no atom, or a directive that cannot format its atom (``%(b)d``: ``b`` may be '-').
    ``extra_response_headers`` are searched by ``{name}o`` after the app's headers
    (the server's default headers, such as ``server``).
    """
    if not isinstance(fmt, str):
        raise ValueError(f"must be a string, got {type(fmt).__name__}")
    simple = _simple_getters()
    getters: dict[str, Getter] = {}
    for match in _DIRECTIVE.finditer(fmt):
        if match.group(1) == "%":
            continue
        name = match.group("name")
        if name is None:
            raise ValueError(f"{fmt!r}: every '%' must name an atom, as in '%(h)s' (a literal '%' is '%%')")
        if name in getters:
            continue
        if name in simple:
            getters[name] = simple[name]
            continue
        header = _HEADER_ATOM.fullmatch(name)
        if header is None:
            known = " ".join(ATOMS)
            raise ValueError(f"unknown atom '%({name})s' in {fmt!r} (known atoms: {known})")
        key, kind = header.groups()
        if kind == "i":
            wanted = key.lower().encode("latin-1", "replace")
            getters[name] = lambda f, s, r, wanted=wanted: _find_header(s["headers"], wanted)
        elif kind == "o":
            wanted = key.lower().encode("latin-1", "replace")
            extra = list(extra_response_headers)
            getters[name] = lambda f, s, r, wanted=wanted, extra=extra: _find_header(
                list(r or ()) + extra if extra else r, wanted
            )
        else:
            getters[name] = lambda f, s, r, key=key: _or_dash(
                None if os.environ.get(key) is None else escape_text(os.environ[key])
            )
    sample = {name: _SAMPLE_NUMBERS.get(name, "-") for name in getters}
    try:
        fmt % sample
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{fmt!r} cannot be formatted: {exc}") from None
    return fmt, list(getters.items())


# -- the per-response record --------------------------------------------------------------


class AccessLog:
    """Writes the access record of each response to the ``fastasgi.access`` logger.

    ``fmt`` None: uvicorn's line.  Built once per server process (``Config.load``);
    the request cycle calls :meth:`log`.
    """

    def __init__(self, fmt: str | None = None, extra_response_headers: Any = ()) -> None:
        self.logger = logging.getLogger("fastasgi.access")
        self.template_record: dict[str, Any] | None = None  # see new_record
        self.template_owner = (0, 0)  # (thread, process) the template was made in
        if fmt is None:
            self.template = None
            self.getters: list[tuple[str, Getter]] = []
        else:
            self.template, self.getters = compile_format(fmt, extra_response_headers)
            if not self.getters:  # no atom: the line is constant ('%%' still to be undone)
                self.template = self.template % {}

    def log(self, scope: dict, status: int, sent: int, duration: float, response_headers: Any) -> None:
        client = scope["client"]
        if client:
            host = client[0]
            if not host.isprintable():
                host = escape_text(host)
            port = client[1]
            client_addr = "%s:%d" % (host, port)
        else:
            host = port = None
            client_addr = ""
        method = scope["method"]
        version = scope["http_version"]
        path = scope["path"]
        qs = scope["query_string"]
        # the target of uvicorn's line: the path percent-encoded (uvicorn's fix for
        # CVE-2020-7694), then the query as sent.  (rstrip: one C call that tells
        # whether quote() would change anything.)
        target = quote(path) if path.rstrip(_URL_SAFE) else path
        if qs:
            query = escape_bytes(qs)
            target = target + "?" + query
        else:
            query = ""
        user_agent = referer = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value.decode("latin-1")
                if not (user_agent.isascii() and user_agent.isprintable()):
                    user_agent = escape_bytes(value)
            elif name == b"referer":
                referer = escape_bytes(value)
        fields = {
            "client_addr": client_addr,
            "client_host": host,
            "client_port": port,
            "method": method,
            "path": path if path.isprintable() else escape_text(path),
            "query_string": query,
            "http_version": version,
            "request_line": f"{method} {target} HTTP/{version}",
            "status_code": status,
            "response_bytes": sent,
            "duration": duration,
            "user_agent": user_agent,
            "referer": referer,
        }
        logger = self.logger
        template = self.template
        if template is None:
            args: Any = (client_addr, method, target, version, status)
            template = UVICORN_MESSAGE
        elif not self.getters:
            args = ()
        else:
            args = ({name: getter(fields, scope, response_headers) for name, getter in self.getters},)
        record = self.new_record(template, args)
        record.__dict__.update(fields)
        logger.handle(record)

    def new_record(self, msg: str, args: Any) -> logging.LogRecord:
        """The LogRecord of one access line, as ``logger.info(msg, *args)`` would make it.

        ``Logger.info`` walks the stack for the caller (findCaller) and
        ``LogRecord.__init__`` recomputes per record what is the same for every
        access record of this thread (file and module names, thread and process
        names), about half of the cost of an access line.  With the default
        record factory, a record is a copy of a template made once per thread by
        that factory, with what differs per record filled in as ``__init__``
        does; with another factory (OpenTelemetry's, a user's), the factory runs.
        """
        logger = self.logger
        template = self.template_record
        owner = (threading.get_ident(), os.getpid())
        if template is None or self.template_owner != owner or logging.getLogRecordFactory() is not logging.LogRecord:
            record = logger.makeRecord(logger.name, INFO, __file__, 0, msg, args, None, "log")
            if type(record) is logging.LogRecord and type(logger).makeRecord is logging.Logger.makeRecord:
                self.template_record = record.__dict__.copy()
                self.template_owner = owner
            else:
                self.template_record = None
            return record
        values = template.copy()
        values["msg"] = msg
        values["args"] = args[0] if len(args) == 1 and isinstance(args[0], dict) and args[0] else args
        # the times, computed as LogRecord.__init__ computes them
        if _NS_CLOCK:  # 3.13+
            ns = time.time_ns()
            values["created"] = ns / 1e9
            values["msecs"] = (ns % 1_000_000_000) // 1_000_000 + 0.0
            values["relativeCreated"] = (ns - logging._startTime) / 1e6  # type: ignore[attr-defined]
        else:
            ct = time.time()
            values["created"] = ct
            values["msecs"] = int((ct - int(ct)) * 1000) + 0.0
            values["relativeCreated"] = (ct - logging._startTime) * 1000  # type: ignore[attr-defined]
        if "taskName" in values and logging.logAsyncioTasks:  # type: ignore[attr-defined]  # 3.12+
            values["taskName"] = _task_name()
        record = _new_record(logging.LogRecord)
        record.__dict__ = values
        return record


_new_record = object.__new__
_NS_CLOCK = isinstance(logging._startTime, int)  # type: ignore[attr-defined]  # LogRecord's clock: ns from 3.13


def _task_name() -> str | None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.current_task().get_name()  # type: ignore[union-attr]
    except Exception:
        return None
