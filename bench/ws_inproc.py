"""In-process driver of the WebSocket protocols: user-space cost per echoed message, without sockets.

Does the opening handshake on ``WebSocketProtocol`` (``--ws websockets``) or
``WSProtocol`` (``--ws wsproto``) through a fake transport, then feeds N masked
client frames, one per ``data_received`` (as a client waiting for each echo
sends them), and runs the loop until the echo app has written every reply.
For A/B work run it under callgrind at two N and take the difference per
message (deterministic, unlike wall-clock numbers on a busy machine):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        /root/.pyenv/versions/3.11.7/bin/python bench/ws_inproc.py --ws websockets -n 20000

Without valgrind it prints µs/message (best of --repeat).  ``--server uvicorn``
drives uvicorn's protocol classes the same way (``--ws websockets-sansio`` or
``wsproto``), for an in-process ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import fake_transport
from fastasgi.config import Config
from fastasgi.server import ServerState

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(size: int, binary: bool) -> bytes:
    key = b"\x12\x34\x56\x78"
    payload = (b"x" * size) if binary else ("a" * size).encode()
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    op = 0x82 if binary else 0x81
    if size < 126:
        head = bytes((op, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", op, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", op, 0x80 | 127, size)
    return head + key + masked


class FakeTransport(fake_transport.FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.nbytes = 0

    def write(self, data: bytes) -> None:
        self.written += 1
        self.nbytes += len(data)


def make_protocol(server: str, ws: str, loop: asyncio.AbstractEventLoop) -> asyncio.Protocol:
    from bench.ws_apps import echo

    if server == "uvicorn":  # the same driver on uvicorn's protocol classes, for an in-process ratio
        import uvicorn.config
        import uvicorn.server

        uconfig = uvicorn.config.Config(
            echo, ws=ws, lifespan="off", log_config=None, access_log=False, ws_ping_interval=None
        )
        uconfig.load()
        ucls: Any = uconfig.ws_protocol_class
        return ucls(  # type: ignore[no-any-return]
            config=uconfig, server_state=uvicorn.server.ServerState(), app_state={}, _loop=loop
        )
    from fastasgi.protocols.websockets import resolve_ws_protocol

    config = Config(echo, ws=ws, lifespan="off", log_config=None, access_log=False, ws_ping_interval=None)
    config.load()
    return resolve_ws_protocol(ws)(config, ServerState(), {}, loop)  # type: ignore[no-any-return]


async def drive(server: str, ws: str, n: int, size: int, binary: bool, batch: int) -> float:
    loop = asyncio.get_running_loop()
    proto: Any = make_protocol(server, ws, loop)
    transport = FakeTransport()
    proto.connection_made(transport)
    proto.data_received(HANDSHAKE)
    while transport.written < 1:  # the 101
        await asyncio.sleep(0)
    frame = client_frame(size, binary) * batch
    expect = 1
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        loop.call_soon(proto.data_received, frame)  # as a transport does: from a loop callback
        sent += batch
        expect += batch
        while transport.written < expect:
            await asyncio.sleep(0)
            if transport.closed:
                raise SystemExit(f"connection closed after {sent} messages")
    dt = time.perf_counter() - t0
    proto.connection_lost(None)
    await asyncio.sleep(0)
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="fastasgi", choices=["fastasgi", "uvicorn"])
    ap.add_argument("--ws", default="websockets", choices=["websockets", "wsproto", "websockets-sansio"])
    ap.add_argument("-n", "--messages", type=int, default=100000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--binary", action="store_true")
    ap.add_argument("--batch", type=int, default=1, help="frames per data_received")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    import uvloop

    best = min(
        uvloop.run(drive(args.server, args.ws, args.messages, args.size, args.binary, args.batch))
        for _ in range(args.repeat)
    )
    print(f"{args.server} {args.ws} size={args.size} batch={args.batch}: {best:.2f} us/message (best of {args.repeat})")


if __name__ == "__main__":
    main()
