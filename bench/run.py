"""End-to-end benchmark: fastasgi side by side with uvicorn and granian, in one run.

    python3 bench/run.py                  # full run (3 rounds x 10 s, 64 and 256 connections)
    python3 bench/run.py --quick          # smoke check (1 round x 3 s, 64 connections)
    python3 bench/run.py --servers fastasgi,uvicorn --scenarios plaintext,echo-64k
    python3 bench/run.py --servers fastasgi,uvicorn,nginx --scenarios static-64k,static-1m

For every round, scenario, connection count and server (servers in a rotated
order each round, so that noise and drift hit all of them alike) the harness
starts a fresh server pinned to one CPU, checks one response by hand, warms it
up with wrk, then measures it with wrk pinned to the other CPU.  It reports, per
server and scenario, the median over rounds of req/s, requests per server
CPU-second, p50/p99 latency and peak RSS, and the ratio of req/s to uvicorn
(httptools) measured in the same round.  See bench/README.md.

Only ratios within one run mean anything: absolute numbers move with the
machine, the kernel, the load of the neighbours and the weather.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WRK_DIR = BENCH_DIR / "wrk"
RESULTS_DIR = BENCH_DIR / "results"

if str(REPO_ROOT) not in sys.path:  # run as a script: bench/ is on sys.path, the repo root is not
    sys.path.insert(0, str(REPO_ROOT))
from bench import apps as bench_apps  # (the static scenarios' files, for nginx)

READY_TIMEOUT = 15.0  # s: server must accept TCP connections within this
STOP_TIMEOUT = 10.0  # s: SIGINT, then SIGKILL of the whole process group
CHECK_TIMEOUT = 10.0  # s: the hand-made sanity request (granian's worker may still be booting)
WRK_TIMEOUT = "5s"  # wrk's per-request timeout; a timeout counts as an error
WRK_SLACK = 30.0  # s: wrk is killed if it runs this much longer than asked
CLIENT_BOUND_PCT = 90.0  # wrk above this CPU share => the client, not the server, may be the limit
BASELINE = "uvicorn"

COMMON = ["--no-access-log", "--log-level", "warning"]


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class ServerSpec:
    name: str
    description: str
    args: tuple[str, ...]  # after "<python> -m"; {app}, {host}, {port}, {metrics_port} are filled in
    env: tuple[tuple[str, str], ...] = ()
    # runs from the checkout this environment variable names, not this one (before/after runs)
    checkout_env: str = ""
    # in the default set (the access-log and metrics variants run only when named)
    default: bool = True
    # "python": args after "<python> -m"; "nginx": the nginx binary serving the static
    # scenarios' file with a configuration written per run (see nginx_argv)
    kind: str = "python"

    def argv(self, app: str, host: str, port: int) -> list[str]:
        fill = {"app": app, "host": host, "port": str(port), "metrics_port": str(port + 1)}
        return [sys.executable, "-m", *(a.format(**fill) for a in self.args)]


_UVI = ("{app}", "--host", "{host}", "--port", "{port}")

SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in [
        ServerSpec(
            "fastasgi",
            "fastasgi, compiled hot path (llhttp)",
            ("fastasgi", *_UVI, "--http", "httptools", *COMMON),
        ),
        ServerSpec(
            "fastasgi-base",
            "fastasgi, compiled, from the checkout in $FASTASGI_BENCH_BASELINE (built in place): the 'before' of a change",
            ("fastasgi", *_UVI, "--http", "httptools", *COMMON),
            checkout_env="FASTASGI_BENCH_BASELINE",
        ),
        ServerSpec(
            "fastasgi-py",
            "fastasgi, pure-Python fallback (h11), FASTASGI_NO_EXTENSIONS=1",
            ("fastasgi", *_UVI, "--http", "h11", *COMMON),
            env=(("FASTASGI_NO_EXTENSIONS", "1"),),
        ),
        ServerSpec(
            "uvicorn",
            "uvicorn --http httptools --loop uvloop",
            ("uvicorn", *_UVI, "--http", "httptools", "--loop", "uvloop", *COMMON),
        ),
        ServerSpec(
            "fastasgi-accesslog",
            "fastasgi, compiled, access log on (uvicorn's default line, to the server's log file)",
            ("fastasgi", *_UVI, "--http", "httptools", "--log-level", "info"),
            default=False,
        ),
        ServerSpec(
            "fastasgi-metrics",
            "fastasgi, compiled, Prometheus metrics on (--metrics-port, nobody scraping)",
            ("fastasgi", *_UVI, "--http", "httptools", "--metrics-port", "{metrics_port}", *COMMON),
            default=False,
        ),
        ServerSpec(
            "uvicorn-accesslog",
            "uvicorn --http httptools --loop uvloop, access log on (to the server's log file)",
            ("uvicorn", *_UVI, "--http", "httptools", "--loop", "uvloop", "--log-level", "info"),
            default=False,
        ),
        ServerSpec(
            "uvicorn-h11",
            "uvicorn --http h11 --loop uvloop",
            ("uvicorn", *_UVI, "--http", "h11", "--loop", "uvloop", *COMMON),
        ),
        ServerSpec(
            "uvloop-floor",
            "bench/floor.py: bare uvloop protocol, no parsing, no ASGI (GET scenarios only): the ceiling",
            ("bench.floor", "--host", "{host}", "--port", "{port}", "{app}"),
        ),
        ServerSpec(
            "nginx",
            "nginx (Debian's), 1 process, sendfile on, serving the static scenarios' file: their ceiling",
            (),
            kind="nginx",
        ),
        ServerSpec(
            "granian",
            "granian ASGI, 1 worker, 1 runtime thread, HTTP/1 only, uvloop",
            (
                "granian",
                "--interface",
                "asgi",
                "--host",
                "{host}",
                "--port",
                "{port}",
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
                "{app}",
            ),
        ),
    ]
}


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str  # attribute of bench.apps
    lua: str  # file in bench/wrk/
    method: str = "GET"
    body_size: int = 0  # request body (POST)
    description: str = ""
    # connection counts for this scenario when --connections is not given (else the run's)
    connections: tuple[int, ...] = ()


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("plaintext", "plaintext", "get.lua", description='GET -> "Hello, world!"'),
        Scenario("json", "json", "get.lua", description="GET -> ~100-byte JSON"),
        Scenario("echo-1k", "echo", "post_1k.lua", "POST", 1024, "POST 1 KiB, echoed"),
        Scenario("echo-64k", "echo", "post_64k.lua", "POST", 65536, "POST 64 KiB, echoed"),
        Scenario("stream", "stream", "get.lua", description="GET -> 10 x 1 KiB, chunked"),
        Scenario(
            "static-64k",
            "static_64k",
            "get.lua",
            description="GET -> a 64 KiB file, Starlette FileResponse (nginx: the same file), 16 connections",
            connections=(16,),
        ),
        Scenario(
            "static-1m",
            "static_1m",
            "get.lua",
            description="GET -> a 1 MiB file, Starlette FileResponse (nginx: the same file), 16 connections",
            connections=(16,),
        ),
    ]
}


def check_response(host: str, port: int, sc: Scenario) -> str | None:
    """One request by hand before loading: is the answer what the app sends?"""
    body = b"a" * sc.body_size if sc.body_size else None
    headers = {"Content-Type": "application/octet-stream"} if body else {}
    conn = http.client.HTTPConnection(host, port, timeout=CHECK_TIMEOUT)
    try:
        conn.request(sc.method, "/", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        te = (resp.getheader("transfer-encoding") or "").lower()
        cl = resp.getheader("content-length")
    except (OSError, http.client.HTTPException) as exc:
        return f"sanity request failed: {exc!r}"
    finally:
        conn.close()
    if resp.status != 200:
        return f"sanity request: status {resp.status}"
    if sc.app == "plaintext":
        ok = data == b"Hello, world!" and cl == "13"
    elif sc.app == "json":
        ok = cl == str(len(data)) and json.loads(data)["id"] == 12345
    elif sc.app == "echo":
        ok = data == body and cl == str(len(body or b""))
    elif sc.app == "stream":
        ok = len(data) == 10 * 1024 and te == "chunked" and cl is None
    elif sc.app in bench_apps.STATIC_SIZES:
        ok = data == bench_apps.static_file(bench_apps.STATIC_SIZES[sc.app]).read_bytes() and cl == str(len(data))
    else:  # pragma: no cover - new scenario without a check
        ok = True
    return None if ok else f"sanity request: unexpected response (len={len(data)}, cl={cl}, te={te})"


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """root and all its live descendants (granian serves from a worker child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """utime+stime of root and its live descendants, plus what root reaped (cutime+cstime)."""
    ticks = 0
    for pid in descendants(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        # after the ')' split, field 3 (state) is index 0: utime=14 -> 11, stime 12, cutime 13, cstime 14
        ticks += int(f[11]) + int(f[12])
        if pid == root:
            ticks += int(f[13]) + int(f[14])
    return ticks / _CLK_TCK


def tree_peak_rss_mib(root: int) -> float:
    """Sum of VmHWM (peak resident set) over the process tree, in MiB."""
    kib = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kib += int(line.split()[1])
                        break
        except OSError:
            continue
    return kib / 1024


# --------------------------------------------------------------------------- processes


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pinned(cpu: str | None, argv: list[str]) -> list[str]:
    # taskset execs the command, so the PID we get is the server's (or wrk's) own.
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


class ServerFailed(Exception):
    pass


class RunningServer:
    def __init__(self, spec: ServerSpec, app: str, host: str, cpu: str | None, logdir: Path):
        self.spec, self.host = spec, host
        self.port = free_port(host)
        if spec.kind == "nginx":
            self.argv = pinned(cpu, nginx_argv(app, host, self.port, logdir))
        else:
            self.argv = pinned(cpu, spec.argv(f"bench.apps:{app}", host, self.port))
        env = dict(os.environ)
        env.pop("FASTASGI_NO_EXTENSIONS", None)  # an inherited one would silently turn "fastasgi" pure
        env.update(spec.env)
        root = REPO_ROOT
        if spec.checkout_env:
            if not env.get(spec.checkout_env):
                raise ServerFailed(f"${spec.checkout_env} is not set")
            root = Path(env[spec.checkout_env]).resolve()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        self.log_path = logdir / f"{spec.name}-{app}-{self.port}.log"
        self._log = open(self.log_path, "w+b")  # noqa: SIM115 - lives as long as the server; closed in stop()
        # own session => own process group, so a SIGKILL can reach granian's worker too
        self.proc = subprocess.Popen(
            self.argv,
            cwd=root,  # `python -m` puts the working directory first on sys.path
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, n: int = 1) -> str:
        self._log.flush()
        lines = [l for l in self.log_path.read_bytes().decode(errors="replace").splitlines() if l.strip()]
        return " | ".join(lines[-n:]) if lines else "(no output)"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise ServerFailed(f"not accepting on port {self.port} after {timeout:.0f}s: {self.log_tail()}")

    def stop(self) -> None:
        pid = self.proc.pid
        try:
            if self.proc.poll() is None:
                os.kill(pid, signal.SIGINT)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            # whatever of this group is left (server ignoring SIGINT, orphaned worker): SIGKILL
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
        finally:
            self._log.close()


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    server {{
        listen {host}:{port};
        location / {{
            root {root};
            try_files /{name} =404;
        }}
    }}
}}
"""


def nginx_argv(app: str, host: str, port: int, logdir: Path) -> list[str]:
    """nginx in the foreground, one process, serving the file of a static scenario at every path."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        raise ServerFailed("nginx not installed (apt-get install nginx)")
    size = bench_apps.STATIC_SIZES.get(app)
    if size is None:
        raise ServerFailed("nginx serves the static scenarios only")
    path = bench_apps.static_file(size)
    conf_dir = Path(tempfile.mkdtemp(prefix=f"nginx-{port}-", dir=logdir))
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=conf_dir, host=host, port=port, root=path.parent, name=path.name))
    return [binary, "-p", str(conf_dir), "-c", str(conf)]


