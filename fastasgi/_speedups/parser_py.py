"""HTTP/1.1 request parser for the pure-Python set: an adapter over h11.

Twin of ``parser_c.pyx`` (the llhttp binding); both implement the same contract
and must give the same events and the same error statuses for the same bytes,
however they are split.  The contract:

``RequestParser.feed(data)`` returns a **new list** on every call with the
events completed by ``data``, in order:

* a request head, a tuple ``(method, path, raw_path, query_string,
  http_version, headers, keep_alive, expect_continue, upgrade, te_trailers)``
  (``te_trailers``: an HTTP/1.1 request whose ``TE`` lists ``trailers``);
* body bytes (non-empty, de-chunked), possibly in several pieces;
* ``None`` at the end of every request.

Errors raise :class:`ParseError` (``status`` 400, 413, 414 or 431 and a
short ``reason``); the parser is then dead and raises the same error again on any
further call.  After a request whose ``keep_alive`` is False, further bytes are
ignored (the server closes after answering, RFC 9112 §9.6).  After an upgrade
request (``upgrade`` ``b"websocket"``, or ``b"h2c"`` when :attr:`RequestParser.h2c`
is set: an HTTP/1.1 request without body that asks for ``Upgrade: h2c`` with one
``HTTP2-Settings`` field, RFC 7540 §3.2), parsing stops and
:attr:`RequestParser.trailing` holds the bytes received after its header block.  :attr:`RequestParser.fed` counts the
bytes fed so far (the server's body-read timeout watches it for progress).

Limits (constructor keywords, the server passes ``Config.parser_limits()``):
``max_request_line`` (414), ``max_header_size`` (whole header block, and each
trailer section; 431), ``max_headers`` (field lines in the head or in the
trailers; 431), ``max_field_size`` (``len(name) + len(value)`` of one header
field, OWS excluded, checked once the head is complete; 431),
``max_chunk_ext`` (bytes after the chunk size on one chunk line; 400) and
``max_body_size`` (body bytes of one request, -1 for no limit; 413 as soon as
the Content-Length or a chunk-size line announces more, before those bytes are
handed out).

Division of labour: h11 parses and validates the request line, the header
fields, the chunked framing and the trailers.  The adapter finds the end of
each header block / chunk line / trailer section before handing it to h11, so
that it can (a) enforce the size limits with the statuses llhttp gets them
from us (414/431), and (b) add the checks where llhttp is stricter than h11
(bare LF, control characters, obs-fold, chunk-size syntax, method and version
sets...).  Each such rule cites its RFC 9110/9112 section.  h11 is driven with
a fresh ``h11.Connection`` per request because responses do not go through h11
here; leftover bytes stay in the adapter's buffer for the next request.
Content-Length bodies are sliced by the adapter (h11's reader would only copy
them).
"""

from __future__ import annotations

import re
from typing import Optional, Union
from urllib.parse import unquote

import h11

__all__ = ["DESCRIPTION", "ParseError", "RequestParser"]

DESCRIPTION = f"pure-Python: h11 {h11.__version__}"

Head = tuple[str, str, bytes, bytes, str, list[tuple[bytes, bytes]], bool, bool, Optional[bytes], bool]
Event = Union[Head, bytes, None]


