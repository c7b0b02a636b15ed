"""HTTP/2 benchmark: fastasgi ``--http2`` side by side with granian and hypercorn, loaded by h2load.

    python3 bench/h2_run.py                  # 3 rounds x 10 s, h2c and TLS (ALPN h2), -c 16 -m 100
    python3 bench/h2_run.py --quick          # 1 round x 3 s
    python3 bench/h2_run.py --servers fastasgi,granian --scenarios h2c --rounds 5

The HTTP/2 twin of ``bench/run.py`` (it reuses its server handling and /proc
readings): for every round, scenario and server (servers in a rotated order each
round) it starts a fresh server on ``bench.apps:plaintext`` pinned to one CPU,
checks with one h2load request that the connection speaks HTTP/2, warms it up with
h2load, then measures it with h2load pinned to the other CPU (``-c 16 -m 100``:
16 connections, 100 concurrent streams each).  It reports, per server and
scenario, the median over rounds of req/s, requests per server CPU-second,
latency percentiles (from h2load's per-request log) and peak RSS, and the ratios
of req/s to granian and to hypercorn measured in the same round.  See bench/README.md.

Only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/ is on sys.path, the repo root is not
    sys.path.insert(0, str(REPO_ROOT))
from bench import run  # server processes, /proc readings, metadata

APP = "plaintext"  # bench.apps:plaintext, served by every server
H2LOAD_SLACK = 30.0  # s: h2load is killed if it runs this much longer than asked
CHECK_TIMEOUT = 10  # s: the one-request check (granian's worker may still be booting)
CLIENT_BOUND_PCT = 90.0  # h2load above this CPU share => the client, not the server, may be the limit
BASELINES = ("granian", "hypercorn")
COMMON = run.COMMON  # --no-access-log --log-level warning
_UVI = ("{app}", "--host", "{host}", "--port", "{port}")


@dataclass(frozen=True)
class H2Server:
    spec: run.ServerSpec
    tls_args: tuple[str, ...]  # appended for the TLS scenario; {certfile}, {keyfile} are filled in


SERVERS: dict[str, H2Server] = {
    s.spec.name: s
    for s in [
        H2Server(
            run.ServerSpec(
                "fastasgi",
                "fastasgi --http2, compiled set (its HTTP/2 implementation: see the packages line)",
                ("fastasgi", *_UVI, "--http", "httptools", "--http2", *COMMON),
            ),
            ("--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}"),
        ),
        H2Server(
            run.ServerSpec(
                "fastasgi-py",
                "fastasgi --http2, pure-Python set (h2, h11), FASTASGI_NO_EXTENSIONS=1",
                ("fastasgi", *_UVI, "--http", "h11", "--http2", *COMMON),
                env=(("FASTASGI_NO_EXTENSIONS", "1"),),
            ),
            ("--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}"),
        ),
        H2Server(
            run.ServerSpec(
                "granian",
                "granian ASGI, 1 worker, 1 runtime thread, --http auto (h2c by prior knowledge, ALPN h2), uvloop",
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
                    "auto",
                    "--loop",
                    "uvloop",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "{app}",
                ),
            ),
            ("--ssl-certificate", "{certfile}", "--ssl-keyfile", "{keyfile}"),
        ),
        H2Server(
            run.ServerSpec(
                "hypercorn",
                "hypercorn (h2), 1 worker, uvloop worker class, no access log",
                (
                    "hypercorn",
                    "{app}",
                    "--bind",
                    "{host}:{port}",
                    "--workers",
                    "1",
                    "--worker-class",
                    "uvloop",
                    "--log-level",
                    "warning",
                ),
            ),
            ("--certfile", "{certfile}", "--keyfile", "{keyfile}"),
        ),
    ]
}

SCENARIOS = {
    "h2c": "cleartext HTTP/2 with prior knowledge (http://)",
    "tls": "HTTP/2 over TLS, negotiated by ALPN (https://, self-signed certificate)",
}


def make_cert(directory: Path) -> dict:
    """A self-signed certificate for 127.0.0.1 (trustme); h2load does not verify it."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"certfile": str(directory / "cert.pem"), "keyfile": str(directory / "key.pem")}
    cert.private_key_pem.write_to_path(paths["keyfile"])
    cert.cert_chain_pems[0].write_to_path(paths["certfile"])
    return paths