def run_wrk(url: str, sc: Scenario, conns: int, duration: int, cpu: str | None) -> dict:
    argv = pinned(
        cpu,
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{duration}s",
            "--timeout",
            WRK_TIMEOUT,
            "-s",
            str(WRK_DIR / sc.lua),
            url,
        ],
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=duration + WRK_SLACK)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return {"failed": f"wrk did not stop within {duration + WRK_SLACK:.0f}s"}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.decode(errors="replace")
    m = re.search(r"^BENCH_RESULT (\{.*\})$", text, re.MULTILINE)
    if proc.returncode != 0 or not m:
        tail = " | ".join(text.strip().splitlines()[-2:])
        return {"failed": f"wrk rc={proc.returncode}: {tail}"}
    res = json.loads(m.group(1))
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res["wrk_cpu_pct"] = 100.0 * cpu_s / (res["duration_us"] / 1e6)
    return res


# --------------------------------------------------------------------------- one cell


@dataclass
class Sample:
    round: int
    scenario: str
    connections: int
    server: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    rps: float | None = None
    req_per_cpu_s: float | None = None
    server_cpu_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mib: float | None = None
    wrk_cpu_pct: float | None = None
    errors: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)


def measure(spec: ServerSpec, sc: Scenario, conns: int, rnd: int, opts, logdir: Path) -> Sample:
    s = Sample(rnd, sc.name, conns, spec.name)
    server = None
    try:
        server = RunningServer(spec, sc.app, opts.host, opts.server_cpu, logdir)
        server.wait_ready()
        problem = check_response(opts.host, server.port, sc)
        if problem:
            if server.proc.poll() is not None:
                raise ServerFailed(f"{problem}; exited: {server.log_tail()}")
            s.flags.append(problem)
        url = f"http://{opts.host}:{server.port}/"
        if opts.warmup > 0:
            warm = run_wrk(url, sc, conns, opts.warmup, opts.wrk_cpu)
            if "failed" in warm:
                s.flags.append(f"warm-up: {warm['failed']}")
        cpu0 = tree_cpu_seconds(server.proc.pid)
        res = run_wrk(url, sc, conns, opts.duration, opts.wrk_cpu)
        cpu1 = tree_cpu_seconds(server.proc.pid)
        if "failed" in res:
            s.status, s.reason = "failed", res["failed"]
            return s
        s.peak_rss_mib = tree_peak_rss_mib(server.proc.pid)
        seconds = res["duration_us"] / 1e6
        s.rps = res["requests"] / seconds
        s.server_cpu_s = cpu1 - cpu0
        s.req_per_cpu_s = res["requests"] / s.server_cpu_s if s.server_cpu_s > 0 else None
        s.p50_ms = res["latency_us"]["p50"] / 1000
        s.p99_ms = res["latency_us"]["p99"] / 1000
        s.wrk_cpu_pct = res["wrk_cpu_pct"]
        s.errors = {k: v for k, v in res["errors"].items() if v}
        if s.errors:
            s.flags.append("errors " + " ".join(f"{k}={v}" for k, v in s.errors.items()))
        if s.wrk_cpu_pct > CLIENT_BOUND_PCT:
            s.flags.append(f"client-bound? wrk at {s.wrk_cpu_pct:.0f}% CPU")
        if server.proc.poll() is not None:
            s.flags.append(f"server exited during the run: {server.log_tail()}")
    except ServerFailed as exc:
        s.status, s.reason = "skipped", str(exc)
    except OSError as exc:  # e.g. the executable is missing
        s.status, s.reason = "skipped", f"could not start: {exc}"
    finally:
        if server is not None:
            server.stop()
    return s


