"""Memory of a server while many slow clients download a big file.

    python3 bench/files_rss.py                       # fastasgi, 100 clients, 100 MiB file, 10 s
    python3 bench/files_rss.py --server uvicorn      # the same against uvicorn
    python3 bench/files_rss.py --server fastasgi-py --clients 50 --seconds 5

The server (started as bench/run.py starts it, from its SERVERS table) serves
``bench.apps:static_100m``: Starlette's ``FileResponse`` of a 100 MiB file.  After one
fast download (the page cache, Starlette's imports and thread pool warm), the idle RSS
is read; then ``--clients`` clients, each with a small receive buffer, ask for the file
and read ``--rate`` KiB per second each for ``--seconds``.  The server's RSS (VmRSS,
summed over its processes) is sampled all along; the report gives idle, peak and
peak - idle, and says whether peak - idle stays within ``--limit`` MiB (10 by default:
issue 14's bound).  A server that buffered the file per client would need
clients x file size.

Slow by nature (seconds of wall time, 100 MiB on disk): not part of the test suite.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import apps, run

APP = "static_100m"
TICK = 0.05  # s between two reads of every client, and two RSS samples


def rss_mib(root: int) -> float:
    """VmRSS summed over the process tree of ``root``, in MiB."""
    kib = 0
    for pid in run.descendants(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kib += int(line.split()[1])
                        break
        except OSError:
            continue
    return kib / 1024


def download_all(host: str, port: int) -> int:
    """One fast client, the whole file (the warm-up): the body's length."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError(f"warm-up: no response head ({buf[:100]!r})")
            buf += data
        body = buf.partition(b"\r\n\r\n")[2]
        received = len(body)
        while True:  # until the server closes (connection: close); the socket timeout bounds each read
            data = sock.recv(1 << 20)
            if not data:
                return received
            received += len(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="fastasgi", choices=[n for n, s in run.SERVERS.items() if s.kind == "python"])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=256, help="KiB per second each client reads (default 256)")
    p.add_argument("--rcvbuf", type=int, default=65536, help="each client's SO_RCVBUF (default 64 KiB)")
    p.add_argument("--limit", type=float, default=10.0, help="MiB peak - idle may reach (default 10)")
    p.add_argument("--host", default="127.0.0.1")
    opts = p.parse_args(argv)
    if opts.clients < 1 or opts.seconds <= 0 or opts.rate < 1:
        p.error("--clients, --seconds and --rate must be positive")

    size = apps.STATIC_SIZES[APP]
    apps.static_file(size)
    with tempfile.TemporaryDirectory(prefix="fastasgi-files-rss-") as tmp:
        server = run.RunningServer(run.SERVERS[opts.server], APP, opts.host, None, Path(tmp))
        clients: list[socket.socket] = []
        try:
            server.wait_ready()
            if download_all(opts.host, server.port) != size:
                print("warm-up: the body is not the file's size", file=sys.stderr)
                return 1
            time.sleep(0.5)  # let the warm-up connection's close settle
            idle = rss_mib(server.proc.pid)
            peak = idle
            received = [0] * opts.clients
            for _ in range(opts.clients):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts.rcvbuf)
                sock.connect((opts.host, server.port))
                sock.sendall(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
                sock.setblocking(False)
                clients.append(sock)
            budget = int(opts.rate * 1024 * TICK)
            end = time.monotonic() + opts.seconds
            while time.monotonic() < end:
                for i, sock in enumerate(clients):
                    left = budget
                    while left > 0:
                        try:
                            data = sock.recv(left)
                        except BlockingIOError:
                            break
                        if not data:
                            break
                        received[i] += len(data)
                        left -= len(data)
                peak = max(peak, rss_mib(server.proc.pid))
                time.sleep(TICK)
            if server.proc.poll() is not None:
                print(f"server exited: {server.log_tail(3)}", file=sys.stderr)
                return 1
        finally:
            for sock in clients:
                sock.close()
            server.stop()

    delta = peak - idle
    mean_kib = sum(received) / len(received) / 1024
    print(f"server: {opts.server} ({run.SERVERS[opts.server].description})")
    print(
        f"{opts.clients} clients x {size // (1024 * 1024)} MiB file, {opts.seconds:g} s, "
        f"~{opts.rate} KiB/s each (received {mean_kib:,.0f} KiB on average, min {min(received) // 1024:,} KiB)"
    )
    print(f"RSS idle {idle:.1f} MiB, peak {peak:.1f} MiB, peak - idle {delta:.1f} MiB (limit {opts.limit:g} MiB)")
    ok = delta <= opts.limit
    print("ok" if ok else "OVER THE LIMIT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
