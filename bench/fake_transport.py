"""An in-process stand-in for an asyncio transport, shared by the in-process drivers
(``bench/inproc.py``, ``bench/h2_inproc.py``, ``bench/ws_inproc.py``) and the tests
that feed a protocol bytes without a socket.

It answers what fastasgi's protocols ask of a transport (peer and socket names,
close, pause and resume) and does nothing with what is written; a driver
subclasses it and overrides ``write`` to count or keep the bytes.
"""

from __future__ import annotations

PEER = ("127.0.0.1", 50000)
SOCK = ("127.0.0.1", 8000)


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "peername":
            return PEER
        if name == "sockname":
            return SOCK
        return default

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
