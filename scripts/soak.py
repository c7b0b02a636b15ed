#!/usr/bin/env python3
"""Soak test: many keep-alive and pipelined requests (plain GET, POST, chunked/streamed,
WebSocket) against one fastasgi server process; checks that its RSS stays flat after
warm-up and that every file descriptor is released afterwards.

    python3 scripts/soak.py --requests 1000000          # the long run (both impls: --impl c / --impl py)
    python3 scripts/soak.py --requests 20000 --impl py  # what the test suite runs (tests/test_soak.py)

Exit status 0 when RSS growth after warm-up stays under --max-growth-mb and the
fd count returns to its value before the load; a JSON summary goes to stdout.
Linux only (reads /proc/<pid>/status and /proc/<pid>/fd).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = """
async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] != "websocket.receive":
                return
            await send({"type": "websocket.send", "bytes": m.get("bytes") or m.get("text", "").encode()})
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a" * 100, body, b"z"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body or b"ok"})
"""

GET = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"
POST = b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 64\r\n\r\n" + b"p" * 64
CHUNKED = (
    b"POST /stream HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def nfds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_responses(sock: socket.socket, n: int, buf: bytearray) -> None:
    """Read n responses (content-length or chunked) from sock."""
    done = 0
    while done < n:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            _recv(sock, buf)
            continue
        head = bytes(buf[:end]).lower()
        if not head.startswith(b"http/1.1 200"):
            raise AssertionError(f"unexpected response {head[:80]!r}")
        m = re.search(rb"content-length: (\d+)", head)
        if m:
            total = end + 4 + int(m.group(1))
            while len(buf) < total:
                _recv(sock, buf)
            del buf[:total]
        else:
            pos = end + 4
            while True:
                while buf.find(b"\r\n", pos) < 0:
                    _recv(sock, buf)
                line_end = buf.find(b"\r\n", pos)
                size = int(bytes(buf[pos:line_end]), 16)
                while len(buf) < line_end + 2 + size + 2:
                    _recv(sock, buf)
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
            del buf[:pos]
        done += 1


def _recv(sock: socket.socket, buf: bytearray) -> None:
    chunk = sock.recv(262144)
    if not chunk:
        raise ConnectionError("server closed the connection")
    buf += chunk


def websocket_round(port: int, messages: int) -> int:
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            _recv(sock, buf)
        assert buf.startswith(b"HTTP/1.1 101"), bytes(buf[:80])
        del buf[: buf.find(b"\r\n\r\n") + 4]
        payload = b"x" * 32
        mask = b"\x01\x02\x03\x04"
        frame = b"\x82" + bytes([0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(frame * messages)
        need = messages * (2 + len(payload))
        while len(buf) < need:
            _recv(sock, buf)
        sock.sendall(b"\x88\x82" + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))  # close 1000
        sock.settimeout(5)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    return messages


def run(args: argparse.Namespace) -> dict:
    import tempfile

    tmp = tempfile.mkdtemp(prefix="fastasgi-soak-")
    with open(os.path.join(tmp, "soak_app.py"), "w") as f:
        f.write(APP)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + tmp, PYTHONUNBUFFERED="1")
    if args.impl == "py":
        env["FASTASGI_NO_EXTENSIONS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "fastasgi",
        "soak_app:app",
        "--port",
        "0",
        "--no-access-log",
        "--lifespan",
        "off",
        "--log-level",
        "warning",
        "--http",
        "h11" if args.impl == "py" else "httptools",
    ]
    proc = subprocess.Popen(
        cmd + ["--log-level", "info"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp
    )
    try:
        port = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"running on http://[^ ]+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if not port:
            raise RuntimeError("server did not start")
        fds_before = nfds(proc.pid)
        mix = [GET, POST, CHUNKED, GET]
        sent = 0
        ws_sent = 0
        samples: list[tuple[int, int]] = []
        t0 = time.monotonic()
        conns = args.connections
        batch = args.pipeline
        sample_every = max(args.requests // 40, 1)
        next_sample = sample_every
        while sent < args.requests and time.monotonic() - t0 < args.max_seconds:
            socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(conns)]
            bufs = [bytearray() for _ in socks]
            for _round in range(args.rounds):
                for sock in socks:
                    sock.sendall(b"".join(mix[(sent + i) % len(mix)] for i in range(batch)))
                for sock, buf in zip(socks, bufs):
                    read_responses(sock, batch, buf)
                sent += conns * batch
                if sent >= next_sample:
                    samples.append((sent, rss_kb(proc.pid)))
                    next_sample += sample_every
                if sent >= args.requests:
                    break
            for sock in socks:
                sock.close()
            ws_sent += websocket_round(port, 20)
        elapsed = time.monotonic() - t0
        # fds: the server closes its side once the client did
        deadline = time.monotonic() + 10
        fds_after = nfds(proc.pid)
        while fds_after > fds_before and time.monotonic() < deadline:
            time.sleep(0.1)
            fds_after = nfds(proc.pid)
        warm = samples[len(samples) // 4 :] or samples
        growth_kb = max(r for _, r in warm) - warm[0][1] if warm else 0
        # trend: least-squares slope of RSS over requests after warm-up, in KB per 100k requests
        if len(warm) >= 2:
            n = len(warm)
            mx = sum(x for x, _ in warm) / n
            my = sum(y for _, y in warm) / n
            den = sum((x - mx) ** 2 for x, _ in warm) or 1
            slope = sum((x - mx) * (y - my) for x, y in warm) / den * 100000
        else:
            slope = 0.0
        result = {
            "impl": args.impl,
            "requests": sent,
            "websocket_messages": ws_sent,
            "seconds": round(elapsed, 1),
            "rps": round(sent / elapsed) if elapsed else 0,
            "rss_kb_first_after_warmup": warm[0][1] if warm else 0,
            "rss_kb_last": samples[-1][1] if samples else 0,
            "rss_growth_after_warmup_kb": growth_kb,
            "rss_slope_kb_per_100k_requests": round(slope, 1),
            "fds_before": fds_before,
            "fds_after": fds_after,
        }
        result["ok"] = growth_kb <= args.max_growth_mb * 1024 and fds_after <= fds_before
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--impl", choices=["c", "py"], default="c")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--pipeline", type=int, default=16, help="requests sent back to back on a connection")
    parser.add_argument("--rounds", type=int, default=50, help="pipelined batches per connection before reconnecting")
    parser.add_argument("--max-growth-mb", type=float, default=8.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