def spec_for(server: H2Server, scenario: str, cert: dict) -> run.ServerSpec:
    if scenario != "tls":
        return server.spec
    extra = tuple(a.format(**cert) for a in server.tls_args)
    return dataclasses.replace(server.spec, args=server.spec.args + extra)


# --------------------------------------------------------------------------- h2load


def h2load_argv(url: str, conns: int, streams: int, *, duration: int = 0, requests: int = 0, log: str = "") -> list:
    argv = ["h2load", "-t", "1", "-c", str(conns), "-m", str(streams)]
    argv += ["-D", str(duration)] if duration else ["-n", str(requests)]
    if log:
        argv += ["--log-file", log]
    return [*argv, url]


_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_REQ_TIME = re.compile(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)")
_PROTOCOL = re.compile(r"Application protocol: (\S+)")
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_h2load(text: str) -> dict:
    """The numbers of h2load's summary (a missing line leaves its keys out)."""
    out: dict = {}
    if m := _FINISHED.search(text):
        out["seconds"] = float(m.group(1)) * _UNIT_MS[m.group(2)] / 1000.0
        out["rps"] = float(m.group(3))
    if m := _REQUESTS.search(text):
        keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
        out["requests"] = dict(zip(keys, map(int, m.groups())))
    if m := _STATUS.search(text):
        out["status"] = dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, m.groups())))
    if m := _REQ_TIME.search(text):
        g = m.groups()
        out["min_ms"], out["max_ms"], out["mean_ms"] = (float(g[i]) * _UNIT_MS[g[i + 1]] for i in (0, 2, 4))
    if m := _PROTOCOL.search(text):
        out["protocol"] = m.group(1)
    return out


