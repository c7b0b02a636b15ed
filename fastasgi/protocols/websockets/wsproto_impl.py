"""WebSocket backend on wsproto (``--ws wsproto``).

wsproto parses the handshake request and the frames (masking, reserved bits
and opcodes, control-frame rules, UTF-8 of text across fragments, close codes,
permessage-deflate); :mod:`.common` holds the ASGI side, shared with the
websockets backend (``websockets_impl``).  wsproto has no message size limit,
so --ws-max-size is enforced here while fragments (and partial frames) arrive.

Complete, unfragmented, uncompressed data frames take the fast path of
:meth:`.common.WebSocketBase.data_received` while :meth:`library_idle` says
wsproto is between frames; everything else goes through wsproto.
"""

from __future__ import annotations

from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from fastasgi.protocols.websockets.common import OP_CLOSE, WebSocketBase, close_payload, encode_frame, http_response

_OPEN = ConnectionState.OPEN
_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING


class WSProtocol(WebSocketBase):
    library = "wsproto"
    partial_text_to_library = True
    stream_denial = True  # wsproto sends a denial's head at once, its body as it comes (as uvicorn)

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.ws = WSConnection(ConnectionType.SERVER)
        self.proto: Any = None  # wsproto.connection.Connection once accepted
        self.frame_decoder: Any = None

    # -- handshake -------------------------------------------------------------------------

    def start_handshake(self, head: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        try:
            self.ws.receive_data(head)
            events = list(self.ws.events())
        except RemoteProtocolError as exc:
            # wsproto's own answer, as uvicorn sends it (a 400, or 426 naming version 13)
            if exc.event_hint is not None:
                try:
                    return self.ws.send(exc.event_hint)
                except Exception:  # noqa: BLE001 - a hint wsproto cannot send: our own answer
                    pass
            return http_response(400, [], f"Invalid WebSocket handshake: {exc}.\n".encode())
        if not any(isinstance(e, Request) for e in events):
            return http_response(400, [], b"Invalid WebSocket handshake.\n")
        return None

    def accept_bytes(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        extensions: list[Extension] = [PerMessageDeflate()] if self.per_message_deflate else []
        ws = self.ws
        data = ws.send(AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=headers))
        self.proto = proto = ws.connection
        # wsproto keeps the header of the frame being read here; None if a future version moves it
        self.frame_decoder = getattr(getattr(proto, "_proto", None), "_frame_decoder", None)
        self.compress = any(ext.enabled() for ext in extensions)
        self.fast = not self.compress and self.library_idle()
        return data

    # -- HTTP responses instead of the 101 (as uvicorn's wsproto backend) ---------------------------

    def reject_bytes(self, status: int, text: str) -> bytes:
        if not text:  # websocket.close before accept: a bare status
            return self.ws.send(RejectConnection(status_code=status, headers=[]))
        body = text.encode("utf-8")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"connection", b"close"),
            (b"content-length", str(len(body)).encode()),
        ]
        return self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True)) + self.ws.send(
            RejectData(data=body)
        )

    def deny_start_bytes(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        # without a Content-Length from the app, h11 (under wsproto) frames the body chunked
        return self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))

    def deny_body_bytes(self, body: bytes, finished: bool) -> bytes:
        return self.ws.send(RejectData(data=body, body_finished=finished))

    # -- frames in -------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        proto = self.proto
        proto.receive_data(data)
        out = None
        max_size = self.max_size
        for event in proto.events():
            etype = type(event)
            if etype is BytesMessage or etype is TextMessage:
                payload = event.data
                if etype is TextMessage:
                    size = len(payload)
                    if (self.frag_size + 4 * size) > max_size:  # chars <= UTF-8 bytes <= 4 * chars
                        size = len(payload.encode("utf-8"))
                else:
                    size = len(payload)
                parts = self.frag_parts
                if not parts and event.message_finished:  # the common case: one whole frame
                    if size > max_size:
                        self.too_big()
                        return
                    if etype is TextMessage:
                        self.deliver_text(payload)
                    else:
                        self.deliver_bytes(payload)
                    continue
                size += self.frag_size
                if size > max_size:
                    self.too_big()
                    return
                parts.append(payload)
                if event.message_finished:
                    self.frag_parts = []
                    self.frag_size = 0
                    if etype is TextMessage:
                        self.deliver_text("".join(parts))
                    else:
                        self.deliver_bytes(b"".join(parts))
                else:
                    self.frag_size = size
            elif etype is Ping:
                reply = proto.send(event.response())  # RFC 6455 §5.5.2
                out = reply if out is None else out + reply
            elif etype is Pong:
                self.on_pong(event.payload)
            elif etype is CloseConnection:
                if out is not None:
                    self.write(out)
                    out = None
                self.frag_parts = []
                state = proto.state
                code = int(event.code)
                if state is _REMOTE_CLOSING:  # the peer starts the closing handshake: echo
                    self.on_peer_close(code, event.reason or "", proto.send(event.response()))
                elif state is _OPEN:  # a protocol error wsproto reports as a close event
                    self.on_failure(code, event.reason or "", proto.send(CloseConnection(code, event.reason)))
                else:  # the peer's reply to our close
                    self.on_peer_close(code, event.reason or "", b"")
                return
        if out is not None:
            self.write(out)
        decoder = self.frame_decoder
        if decoder is not None:
            # a data frame whose announced length is already too big: refuse it now rather
            # than after reading it (wsproto only sees the bytes that arrived)
            header = decoder.header
            if (
                header is not None
                and header.payload_len - decoder.payload_consumed > max_size - self.frag_size
                and not header.opcode.iscontrol()
            ):
                self.too_big()
                return
        if not self.compress:
            self.fast = self.library_idle()

    def library_idle(self) -> bool:
        """wsproto is OPEN, between frames, with nothing buffered and no fragmented message."""
        proto = self.proto
        if proto is None or proto.state is not _OPEN or self.close_sent or self.frag_parts:
            return False
        try:  # wsproto's internals; if a version moves them the fast path stays off
            if proto._events:
                return False
            frames = proto._proto
            decoder = frames._frame_decoder
            return (
                decoder.header is None
                and not decoder.buffer.buffer
                and frames._message_decoder.opcode is None
                and not frames.extensions
            )
        except AttributeError:
            return False

    # -- frames out ------------------------------------------------------------------------

    def encode_compressed(self, text: bool, payload: Any) -> bytes:
        if text:
            return self.proto.send(TextMessage(data=payload))
        return self.proto.send(BytesMessage(data=bytes(payload)))

    def encode_close(self, code: int, reason: str) -> bytes:
        proto = self.proto
        if proto is not None and proto.state is _OPEN:
            return proto.send(CloseConnection(code=code, reason=reason or None))
        return encode_frame(OP_CLOSE, close_payload(code, reason))


__all__ = ["WSProtocol"]