# --------------------------------------------------------------------------- report


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def aggregate(samples: list[Sample], scenarios, connections, servers) -> list[dict]:
    """One row per scenario x connections x server: medians over the ok rounds.

    The ratio is the median over rounds of (req/s / baseline req/s in the same
    round), which cancels round-to-round drift better than a ratio of medians.
    """
    by = {(s.round, s.scenario, s.connections, s.server): s for s in samples}
    rounds = sorted({s.round for s in samples})
    rows = []
    for sc in scenarios:
        # connections: one list for every scenario, or a dict scenario -> list
        for c in connections[sc] if isinstance(connections, dict) else connections:
            for srv in servers:
                cell = [by[r, sc, c, srv] for r in rounds if (r, sc, c, srv) in by]
                ok = [s for s in cell if s.status == "ok"]
                row = {"scenario": sc, "connections": c, "server": srv, "rounds": len(ok)}
                if not ok:
                    reasons = sorted({f"{s.status}: {s.reason}" for s in cell})
                    row["status"] = reasons[0] if reasons else "skipped: not run"
                    rows.append(row)
                    continue
                rps = [s.rps for s in ok]
                med = _median(rps)
                ratios = []
                for s in ok:
                    base = by.get((s.round, sc, c, BASELINE))
                    if base is not None and base.status == "ok" and base.rps:
                        ratios.append(s.rps / base.rps)
                row.update(
                    status="ok",
                    rps=med,
                    spread_pct=(100 * (max(rps) - min(rps)) / med) if len(rps) > 1 and med else None,
                    req_per_cpu_s=_median(s.req_per_cpu_s for s in ok),
                    p50_ms=_median(s.p50_ms for s in ok),
                    p99_ms=_median(s.p99_ms for s in ok),
                    peak_rss_mib=_median(s.peak_rss_mib for s in ok),
                    vs_baseline=_median(ratios),
                    flags=sorted(
                        {f"r{s.round}: {f}" for s in cell for f in s.flags}
                        | {f"r{s.round}: {s.status}: {s.reason}" for s in cell if s.status != "ok"}
                    ),
                )
                rows.append(row)
    return rows


