"""What both WebSocket backends share: the opening handshake checks, the ASGI scope,
the ``receive``/``send`` pair with its message queue, the closing handshake,
keepalive pings, flow control and graceful shutdown.

:class:`WebSocketBase` is an ``asyncio.Protocol``; a backend
(``websockets_impl.WebSocketProtocol`` for the websockets sans-IO
``ServerProtocol``, ``wsproto_impl.WSProtocol`` for wsproto) subclasses it and
implements the few methods that touch its library: :meth:`start_handshake`,
:meth:`accept_bytes`, :meth:`feed`, :meth:`encode_compressed`,
:meth:`encode_close`.  Frames are parsed (and validated) by the library; the
backend reports what it found through :meth:`deliver`, :meth:`on_peer_close`,
:meth:`on_failure` and :meth:`on_pong`.

Per message the cost is kept small: the app runs as one Task for the whole
connection; a received message goes into a ``deque`` and wakes at most one
future; ``receive()`` returns without suspending while messages are queued; an
uncompressed data frame sent by the app is framed here with one ``bytes``
concatenation (a server frame is unmasked: RFC 6455 §5.1) and written with one
``transport.write``.

Fast path in.  Most frames a server reads are complete, masked, unfragmented
text or binary frames with no reserved bits.  While no compression was
negotiated and the backend's library is idle (:meth:`WebSocketBase.library_idle`:
OPEN, between two frames, nothing buffered, no fragmented message in progress),
:meth:`WebSocketBase.data_received` parses such frames itself: the header with
a few index operations, the payload unmasked in one C call (the ``websockets``
C extension's ``apply_mask`` when importable, else an ``int.from_bytes`` XOR),
text validated by ``bytes.decode``.  For such a frame the library would change
no state but emit one message event, so skipping it is equivalent.  An
incomplete frame that qualifies so far is held here until it is whole.  The
first frame that does not qualify (control frame, fragment, reserved bits,
unmasked, unknown opcode, non-minimal length, over --ws-max-size, invalid
UTF-8 ...) and everything after it go to the library, which checks it and
fails the connection as before (1002, 1007, 1009); the fast path resumes only
once the library is idle again.  So frames are handled in order, each by
exactly one parser.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import logging
import os
import struct
import sys
from collections import deque
from typing import Any
from urllib.parse import unquote

from fastasgi.connection import format_client, get_local_addr, get_remote_addr, is_ssl, tls_extension, trust_key
from fastasgi.errors import TRACE_LOG_LEVEL
from fastasgi.metrics import (
    BYTES_IN,
    BYTES_OUT,
    CONNECTIONS_OPEN,
    PARSE_ERRORS,
    PARSE_WS_HANDSHAKE,
    TIMEOUT_WS_CLOSE,
    TIMEOUT_WS_PING,
    TIMEOUTS,
    WS_CONNECTIONS,
    WS_OPEN,
    WS_RECEIVED,
    WS_SENT,
)
from fastasgi.proxy_trust import apply_forwarded, has_forwarded_headers

logger = logging.getLogger("uvicorn.error")
INFO = logging.INFO

# connection states
HANDSHAKE = 0  # reading the request head
CONNECTING = 1  # the app runs, and has neither accepted nor denied yet
OPEN = 2  # accepted (the 101 is sent)
RESPONSE = 3  # the app is sending a denial response (websocket.http.response.*)
CLOSED = 4  # close frame or HTTP response sent, or connection lost

CLOSE_TIMEOUT = 10.0  # s to wait for the peer's close frame after ours (RFC 6455 §7.1.1), then drop
MAX_HEAD = 65536  # bytes of handshake request head (the HTTP layer already bounded it)

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9

_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_pack_code = struct.Struct("!H").pack


def _apply_mask(data: Any, mask: Any) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3), as one big-integer operation."""
    n = len(data)
    key = int.from_bytes(bytes(mask) * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


try:  # the websockets package's C version, when importable
    import websockets.speedups as _ws_speedups

    apply_mask: Any = _ws_speedups.apply_mask
except ImportError:  # PyPy, no websockets, or websockets without its C extension
    apply_mask = _apply_mask


# two-byte headers of unmasked final text / binary frames with a payload under 126 bytes
_TEXT_HEADS = [bytes((0x81, n)) for n in range(126)]
_BINARY_HEADS = [bytes((0x82, n)) for n in range(126)]


class ClientDisconnected(OSError):
    """``send()`` on a WebSocket the client has closed (ASGI 2.4 asks for an ``OSError`` subclass)."""


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked frame: RFC 6455 §5.2 (FIN set, RSV bits clear)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return _pack_16(0x80 | opcode, 126, n) + payload
    return _pack_64(0x80 | opcode, 127, n) + payload


def close_payload(code: int, reason: str) -> bytes:
    """Close frame body: 2-byte code + UTF-8 reason, at most 125 bytes in all (RFC 6455 §5.5)."""
    if code == 1005:  # "no status": an empty close frame (RFC 6455 §7.1.5)
        return b""
    data = reason.encode("utf-8") if reason else b""
    if len(data) > 123:  # truncate at a character boundary
        data = data[:123].decode("utf-8", "ignore").encode("utf-8")
    return _pack_code(code) + data


def valid_app_close_code(code: int) -> bool:
    """Codes an endpoint may send (RFC 6455 §7.4.1, IANA registry); 1004-1006 and 1015 are reserved."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or 3000 <= code <= 4999


def http_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response that closes the connection (handshake errors and denials)."""
    try:
        phrase = http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    out = [b"HTTP/1.1 %d %s" % (status, phrase)]
    has_length = has_connection = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            has_length = True
        elif lname == b"connection":
            has_connection = True
        out.append(name + b": " + value)
    if not has_length:
        out.append(b"content-length: %d" % len(body))
    if not has_connection:
        out.append(b"connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def check_header(name: Any, value: Any) -> tuple[bytes, bytes]:
    """App-supplied header: bytes, a token name, no CR/LF/NUL in the value (RFC 9110 §5.1, §5.5)."""
    name = bytes(name)
    value = bytes(value)
    if not name or b":" in name or any(c <= 32 or c >= 127 for c in name):
        raise RuntimeError(f"Invalid HTTP header name {name!r} in WebSocket response.")
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise RuntimeError(f"Invalid HTTP header value {value!r} in WebSocket response.")
    return name, value


def _tokens(values: list[bytes]) -> list[bytes]:
    out = []
    for v in values:
        for tok in v.split(b","):
            tok = tok.strip()
            if tok:
                out.append(tok.lower())
    return out


def parse_head(head: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Request line and header fields of the (already HTTP-validated) handshake head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise ValueError("bad request line")
    method, target, version = parts
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError("bad header line")
        headers.append((name.strip().lower(), value.strip(b" \t")))
    return method, target, version, headers


def check_handshake(method: bytes, version: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """RFC 6455 §4.2.1 checks; None when valid, else the error response to send.

    Done here, not by the library, so both backends answer alike: 426 with
    ``Sec-WebSocket-Version: 13`` for a version we do not speak (§4.2.2), 400
    for anything else that is malformed.
    """
    conn: list[bytes] = []
    upgrade: list[bytes] = []
    keys: list[bytes] = []
    versions: list[bytes] = []
    host = False
    for name, value in headers:
        if name == b"connection":
            conn.append(value)
        elif name == b"upgrade":
            upgrade.append(value)
        elif name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            versions.append(value)
        elif name == b"host":
            host = True
    problem = None
    if method != b"GET":  # §4.2.1 item 1
        problem = "the method must be GET"
    elif version not in (b"HTTP/1.1",):
        problem = "HTTP/1.1 is required"
    elif not host:  # item 2
        problem = "missing Host header"
    elif b"websocket" not in _tokens(upgrade):  # item 3
        problem = "missing 'Upgrade: websocket'"
    elif b"upgrade" not in _tokens(conn):  # item 4
        problem = "missing 'Connection: Upgrade'"
    elif len(keys) != 1:  # item 5
        problem = "missing or repeated Sec-WebSocket-Key"
    else:
        try:
            ok = len(base64.b64decode(keys[0], validate=True)) == 16
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            problem = "invalid Sec-WebSocket-Key"
    if problem is None and versions != [b"13"]:  # item 6
        body = b"Unsupported WebSocket version; this server speaks version 13.\n"
        return http_response(
            426, [(b"sec-websocket-version", b"13"), (b"content-type", b"text/plain; charset=utf-8")], body
        )
    if problem is None:
        return None
    body = f"Invalid WebSocket handshake: {problem}.\n".encode()
    return http_response(400, [(b"content-type", b"text/plain; charset=utf-8")], body)


class WebSocketBase(asyncio.Protocol):
    """One WebSocket connection, from the handshake request to connection_lost."""

    library = ""
    partial_text_to_library = False  # the library validates a text frame's UTF-8 before it is whole

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.max_size = config.ws_max_size
        max_queue = config.ws_max_queue
        self.max_queue = max_queue if max_queue and max_queue > 0 else 1
        self.low_water = self.max_queue // 2
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.per_message_deflate = bool(config.ws_per_message_deflate)

        self.transport: Any = None
        self.client: Any = None
        self.server: Any = None
        self.scheme = "ws"
        self.scope: dict[str, Any] = {}
        self.state = HANDSHAKE
        self.early = bytearray()  # bytes received before the app accepted (handshake head, early frames)
        # the library frames data, both ways: a compression extension was negotiated, or (the
        # websockets backend) the library logs every frame, at DEBUG, as under uvicorn
        self.compress = False

        # what receive() returns, in order; once it is empty receive() waits, also after the
        # connection is lost (as uvicorn's queue does: each disconnect is returned once)
        self.messages: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []

        self.lost = False
        self.close_sent = False
        self.app_closed = False  # the app sent websocket.close
        # uvicorn's "handshake complete": accepted, refused (403, or a denial on wsproto, from
        # its websocket.http.response.start) or the connection lost.  Decides what happens when
        # the app ends: a 500 (if nothing was sent yet) and "returned without completing
        # handshake" only while it is False.  On the websockets backend a denial leaves it
        # False, as in uvicorn's websockets-sansio: an app that returns after a complete denial
        # response, before the connection is gone, gets that line logged there too.
        self.handshake_complete = False
        self.close_timer: Any = None
        self.ping_timer: Any = None
        self.pong_timer: Any = None
        self.ping_payload: bytes | None = None
        self.deny_status = 0
        self.deny_headers: list[tuple[bytes, bytes]] = []
        self.deny_body: list[bytes] = []  # a buffered denial body (backends without stream_denial)

        # partial message being reassembled from fragments (RFC 6455 §5.4)
        self.frag_text = False
        self.frag_parts: list[Any] = []
        self.frag_size = 0

        # fast path in (see the module docstring): on while the library is idle
        self.fast = False
        self.pending: bytearray | None = None  # start of a frame the fast path waits to complete
        self.fast_max = self.max_size if self.max_size is not None else sys.maxsize

        # --metrics-port: the process's counter block (fastasgi.metrics), or None
        self.metrics: Any = getattr(server_state, "metrics", None)
        self.counted_open = False  # counted in websocket_connections_open

    # -- backend hooks ----------------------------------------------------------------

    def start_handshake(self, head: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """Give the request head to the library; None to go on, or an HTTP error response."""
        raise NotImplementedError

    def accept_bytes(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The 101 response (negotiated extensions included); sets :attr:`compress`."""
        raise NotImplementedError

    def feed(self, data: bytes) -> None:
        """Frames in: parse with the library, then report (deliver/on_peer_close/on_failure/on_pong)."""
        raise NotImplementedError

    def encode_compressed(self, text: bool, payload: Any) -> bytes:
        """A data frame (``payload`` a str for text) through the library's extensions (permessage-deflate)."""
        raise NotImplementedError

    def encode_close(self, code: int, reason: str) -> bytes:
        raise NotImplementedError

    def encode_ping(self, payload: bytes) -> bytes:
        return encode_frame(OP_PING, payload)

    # HTTP responses instead of the 101.  Each backend answers as uvicorn's backend on the
    # same library does, so statuses, headers and bodies match it byte for byte where the
    # library decides them: the websockets backend buffers a denial and sends it whole
    # (``stream_denial`` False), the wsproto backend sends the head at
    # websocket.http.response.start and the body as it comes.

    stream_denial = False

    def reject_bytes(self, status: int, text: str) -> bytes:
        """A complete plain-text response: 403 for websocket.close before accept, 500 when the app fails."""
        raise NotImplementedError

    def deny_bytes(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        """A whole denial response (``stream_denial`` False)."""
        raise NotImplementedError

    def deny_start_bytes(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The head of a streamed denial response (``stream_denial`` True)."""
        raise NotImplementedError

    def deny_body_bytes(self, body: bytes, finished: bool) -> bytes:
        """A part of a streamed denial body (``stream_denial`` True)."""
        raise NotImplementedError

    def library_idle(self) -> bool:
        """The library is OPEN, between frames, with nothing buffered and no fragmented message."""
        return False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.connections.add(self)
        self.transport = transport
        self.client = get_remote_addr(transport)
        self.server = get_local_addr(transport)
        self.scheme = "wss" if is_ssl(transport) else "ws"
        if self.metrics is not None:
            self.metrics[CONNECTIONS_OPEN] += 1  # handed over by the HTTP protocol, which counted it
        if logger.isEnabledFor(TRACE_LOG_LEVEL):  # --log-level trace: uvicorn's line
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", self.trace_prefix())

    def trace_prefix(self) -> str:
        """uvicorn's "host:port - " before a TRACE line (nothing for a UNIX socket)."""
        client = self.client
        return "%s:%d - " % tuple(client) if client else ""

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self.fast = False
        self.connections.discard(self)
        metrics = self.metrics
        if metrics is not None:
            metrics[CONNECTIONS_OPEN] -= 1
            if self.counted_open:
                self.counted_open = False
                metrics[WS_OPEN] -= 1
        self.stop_keepalive()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if self.state != CLOSED:
            self.state = CLOSED
        # 1006: closed without a close frame (RFC 6455 §7.1.5), before or after the handshake
        # (uvicorn says 1005 after it; README lists this).  No reason, as in uvicorn, and
        # queued even after another disconnect (an app reading on sees both, then receive()
        # waits until the app cancels it or shutdown's --timeout-graceful-shutdown does, as in
        # uvicorn).
        self.put_disconnect(1006)
        self.handshake_complete = True
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", self.trace_prefix())
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.drain_waiters.clear()

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed WebSocket is a lost one

    def pause_writing(self) -> None:
        self.write_paused = True

    def write(self, data: bytes) -> None:
        """``transport.write``, counted in sent_bytes (--metrics-port)."""
        self.transport.write(data)
        metrics = self.metrics
        if metrics is not None:
            metrics[BYTES_OUT] += len(data)

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.drain_waiters.clear()

    def data_received(self, data: bytes) -> None:  # type: ignore[override]
        metrics = self.metrics
        if metrics is not None:
            metrics[BYTES_IN] += len(data)
        self.handle_bytes(data)

    def handle_bytes(self, data: bytes) -> None:
        """Bytes in, already counted (the HTTP protocol hands the handshake head over through this)."""
        if self.fast:  # implies OPEN, nothing sent or received to close, no compression
            pending = self.pending
            if pending is not None:
                pending += data
                buf: Any = pending
            else:
                buf = data
            size = len(buf)
            pos = 0
            max_size = self.fast_max
            while size - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                # FIN, no RSV bits, text or binary, MASK set (RFC 6455 §5.2); else the library decides
                if (b0 != 0x81 and b0 != 0x82) or b1 < 0x80:
                    break
                n = b1 & 0x7F
                if n < 126:
                    start = pos + 6
                elif n == 126:
                    if size - pos < 4:
                        n = -1
                    else:
                        n = (buf[pos + 2] << 8) | buf[pos + 3]
                        if n < 126:  # not the minimal length encoding
                            break
                    start = pos + 8
                else:
                    if size - pos < 10:
                        n = -1
                    else:
                        n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                        if n < 65536:  # not the minimal length encoding (a set top bit fails max_size)
                            break
                    start = pos + 14
                if n > max_size:  # known as soon as the length is: the library fails it at once
                    break
                end = start + n
                if n < 0 or end > size:  # incomplete
                    if b0 == 0x81 and start < size and self.partial_text_to_library:
                        break  # the library checks UTF-8 as payload arrives (fails fast, RFC 6455 §8.1)
                    if pos or pending is None:  # hold it until the rest arrives
                        self.pending = bytearray(buf[pos:])
                    return
                if n > 4096:
                    view = memoryview(buf)
                    payload = apply_mask(view[start:end], view[start - 4 : start])
                    view.release()
                else:
                    payload = apply_mask(buf[start:end], buf[start - 4 : start])
                if b0 == 0x81:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        break  # the library fails the connection with 1007
                    self.put({"type": "websocket.receive", "text": text})
                else:
                    self.put({"type": "websocket.receive", "bytes": payload})
                if self.metrics is not None:
                    self.metrics[WS_RECEIVED] += 1
                pos = end
            else:  # every frame was whole (the first byte of the next one may be here)
                if pos == size:
                    self.pending = None
                elif pos or pending is None:
                    self.pending = bytearray(buf[pos:])
                return
            # a frame the fast path does not take: it and all that follows go to the library
            self.pending = None
            self.fast = False
            self.feed(buf[pos:] if pos else buf)
            return
        if self.state == OPEN:
            self.feed(data)
        elif self.state == CLOSED:
            return  # after a denial or a failure nothing more is read (RFC 6455 §7.1.7)
        else:
            self.early += data
            if self.state == HANDSHAKE:
                self.handshake()
            elif len(self.early) > 65536 and not self.read_paused:
                # frames sent before the 101: hold them, but not without bound
                self.read_paused = True
                self.transport.pause_reading()

    # -- opening handshake ---------------------------------------------------------------

    def handshake(self) -> None:
        end = self.early.find(b"\r\n\r\n")
        if end < 0:
            if len(self.early) > MAX_HEAD:
                self.refuse(http_response(431, [], b"Request header fields too large.\n"))
            return
        head = bytes(self.early[: end + 4])
        del self.early[: end + 4]
        try:
            method, target, version, headers = parse_head(head[:-4])
        except ValueError:
            self.refuse(http_response(400, [], b"Invalid HTTP request received.\n"))
            return
        # the library first, as in uvicorn: what it refuses gets its own answer (status, wording);
        # then the RFC 6455 checks it does not make (method, Host)
        error = self.start_handshake(head, headers)
        if error is None:
            error = check_handshake(method, version, headers)
        if error is not None:
            self.refuse(error)
            return

        raw_path, _, query_string = target.partition(b"?")
        root_path = self.root_path
        path = unquote(raw_path.decode("latin-1"))
        subprotocols = [
            tok.strip()
            for name, value in headers
            if name == b"sec-websocket-protocol"
            for tok in value.decode("latin-1").split(",")
            if tok.strip()
        ]
        scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + path if root_path else path,
            "raw_path": root_path.encode("latin-1") + raw_path if root_path else raw_path,
            "query_string": query_string,
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        if self.scheme == "wss":
            scope["extensions"]["tls"] = tls_extension(self.transport, getattr(self.config, "tls_server_cert", None))
        trust = self.server_state.proxy_trust
        if trust is not None and has_forwarded_headers(headers) and trust_key(self.transport, self.client) in trust:
            apply_forwarded(scope, trust)
        self.scope = scope
        self.state = CONNECTING
        self.messages.append({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def refuse(self, response: bytes) -> None:
        """Answer a handshake we do not pass to the app, and close."""
        self.state = CLOSED
        self.handshake_complete = True
        self.early = bytearray()
        if self.metrics is not None:
            self.metrics[PARSE_ERRORS + PARSE_WS_HANDSHAKE] += 1
        if not self.lost:
            self.write(response)
            self.transport.close()

    # -- the app ------------------------------------------------------------------------------

    async def run_asgi(self) -> None:
        # What happens when the app ends is uvicorn's: the server never sends a close frame
        # for the app.  Whether it returned or raised, TCP is closed (the client sees 1006)
        # unless the app's own closing handshake is still waiting for the client's reply;
        # before the handshake is complete the client gets a 500.
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException as exc:
            logger.exception("Exception in ASGI application\n")
            self.send_500()
            self.close_after_app()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return
        else:
            if not self.handshake_complete:
                logger.error("ASGI callable returned without completing handshake.")
                self.send_500()
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        self.close_after_app()

    def close_after_app(self) -> None:
        if self.close_timer is None and not self.lost:
            self.state = CLOSED
            self.transport.close()

    def send_500(self) -> None:
        """500 to a handshake the app neither accepted nor denied; nothing once a response has begun."""
        if self.handshake_complete or self.state != CONNECTING or self.lost:
            return
        # CLOSED, not handshake_complete: a client lost from here on is still 1006, as in uvicorn
        self.state = CLOSED
        self.write(self.reject_bytes(500, "Internal Server Error"))

    def default_headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.server_state.default_headers)

    # -- receive ------------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        messages = self.messages
        while not messages:
            # Nothing queued: wait for the next put.  Once the connection is lost and its
            # disconnect was read, none comes and this waits until cancelled, as uvicorn's
            # asyncio.Queue.get() does (its graceful shutdown cancels the task after
            # --timeout-graceful-shutdown; so does ours).
            waiter = self.loop.create_future()
            self.waiter = waiter
            try:
                await waiter
            finally:
                if self.waiter is waiter:  # cancelled: forget it, unless a put already did
                    self.waiter = None
        message = messages.popleft()
        if self.read_paused and len(messages) <= self.low_water and self.state == OPEN and not self.lost:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def put(self, message: dict[str, Any]) -> None:
        messages = self.messages
        messages.append(message)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(messages) >= self.max_queue and not self.read_paused and not self.lost:
            # --ws-max-queue: the app is behind; stop reading so TCP pushes back on the client
            self.read_paused = True
            self.transport.pause_reading()

    def put_disconnect(self, code: int, reason: str | None = None) -> None:
        """Queue a websocket.disconnect; like uvicorn's, it has a "reason" only when a close frame
        was sent or received (an app or peer close, a protocol failure), not when TCP was lost,
        the server shut down or the handshake was refused."""
        if self.state != HANDSHAKE or self.scope:
            if reason is None:
                self.put({"type": "websocket.disconnect", "code": code})
            else:
                self.put({"type": "websocket.disconnect", "code": code, "reason": reason})

    # -- from the backend -------------------------------------------------------------------

    def deliver_text(self, text: str) -> None:
        if not self.close_sent:
            self.put({"type": "websocket.receive", "text": text})
            if self.metrics is not None:
                self.metrics[WS_RECEIVED] += 1

    def deliver_bytes(self, data: bytes) -> None:
        if not self.close_sent:
            self.put({"type": "websocket.receive", "bytes": data})
            if self.metrics is not None:
                self.metrics[WS_RECEIVED] += 1

    def on_peer_close(self, code: int, reason: str, echo: bytes) -> None:
        """A close frame arrived; ``echo`` is the reply (empty when ours was sent first)."""
        self.fast = False
        if self.lost:
            return
        reply_to_ours = self.close_sent
        if echo and not self.close_sent:
            self.write(echo)
        self.close_sent = True
        self.state = CLOSED
        self.stop_keepalive()
        if not reply_to_ours:  # the reply to our close frame is no news: the app was told then (as uvicorn)
            self.put_disconnect(code, reason)
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        # the closing handshake is complete: the server closes TCP first (RFC 6455 §7.1.1)
        self.transport.close()

    def on_failure(self, code: int, reason: str, data: bytes, tell_app: bool = True) -> None:
        """Fail the WebSocket connection (RFC 6455 §7.1.7): send ``data`` (a close frame) and drop TCP.

        The app is told with the close frame's code and reason, except when ``tell_app`` is
        False (a keepalive timeout: uvicorn's app then sees only the lost connection, 1005).
        """
        self.fast = False
        if self.lost:
            return
        if data and not self.close_sent:
            self.write(data)
        self.close_sent = True
        self.state = CLOSED
        self.stop_keepalive()
        if tell_app:
            self.put_disconnect(code, reason)
        self.transport.close()

    def on_pong(self, payload: bytes) -> None:
        if self.ping_payload is not None and bytes(payload) == self.ping_payload:
            self.ping_payload = None
            if self.pong_timer is not None:
                self.pong_timer.cancel()
                self.pong_timer = None
            self.schedule_ping()

    def too_big(self) -> None:
        """A message above --ws-max-size: close with 1009 (RFC 6455 §7.4.1)."""
        reason = f"Message exceeds the maximum size ({self.max_size} bytes)"  # uvicorn's wording (wsproto)
        self.on_failure(1009, reason, self.encode_close(1009, reason))

    # -- send ------------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.write_paused and not self.lost:
            waiter = self.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter
        if self.lost:  # whatever the message (uvicorn checks this first too)
            raise ClientDisconnected("the WebSocket connection is lost")
        mtype = message["type"]
        state = self.state
        if state == OPEN:
            if self.app_closed:
                raise RuntimeError(f"Unexpected ASGI message '{mtype}', after sending 'websocket.close'.")
            if self.close_sent or self.lost:
                raise ClientDisconnected("the WebSocket is closed")
            if mtype == "websocket.send":
                text = message.get("text")
                if text is not None:
                    if self.compress:
                        self.write(self.encode_compressed(True, text))
                    else:
                        data = text.encode("utf-8")
                        n = len(data)
                        self.write(_TEXT_HEADS[n] + data if n < 126 else encode_frame(OP_TEXT, data))
                else:
                    payload = message.get("bytes")
                    if payload is None:
                        raise RuntimeError("'websocket.send' needs 'bytes' or 'text'.")
                    if self.compress:
                        self.write(self.encode_compressed(False, payload))
                    else:
                        n = len(payload)
                        self.write(_BINARY_HEADS[n] + payload if n < 126 else encode_frame(OP_BINARY, payload))
                if self.metrics is not None:
                    self.metrics[WS_SENT] += 1
            elif mtype == "websocket.close":
                code = message.get("code")
                code = 1000 if code is None else int(code)
                if not valid_app_close_code(code):
                    raise RuntimeError(f"Invalid WebSocket close code {code}.")
                self.app_closed = True
                self.send_close(code, message.get("reason") or "")
            else:
                raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{mtype}'.")
        elif state == CONNECTING:
            if self.lost:
                raise ClientDisconnected("the client went away during the handshake")
            if mtype == "websocket.accept":
                self.accept(message)
            elif mtype == "websocket.close":
                # close before accept: deny with 403 (ASGI spec, websocket.close)
                self.log_outcome("403")
                self.state = CLOSED
                self.app_closed = True
                self.close_sent = True
                self.handshake_complete = True
                self.put_disconnect(1006)
                self.write(self.reject_bytes(403, ""))
                self.transport.close()
            elif mtype == "websocket.http.response.start":
                status = int(message["status"])
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                headers = [check_header(n, v) for n, v in message.get("headers") or ()]
                self.log_outcome(str(status))  # logged at the start, as uvicorn does
                self.state = RESPONSE
                if self.stream_denial:
                    # the head goes now; the handshake is over even if no body follows
                    self.handshake_complete = True
                    self.write(self.deny_start_bytes(status, headers))
                else:
                    self.deny_status = status
                    self.deny_headers = headers
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{mtype}'."
                )
        elif state == RESPONSE:
            if self.lost:
                raise ClientDisconnected("the client went away during the handshake")
            if mtype != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{mtype}'.")
            body = bytes(message.get("body") or b"")
            finished = not message.get("more_body", False)
            if self.stream_denial:
                self.write(self.deny_body_bytes(body, finished))
            elif body:
                self.deny_body.append(body)
            if finished:
                if not self.stream_denial:
                    self.write(self.deny_bytes(self.deny_status, self.deny_headers, b"".join(self.deny_body)))
                self.state = CLOSED
                self.app_closed = True
                self.close_sent = True
                # handshake_complete stays as it was (see __init__): True on wsproto since the
                # start, False on websockets until the connection is lost, as in uvicorn
                self.put_disconnect(1006)
                self.transport.close()
        else:  # CLOSED
            if self.lost or not self.app_closed:
                raise ClientDisconnected("the WebSocket is closed")
            raise RuntimeError(f"Unexpected ASGI message '{mtype}', after sending 'websocket.close'.")

    def accept(self, message: dict[str, Any]) -> None:
        subprotocol = message.get("subprotocol")
        headers = self.default_headers()
        for name, value in message.get("headers") or ():
            name, value = check_header(name, value)
            if name.lower() in (b"sec-websocket-protocol", b"sec-websocket-extensions", b"sec-websocket-accept"):
                continue  # the server owns these (RFC 6455 §4.2.2)
            headers.append((name, value))
        if subprotocol is not None:
            if not isinstance(subprotocol, str):
                raise RuntimeError("'subprotocol' must be a str or None.")
            if subprotocol not in self.scope["subprotocols"]:
                # RFC 6455 §4.2.2: the server selects one the client offered; clients fail on another
                logger.warning("WebSocket subprotocol %r was not offered by the client; not sent.", subprotocol)
                subprotocol = None
        self.log_outcome("[accepted]")
        self.write(self.accept_bytes(subprotocol, headers))
        if self.metrics is not None:
            self.metrics[WS_CONNECTIONS] += 1
            self.metrics[WS_OPEN] += 1
            self.counted_open = True
        self.state = OPEN
        self.handshake_complete = True
        self.start_keepalive()
        early = self.early
        self.early = bytearray()
        if self.read_paused and len(self.messages) < self.max_queue:
            self.read_paused = False
            self.transport.resume_reading()
        if early:
            self.handle_bytes(bytes(early))

    def log_outcome(self, outcome: str) -> None:
        if logger.isEnabledFor(INFO):
            scope = self.scope
            target = scope["path"]
            if scope["query_string"]:
                target += "?" + scope["query_string"].decode("latin-1")
            logger.info('%s - "WebSocket %s" %s', format_client(scope["client"]), target, outcome)

    def send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake (RFC 6455 §7.1.2): send our close frame, wait for the peer's."""
        if self.close_sent or self.lost:
            return
        self.close_sent = True
        self.fast = False
        self.stop_keepalive()
        self.put_disconnect(code, reason)
        self.write(self.encode_close(code, reason))
        if self.read_paused:  # read on, to see the peer's close frame
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.close_timeout)

    def close_timeout(self) -> None:
        self.close_timer = None
        if self.metrics is not None:
            self.metrics[TIMEOUTS + TIMEOUT_WS_CLOSE] += 1
        if not self.lost:
            self.transport.abort()

    # -- keepalive -----------------------------------------------------------------------------

    def start_keepalive(self) -> None:
        if self.ping_interval is not None and self.ping_interval > 0:
            self.schedule_ping()

    def schedule_ping(self) -> None:
        if self.ping_interval is not None and self.ping_interval > 0 and not self.close_sent and not self.lost:
            self.ping_timer = self.loop.call_later(self.ping_interval, self.send_ping)

    def stop_keepalive(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self.ping_payload = None

    def send_ping(self) -> None:
        self.ping_timer = None
        if self.close_sent or self.lost:
            return
        self.ping_payload = os.urandom(4)  # identifies this ping; stale or unsolicited pongs are ignored
        self.write(self.encode_ping(self.ping_payload))
        if self.ping_timeout is not None and self.ping_timeout > 0:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
        else:
            self.schedule_ping()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.ping_payload = None
        if self.close_sent or self.lost:
            return
        if self.metrics is not None:
            self.metrics[TIMEOUTS + TIMEOUT_WS_PING] += 1
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket keepalive ping timeout", self.trace_prefix())
        reason = "keepalive ping timeout"
        self.on_failure(1011, reason, self.encode_close(1011, reason), tell_app=False)

    # -- graceful shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Server shutdown, as uvicorn: an open WebSocket gets a 1012 ("service restart", RFC 6455
        §7.4.1, IANA) close frame without a reason, and the app a disconnect with code 1012; a
        handshake the app has not answered gets a 500; then TCP is closed."""
        self.fast = False
        self.stop_keepalive()
        if self.lost:
            return
        if self.close_timer is not None:  # our close frame is out; stop waiting for the reply
            self.close_timer.cancel()
            self.close_timer = None
        if self.state == OPEN and not self.close_sent:
            self.close_sent = True
            self.put_disconnect(1012)
            self.write(self.encode_close(1012, ""))
        elif self.state == CONNECTING:
            self.send_500()
        self.state = CLOSED
        self.transport.close()
