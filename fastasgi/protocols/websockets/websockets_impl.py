"""WebSocket backend on the websockets library's sans-IO ``ServerProtocol`` (``--ws websockets``).

The library parses the handshake request and every frame (masking, reserved
bits and opcodes, control-frame rules, close codes, permessage-deflate and
--ws-max-size); :mod:`.common` holds the ASGI side, shared with the wsproto
backend (``wsproto_impl``).  Two things the library leaves to its asyncio layer
are done here: UTF-8 validation of text messages (incremental across
fragments, so a bad fragment fails at once: RFC 6455 §8.1) and reassembly of
fragmented messages.

Complete, unfragmented, uncompressed data frames take the fast path of
:meth:`.common.WebSocketBase.data_received` while :meth:`library_idle` says the
library's parser is between frames; everything else goes through the library
(everything at all while the library logs frames: uvicorn.error at DEBUG).
"""

from __future__ import annotations

import codecs
import email.utils
import http
import logging
from typing import TYPE_CHECKING, Any, cast

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeaderValue
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from fastasgi.protocols.websockets.common import OP_CLOSE as _OP_CLOSE
from fastasgi.protocols.websockets.common import WebSocketBase, close_payload, encode_frame, http_response

OP_CONT = Opcode.CONT
OP_TEXT = Opcode.TEXT
OP_BINARY = Opcode.BINARY
OP_CLOSE = Opcode.CLOSE
OP_PING = Opcode.PING
OP_PONG = Opcode.PONG

_utf8_decoder = codecs.getincrementaldecoder("utf-8")
_AT_EOF = StreamReader.at_eof.__code__  # the parser waits here between frames
_STATE_OPEN = State.OPEN

if TYPE_CHECKING:
    from typing import Protocol

    class ReceivedFrame(Protocol):
        """A ``Frame`` as the library's parser builds it: ``data`` is ``bytes`` (typed ``BytesLike``)."""

        opcode: Opcode
        fin: bool
        data: bytes


# The library logs through the logger it is given, as under uvicorn's websockets-sansio
# backend, which gives it "uvicorn.error": "connection open" (INFO) at the 101, "connection
# rejected (403 Forbidden)" (INFO) at a refusal or denial, "opening handshake failed" and
# "parser failed" (ERROR).  ("connection closed" comes only once the library is told of the
# end of the stream, which neither server does.)
_ws_logger = logging.getLogger("uvicorn.error")