def _fmt(v, spec, dash="–"):
    return dash if v is None else format(v, spec)


def render_markdown(meta: dict, rows: list[dict]) -> str:
    out = [
        "# fastasgi end-to-end benchmark",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- python: {meta['python']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in meta['packages'].items())}",
        f"- wrk: {meta['wrk']}",
        f"- command: `{meta['command']}`",
        f"- settings: {meta['settings']}",
        f"- pinning: {meta['pinning']}",
        "",
        "> Absolute numbers from different runs (or machines) are **not comparable**; compare",
        f"> servers within this run. `vs {BASELINE}` = median over rounds of req/s ÷ {BASELINE}",
        "> (httptools, uvloop) req/s in the same round. Other columns: median over rounds.",
        "> req/CPU-s = requests ÷ server CPU seconds (utime+stime of the server process and its",
        "> children during the measured run). RSS = peak (VmHWM) summed over the server's processes.",
        "> ±% = (max − min) / median of req/s over rounds. ⚠ = errors or a failed round (see notes).",
        "",
        "| scenario | conns | server | req/s | ±% | req/CPU-s | p50 ms | p99 ms | peak RSS MiB | vs uvicorn | notes |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            out.append(
                f"| {r['scenario']} | {r['connections']} | {r['server']} | – | – | – | – | – | – | – "
                f"| {_md_escape(r['status'])} |"
            )
            continue
        flags = r["flags"]
        bad = any("errors" in f or "failed" in f or "sanity" in f or "exited" in f for f in flags)
        out.append(
            f"| {r['scenario']} | {r['connections']} | {'⚠ ' if bad else ''}{r['server']} "
            f"| {_fmt(r['rps'], ',.0f')} | {_fmt(r['spread_pct'], '.0f')} | {_fmt(r['req_per_cpu_s'], ',.0f')} "
            f"| {_fmt(r['p50_ms'], '.2f')} | {_fmt(r['p99_ms'], '.2f')} | {_fmt(r['peak_rss_mib'], '.1f')} "
            f"| {_fmt(r['vs_baseline'], '.2f')} | {_md_escape('; '.join(flags))} |"
        )
    out += ["", "Servers:", ""]
    out += [f"- `{name}`: {desc}" for name, desc in meta["servers"].items()]
    out += ["", "Scenarios (keep-alive, wrk -t1):", ""]
    out += [f"- `{name}`: {desc}" for name, desc in meta["scenarios"].items()]
    return "\n".join(out) + "\n"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")[:300]


