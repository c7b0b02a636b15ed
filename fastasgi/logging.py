"""Log formatters: uvicorn's (a coloured level prefix, and the access line) and JSON lines.

Used by :data:`fastasgi.config.LOGGING_CONFIG` (``--log-format text``, the default:
the access line is ``client - "METHOD path HTTP/x" status``) and
:data:`fastasgi.config.LOGGING_CONFIG_JSON` (``--log-format json``).
"""

from __future__ import annotations

import http
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Literal

from fastasgi.errors import TRACE_LOG_LEVEL

_RESET = "\033[0m"
_COLORS = {
    TRACE_LOG_LEVEL: "\033[34m",  # blue
    logging.DEBUG: "\033[36m",  # cyan
    logging.INFO: "\033[32m",  # green
    logging.WARNING: "\033[33m",  # yellow
    logging.ERROR: "\033[31m",  # red
    logging.CRITICAL: "\033[91m",  # bright red
}


def _style(text: str, code: str | None = None, bold: bool = False) -> str:
    prefix = (code or "") + ("\033[1m" if bold else "")
    return f"{prefix}{text}{_RESET}" if prefix else text


# The attributes every access record carries (set by fastasgi.accesslog), in the
# order the JSON formatter writes them.
ACCESS_FIELDS = (
    "client_addr",
    "client_host",
    "client_port",
    "method",
    "path",
    "query_string",
    "http_version",
    "request_line",
    "status_code",
    "response_bytes",
    "duration",
    "user_agent",
    "referer",
)


class _Values:
    """What a Style formats: an object whose ``__dict__`` is given (a record's, extended).

    A formatter that adds fields must not add them to the record other handlers
    see; uvicorn copies the record (``copy.copy``), a copy of its ``__dict__``
    costs far less.
    """

    __slots__ = ("__dict__",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__ = values


class ColourizedFormatter(logging.Formatter):
    """Adds ``%(levelprefix)s``: the level name padded to 9 columns, coloured when ``use_colors``."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ):
        if use_colors in (True, False):
            self.use_colors = use_colors
        else:
            self.use_colors = sys.stdout.isatty()
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def color_level_name(self, level_name: str, level_no: int) -> str:
        return _style(level_name, _COLORS.get(level_no))

    def should_use_colors(self) -> bool:
        return True

    def formatMessage(self, record: logging.LogRecord) -> str:
        return self.render(self.values(record))

    def render(self, values: dict[str, Any]) -> str:
        """``fmt`` filled in from ``values``: what ``self._style.format`` does for a record with these attributes."""
        style = self._style
        if type(style) is logging.PercentStyle and not getattr(style, "_defaults", None):
            return style._fmt % values  # type: ignore[no-any-return]  # the common case, two calls less
        return style.format(_Values(values))  # type: ignore[arg-type]

    def values(self, record: logging.LogRecord) -> dict[str, Any]:
        """A copy of the record's attributes, with ``levelprefix`` (and the coloured message) added."""
        values = record.__dict__.copy()
        levelname = record.levelname
        seperator = " " * (8 - len(levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, record.levelno)
            if "color_message" in record.__dict__:
                msg = record.__dict__["color_message"]
                values["message"] = msg % record.args if record.args else msg
        values["levelprefix"] = levelname + ":" + seperator
        return values


class DefaultFormatter(ColourizedFormatter):
    def should_use_colors(self) -> bool:
        return sys.stderr.isatty()


class AccessFormatter(ColourizedFormatter):
    """Formats records logged as ``(client_addr, method, full_path, http_version, status_code)``.

    A record of a custom ``--access-log-format`` has a dict of atoms as arguments:
    ``client_addr``, ``request_line`` and ``status_code`` then come from its
    attributes (see :data:`ACCESS_FIELDS`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status_texts: dict[int, str] = {}

    def get_status_code(self, status_code: int) -> str:
        text = self._status_texts.get(status_code)
        if text is not None:
            return text
        try:
            phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            phrase = ""
        text = f"{status_code} {phrase}".rstrip()
        if self.use_colors:
            code = {1: "\033[37m", 2: "\033[32m", 3: "\033[33m", 4: "\033[31m", 5: "\033[91m"}.get(status_code // 100)
            text = _style(text, code)
        if len(self._status_texts) < 1000:  # statuses are 3-digit numbers; bounded all the same
            self._status_texts[status_code] = text
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:
        values = self.values(record)
        args: Any = record.args
        if type(args) is tuple and len(args) == 5:
            client_addr, method, full_path, http_version, status_code = args
            request_line = f"{method} {full_path} HTTP/{http_version}"
        else:
            client_addr = record.__dict__.get("client_addr", "")
            request_line = record.__dict__.get("request_line", "")
            status_code = record.__dict__.get("status_code", 0)
        if self.use_colors:
            request_line = _style(request_line, bold=True)
        values["client_addr"] = client_addr
        values["request_line"] = request_line
        values["status_code"] = self.get_status_code(int(status_code))
        return self.render(values)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (``--log-format json``).

    Keys: ``timestamp`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
    ``message``, then the access fields the record carries (:data:`ACCESS_FIELDS`),
    then ``exception`` (the formatted traceback) and ``stack`` when present.
    Every non-ASCII or control character is escaped by JSON itself (``\\n``,
    ``\\u2028``), so a value can never break the line.
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, use_colors: bool | None = None, **kw: Any):
        super().__init__(fmt=fmt, datefmt=datefmt)  # use_colors: accepted and ignored (no colours in JSON)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        values = record.__dict__
        if "status_code" in values:
            for key in ACCESS_FIELDS:
                if key in values:
                    entry[key] = values[key]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)
