"""WebSocket echo benchmark: fastasgi (both backends) side by side with uvicorn and granian, in one run.

    python3 bench/ws_run.py                       # 3 rounds x 5 s, 32 B and 64 KiB, 16 connections
    python3 bench/ws_run.py --quick               # 1 round x 2 s
    python3 bench/ws_run.py --servers fastasgi-websockets,uvicorn-websockets-sansio --sizes 32

Each server is started fresh per measurement, pinned to one CPU (taskset), and
loaded by ``bench/ws_load.py`` (raw frames, uvloop) pinned to the other CPU.
The median over rounds is reported, with the ratio to uvicorn's same backend
(fastasgi-wsproto vs uvicorn-wsproto; everything else vs uvicorn-websockets-sansio).
Only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APP = "bench.ws_apps:echo"
COMMON = ["--no-access-log", "--log-level", "warning", "--loop", "uvloop"]

SERVERS = {
    "fastasgi-websockets": [sys.executable, "-m", "fastasgi", APP, "--ws", "websockets", *COMMON],
    "fastasgi-wsproto": [sys.executable, "-m", "fastasgi", APP, "--ws", "wsproto", *COMMON],
    "uvicorn-websockets-sansio": [sys.executable, "-m", "uvicorn", APP, "--ws", "websockets-sansio", *COMMON],
    "uvicorn-wsproto": [sys.executable, "-m", "uvicorn", APP, "--ws", "wsproto", *COMMON],
    "granian": [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--workers",
        "1",
        "--runtime-threads",
        "1",
        "--http",
        "1",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
        APP,
    ],
}
BASELINE = {"fastasgi-wsproto": "uvicorn-wsproto"}
DEFAULT_BASELINE = "uvicorn-websockets-sansio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int | None, argv: list[str]) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


def start(name: str, port: int, cpu: int | None) -> subprocess.Popen:
    argv = SERVERS[name] + ["--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        pin(cpu, argv),
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            time.sleep(0.3)  # granian's worker may still be booting
            return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{name} did not listen within 15 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)  # the group we started (start_new_session), by its id
        proc.wait(10)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def load(port: int, size: int, connections: int, duration: float, warmup: float, cpu: int | None) -> float:
    argv = [
        sys.executable,
        str(BENCH_DIR / "ws_load.py"),
        "--port",
        str(port),
        "--size",
        str(size),
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    out = subprocess.run(pin(cpu, argv), capture_output=True, text=True, timeout=duration + warmup + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-500:])
    return float(json.loads(out.stdout.strip().splitlines()[-1])["msgs_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--sizes", default="32,65536")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--json", help="also write the raw results here")
    a = p.parse_args()
    duration = a.duration if a.duration is not None else (2.0 if a.quick else 5.0)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    servers = [s for s in a.servers.split(",") if s]
    for s in servers:
        if s not in SERVERS:
            p.error(f"unknown server {s!r}; known: {', '.join(SERVERS)}")
    sizes = [int(x) for x in a.sizes.split(",")]
    scpu = None if a.no_pin else a.server_cpu
    lcpu = None if a.no_pin else a.load_cpu

    results: dict[tuple[str, int], list[float]] = {}
    errors: dict[str, str] = {}
    for r in range(rounds):
        order = servers[r % len(servers) :] + servers[: r % len(servers)]  # rotate: drift hits all alike
        for size in sizes:
            for name in order:
                if name in errors:
                    continue
                port = free_port()
                try:
                    proc = start(name, port, scpu)
                except RuntimeError as exc:
                    errors[name] = str(exc)
                    continue
                try:
                    rate = load(port, size, a.connections, duration, a.warmup, lcpu)
                    results.setdefault((name, size), []).append(rate)
                    print(f"round {r + 1} {name:28s} {size:>6d} B  {rate:10.0f} msg/s", file=sys.stderr)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    errors[f"{name}/{size}"] = str(exc)[-300:]
                finally:
                    stop(proc)

    print(
        f"\nWebSocket echo, {a.connections} connections, {rounds} round(s) x {duration:g} s, "
        f"server on CPU {scpu}, load on CPU {lcpu}; median msgs/s (ratio to uvicorn, same backend)\n"
    )
    print("| server | " + " | ".join(f"{s} B" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in servers:
        cells = []
        for size in sizes:
            vals = results.get((name, size))
            if not vals:
                cells.append("—")
                continue
            med = statistics.median(vals)
            base = results.get((BASELINE.get(name, DEFAULT_BASELINE), size))
            ratio = f" ({med / statistics.median(base):.2f}×)" if base and not name.startswith("uvicorn") else ""
            cells.append(f"{med:,.0f}{ratio}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for k, v in errors.items():
        print(f"\n{k}: {v}")
    if a.json:
        Path(a.json).write_text(json.dumps({f"{k[0]}/{k[1]}": v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