class ParseError(Exception):
    """A request the server must refuse: answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        # Events completed by the failing feed() call before the error, in
        # order (earlier pipelined requests the server may still answer).
        self.events: list[Event] = []

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


# The methods llhttp knows (its HTTP_METHOD_MAP; the RTSP-only ones are not
# accepted with "HTTP/"), minus CONNECT, which this server does not support.
# RFC 9110 §9.1 lets any token be a method, but llhttp cannot parse other
# tokens, so both implementations refuse them alike (400).
_METHODS = {
    m.encode("ascii"): m
    for m in (
        "DELETE GET HEAD POST PUT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
        "SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH "
        "NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY"
    ).split()
}
# Every prefix of a method name: an unfinished request line that is not one
# fails at once, as llhttp fails on the first byte that cannot be a method
# (e.g. a TLS ClientHello sent to a plain-HTTP port).
# llhttp's method table also holds RTSP methods and PRI (refused once the
# version is read), so their prefixes do not fail early either.
_ALL_LLHTTP_METHODS = [*_METHODS, b"CONNECT", b"PRI"] + (
    b"DESCRIBE ANNOUNCE SETUP PLAY PAUSE TEARDOWN GET_PARAMETER SET_PARAMETER REDIRECT RECORD FLUSH".split()
)
_METHOD_PREFIXES = frozenset(m[:i] for m in _ALL_LLHTTP_METHODS for i in range(1, len(m) + 1))
_LLHTTP_METHOD_SET = frozenset(_ALL_LLHTTP_METHODS)
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}

_UINT64_MAX = (1 << 64) - 1

# RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before
# the request-line; llhttp skips any run of CR and LF there, and so do we.
_LEADING_EOL = re.compile(rb"[\r\n]*")

# Bytes that make a header block (or trailer section, or chunk line) invalid:
# - control characters other than HTAB/CR/LF (RFC 9110 §5.5 field values;
#   llhttp rejects them everywhere in the head, h11 lets most through);
# - a CR not followed by LF, an LF not preceded by CR (RFC 9112 §2.2: bare CR
#   MUST be rejected or replaced; we pick strict CRLF like llhttp, h11 accepts
#   bare LF);
# - a line starting with SP/HTAB: obs-fold (RFC 9112 §5.2, we reject with 400)
#   or whitespace after the start line (RFC 9112 §2.2).
_BAD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n|\n[ \t]")

# RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF, chunk-size = 1*HEXDIG,
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# BWS = OWS = *( SP / HTAB ) (RFC 9110 §5.6.3).  BWS only occurs around ";" and
# "=": whitespace before the size, between the size and CRLF ("6 \r\n") or after
# a value is refused.  h11 takes trailing whitespace and any bytes after ";" but
# no BWS before ";", so it is handed the size alone once this regex has
# matched; the binding walks BWS out of the line before llhttp reads it.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# Chunk sizes: at most 20 hex digits (h11's limit; llhttp would accept any
# number of leading zeros, the binding applies the same limit) and at most
# 2**64-1 (llhttp's limit).
_MAX_CHUNK_DIGITS = 20
_HEXDIGITS = re.compile(rb"[0-9A-Fa-f]*")
_BWS = rb"[ \t]*"
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:" + _BWS + rb";" + _BWS + _TOKEN
    + rb"(?:" + _BWS + rb"=" + _BWS + rb"(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)

# RFC 9112 §3.2.2 absolute-form: scheme "://" authority path-abempty [ "?" query ].
# llhttp accepts letters only in the scheme and rejects these bytes in the
# authority; RFC 9110 §4.2.1: an http URI with an empty host is invalid.
_ABSOLUTE = re.compile(rb'[A-Za-z]+://[^/?#"<>\\^`{|}]+(?=[/?]|\Z)')

# For the early checks of an unfinished head (the complete head goes through h11).
# RFC 9112 §3: request-line = method SP request-target SP HTTP-version;
# RFC 9112 §5: field-line = field-name ":" OWS field-value OWS.
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
_FIELD_NAME = re.compile(_TOKEN + rb":")
# Method SP and the request-target run that follows (for the 414-before-400 order below).
_TARGET_RUN = re.compile(rb"(" + _TOKEN + rb") [\x21-\x7e]*")
_FIELD_PREFIX = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]*(?::|\Z)")

# (The trailer section starts at the buffer start or right after an LF.)
_FRAMING_TRAILER = re.compile(rb"(?:\A|(?<=\n))(?:content-length|transfer-encoding):", re.IGNORECASE)

_HEAD, _BODY_LENGTH, _BODY_CHUNKED, _STOPPED, _DEAD = range(5)
_C_SIZE, _C_DATA, _C_CRLF, _C_TRAILER = range(4)


def _token_in_list(value: bytes, token: bytes) -> bool:
    # RFC 9110 §5.6.1: #list of tokens, case-insensitive, OWS around commas.
    for item in value.lower().split(b","):
        if item.strip(b" \t") == token:
            return True
    return False


def _h2c_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    # RFC 7540 §3.2 / §3.2.1: Connection lists HTTP2-Settings, and exactly one
    # HTTP2-Settings field (its value is the server's to decode).
    settings = 0
    listed = False
    for name, value in headers:
        if name == b"http2-settings":
            settings += 1
        elif name == b"connection":
            listed = listed or _token_in_list(value, b"http2-settings")
    return listed and settings == 1


class RequestParser:
    """Incremental HTTP/1.x request parser (see the module docstring)."""

    __slots__ = (
        "_body_total",
        "_buf",
        "_conn",
        "_cstate",
        "_error",
        "_keep_alive",
        "_lines",
        "_max_body_size",
        "_max_chunk_ext",
        "_max_field_size",
        "_max_header_size",
        "_max_headers",
        "_max_request_line",
        "_remaining",
        "_scan",
        "_state",
        "fed",
        "h2c",
        "trailing",
    )

    def __init__(
        self,
        max_header_size: int = 16384,
        max_request_line: int = 8190,
        max_headers: int = 100,
        max_field_size: int = 8190,
        max_chunk_ext: int = 4096,
        max_body_size: int = -1,
    ) -> None:
        self.trailing = b""
        self.h2c = False  # set by the server under --http2 in cleartext: see _h2c_upgrade
        self._max_header_size = max_header_size
        self._max_request_line = max_request_line
        self._max_headers = max_headers
        self._max_field_size = max_field_size
        self._max_chunk_ext = max_chunk_ext
        self._max_body_size = max_body_size
        self._body_total = 0  # chunked body bytes announced so far (for max_body_size)
        self.fed = 0
        self._state = _HEAD
        self._buf = bytearray()  # unconsumed bytes; always starts at the element being waited for
        self._scan = 0  # how much of _buf the bad-byte scan has covered
        self._lines = 0  # where the lines not yet checked early start (0: request line)
        self._remaining = 0  # Content-Length bytes left, or bytes left in the current chunk
        self._conn: h11.Connection | None = None  # the h11 connection of a chunked request
        self._cstate = _C_SIZE
        self._keep_alive = True
        self._error: tuple[int, str] | None = None

    # -- public -------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes (a new list each call)."""
        events: list[Event] = []
        state = self._state
        if state == _DEAD:
            assert self._error is not None
            raise ParseError(*self._error)
        if state == _STOPPED or not data:
            # Stopped after a request without keep-alive, or after an upgrade
            # (the consumer does not feed us then): nothing more is parsed.
            return events
        if type(data) is not bytes:
            data = bytes(data)
        self.fed += len(data)
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        try:
            pos = self._run(buf, events)
        except ParseError as exc:
            exc.events = events
            self._state = _DEAD
            self._error = (exc.status, exc.reason)
            self._buf = bytearray()
            self._conn = None
            raise
        if self._state == _STOPPED:
            self._buf = bytearray()
        elif buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
        return events

    # -- internals ----------------------------------------------------------

    def _run(self, buf: bytes | bytearray, events: list[Event]) -> int:
        pos = 0
        n = len(buf)
        while pos < n:
            state = self._state
            if state == _HEAD:
                pos = self._head(buf, pos, n, events)
                if pos < 0:
                    return ~pos
            elif state == _BODY_LENGTH:
                take = min(self._remaining, n - pos)
                events.append(bytes(buf[pos : pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._end_message(events)
            elif state == _BODY_CHUNKED:
                pos = self._chunked(buf, pos, n, events)
                if pos < 0:
                    return ~pos
            else:  # stopped after a close or upgrade
                return n
        return pos

    def _end_message(self, events: list[Event]) -> None:
        events.append(None)
        self._conn = None
        self._scan = 0
        self._lines = 0
        # RFC 9112 §9.6: after a request without persistence the server closes
        # once it has answered; nothing after it is parsed.
        self._state = _HEAD if self._keep_alive else _STOPPED

    def _scan_bad(self, buf: bytes | bytearray, start: int, end: int) -> None:
        # Scan [start + _scan - 1, end) for bad bytes; the 1-byte overlap catches a
        # CRLF or LF+SP split across two feeds.  ``end`` excludes a final CR that
        # may yet be followed by LF.
        scan = self._scan
        m = _BAD_BYTES.search(buf, start + scan - 1 if scan else start, end)
        if m is not None:
            c = buf[m.start()]
            if c == 13:
                raise ParseError(400, "Bare CR")
            if c == 10:
                raise ParseError(400, "Bare LF" if m.group() == b"\n" else "Obsolete line folding")
            raise ParseError(400, "Invalid control character")
        self._scan = end - start

    def _check_unfinished_head(self, buf: bytes | bytearray, pos: int, limit: int, rl: int) -> None:
        """Fail now on what llhttp would already have refused.

        llhttp stops at the first byte that cannot be right; h11 looks only at
        a complete head.  So that both sets answer an unfinished bad head alike
        (and at once, e.g. a TLS ClientHello), the complete lines are checked
        here, once each: ``_lines`` is where the unchecked ones start.
        """
        if rl < 0:
            # RFC 9110 §9.1: the method is a token; we know only llhttp's set.
            sp = buf.find(b" ", pos, limit)
            if sp < 0:
                bad = bytes(buf[pos:limit]) not in _METHOD_PREFIXES
            else:
                bad = bytes(buf[pos:sp]) not in _LLHTTP_METHOD_SET
            if bad:
                raise ParseError(400, "Invalid method")
            return
        if self._lines == 0:
            _check_request_line(bytes(buf[pos:rl]))
            self._lines = rl + 2 - pos
        self._lines = _check_field_lines(buf, pos + self._lines, limit) - pos

    def _head(self, buf: bytes | bytearray, pos: int, n: int, events: list[Event]) -> int:
        """Parse a request head at ``pos``; return the position after it.

        To wait for more bytes, return ``~start`` where ``start`` is where the
        unfinished head begins (the bytes from there are kept).
        """
        scan = self._scan
        if scan == 0:
            c = buf[pos]
            if c == 13 or c == 10:
                m = _LEADING_EOL.match(buf, pos)
                assert m is not None  # [\r\n]* always matches
                pos = m.end()
                if pos == n:
                    return pos
        end = buf.find(b"\r\n\r\n", pos + scan - 3 if scan > 3 else pos)
        if end >= 0:
            limit = end + 4
        else:
            limit = n - 1 if buf[n - 1] == 13 else n
        if self._lines == 0 and limit - pos > self._max_request_line:
            # llhttp reads byte by byte: a request-target that has run past the
            # limit (ended by SP, CR, LF or the end of the bytes) fails with 414
            # before any bad byte after it is seen; answer the same.
            m = _TARGET_RUN.match(buf, pos, limit)
            if (
                m is not None
                and m.end() - pos > self._max_request_line
                and (m.end() == limit or buf[m.end()] in b" \r\n")
                and bytes(m.group(1)) in _LLHTTP_METHOD_SET
            ):
                raise ParseError(414, "Request line too long")
        cap = pos + self._max_header_size
        if limit > cap:
            if buf[cap - 1] == 13:
                cap -= 1  # (a CR at the limit may be followed by LF: not bare)
            # RFC 9110 §15.5.20 / RFC 6585 §5: header block too large -> 431.  llhttp
            # reads byte by byte, so the block runs past the limit before anything
            # after that point is looked at: only what is wrong before it is a 400.
            self._scan_bad(buf, pos, cap)
            rl = buf.find(b"\r\n", pos, cap)
            if (cap if rl < 0 else rl) - pos > self._max_request_line:
                raise ParseError(414, "Request line too long")
            self._check_unfinished_head(buf, pos, cap, rl)
            raise ParseError(431, "Request header block too large")
        self._scan_bad(buf, pos, limit)
        # RFC 9112 §3: a request-line longer than the server accepts -> 414.
        rl = buf.find(b"\r\n", pos, limit)
        if (limit if rl < 0 else rl) - pos > self._max_request_line:
            raise ParseError(414, "Request line too long")
        if end < 0:
            self._check_unfinished_head(buf, pos, limit, rl)
            # RFC 9110 §15.5.20 / RFC 6585 §5: header block too large -> 431.
            if limit - pos > self._max_header_size:
                raise ParseError(431, "Request header block too large")
            if buf.count(b"\r\n", pos, n) - 1 > self._max_headers:
                raise ParseError(431, "Too many header fields")
            return ~pos
        if limit - pos > self._max_header_size:
            raise ParseError(431, "Request header block too large")
        if buf.count(b"\r\n", pos, end) > self._max_headers:
            raise ParseError(431, "Too many header fields")
        head = bytes(buf[pos:limit])
        self._scan = 0
        self._lines = 0

        conn = h11.Connection(h11.SERVER)
        conn.receive_data(head)
        try:
            request = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ParseError(400, f"Invalid request: {exc}") from None
        if type(request) is not h11.Request:  # pragma: no cover - a complete head always gives a Request
            raise ParseError(400, "Invalid request")

        method = _METHODS.get(request.method)
        if method is None:
            raise ParseError(400, "CONNECT is not supported" if request.method == b"CONNECT" else "Invalid method")
        # RFC 9112 §2.3: only HTTP/1.0 and HTTP/1.1 are spoken here.
        version = _VERSIONS.get(request.http_version)
        if version is None:
            raise ParseError(400, "Unsupported HTTP version")
        http11 = version == "1.1"
        raw_path, query, path = _split_target(request.target, method)

        # h11 validated every field line; take names and values from the bytes
        # (h11 normalizes some values, e.g. lowercases Transfer-Encoding).
        headers: list[tuple[bytes, bytes]] = []
        host = 0
        content_length: bytes | None = None
        n_length = 0
        transfer_encoding: bytes | None = None
        n_te = 0
        close = keep_alive_token = conn_upgrade = ws = h2c = expect = te_trailers = False
        lines = head[rl - pos + 2 : end - pos].split(b"\r\n") if end > rl else ()
        max_field = self._max_field_size
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.lower()
            value = value.strip(b" \t")
            # RFC 9110 §5.4 / RFC 6585 §5: a server may refuse a too large field -> 431.
            if len(name) + len(value) > max_field:
                raise ParseError(431, "Request header field too large")
            headers.append((name, value))
            if name == b"host":
                host += 1
            elif name == b"content-length":
                n_length += 1
                content_length = value
            elif name == b"transfer-encoding":
                n_te += 1
                transfer_encoding = value
            elif name == b"connection":
                lowered = value.lower()
                if b"close" in lowered:
                    close = close or _token_in_list(value, b"close")
                if b"keep-alive" in lowered:
                    keep_alive_token = keep_alive_token or _token_in_list(value, b"keep-alive")
                if b"upgrade" in lowered:
                    conn_upgrade = conn_upgrade or _token_in_list(value, b"upgrade")
            elif name == b"upgrade":
                ws = ws or value.lower() == b"websocket"
                h2c = h2c or _token_in_list(value, b"h2c")
            elif name == b"expect":
                expect = expect or value.lower() == b"100-continue"
            elif name == b"te":
                # RFC 9110 §10.1.4: "trailers" in TE: the client accepts trailer fields
                te_trailers = te_trailers or _token_in_list(value, b"trailers")

        # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any
        # request with more than one Host field line.
        if host > 1 or (http11 and host == 0):
            raise ParseError(400, "Missing or duplicate Host header")
        chunked = False
        length = 0
        if n_te:
            # RFC 9112 §6.1: Transfer-Encoding with Content-Length is an attack
            # vector; a server MAY reject it and we do.
            if n_length:
                raise ParseError(400, "Both Transfer-Encoding and Content-Length")
            # RFC 9112 §6.1: Transfer-Encoding is an HTTP/1.1 feature; a 1.0
            # request carrying it is treated as faulty framing.
            if not http11:
                raise ParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
            # RFC 9112 §6.3 / §7: the final coding must be chunked, chunked only
            # once; we decode no other coding, so only "chunked" itself is
            # accepted (RFC 9112 §6.1 would allow 501 for unknown codings).
            if n_te > 1 or transfer_encoding is None or transfer_encoding.lower() != b"chunked":
                raise ParseError(400, "Unsupported Transfer-Encoding")
            chunked = True
        elif n_length:
            # RFC 9112 §6.3 (5): duplicate or invalid Content-Length -> 400.
            # llhttp caps the value at 2**64-1, h11 at 20 digits; we apply both.
            if (
                n_length > 1
                or content_length is None
                or not content_length.isdigit()
                or len(content_length) > 20
                or int(content_length) > _UINT64_MAX
            ):
                raise ParseError(400, "Invalid Content-Length")
            length = int(content_length)
            # RFC 9110 §15.5.14: content larger than the server accepts -> 413,
            # answered before any of it is handed out.
            if 0 <= self._max_body_size < length:
                raise ParseError(413, "Request body too large")

        # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
        keep_alive = not close if http11 else (keep_alive_token and not close)
        if conn_upgrade and ws:
            upgrade: bytes | None = b"websocket"
        elif h2c and conn_upgrade and self.h2c and http11 and not n_te and length == 0 and _h2c_upgrade(headers):
            upgrade = b"h2c"
        else:
            upgrade = None
        self._keep_alive = keep_alive
        events.append(
            (
                method,
                path,
                raw_path,
                query,
                version,
                headers,
                keep_alive,
                http11 and expect,  # RFC 9110 §10.1.1: 100-continue is meaningless in 1.0
                upgrade,
                http11 and te_trailers,  # TE is HTTP/1.1's: no chunked body for a 1.0 client
            )
        )
        if upgrade is not None:
            # RFC 9110 §7.8: the connection switches protocol after the header
            # block; every byte after it belongs to the new protocol.
            events.append(None)
            self.trailing = bytes(buf[limit:])
            self._state = _STOPPED
            return n
        if chunked:
            self._conn = conn
            self._body_total = 0
            self._cstate = _C_SIZE
            self._state = _BODY_CHUNKED
        elif length:
            self._remaining = length
            self._state = _BODY_LENGTH
        else:
            # RFC 9112 §6.3 (7): a request with neither header has no body.
            self._end_message(events)
        return limit

    def _chunked(self, buf: bytes | bytearray, pos: int, n: int, events: list[Event]) -> int:
        """Parse chunked framing at ``pos``; return the position reached (``~pos`` to wait).

        The adapter checks each framing element strictly and hands it to h11,
        which decodes it and emits the Data / EndOfMessage events.
        """
        conn = self._conn
        assert conn is not None
        while pos < n:
            cstate = self._cstate
            if cstate == _C_DATA:
                take = min(self._remaining, n - pos)
                conn.receive_data(buf[pos : pos + take])  # type: ignore[arg-type]  # h11 takes a bytearray too
                pos += take
                self._remaining -= take
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise ParseError(400, f"Invalid chunked framing: {exc}") from None
                if type(event) is h11.Data and event.data:
                    events.append(bytes(event.data))
                if self._remaining == 0:
                    self._cstate = _C_CRLF
            elif cstate == _C_SIZE:
                i = buf.find(b"\r\n", pos)
                limit = i if i >= 0 else (n - 1 if buf[n - 1] == 13 else n)
                self._scan_bad(buf, pos, limit)
                if i < 0:
                    # Unfinished line: fail as soon as it is certain to break a limit.
                    m = _HEXDIGITS.match(buf, pos, limit)
                    assert m is not None  # [0-9A-Fa-f]* always matches
                    digits = m.end() - pos
                    if digits > _MAX_CHUNK_DIGITS:
                        raise ParseError(400, "Chunk size too long")
                    if limit - pos - digits > self._max_chunk_ext:
                        raise ParseError(400, "Chunk extensions too long")
                    return ~pos
                self._scan = 0
                line = buf[pos:i]
                m = _CHUNK_LINE.fullmatch(line)
                if m is None:
                    raise ParseError(400, "Invalid chunk size line")
                digits = m.end(1)
                if digits > _MAX_CHUNK_DIGITS:
                    raise ParseError(400, "Chunk size too long")
                # Chunk-extension abuse (RFC 9112 §7.1.1 lets us limit them: max_chunk_ext).
                if len(line) - digits > self._max_chunk_ext:
                    raise ParseError(400, "Chunk extensions too long")
                size = int(m.group(1), 16)
                if size > _UINT64_MAX:
                    raise ParseError(400, "Chunk size overflow")
                # RFC 9110 §15.5.14: refuse the chunk that would exceed the body limit (413).
                if size and self._max_body_size >= 0:
                    self._body_total += size
                    if self._body_total > self._max_body_size:
                        raise ParseError(413, "Request body too large")
                # h11 only needs the size (it ignores extensions, and refuses BWS before ';').
                conn.receive_data(m.group(1) + b"\r\n")
                pos = i + 2
                if size:
                    self._remaining = size
                    self._cstate = _C_DATA
                else:
                    self._cstate = _C_TRAILER
            elif cstate == _C_CRLF:
                # RFC 9112 §7.1: chunk-data is followed by CRLF, nothing else.
                if n - pos < 2:
                    if buf[pos] != 13:
                        raise ParseError(400, "Missing CRLF after chunk data")
                    return ~pos
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    raise ParseError(400, "Missing CRLF after chunk data")
                conn.receive_data(b"\r\n")
                pos += 2
                self._cstate = _C_SIZE
            else:  # _C_TRAILER, RFC 9112 §7.1.2
                if buf.startswith(b"\r\n", pos):
                    done = True  # no trailer fields
                    limit = pos + 2
                else:
                    end = buf.find(b"\r\n\r\n", pos + self._scan - 3 if self._scan > 3 else pos)
                    done = end >= 0
                    limit = end + 4 if done else (n - 1 if buf[n - 1] == 13 else n)
                self._scan_bad(buf, pos, limit)
                # Trailer fields count against the header limits.
                if limit - pos > self._max_header_size:
                    raise ParseError(431, "Trailer section too large")
                if buf.count(b"\r\n", pos, limit) - done > self._max_headers:
                    raise ParseError(431, "Too many trailer fields")
                if not done:
                    self._lines = _check_field_lines(buf, pos + self._lines, limit) - pos
                    return ~pos
                self._scan = 0
                self._lines = 0
                # RFC 9110 §6.5.1: framing fields cannot be trailers; llhttp
                # refuses them (as a Content-Length/Transfer-Encoding clash).
                if _FRAMING_TRAILER.search(buf, pos, limit) is not None:
                    raise ParseError(400, "Framing field in trailer section")
                conn.receive_data(buf[pos:limit])  # type: ignore[arg-type]
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise ParseError(400, f"Invalid trailer section: {exc}") from None
                if type(event) is not h11.EndOfMessage:  # pragma: no cover
                    raise ParseError(400, "Invalid trailer section")
                self._end_message(events)
                return limit
        return pos


def _check_request_line(line: bytes) -> None:
    """Early check of a complete request-line (the same rules as on the whole head)."""
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise ParseError(400, "Invalid request line")
    method = _METHODS.get(m.group(1))
    if method is None:
        raise ParseError(400, "Invalid method")
    if m.group(3) not in _VERSIONS:
        raise ParseError(400, "Unsupported HTTP version")
    _split_target(m.group(2), method)


def _check_field_lines(buf: bytes | bytearray, start: int, limit: int) -> int:
    """Early check of the field lines in buf[start:limit]; return where the unfinished one starts."""
    while True:
        end = buf.find(b"\r\n", start, limit)
        if end < 0:
            if _FIELD_PREFIX.match(buf, start, limit) is None:
                raise ParseError(400, "Invalid header field name")
            return start
        if _FIELD_NAME.match(buf, start, end) is None:
            raise ParseError(400, "Invalid header field name")
        start = end + 2


def _split_target(target: bytes, method: str) -> tuple[bytes, bytes, str]:
    """Split a request-target into (raw_path, query_string, path); 400 if invalid."""
    # RFC 9112 §3.2: the request-target carries no fragment; reject '#'.
    # (h11 has already limited it to visible ASCII: non-ASCII -> 400.)
    if b"#" in target:
        raise ParseError(400, "Fragment in request target")
    if target[:1] == b"/":
        # RFC 9112 §3.2.1 origin-form.
        raw, _sep, query = target.partition(b"?")
    elif target == b"*":
        # RFC 9112 §3.2.4 asterisk-form: only for a server-wide OPTIONS.
        if method != "OPTIONS":
            raise ParseError(400, "Asterisk-form target outside OPTIONS")
        return b"*", b"", "*"
    else:
        # RFC 9112 §3.2.2 absolute-form.
        m = _ABSOLUTE.match(target)
        if m is None:
            raise ParseError(400, "Invalid request target")
        raw, _sep, query = target[m.end() :].partition(b"?")
        if not raw:
            raw = b"/"
    path = raw.decode("ascii")
    if "%" in path:
        path = unquote(path)
    return raw, query, path
