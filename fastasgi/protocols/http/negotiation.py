"""``--http2``: which protocol serves a connection, HTTP/1.1 or HTTP/2, on the same port.

Only used with ``--http2`` (without it the server hands every connection to the
HTTP/1.1 protocol directly, so plain HTTP/1.1 pays nothing for this):

* TLS: the protocol ALPN selected (RFC 7301; the SSL context offers ``h2`` and
  ``http/1.1``): ``h2`` -> HTTP/2, anything else or nothing -> HTTP/1.1;
* cleartext (TCP or UNIX socket): a connection whose first bytes are the HTTP/2
  connection preface is HTTP/2 "with prior knowledge" (RFC 9113 §3.3), any other
  is HTTP/1.1.  The bytes read to decide are handed to the protocol chosen, none
  is lost.  (A request that spells the preface's first line and continues
  differently is HTTP/1.1, which answers it 400.)  An HTTP/1.1 request may still
  ask for ``Upgrade: h2c`` (RFC 7540 §3.2): the HTTP/1.1 protocol answers 101 and
  hands the connection to the HTTP/2 protocol itself (``Http2Protocol.upgrade``).

Until the first bytes arrive the connection is idle: ``--timeout-keep-alive``
closes it as it would an idle HTTP/1.1 connection (``--timeout-request-header``,
when longer, once part of a preface arrived), and a graceful shutdown closes it
at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ProtocolNegotiator(asyncio.Protocol):
    """The protocol a connection starts with under ``--http2``; it installs the real one."""

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.transport: Any = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            # the handshake is over when connection_made is called: ALPN has decided
            alpn = ssl_object.selected_alpn_protocol()
            self.switch(self.config.http2_protocol_class if alpn == "h2" else self.config.http_protocol_class, b"")
            return
        self.server_state.connections.add(self)
        self.timer = self.loop.call_later(float(self.config.timeout_keep_alive), self.on_timeout)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        buf = self.buffer + data if self.buffer else data
        n = min(len(buf), 24)
        if buf[:n] != PREFACE[:n]:
            self.switch(self.config.http_protocol_class, buf)
        elif n == 24:
            self.switch(self.config.http2_protocol_class, buf)
        else:
            self.buffer = buf  # a part of the preface, or of a request starting "PRI "

    def switch(self, protocol_class: Any, data: bytes) -> None:
        """Hand the transport (and the bytes read so far) to a new ``protocol_class``."""
        self.done = True
        self.buffer = b""
        self.server_state.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        protocol = protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )
        transport = self.transport
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        if data:
            protocol.data_received(data)

    def on_timeout(self) -> None:
        self.timer = None
        if self.done:
            return
        header_timeout = float(self.config.timeout_request_header)
        keep_alive = float(self.config.timeout_keep_alive)
        if self.buffer and header_timeout > keep_alive:
            # part of a preface (or of a request head) arrived: the header-read timeout
            self.timer = self.loop.call_later(header_timeout - keep_alive, self.on_timeout)
            return
        self.close()

    def close(self) -> None:
        self.done = True
        self.server_state.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.server_state.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def eof_received(self) -> bool | None:
        return None  # nothing was asked: close

    def shutdown(self) -> None:
        """Graceful shutdown: nothing started on this connection yet; close it."""
        self.close()