def percentiles(log_path: Path) -> dict:
    """p50/p90/p99 of the request times in h2load's --log-file (3rd column: microseconds)."""
    times = []
    with contextlib.suppress(OSError), open(log_path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] != "-1":
                times.append(int(parts[2]))
    if not times:
        return {}
    times.sort()

    def pick(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] / 1000.0

    return {"p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99)}


def run_h2load(argv: list, timeout: float, cpu: str | None) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        run.pinned(cpu, argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # the h2load this call started
        proc.communicate()
        return {"failed": f"h2load did not stop within {timeout:.0f}s"}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.decode(errors="replace")
    res = parse_h2load(text)
    if proc.returncode != 0 or "requests" not in res or "rps" not in res:
        tail = " | ".join(text.strip().splitlines()[-3:])
        return {"failed": f"h2load rc={proc.returncode}: {tail}"}
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res["h2load_cpu_pct"] = 100.0 * cpu_s / res["seconds"] if res.get("seconds") else None
    return res


def check(url: str, timeout: float) -> str | None:
    """One request: does the server answer it over HTTP/2 with a 2xx?"""
    res = run_h2load(h2load_argv(url, 1, 1, requests=1), timeout, None)
    if "failed" in res:
        return f"check request: {res['failed']}"
    if res.get("protocol") not in ("h2", "h2c"):
        return f"check request: negotiated {res.get('protocol', 'no protocol')}, not HTTP/2"
    if res["requests"]["succeeded"] != 1 or res.get("status", {}).get("2xx") != 1:
        return f"check request: {res['requests']} {res.get('status')}"
    return None


# --------------------------------------------------------------------------- one cell


@dataclass
class Sample:
    round: int
    scenario: str
    server: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    rps: float | None = None
    requests: int | None = None
    req_per_cpu_s: float | None = None
    server_cpu_s: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    peak_rss_mib: float | None = None
    h2load_cpu_pct: float | None = None
    flags: list = field(default_factory=list)


def measure(name: str, scenario: str, rnd: int, opts, cert: dict, logdir: Path) -> Sample:
    s = Sample(rnd, scenario, name)
    server = None
    try:
        server = run.RunningServer(spec_for(SERVERS[name], scenario, cert), APP, opts.host, opts.server_cpu, logdir)
        server.wait_ready()
        url = f"{'https' if scenario == 'tls' else 'http'}://{opts.host}:{server.port}/"
        problem = check(url, CHECK_TIMEOUT)
        if problem:
            raise run.ServerFailed(
                problem + (f"; exited: {server.log_tail()}" if server.proc.poll() is not None else "")
            )
        if opts.warmup > 0:
            warm = run_h2load(
                h2load_argv(url, opts.connections, opts.streams, duration=opts.warmup),
                opts.warmup + H2LOAD_SLACK,
                opts.load_cpu,
            )
            if "failed" in warm:
                s.flags.append(f"warm-up: {warm['failed']}")
        log = logdir / f"h2load-{name}-{scenario}-{rnd}.log"
        cpu0 = run.tree_cpu_seconds(server.proc.pid)
        res = run_h2load(
            h2load_argv(url, opts.connections, opts.streams, duration=opts.duration, log=str(log)),
            opts.duration + H2LOAD_SLACK,
            opts.load_cpu,
        )
        cpu1 = run.tree_cpu_seconds(server.proc.pid)
        if "failed" in res:
            s.status, s.reason = "failed", res["failed"]
            return s
        s.peak_rss_mib = run.tree_peak_rss_mib(server.proc.pid)
        reqs = res["requests"]
        s.requests = reqs["succeeded"]
        s.rps = reqs["succeeded"] / res["seconds"]
        s.server_cpu_s = cpu1 - cpu0
        s.req_per_cpu_s = s.requests / s.server_cpu_s if s.server_cpu_s > 0 else None
        s.mean_ms, s.max_ms = res.get("mean_ms"), res.get("max_ms")
        for k, v in percentiles(log).items():
            setattr(s, k, v)
        with contextlib.suppress(OSError):
            log.unlink()  # can be tens of MB
        s.h2load_cpu_pct = res["h2load_cpu_pct"]
        bad = {k: reqs[k] for k in ("failed", "errored", "timeout") if reqs[k]}
        non2xx = sum(v for k, v in res.get("status", {}).items() if k != "2xx")
        if non2xx:
            bad["non-2xx"] = non2xx
        if bad:
            s.flags.append("errors " + " ".join(f"{k}={v}" for k, v in bad.items()))
        if s.h2load_cpu_pct is not None and s.h2load_cpu_pct > CLIENT_BOUND_PCT:
            s.flags.append(f"client-bound? h2load at {s.h2load_cpu_pct:.0f}% CPU")
        if server.proc.poll() is not None:
            s.flags.append(f"server exited during the run: {server.log_tail()}")
    except run.ServerFailed as exc:
        s.status, s.reason = "skipped", str(exc)
    except OSError as exc:  # e.g. the executable is missing
        s.status, s.reason = "skipped", f"could not start: {exc}"
    finally:
        if server is not None:
            server.stop()
    return s


# --------------------------------------------------------------------------- report


def aggregate(samples: list[Sample], scenarios, servers) -> list[dict]:
    """One row per scenario x server: medians over the ok rounds, ratios per round to each baseline."""
    by = {(s.round, s.scenario, s.server): s for s in samples}
    rounds = sorted({s.round for s in samples})
    rows = []
    for sc in scenarios:
        for srv in servers:
            cell = [by[r, sc, srv] for r in rounds if (r, sc, srv) in by]
            ok = [s for s in cell if s.status == "ok"]
            row: dict = {"scenario": sc, "server": srv, "rounds": len(ok)}
            if not ok:
                reasons = sorted({f"{s.status}: {s.reason}" for s in cell})
                row["status"] = reasons[0] if reasons else "skipped: not run"
                rows.append(row)
                continue
            rps = [s.rps for s in ok]
            med = run._median(rps)
            row.update(
                status="ok",
                rps=med,
                spread_pct=(100 * (max(rps) - min(rps)) / med) if len(rps) > 1 and med else None,
                **{
                    k: run._median(getattr(s, k) for s in ok)
                    for k in ("req_per_cpu_s", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "peak_rss_mib")
                },
                flags=sorted(
                    {f"r{s.round}: {f}" for s in cell for f in s.flags}
                    | {f"r{s.round}: {s.status}: {s.reason}" for s in cell if s.status != "ok"}
                ),
            )
            for base in BASELINES:
                ratios = []
                for s in ok:
                    b = by.get((s.round, sc, base))
                    if b is not None and b.status == "ok" and b.rps:
                        ratios.append(s.rps / b.rps)
                row[f"vs_{base}"] = run._median(ratios)
            rows.append(row)
    return rows


def render_markdown(meta: dict, rows: list[dict]) -> str:
    f = run._fmt
    out = [
        "# fastasgi HTTP/2 benchmark (h2load)",
        "",
        *(f"- {k}: {meta[k]}" for k in ("date", "machine", "python", "h2load", "command", "settings", "pinning")),
        f"- packages: {', '.join(f'{k} {v}' for k, v in meta['packages'].items())}",
        "",
        "> Absolute numbers from different runs (or machines) are **not comparable**; compare",
        "> servers within this run. `vs granian` / `vs hypercorn` = median over rounds of req/s ÷ that",
        "> server's req/s in the same round. Other columns: median over rounds. Latency: request time",
        "> (p50/p90/p99 from h2load's per-request log; mean as h2load prints it). req/CPU-s = requests ÷",
        "> server CPU seconds. RSS = peak (VmHWM) over the server's processes. ⚠ = errors or a failed round.",
        "",
        (
            "| scenario | server | req/s | ±% | req/CPU-s | p50 ms | p90 ms | p99 ms | mean ms | peak RSS MiB "
            "| vs granian | vs hypercorn | notes |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['scenario']} | {r['server']} |" + " – |" * 10 + f" {run._md_escape(r['status'])} |")
            continue
        bad = any("errors" in x or "failed" in x or "exited" in x for x in r["flags"])
        out.append(
            f"| {r['scenario']} | {'⚠ ' if bad else ''}{r['server']} | {f(r['rps'], ',.0f')} "
            f"| {f(r['spread_pct'], '.0f')} | {f(r['req_per_cpu_s'], ',.0f')} | {f(r['p50_ms'], '.2f')} "
            f"| {f(r['p90_ms'], '.2f')} | {f(r['p99_ms'], '.2f')} | {f(r['mean_ms'], '.2f')} "
            f"| {f(r['peak_rss_mib'], '.1f')} | {f(r['vs_granian'], '.2f')} | {f(r['vs_hypercorn'], '.2f')} "
            f"| {run._md_escape('; '.join(r['flags']))} |"
        )
    by = {(r["scenario"], r["server"]): r for r in rows if r["status"] == "ok"}
    pairs = [
        f"{sc}: {by[sc, 'fastasgi']['rps'] / by[sc, 'fastasgi-py']['rps']:.2f}×"
        for sc in meta["scenarios"]
        if (sc, "fastasgi") in by and (sc, "fastasgi-py") in by
    ]
    if pairs:
        out += ["", "fastasgi (compiled set) ÷ fastasgi-py (pure), median req/s: " + ", ".join(pairs)]
    out += ["", "Servers:", ""]
    out += [f"- `{name}`: {desc}" for name, desc in meta["servers"].items()]
    out += ["", "Scenarios (app `bench.apps:plaintext`):", ""]
    out += [f"- `{name}`: {desc}" for name, desc in meta["scenarios"].items()]
    return "\n".join(out) + "\n"


def collect_meta(opts) -> dict:
    version = "not found"
    with contextlib.suppress(OSError, IndexError):
        version = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False).stdout.split()[1]
    http2 = "?"
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        p = subprocess.run(
            [sys.executable, "-m", "fastasgi", "--version"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        http2 = " ".join(p.stdout.split()).removeprefix("fastasgi ")
    packages = {"fastasgi": http2, **{d: run._version(d) for d in ("granian", "hypercorn", "h2", "uvloop")}}
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs (nproc), {run._cpu_model()}, {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "h2load": version,
        "packages": packages,
        "command": run.command_line(sys.argv),
        "settings": (
            f"{opts.rounds} round(s) x {opts.duration}s measured after {opts.warmup}s warm-up, "
            f"h2load -t 1 -c {opts.connections} -m {opts.streams}"
        ),
        "pinning": (
            f"server on CPU {opts.server_cpu}, h2load on CPU {opts.load_cpu} (taskset -c)"
            if opts.server_cpu is not None
            else "none"
        ),
        "servers": {n: SERVERS[n].spec.description for n in opts.servers},
        "scenarios": {n: SCENARIOS[n] for n in opts.scenarios},
    }


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--servers",
        type=run._csv(list(SERVERS)),
        default=list(SERVERS),
        help=f"comma-separated subset of: {', '.join(SERVERS)} (default: all)",
    )
    p.add_argument(
        "--scenarios",
        type=run._csv(list(SCENARIOS)),
        default=list(SCENARIOS),
        help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--connections", type=int, default=16, help="h2load -c (default 16)")
    p.add_argument(
        "--streams", type=int, default=100, help="h2load -m: concurrent streams per connection (default 100)"
    )
    p.add_argument("--duration", type=int, default=None, help="measured seconds per run (default: 10)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured warm-up seconds (default: 2)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds, median reported (default: 3)")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 round, 3 s, 1 s warm-up (explicit options win)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c; default 0)")
    p.add_argument("--load-cpu", default="1", help="CPU list for h2load and this harness (default 1)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--output-dir", type=Path, default=run.RESULTS_DIR, help="where h2-latest.md/.json go")
    opts = p.parse_args(argv)  # fmt: skip
    defaults = dict(rounds=1, duration=3, warmup=1) if opts.quick else dict(rounds=3, duration=10, warmup=2)
    for k, v in defaults.items():
        if getattr(opts, k) is None:
            setattr(opts, k, v)
    if opts.rounds < 1 or opts.duration < 1 or opts.warmup < 0 or opts.connections < 1 or opts.streams < 1:
        p.error("--rounds, --duration, --connections and --streams must be >= 1, --warmup >= 0")
    if opts.no_pin or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        if not opts.no_pin:
            print("note: fewer than 2 CPUs or no taskset: not pinning", file=sys.stderr)
        opts.server_cpu = opts.load_cpu = None
    if not shutil.which("h2load"):
        p.error("h2load not found: apt-get install nghttp2-client")
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    if opts.load_cpu is not None:  # keep this harness off the server's CPU too
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, {int(c) for c in re.split(r"[,-]", opts.load_cpu) if c})
    meta = collect_meta(opts)
    for folder in ("fastasgi", "bench"):  # as run.py: no server compiles its sources at startup
        compileall.compile_dir(str(REPO_ROOT / folder), quiet=1)
    n_cells = opts.rounds * len(opts.scenarios) * len(opts.servers)
    print(f"{n_cells} runs, about {n_cells * (opts.duration + opts.warmup + 2) / 60:.1f} min", file=sys.stderr)
    samples: list[Sample] = []
    dead: dict[tuple, str] = {}  # cells whose server did not start: not retried in later rounds
    with tempfile.TemporaryDirectory(prefix="fastasgi-h2bench-") as tmp:
        logdir = Path(tmp)
        cert = make_cert(logdir)
        for rnd in range(1, opts.rounds + 1):
            k = (rnd - 1) % len(opts.servers)
            order = opts.servers[k:] + opts.servers[:k]  # rotate: no server always goes first
            for sc in opts.scenarios:
                for srv in order:
                    if (sc, srv) in dead:
                        samples.append(Sample(rnd, sc, srv, "skipped", dead[sc, srv]))
                        continue
                    s = measure(srv, sc, rnd, opts, cert, logdir)
                    if s.status == "skipped":
                        dead[sc, srv] = s.reason
                    samples.append(s)
                    line = f"r{rnd} {sc:<4} {srv:<12} " + (
                        f"{s.rps:>9,.0f} req/s  {s.req_per_cpu_s or 0:>9,.0f} req/CPU-s  "
                        f"p99 {run._fmt(s.p99_ms, '.2f')} ms {'; '.join(s.flags)}"
                        if s.status == "ok"
                        else f"{s.status}: {s.reason}"
                    )
                    print(line, file=sys.stderr, flush=True)
    rows = aggregate(samples, opts.scenarios, opts.servers)
    md = render_markdown(meta, rows)
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    (opts.output_dir / "h2-latest.md").write_text(md)
    (opts.output_dir / "h2-latest.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "samples": [asdict(s) for s in samples]}, indent=2) + "\n"
    )
    print(md)
    print(f"written: {opts.output_dir / 'h2-latest.md'}, {opts.output_dir / 'h2-latest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
