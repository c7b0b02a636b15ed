"""In-process driver of the HTTP/2 protocol (``--http2``): user-space cost per request.

The HTTP/2 twin of ``bench/inproc.py``: feeds pre-encoded HTTP/2 frames (the
preface, then batches of HEADERS frames, one stream each, as h2load sends them)
to ``Http2Protocol.data_received`` through a fake transport and runs the event
loop until every stream is answered.  The number printed is the per-request cost
of the HTTP/2 implementation (frame parsing, HPACK, scope, Task, app, response
frames), no kernel in it; the baseline the compiled nghttp2 path is measured against.

    python3 bench/h2_inproc.py --requests 20000 --batch 16 [--impl c|py]

``--impl c`` is the compiled set's HTTP/2 (``http2_c`` on libnghttp2 where it was
built), ``--impl py`` the pure one (``http2_py`` on ``h2``); default: the active set's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import fake_transport
from hpack import Encoder
from hyperframe.frame import HeadersFrame, SettingsFrame, WindowUpdateFrame

from fastasgi import _speedups
from fastasgi.config import Config
from fastasgi.server import ServerState

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "127.0.0.1:8000"),
           ("user-agent", "bench"), ("accept", "*/*")]  # fmt: skip


class FakeTransport(fake_transport.FakeTransport):
    def __init__(self, proto_ref: list) -> None:
        super().__init__()
        self.proto_ref = proto_ref
        self.target = 0
        self.waiter: asyncio.Future | None = None

    def write(self, data: bytes) -> None:
        proto = self.proto_ref[0]
        waiter = self.waiter
        if waiter is not None and proto.requests >= self.target and not proto.streams:
            self.waiter = None
            waiter.set_result(None)


def encode(n: int, batch: int) -> tuple[bytes, list[tuple[bytes, int]]]:
    """The connection's first bytes (preface, settings, a large connection window, the first
    request) and the later requests in batches; HPACK-indexed as a real client would send them."""
    encoder = Encoder()
    first = HeadersFrame(1, data=encoder.encode(HEADERS), flags=["END_HEADERS", "END_STREAM"])
    block = encoder.encode(HEADERS)  # all indexed from now on: the same bytes for every request
    start = (
        PREFACE + SettingsFrame(0).serialize() + WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535).serialize()
    )
    start += first.serialize()
    # every later HEADERS frame is the same but for its stream id: framed by hand (cheap,
    # so that callgrind's per-request difference is the server's, not this setup's)
    head = HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()[:5]
    batches = []
    sid = 3
    for i in range(1, n, batch):
        count = min(batch, n - i)
        frames = []
        for _ in range(count):
            frames.append(head + sid.to_bytes(4, "big") + block)
            sid += 2
        batches.append((b"".join(frames), count))
    return start, batches


async def drive(args: argparse.Namespace, start: bytes, batches: list[tuple[bytes, int]]) -> float:
    from bench import apps

    config = Config(getattr(apps, args.app), http2=True, lifespan="off", log_config=None, access_log=False)
    config.load()
    module = _speedups.load_http2(args.impl)
    state = ServerState()
    conns = []
    for _ in range(args.connections):
        proto_ref: list = [None]
        proto = module.Http2Protocol(config=config, server_state=state, app_state={})
        proto_ref[0] = proto
        transport = FakeTransport(proto_ref)
        proto.connection_made(transport)
        conns.append((proto, transport))
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    for data, count in [(start, 1), *batches]:
        # every connection's batch arrives before any stream's app runs, as when the
        # loop reads several sockets in one iteration (h2load -c N -m 100)
        waiters = []
        for proto, transport in conns:
            transport.target = proto.requests + count
            transport.waiter = waiter = loop.create_future()
            waiters.append(waiter)
            loop.call_soon(proto.data_received, data)
        for waiter in waiters:
            await waiter
        if any(transport.closed for _, transport in conns):
            raise SystemExit("the protocol closed the connection")
    dt = time.perf_counter() - t0
    n = sum(proto.requests for proto, _ in conns)
    for proto, _ in conns:
        proto.connection_lost(None)
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default="plaintext")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=16, help="streams per data_received (at most 100)")
    ap.add_argument(
        "--connections",
        type=int,
        default=1,
        help="connections fed their batch in the same loop iteration (default 1; 16 with --batch 100 is "
        "h2load -c 16 -m 100: that many streams' objects alive at once, which the garbage collector sees)",
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    ap.add_argument("--impl", choices=["c", "py"], default=None, help="HTTP/2 of this set (default: the active one)")
    args = ap.parse_args()
    if not 1 <= args.batch <= 100:
        raise SystemExit("--batch must be 1-100 (SETTINGS_MAX_CONCURRENT_STREAMS)")
    import threading

    watchdog = threading.Timer(600, lambda: os._exit(3))  # bounded: a stall ends the run
    watchdog.daemon = True
    watchdog.start()
    start, batches = encode(args.requests, args.batch)
    results = []
    for _ in range(args.repeat):
        if args.loop == "uvloop":
            import uvloop

            results.append(uvloop.run(drive(args, start, batches)))
        else:
            results.append(asyncio.run(drive(args, start, batches)))
    print(
        f"http2 ({_speedups.load_http2(args.impl).DESCRIPTION}) {args.app} batch={args.batch} "
        f"connections={args.connections} {args.loop}: "
        f"{min(results):.2f} us/request (best of {args.repeat})"
    )


if __name__ == "__main__":
    main()
