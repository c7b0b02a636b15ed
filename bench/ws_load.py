"""WebSocket echo load generator for ``bench/ws_run.py``: raw frames, as cheap per message as possible.

    python3 bench/ws_load.py --port 8000 --size 32 --connections 16 --duration 5 --warmup 1

Each connection sends one masked binary frame (built once), waits for the whole
echo (counted by length: a server frame is unmasked, so its size is known), and
sends the next.  Prints one JSON line: messages/s over the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import struct
import sys
import time


def client_frame(size: int) -> bytes:
    key = os.urandom(4)
    payload = os.urandom(size)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((key * (size // 4 + 1))[:size], "big")).to_bytes(
        size, "big"
    )
    if size < 126:
        head = struct.pack("!BB", 0x82, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    return head + key + masked


def echo_len(size: int) -> int:
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


class Client(asyncio.Protocol):
    def __init__(self, frame: bytes, expect: int, counter: list[int], ready: asyncio.Future) -> None:
        self.frame = frame
        self.expect = expect
        self.counter = counter
        self.ready = ready
        self.head = b""
        self.got = 0
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if self.ready is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(self.head[:200].decode("latin-1")))
                return
            data = self.head[end + 4 :]
            self.ready.set_result(None)
            self.ready = None
            self.transport.write(self.frame)
        got = self.got + len(data)
        expect = self.expect
        if got >= expect:
            n, got = divmod(got, expect)
            self.counter[0] += n
            for _ in range(n):
                self.transport.write(self.frame)
        self.got = got


async def main(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    frame = client_frame(args.size)
    expect = echo_len(args.size)
    counter = [0]
    transports = []
    for _ in range(args.connections):
        ready = loop.create_future()
        tr, _ = await loop.create_connection(
            functools.partial(Client, frame, expect, counter, ready), args.host, args.port
        )
        transports.append(tr)
        await asyncio.wait_for(ready, 10)
    await asyncio.sleep(args.warmup)
    c0, t0 = counter[0], time.perf_counter()
    await asyncio.sleep(args.duration)
    c1, t1 = counter[0], time.perf_counter()
    for tr in transports:
        tr.abort()
    return {"messages": c1 - c0, "seconds": t1 - t0, "msgs_per_s": (c1 - c0) / (t1 - t0)}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    a = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(asyncio.wait_for(main(a), a.warmup + a.duration + 30))))
    sys.exit(0)
