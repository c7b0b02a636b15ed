"""The HTTP/1.1 and HTTP/2 protocol factories, taken from the implementation sets.

``--http auto`` takes the compiled protocol when it imports (else the pure one),
``httptools`` insists on the compiled llhttp protocol, ``h11`` takes the
pure-Python h11 protocol.  ``--http2`` adds the HTTP/2 protocol of the same set
(and :mod:`.negotiation` picks one of the two per connection).  Code here does not
know how either is made.
"""

from __future__ import annotations

from typing import Any

from fastasgi import _speedups
from fastasgi.errors import ConfigError
from fastasgi.importer import ImportFromStringError, import_from_string


def resolve_http_protocol(http: Any) -> Any:
    if not isinstance(http, str):
        return http  # a protocol class given directly (uvicorn allows it)
    if http == "h11":
        return _speedups.load("py").http.HttpProtocol
    if http == "httptools":
        reason = _speedups.compiled_error()
        if reason is not None:
            raise ConfigError(f"--http httptools needs fastasgi's compiled extension, which is {reason}")
        return _speedups.load("c").http.HttpProtocol
    if http == "auto":
        return _speedups.load(_speedups.active).http.HttpProtocol
    try:
        return import_from_string(http)
    except ImportFromStringError as exc:
        raise ConfigError(f"Error loading HTTP protocol class. {exc}") from None


def resolve_http2_protocol(http_protocol_class: Any) -> Any:
    """The HTTP/2 protocol class that runs beside ``http_protocol_class`` (``--http2``)."""
    tag = _speedups.tag_of(http_protocol_class) or _speedups.active
    try:
        module = _speedups.load_http2(tag)
    except ImportError as exc:
        raise ConfigError(f"--http2 needs the h2 package: pip install 'fastasgi[http2]' ({exc})") from None
    return module.Http2Protocol