# --------------------------------------------------------------------------- metadata


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _fastasgi_info() -> str:
    """Version and active hot-path set, asked of a child interpreter (the tree may be mid-edit)."""
    code = (
        "import fastasgi, fastasgi._speedups as s\n"
        "d = getattr(s, 'active', '?')\n"
        "try: d = s.describe()\n"
        "except Exception: pass\n"
        "print(getattr(fastasgi, '__version__', '?'), '-', 'default set:', d)"
    )
    try:
        p = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "import timed out"
    if p.returncode:
        return "not importable (" + (p.stderr.strip().splitlines() or ["?"])[-1][:120] + ")"
    return p.stdout.strip()


def command_line(argv: list[str]) -> str:
    """The command a report names: ``argv`` as run, without ``--output-dir`` (a path of the
    machine that ran it, which says nothing about the measurement)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--output-dir":
            skip = True
        elif not arg.startswith("--output-dir="):
            kept.append(arg)
    return " ".join(shlex.quote(a) for a in ["python3", *kept])


def _conns_text(opts, scenarios) -> dict:
    """Connection counts -> the scenarios measured with them (as text)."""
    groups: dict[str, list[str]] = {}
    for sc in scenarios:
        groups.setdefault(",".join(map(str, scenario_connections(opts, sc))), []).append(sc)
    return {", ".join(names): conns for conns, names in groups.items()}


def collect_meta(opts, servers, scenarios) -> dict:
    wrk = "not found"
    with contextlib.suppress(OSError):
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.splitlines()[0].strip()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs (nproc), {_cpu_model()}, {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {
            "fastasgi": _fastasgi_info(),
            **{d: _version(d) for d in ("uvicorn", "granian", "uvloop", "httptools", "h11")},
        },
        "wrk": wrk,
        "command": command_line(sys.argv),
        "settings": (
            f"{opts.rounds} round(s) x {opts.duration}s measured after {opts.warmup}s warm-up, "
            f"connections {'; '.join(f'{sc}: {c}' for sc, c in _conns_text(opts, scenarios).items())}, "
            f"wrk -t1 --timeout {WRK_TIMEOUT}, keep-alive"
        ),
        "pinning": (
            f"server on CPU {opts.server_cpu}, wrk on CPU {opts.wrk_cpu} (taskset -c)"
            if opts.server_cpu is not None
            else "none"
        ),
        "servers": {n: SERVERS[n].description for n in servers},
        "scenarios": {n: SCENARIOS[n].description for n in scenarios},
    }


# --------------------------------------------------------------------------- main


def _csv(choices):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {bad or 'empty list'}; choose from {', '.join(choices)}")
        return items

    return parse


def _ints(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 64,256")
    return vals


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--servers",
        type=_csv(list(SERVERS)),
        # fastasgi-base only when $FASTASGI_BENCH_BASELINE names a checkout
        default=[
            n
            for n, spec in SERVERS.items()
            if spec.default and (not spec.checkout_env or os.environ.get(spec.checkout_env))
        ],
        help=f"comma-separated subset of: {', '.join(SERVERS)} (default: all but the -accesslog and -metrics variants)",
    )
    p.add_argument(
        "--scenarios",
        type=_csv(list(SCENARIOS)),
        default=list(SCENARIOS),
        help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument(
        "--connections",
        type=_ints,
        default=None,
        help="comma-separated (default: 64,256; the static scenarios: 16)",
    )
    p.add_argument("--duration", type=int, default=None, help="measured seconds per run (default: 10)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured warm-up seconds (default: 2)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds, median reported (default: 3)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 1 round, 3 s, 1 s warm-up, 64 connections (explicit options still win)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c; default 0)")
    p.add_argument("--wrk-cpu", default="1", help="CPU list for wrk and this harness (default 1)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="where latest.md/latest.json go")
    opts = p.parse_args(argv)
    opts.connections_given = opts.connections is not None
    defaults = (
        dict(rounds=1, duration=3, warmup=1, connections=[64])
        if opts.quick
        else dict(rounds=3, duration=10, warmup=2, connections=[64, 256])
    )
    for k, v in defaults.items():
        if getattr(opts, k) is None:
            setattr(opts, k, v)
    if opts.rounds < 1 or opts.duration < 1 or opts.warmup < 0:
        p.error("--rounds and --duration must be >= 1, --warmup >= 0")
    if opts.no_pin or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        if not opts.no_pin:
            print("note: fewer than 2 CPUs or no taskset: not pinning", file=sys.stderr)
        opts.server_cpu = opts.wrk_cpu = None
    if not shutil.which("wrk"):
        p.error("wrk not found: apt-get install wrk")
    return opts


def scenario_connections(opts, sc_name: str) -> list[int]:
    """The connection counts of a scenario: --connections when given, else the scenario's own, else the run's."""
    own = SCENARIOS[sc_name].connections
    return list(own) if own and not getattr(opts, "connections_given", True) else list(opts.connections)


def main(argv=None) -> int:
    opts = parse_args(argv)
    if opts.wrk_cpu is not None:
        # keep this harness off the server's CPU too
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, {int(c) for c in re.split(r"[,-]", opts.wrk_cpu) if c})
    meta = collect_meta(opts, opts.servers, opts.scenarios)
    # fastasgi runs from this checkout, the others from site-packages, where pip wrote
    # their bytecode at install.  Byte-compile the checkout the same way, so that no
    # server compiles its sources at startup (with PYTHONDONTWRITEBYTECODE set, every
    # start would, and peak RSS would count the compiler's memory).
    for folder in ("fastasgi", "bench"):
        compileall.compile_dir(str(REPO_ROOT / folder), quiet=1)
    for sc in opts.scenarios:  # the static scenarios' files, before any server starts
        size = bench_apps.STATIC_SIZES.get(SCENARIOS[sc].app)
        if size is not None:
            bench_apps.static_file(size)
    conns_of = {sc: scenario_connections(opts, sc) for sc in opts.scenarios}
    n_cells = opts.rounds * sum(len(c) for c in conns_of.values()) * len(opts.servers)
    est = n_cells * (opts.duration + opts.warmup + 1.5)
    print(f"{n_cells} runs, about {est / 60:.1f} min", file=sys.stderr)

    samples: list[Sample] = []
    dead: dict[tuple, str] = {}  # cells whose server did not start: not retried in later rounds
    with tempfile.TemporaryDirectory(prefix="fastasgi-bench-") as tmp:
        logdir = Path(tmp)
        for rnd in range(1, opts.rounds + 1):
            k = (rnd - 1) % len(opts.servers)
            order = opts.servers[k:] + opts.servers[:k]  # rotate: no server always goes first
            for sc_name in opts.scenarios:
                for conns in conns_of[sc_name]:
                    for srv in order:
                        cell = (sc_name, conns, srv)
                        if cell in dead:
                            samples.append(Sample(rnd, sc_name, conns, srv, "skipped", dead[cell]))
                            continue
                        s = measure(SERVERS[srv], SCENARIOS[sc_name], conns, rnd, opts, logdir)
                        if s.status == "skipped":
                            dead[cell] = s.reason
                        samples.append(s)
                        line = f"r{rnd} {sc_name:<9} c{conns:<4} {srv:<12} " + (
                            f"{s.rps:>9,.0f} req/s  {s.req_per_cpu_s or 0:>9,.0f} req/CPU-s  "
                            f"p99 {s.p99_ms:.2f} ms {'; '.join(s.flags)}"
                            if s.status == "ok"
                            else f"{s.status}: {s.reason}"
                        )
                        print(line, file=sys.stderr, flush=True)

    rows = aggregate(samples, opts.scenarios, conns_of, opts.servers)
    md = render_markdown(meta, rows)
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    (opts.output_dir / "latest.md").write_text(md)
    (opts.output_dir / "latest.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "samples": [asdict(s) for s in samples]}, indent=2) + "\n"
    )
    print(md)
    print(f"written: {opts.output_dir / 'latest.md'}, {opts.output_dir / 'latest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
