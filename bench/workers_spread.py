"""How evenly ``--workers N`` spreads requests, with one shared socket and with ``--reuse-port``;
optionally, how many requests a rolling restart (SIGHUP) fails.

    python3 bench/workers_spread.py                        # 4 workers, 4000 requests, both modes
    python3 bench/workers_spread.py --workers 2 --requests 20000 --clients 8
    python3 bench/workers_spread.py --keep-alive           # one keep-alive connection per client
    python3 bench/workers_spread.py --rolling-restarts 10  # SIGHUP every --restart-every requests

The app answers its PID (``tests/apps/sup_app.py``).  Clients are threads doing
sequential requests on a fresh connection each (``--keep-alive``: one connection per
client, so the spread then measures which worker *accepted* each client).  Every
loop is bounded by ``--requests`` and ``--max-seconds``.  Run from anywhere.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_server(workers: int, reuse_port: bool) -> tuple[subprocess.Popen[str], int, list[str]]:
    cmd = [sys.executable, "-m", "fastasgi", "tests.apps.sup_app:app", "--workers", str(workers), "--port", "0"]
    cmd += ["--no-access-log"] + (["--reuse-port"] if reuse_port else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    port = 0
    while time.monotonic() < deadline:
        text = "".join(lines)
        m = re.search(r"running on http://[^ ]*:(\d+)", text)
        if m:
            port = int(m.group(1))
        if port and text.count("is ready") >= workers:
            return proc, port, lines
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start:\n" + "".join(lines))


def load(
    port: int, requests: int, clients: int, keep_alive: bool, max_seconds: float, on_progress=None
) -> tuple[Counter[int], int, list[str]]:
    counts: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    sent = [0]
    deadline = time.monotonic() + max_seconds

    def take() -> bool:
        with lock:
            if sent[0] >= requests or time.monotonic() > deadline:
                return False
            sent[0] += 1
            n = sent[0]
        if on_progress is not None:
            on_progress(n)
        return True

    def client() -> None:
        conn = None
        while take():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                response = conn.getresponse()
                pid = int(response.read())
                if not keep_alive or response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
                with lock:
                    counts[pid] += 1
            except Exception as exc:  # counted
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts, sent[0], failures


def spread(args: argparse.Namespace, reuse_port: bool) -> None:
    proc, port, _ = start_server(args.workers, reuse_port)
    try:
        counts, sent, failures = load(port, args.requests, args.clients, args.keep_alive, args.max_seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    shares = sorted(counts.values(), reverse=True) + [0] * (args.workers - len(counts))
    total = sum(shares) or 1
    mean = total / args.workers
    cv = statistics.pstdev(shares) / mean if mean else 0.0
    mode = "reuse-port" if reuse_port else "shared"
    print(
        f"{mode:>10}: {sent} requests, {len(failures)} failed; per worker "
        f"{' '.join(f'{100 * s / total:.1f}%' for s in shares)}; max/min "
        f"{(shares[0] / shares[-1]) if shares[-1] else float('inf'):.2f}; CV {cv:.3f}"
    )


def rolling(args: argparse.Namespace, reuse_port: bool) -> None:
    proc, port, _lines = start_server(args.workers, reuse_port)
    restarts = [0]
    every = args.restart_every

    def on_progress(n: int) -> None:
        if n % every == 0 and restarts[0] < args.rolling_restarts:
            restarts[0] += 1
            os.kill(proc.pid, signal.SIGHUP)

    try:
        counts, sent, failures = load(port, args.requests, args.clients, args.keep_alive, args.max_seconds, on_progress)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    mode = "reuse-port" if reuse_port else "shared"
    print(
        f"{mode:>10}: {restarts[0]} rolling restarts, {sent} requests, {len(failures)} failed, "
        f"{len(counts)} worker PIDs answered"
    )
    for failure in failures[:5]:
        print("    ", failure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keep-alive", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--modes", default="shared,reuse-port")
    parser.add_argument("--rolling-restarts", type=int, default=0, help="SIGHUPs to send during the load")
    parser.add_argument("--restart-every", type=int, default=2000, help="requests between two SIGHUPs")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        (rolling if args.rolling_restarts else spread)(args, mode == "reuse-port")


if __name__ == "__main__":
    main()
