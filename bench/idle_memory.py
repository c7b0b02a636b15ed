"""Memory per idle connection: HTTP/2 against HTTP/1.1, on one fastasgi process.

    python3 bench/idle_memory.py                         # fastasgi and fastasgi-py, 1000 connections, 3 times
    python3 bench/idle_memory.py --connections 2000 --servers fastasgi-py

For each server and protocol, a fresh server (``--http2``, keep-alive timeout long
enough to outlive the measurement) serves ``bench.apps:plaintext``; this script
warms it with a few connections of that protocol (closed again), reads the
server's resident set (VmRSS summed over its process tree), opens N connections
and leaves each idle after one request, waits ``--settle`` seconds (2; an idle
HTTP/2 connection on nghttp2 gives its frame buffer back after 1 s), reads the RSS again and reports the
difference per connection (KiB), then the ratio HTTP/2 ÷ HTTP/1.1.

- HTTP/1.1: a keep-alive ``GET /`` answered in full, then nothing.
- HTTP/2 (cleartext, prior knowledge): the preface and SETTINGS, one ``GET /`` stream
  answered in full, the server's SETTINGS acknowledged, then a PING answered (so the
  server has handled everything the client sent), then nothing.

The kernel's socket buffers are not in the server's RSS; what is counted is what the
server process holds per connection (its protocol objects, buffers, the HTTP/2
library's state).  RSS moves by pages and the allocator keeps freed memory, so use
several hundred connections at least; the numbers are per connection, averaged.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
from hpack import Encoder  # h2's dependencies: --http2 needs them anyway
from hyperframe.frame import DataFrame, Frame, HeadersFrame, PingFrame, SettingsFrame

from bench import run  # server processes and /proc

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WARMUP = 20  # connections opened and closed before the baseline reading
SETTLE = 2.0  # s idle before the second reading: the compiled HTTP/2 path trims an idle connection after 1 s
KEEP_ALIVE = "600"  # s: no idle connection is closed by the server while we measure
_ARGS = ("{app}", "--host", "{host}", "--port", "{port}", "--http2",
         "--timeout-keep-alive", KEEP_ALIVE, *run.COMMON)  # fmt: skip
SERVERS = {
    "fastasgi": run.ServerSpec("fastasgi", "fastasgi --http2, compiled set", ("fastasgi", *_ARGS)),
    "fastasgi-py": run.ServerSpec(
        "fastasgi-py",
        "fastasgi --http2, pure-Python set, FASTASGI_NO_EXTENSIONS=1",
        ("fastasgi", *_ARGS, "--http", "h11"),
        env=(("FASTASGI_NO_EXTENSIONS", "1"),),
    ),
}
PROTOCOLS = ("http/1.1", "h2")


def tree_rss_kib(root: int) -> int:
    kib = 0
    for pid in run.descendants(root):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
                    break
    return kib


def _recv(sock: socket.socket, buffer: bytearray) -> None:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("server closed the connection")
    buffer += chunk


def open_http11(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        _recv(sock, buf)
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"unexpected answer: {head[:60]!r}")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    )
    while len(body) < length:
        more = bytearray()
        _recv(sock, more)
        body += bytes(more)
    return sock


def _frames(sock: socket.socket, buf: bytearray):
    """Frames from the socket, one by one (bounded by the socket's timeout)."""
    while True:
        while len(buf) < 9:
            _recv(sock, buf)
        frame, length = Frame.parse_frame_header(memoryview(bytes(buf[:9])))
        while len(buf) < 9 + length:
            _recv(sock, buf)
        frame.parse_body(memoryview(bytes(buf[9 : 9 + length])))
        del buf[: 9 + length]
        yield frame


def open_h2(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "bench")])
    sock.sendall(
        PREFACE + SettingsFrame(0).serialize() + HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
    )
    buf = bytearray()
    got_settings = ended = False
    frames = _frames(sock, buf)
    for frame in frames:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            got_settings = True
        elif frame.stream_id == 1 and isinstance(frame, (HeadersFrame, DataFrame)) and "END_STREAM" in frame.flags:
            ended = True
        if got_settings and ended:
            break
    sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize() + PingFrame(0, b"idlemem!").serialize())
    for frame in frames:
        if isinstance(frame, PingFrame) and "ACK" in frame.flags:
            break
    return sock


OPENERS = {"http/1.1": open_http11, "h2": open_h2}


def measure(spec: run.ServerSpec, protocol: str, n: int, host: str, logdir: Path, settle: float) -> dict:
    opener = OPENERS[protocol]
    server = run.RunningServer(spec, "plaintext", host, None, logdir)
    socks: list[socket.socket] = []
    try:
        server.wait_ready()
        for _ in range(WARMUP):
            opener(host, server.port).close()
        before = tree_rss_kib(server.proc.pid)
        for _ in range(n):
            socks.append(opener(host, server.port))
        time.sleep(settle)  # idle for a while (the compiled HTTP/2 path gives memory back after 1 s)
        after = tree_rss_kib(server.proc.pid)
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited: {server.log_tail()}")
        return {"before_kib": before, "after_kib": after, "per_conn_kib": (after - before) / n}
    finally:
        for s in socks:
            s.close()
        server.stop()


def _cell(results: list) -> tuple:
    """(median KiB per connection, its text with the range over the measurements)."""
    vals = [r["per_conn_kib"] for r in results]
    med = statistics.median(vals)
    return med, f"{med:.1f}" + (f" ({min(vals):.1f}-{max(vals):.1f})" if len(vals) > 1 else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--servers", type=run._csv(list(SERVERS)), default=list(SERVERS))
    p.add_argument("--connections", type=int, default=1000, help="idle connections per measurement (default 1000)")
    p.add_argument(
        "--repeat", type=int, default=3, help="measurements per server and protocol, median shown (default 3)"
    )
    p.add_argument(
        "--settle", type=float, default=SETTLE,
        help=f"seconds the connections stay idle before the second reading (default {SETTLE})",
    )
    p.add_argument("--host", default="127.0.0.1")
    opts = p.parse_args(argv)
    if opts.settle < 0:
        p.error("--settle must be >= 0")
    if opts.connections < 1 or opts.repeat < 1:
        p.error("--connections and --repeat must be >= 1")
    # our sockets and the server's (it inherits the limit)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = opts.connections + WARMUP + 200
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            p.error(f"RLIMIT_NOFILE hard limit {hard} is below the {want} descriptors needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    print(
        f"Idle connections: {opts.connections} per measurement, a fresh server each, {opts.repeat} measurement(s) "
        "per server and protocol; KiB of server RSS per connection, median (min-max)\n"
    )
    print("| server | HTTP/1.1 KiB/conn | HTTP/2 KiB/conn | HTTP/2 ÷ HTTP/1.1 | RSS before (h1, h2) MiB |")
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="fastasgi-idlemem-") as tmp:
        for name in opts.servers:
            spec = SERVERS[name]
            res: dict = {proto: [] for proto in PROTOCOLS}
            for _ in range(opts.repeat):  # interleaved: drift hits both protocols alike
                for proto in PROTOCOLS:
                    res[proto].append(measure(spec, proto, opts.connections, opts.host, Path(tmp), opts.settle))

            (h1, h1_text), (h2, h2_text) = _cell(res["http/1.1"]), _cell(res["h2"])
            before = ", ".join(f"{statistics.median(r['before_kib'] for r in res[p]) / 1024:.1f}" for p in PROTOCOLS)
            ratio = h2 / h1 if h1 > 0 else float("nan")
            print(f"| {name} | {h1_text} | {h2_text} | {ratio:.2f} | {before} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
