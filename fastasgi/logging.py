"""Log formatters like uvicorn's: a coloured level prefix, and the access-log line.

Used by :data:`fastasgi.config.LOGGING_CONFIG`.  The access line is
``client - "METHOD path HTTP/x" status``.
"""

from __future__ import annotations

import http
import logging
import sys
from copy import copy
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
        recordcopy = copy(record)
        levelname = recordcopy.levelname
        seperator = " " * (8 - len(recordcopy.levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, recordcopy.levelno)
            if "color_message" in recordcopy.__dict__:
                recordcopy.msg = recordcopy.__dict__["color_message"]
                recordcopy.__dict__["message"] = recordcopy.getMessage()
        recordcopy.__dict__["levelprefix"] = levelname + ":" + seperator
        return super().formatMessage(recordcopy)


class DefaultFormatter(ColourizedFormatter):
    def should_use_colors(self) -> bool:
        return sys.stderr.isatty()


class AccessFormatter(ColourizedFormatter):
    """Formats records logged as ``(client_addr, method, full_path, http_version, status_code)``."""

    def get_status_code(self, status_code: int) -> str:
        try:
            phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            phrase = ""
        text = f"{status_code} {phrase}".rstrip()
        if self.use_colors:
            code = {1: "\033[37m", 2: "\033[32m", 3: "\033[33m", 4: "\033[31m", 5: "\033[91m"}.get(status_code // 100)
            return _style(text, code)
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:
        recordcopy = copy(record)
        args: Any = recordcopy.args
        client_addr, method, full_path, http_version, status_code = args
        request_line = f"{method} {full_path} HTTP/{http_version}"
        if self.use_colors:
            request_line = _style(request_line, bold=True)
        recordcopy.__dict__.update(
            {
                "client_addr": client_addr,
                "request_line": request_line,
                "status_code": self.get_status_code(int(status_code)),
            }
        )
        return super().formatMessage(recordcopy)
