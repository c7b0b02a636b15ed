# cython: annotation_typing=False
# (types for the compiled build come from framing_c.pxd; the annotations are for mypy)
"""Response framing: status line + headers serialized once, and chunked encoding.

Pure-Python twin of ``framing_c`` (Cython compiles this very file with the
types in ``framing_c.pxd``).  This module never imports ``cython``, so PyPy runs
it as it is.

Rules applied to what the app sends (the app cannot corrupt the wire):

* header names must be RFC 9110 §5.6.2 tokens, values must not contain CR, LF
  or NUL (§5.5) -- otherwise :class:`ResponseHeaderError`;
* ``content-length`` given by the app must be a single non-negative integer
  (§8.6); ``transfer-encoding`` from the app is dropped, the server frames the
  body itself (RFC 9112 §6.1);
* 1xx, 204 and 304 responses and responses to HEAD have no body
  (RFC 9110 §6.4.1, RFC 9112 §6.3): no framing header is added, body bytes are
  dropped;
* without a content-length, an HTTP/1.1 response whose body is streamed is
  chunked (RFC 9112 §7.1); an HTTP/1.0 client never gets chunked encoding, the
  body is delimited by closing the connection (RFC 9112 §6.3 item 8).
"""

from __future__ import annotations

import http

# Framing modes returned by encode_head().
NO_BODY = 0  # HEAD / 1xx / 204 / 304: nothing after the head
CONTENT_LENGTH = 1  # exactly content_length bytes follow
CHUNKED = 2  # chunked transfer coding
CLOSE_DELIMITED = 3  # body ends when the connection closes (HTTP/1.0, streamed)

# RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#                          "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# byte -> 0: not a tchar, 1: tchar, 2: upper-case letter (a tchar that lower() changes)
_TOKEN_TABLE = bytes((2 if 65 <= c <= 90 else 1) if c in TOKEN_CHARS else 0 for c in range(256))


def token_kind(name):
    """0: not an RFC 9110 token; 1: a lower-case token; 2: a token with upper-case letters.

    A plain loop: compiled (framing_c.pxd types ``c``) it is a C loop over the
    bytes with no Python object per character.
    """
    if not name:
        return 0
    kind = 1
    for c in name:
        k = _TOKEN_TABLE[c]
        if k == 0:
            return 0
        if k == 2:
            kind = 2
    return kind


class ResponseHeaderError(ValueError):
    """The app sent a header that would corrupt the response."""


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


# Pre-encoded status lines for both versions (index: status code).
_STATUS_LINES_11: dict = {}
_STATUS_LINES_10: dict = {}
for _s in range(100, 600):
    _phrase = _reason(_s)
    _STATUS_LINES_11[_s] = b"HTTP/1.1 %d %s\r\n" % (_s, _phrase)
    _STATUS_LINES_10[_s] = b"HTTP/1.0 %d %s\r\n" % (_s, _phrase)


def status_line(status: int, http11: bool) -> bytes:
    lines = _STATUS_LINES_11 if http11 else _STATUS_LINES_10
    line = lines.get(status)
    if line is None:
        raise ResponseHeaderError(f"Invalid HTTP status code {status!r} in response (must be 100-599)")
    return line


# The last head encoded, with what it was made from: (status, headers, default_headers,
# http11, is_head, body_length, keep_alive, result).  Most apps answer with the same
# headers again and again; a hit costs a comparison of the pairs instead of their
# validation and serialization.  One tuple, swapped whole: a reader never sees a mix.
_last: tuple = (None, (), b"", False, False, 0, False, None)


def _same_headers(headers: object, cached: tuple) -> bool:
    """``headers`` (a list or tuple of pairs) holds the same pairs as ``cached``."""
    n = len(cached)
    if len(headers) != n:  # type: ignore[arg-type]
        return False
    for i in range(n):
        item = headers[i]  # type: ignore[index]
        pair = cached[i]
        if item is pair:
            continue
        if type(item) is not tuple or len(item) != 2 or item[0] != pair[0] or item[1] != pair[1]:
            return False
    return True


def encode_head(
    status: int,
    headers: object,
    default_headers: bytes,
    http11: bool,
    is_head: bool,
    body_length: int,
    keep_alive: bool,
) -> tuple:
    """Serialize a response head (see :func:`encode_head_uncached`), reusing the last one
    when it was made from the same status, headers and flags."""
    last = _last
    if (
        default_headers is last[2]
        and type(status) is int
        and status == last[0]
        and http11 == last[3]
        and is_head == last[4]
        and body_length == last[5]
        and keep_alive == last[6]
        and (type(headers) is list or type(headers) is tuple)
        and _same_headers(headers, last[1])
    ):
        return last[7]
    return encode_head_uncached(status, headers, default_headers, http11, is_head, body_length, keep_alive)