class _ServerProtocol(ServerProtocol):
    """``ServerProtocol`` that accepts a close frame in the middle of a fragmented message.

    Control frames may be injected between fragments (RFC 6455 §5.4), a close
    frame included; the library fails such a connection with 1002.  Here the
    partial message is dropped and the closing handshake proceeds normally.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is OP_CLOSE:
            # websockets >= 16 calls it current_size; 13-15 (the newest on Python 3.9 and
            # PyPy 3.9) cur_size
            for name in ("current_size", "cur_size"):
                if getattr(self, name, None) is not None:
                    setattr(self, name, None)
        super().recv_frame(frame)


class WebSocketProtocol(WebSocketBase):
    library = "websockets"

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        extensions = []
        if self.per_message_deflate:
            extensions.append(
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12,  # 4 KiB windows: memory per connection stays small
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            )
        self.conn = _ServerProtocol(extensions=extensions, max_size=self.max_size, logger=_ws_logger)
        self.response: Any = None
        self.decoder: Any = None

    # -- handshake -------------------------------------------------------------------------

    def start_handshake(self, head: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        conn = self.conn
        conn.receive_data(head)
        request = None
        for event in conn.events_received():
            if isinstance(event, Request):
                request = event
        if request is None:  # the library could not parse what the HTTP layer passed
            conn.data_to_send()
            return http_response(400, [], b"Invalid WebSocket handshake.\n")
        response = conn.accept(request)  # validates, negotiates extensions; may refuse
        if response.status_code != 101:
            # the library's answer, as uvicorn sends it; one change: a version we do not speak
            # is a 426 naming ours (RFC 6455 §4.2.2 demands the header; the library says 400,
            # wsproto already answers so).  A missing version stays a 400 (§4.2.1), as in wsproto.
            exc = conn.handshake_exc
            if isinstance(exc, InvalidHeaderValue) and exc.name == "Sec-WebSocket-Version":
                response.status_code = 426
                response.reason_phrase = "Upgrade Required"
                response.headers["Sec-WebSocket-Version"] = "13"
            conn.send_response(response)
            return b"".join(conn.data_to_send())
        self.response = response
        return None

    def accept_bytes(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        response = self.response
        rh = response.headers
        for library_name in ("Date", "Server", "Sec-WebSocket-Protocol"):  # ours replace the library's
            if library_name in rh:
                del rh[library_name]
        for name, value in headers:
            rh[name.decode("latin-1")] = value.decode("latin-1")
        if subprotocol:
            rh["Sec-WebSocket-Protocol"] = subprotocol
        conn = self.conn
        conn.send_response(response)
        # uvicorn.error at DEBUG (--log-level debug, trace): the library logs each frame it
        # reads or writes ("< TEXT 'hi' [2 bytes]"), so every frame goes through it, as in uvicorn
        self.compress = bool(conn.extensions) or bool(getattr(conn, "debug", False))
        self.response = None
        self.fast = not self.compress and self.library_idle()
        return b"".join(conn.data_to_send())

    # -- HTTP responses instead of the 101 (as uvicorn's websockets-sansio backend) ---------------

    def reject_bytes(self, status: int, text: str) -> bytes:
        conn = self.conn
        conn.send_response(conn.reject(status, text))
        return b"".join(conn.data_to_send())

    def deny_bytes(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        # the app's headers, then what a complete response needs if the app left it out
        rh = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers])
        rh.setdefault("Date", email.utils.formatdate(usegmt=True))
        rh.setdefault("Connection", "close")
        rh.setdefault("Content-Length", str(len(body)))
        rh.setdefault("Content-Type", "text/plain; charset=utf-8")
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        conn = self.conn
        conn.send_response(Response(status, phrase, rh, body))
        return b"".join(conn.data_to_send())

    # -- frames in -------------------------------------------------------------------------

    def library_idle(self) -> bool:
        """The library's parser is OPEN, between frames, with nothing buffered and no fragmented message."""
        conn = self.conn
        if conn.state is not _STATE_OPEN or conn.reader.buffer or self.frag_parts or self.close_sent:
            return False
        gen: Any = conn.parser
        inner = getattr(gen, "gi_yieldfrom", None)
        while inner is not None:
            gen = inner
            inner = getattr(gen, "gi_yieldfrom", None)
        return getattr(gen, "gi_code", None) is _AT_EOF

    def feed(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        events = cast("list[ReceivedFrame]", conn.events_received())  # only frames once accepted
        for frame in events:
            opcode = frame.opcode
            if opcode is OP_TEXT:
                if frame.fin:
                    try:
                        text = frame.data.decode("utf-8")
                    except UnicodeDecodeError:
                        self.invalid_utf8()
                        return
                    self.deliver_text(text)
                else:
                    self.frag_text = True
                    self.decoder = decoder = _utf8_decoder()
                    try:
                        self.frag_parts = [decoder.decode(frame.data)]
                    except UnicodeDecodeError:
                        self.invalid_utf8()
                        return
            elif opcode is OP_BINARY:
                if frame.fin:
                    self.deliver_bytes(frame.data)
                else:
                    self.frag_text = False
                    self.frag_parts = [frame.data]
            elif opcode is OP_CONT:
                if self.frag_text:
                    try:
                        self.frag_parts.append(self.decoder.decode(frame.data, frame.fin))
                    except UnicodeDecodeError:
                        self.invalid_utf8()
                        return
                else:
                    self.frag_parts.append(frame.data)
                if frame.fin:
                    parts = self.frag_parts
                    self.frag_parts = []
                    if self.frag_text:
                        self.decoder = None
                        self.deliver_text("".join(parts))
                    else:
                        self.deliver_bytes(b"".join(parts))
            elif opcode is OP_PONG:
                self.on_pong(frame.data)
            elif opcode is OP_CLOSE:
                close = conn.close_rcvd
                assert close is not None  # set with the close frame
                self.frag_parts = []
                writes = conn.data_to_send()
                self.on_peer_close(close.code, close.reason, b"".join(writes))
                return
            # OP_PING: the library queued the pong (RFC 6455 §5.5.2); written below
        if conn.parser_exc is not None:
            close = conn.close_sent
            code, reason = (close.code, close.reason) if close is not None else (1006, "")
            self.on_failure(code, reason, b"".join(conn.data_to_send()))
            return
        writes = conn.writes
        if writes:
            self.write(b"".join(conn.data_to_send()))
        if not self.compress:
            self.fast = self.library_idle()

    def invalid_utf8(self) -> None:
        """Text that is not UTF-8: close with 1007 (RFC 6455 §8.1)."""
        self.frag_parts = []
        self.decoder = None
        conn = self.conn
        conn.fail(1007, "invalid UTF-8 in text message")
        self.on_failure(1007, "invalid UTF-8 in text message", b"".join(conn.data_to_send()))

    # -- frames out ------------------------------------------------------------------------

    def encode_compressed(self, text: bool, payload: Any) -> bytes:
        conn = self.conn
        if text:
            conn.send_text(payload.encode("utf-8"))
        else:
            conn.send_binary(payload)
        return b"".join(conn.data_to_send())

    def encode_close(self, code: int, reason: str) -> bytes:
        conn = self.conn
        if conn.state.name == "OPEN":
            conn.send_close(code, reason)
        else:  # not OPEN (already closing): frame it ourselves
            return encode_frame(_OP_CLOSE, close_payload(code, reason))
        return b"".join(w for w in conn.data_to_send() if w)

    def encode_ping(self, payload: bytes) -> bytes:
        conn = self.conn
        conn.send_ping(payload)
        return b"".join(conn.data_to_send())


__all__ = ["WebSocketProtocol"]
