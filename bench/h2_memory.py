"""Memory per idle connection: HTTP/2 (h2c, prior knowledge) against HTTP/1.1.

Starts ``fastasgi bench.apps:plaintext --http2`` on a loopback port, opens N
connections that each make one request and then stay open and idle, and reads the
server's RSS before and after (``/proc/<pid>/status``, Linux).  Issue 16's target:
an idle HTTP/2 connection holds at most twice what an idle HTTP/1.1 one does.

    python3 bench/h2_memory.py --connections 500 [--pure]

``--pure`` runs the server with ``FASTASGI_NO_EXTENSIONS=1`` (HTTP/2 on h2).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

from hpack import Encoder
from hyperframe.frame import HeadersFrame, SettingsFrame

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_idle(port: int, http2: bool, n: int) -> list[socket.socket]:
    if http2:
        block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
        hello = PREFACE + SettingsFrame(0).serialize()
        hello += HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        marker = b"Hello, world!"
    else:
        hello = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        marker = b"Hello, world!"
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(hello)
        got = b""
        for _ in range(20):  # bounded: the answer is small
            got += s.recv(65536)
            if marker in got:
                break
        socks.append(s)
    return socks


def measure(http2: bool, n: int, pure: bool) -> float:
    port = free_port()
    env = dict(os.environ)
    if pure:
        env["FASTASGI_NO_EXTENSIONS"] = "1"
    cmd = [sys.executable, "-m", "fastasgi", "bench.apps:plaintext", "--http2", "--port", str(port),
           "--timeout-keep-alive", "300", "--log-level", "warning", "--no-access-log"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        for _ in range(100):  # bounded wait for the listener
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        open_idle(port, http2, 20)  # warm up: imports, first allocations
        time.sleep(0.5)
        before = rss_kib(server.pid)
        socks = open_idle(port, http2, n)
        time.sleep(0.5)
        after = rss_kib(server.pid)
        for s in socks:
            s.close()
        return (after - before) * 1024 / n
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--pure", action="store_true")
    args = ap.parse_args()
    h1 = measure(False, args.connections, args.pure)
    h2 = measure(True, args.connections, args.pure)
    kind = "pure" if args.pure else "compiled"
    print(f"{kind}: idle HTTP/1.1 connection {h1 / 1024:.1f} KiB, idle HTTP/2 connection {h2 / 1024:.1f} KiB "
          f"({h2 / h1:.2f}x), {args.connections} connections")  # fmt: skip


if __name__ == "__main__":
    main()