def encode_head_uncached(
    status: int,
    headers: object,
    default_headers: bytes,
    http11: bool,
    is_head: bool,
    body_length: int,
    keep_alive: bool,
) -> tuple:
    """Serialize a response head.

    ``headers`` is the app's iterable of ``(name, value)`` byte pairs;
    ``default_headers`` the pre-rendered ``server``/``date``/``--header`` lines
    (each ending with CRLF) that are added unless the app set the same name;
    ``body_length`` is the length of the complete body when the app gave all of
    it in its first body message, else -1 (streamed).

    Returns ``(head: bytes, mode: int, content_length: int, keep_alive: bool)``
    where ``content_length`` is -1 unless ``mode`` is CONTENT_LENGTH.
    """
    global _last
    keep_alive_in = keep_alive
    if type(status) is not int:
        raise ResponseHeaderError(f"Invalid HTTP status code {status!r} in response (must be an int)")
    parts = [status_line(status, http11)]
    # the head can be reused for the same pairs when they are all tuples of bytes
    cacheable = type(headers) is list or type(headers) is tuple
    content_length = -1
    has_server = False
    has_date = False
    connection_close = False
    cl_index = -1
    for item in headers:  # type: ignore[attr-defined]
        if type(item) is not tuple:
            cacheable = False
        name, value = item
        if type(name) is not bytes:
            cacheable = False
            if isinstance(name, (bytes, bytearray, memoryview)):
                name = bytes(name)
            else:
                raise ResponseHeaderError(f"Response header names must be bytes, got {type(name).__name__}")
        if type(value) is not bytes:
            cacheable = False
            if isinstance(value, (bytes, bytearray, memoryview)):
                value = bytes(value)
            else:
                raise ResponseHeaderError(f"Response header values must be bytes, got {type(value).__name__}")
        # RFC 9110 §5.1: field names are case-insensitive tokens; sent lowercased.
        kind = token_kind(name)
        if kind == 0:
            raise ResponseHeaderError(f"Invalid response header name {name!r}")
        # RFC 9110 §5.5: CR, LF and NUL are never allowed in a field value.  (Integer
        # operands: `b"\r" in value` would make CPython raise and swallow a TypeError.)
        if 13 in value or 10 in value or 0 in value:
            raise ResponseHeaderError(f"Invalid response header value {value!r} for {name!r}")
        if kind == 2:
            name = name.lower()
        if name == b"content-length":
            # RFC 9110 §8.6: a single non-negative decimal number.
            stripped = value.strip()
            if not stripped.isdigit() or (content_length != -1 and int(stripped) != content_length):
                raise ResponseHeaderError(f"Invalid content-length {value!r} in response")
            if content_length != -1:
                continue  # an identical duplicate is folded into one
            content_length = int(stripped)
            cl_index = len(parts)
        elif name == b"transfer-encoding":
            continue  # RFC 9112 §6.1: the server frames the body itself
        elif name == b"connection":
            if value.lower().find(b"close") != -1:
                connection_close = True
        elif name == b"server":
            has_server = True
        elif name == b"date":
            has_date = True
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")

    if connection_close:
        keep_alive = False
    if default_headers:
        if has_server or has_date:
            for line in default_headers.split(b"\r\n"):
                if line and not (
                    (has_server and line[:7].lower() == b"server:") or (has_date and line[:5].lower() == b"date:")
                ):
                    parts.append(line + b"\r\n")
        else:
            parts.append(default_headers)

    if status < 200 or status == 204 or status == 304:
        # RFC 9110 §6.4.1: no content; RFC 9112 §6.3: no framing headers needed.
        mode = NO_BODY
        if cl_index != -1 and status != 304:
            # RFC 9110 §8.6: never a Content-Length in a 1xx or 204 response.
            del parts[cl_index : cl_index + 4]  # the four pieces of that header line
        content_length = -1
    elif content_length != -1:
        mode = NO_BODY if is_head else CONTENT_LENGTH
    elif body_length >= 0:
        content_length = body_length
        parts.append(b"content-length: %d\r\n" % body_length)
        mode = NO_BODY if is_head else CONTENT_LENGTH
    elif is_head:
        mode = NO_BODY
    elif http11:
        parts.append(b"transfer-encoding: chunked\r\n")
        mode = CHUNKED
    else:
        mode = CLOSE_DELIMITED
        keep_alive = False

    if not keep_alive and not connection_close:
        parts.append(b"connection: close\r\n")
    elif keep_alive and not http11:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    result = (b"".join(parts), mode, content_length, keep_alive)
    if cacheable:
        _last = (status, tuple(headers), default_headers, http11, is_head, body_length, keep_alive_in, result)  # type: ignore[arg-type]
    return result


def chunk(data: bytes) -> bytes:
    """One chunk of the chunked transfer coding (RFC 9112 §7.1); empty data gives nothing."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def render_default_headers(headers: list) -> bytes:
    """``[(b"server", b"fastasgi"), (b"date", ...)]`` -> the CRLF-terminated header lines."""
    return b"".join([name + b": " + value + b"\r\n" for name, value in headers])


# RFC 9110 §6.5.1: a trailer section must not carry the fields that frame the message or
# manage the connection (nor may a recipient use them that way): dropped, as the server
# frames the response itself.  (The spec of http.response.trailers leaves the Trailer
# header, in the head, to the app.)
_TRAILER_DROPPED = frozenset(
    (
        b"content-length",
        b"transfer-encoding",
        b"trailer",
        b"te",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"upgrade",
    )
)


def _field_line(name: object, value: object, what: str) -> tuple:
    """One app-supplied field as ``(lowercased name, value)`` checked like a response header
    (RFC 9110 §5.6.2 token name, §5.5 no CR/LF/NUL in the value)."""
    if type(name) is not bytes:
        if not isinstance(name, (bytes, bytearray, memoryview)):
            raise ResponseHeaderError(f"{what} names must be bytes, got {type(name).__name__}")
        name = bytes(name)
    if type(value) is not bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ResponseHeaderError(f"{what} values must be bytes, got {type(value).__name__}")
        value = bytes(value)
    kind = token_kind(name)  # type: ignore[arg-type]
    if kind == 0:
        raise ResponseHeaderError(f"Invalid {what.lower()} name {name!r}")
    if 13 in value or 10 in value or 0 in value:  # type: ignore[operator]
        raise ResponseHeaderError(f"Invalid {what.lower()} value {value!r} for {name!r}")
    return (name.lower() if kind == 2 else name), value  # type: ignore[union-attr]


def encode_trailers(headers: object) -> bytes:
    """The field lines of a trailer section (RFC 9112 §7.1.2), from the app's
    ``http.response.trailers`` headers; framing and connection fields are dropped."""
    parts = []
    for item in headers:  # type: ignore[attr-defined]
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ResponseHeaderError(f"Response trailers must be [name, value] pairs, got {item!r}") from None
        name, value = _field_line(name, value, "Response trailer")
        if name in _TRAILER_DROPPED:
            continue
        parts.append(b"%b: %b\r\n" % (name, value))
    return b"".join(parts)


EARLY_HINTS_LINE = b"HTTP/1.1 103 Early Hints\r\n"


def encode_early_hint(links: object) -> bytes:
    """A 103 (Early Hints, RFC 8297) response with one ``link`` field line per link of
    ``http.response.early_hint``; empty when there is no link (nothing to send)."""
    if isinstance(links, (bytes, bytearray, memoryview, str)):
        raise ResponseHeaderError("'links' of http.response.early_hint must be an iterable of byte strings")
    parts = [EARLY_HINTS_LINE]
    for link in links:  # type: ignore[attr-defined]
        _, value = _field_line(b"link", link, "Early hint link")
        parts.append(b"link: %b\r\n" % value)
    if len(parts) == 1:
        return b""
    parts.append(b"\r\n")
    return b"".join(parts)


# -- HTTP/2 (the shared stream cycle, stream_py): the same checks, as field lists ----------


def trailer_fields(headers: object) -> list:
    """``http.response.trailers`` headers as the ``(name, value)`` pairs of an HTTP/2
    trailer block (RFC 9113 §8.1), checked and dropped as :func:`encode_trailers` does."""
    fields = []
    for item in headers:  # type: ignore[attr-defined]
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ResponseHeaderError(f"Response trailers must be [name, value] pairs, got {item!r}") from None
        name, value = _field_line(name, value, "Response trailer")
        if name in _TRAILER_DROPPED:
            continue
        fields.append((name, value))
    return fields


def early_hint_fields(links: object) -> list:
    """The ``link`` fields of an HTTP/2 103 response (RFC 8297) from ``http.response.early_hint``,
    checked as :func:`encode_early_hint` does; empty when there is no link (nothing to send)."""
    if isinstance(links, (bytes, bytearray, memoryview, str)):
        raise ResponseHeaderError("'links' of http.response.early_hint must be an iterable of byte strings")
    fields = []
    for link in links:  # type: ignore[attr-defined]
        _, value = _field_line(b"link", link, "Early hint link")
        fields.append((b"link", value))
    if fields:
        fields.insert(0, (b":status", b"103"))
    return fields
