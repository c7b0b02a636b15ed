"""Smoke test of the benchmark harness (bench/): apps and report logic, no servers, no wrk."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import apps, h2_run, run


def call(app, method="GET", body=b"", chunk=1000):
    """Drive an ASGI app directly; returns (start message, body messages)."""
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    incoming = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start"
    return sent[0], sent[1:]


def header(start, name):
    return dict(start["headers"]).get(name)


def test_plaintext():
    start, bodies = call(apps.plaintext)
    assert start["status"] == 200
    assert b"".join(m["body"] for m in bodies) == b"Hello, world!"
    assert header(start, b"content-length") == b"13"


def test_json():
    start, bodies = call(apps.json)
    body = b"".join(m["body"] for m in bodies)
    assert 90 <= len(body) <= 120 and json.loads(body)["id"] == 12345
    assert header(start, b"content-length") == str(len(body)).encode()


@pytest.mark.parametrize("size", [0, 1024, 65536])
def test_echo(size):
    payload = bytes(range(256)) * (size // 256)
    start, bodies = call(apps.echo, "POST", payload)
    assert b"".join(m["body"] for m in bodies) == payload
    assert header(start, b"content-length") == str(size).encode()


def test_stream_is_chunked():
    start, bodies = call(apps.stream)
    assert header(start, b"content-length") is None
    assert [len(m["body"]) for m in bodies] == [1024] * 10 + [0]
    assert all(m["more_body"] for m in bodies[:-1]) and not bodies[-1]["more_body"]


def test_lifespan():
    sent, incoming = [], [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(apps.plaintext({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_every_scenario_has_app_and_script():
    for sc in run.SCENARIOS.values():
        assert callable(getattr(apps, sc.app))
        assert (run.WRK_DIR / sc.lua).is_file()


def test_aggregate_ratio_and_skip():
    S = run.Sample
    samples = [
        S(1, "plaintext", 64, "uvicorn", rps=100.0, req_per_cpu_s=100.0, p50_ms=1, p99_ms=2, peak_rss_mib=30),
        S(1, "plaintext", 64, "granian", rps=150.0, req_per_cpu_s=150.0, p50_ms=1, p99_ms=2, peak_rss_mib=60),
        S(2, "plaintext", 64, "uvicorn", rps=200.0, req_per_cpu_s=200.0, p50_ms=1, p99_ms=2, peak_rss_mib=30),
        S(
            2,
            "plaintext",
            64,
            "granian",
            rps=300.0,
            req_per_cpu_s=300.0,
            p50_ms=1,
            p99_ms=2,
            peak_rss_mib=60,
            errors={"read": 3},
            flags=["errors read=3"],
        ),
        S(1, "plaintext", 64, "fastasgi", status="skipped", reason="exited with 1: boom"),
        S(2, "plaintext", 64, "fastasgi", status="skipped", reason="exited with 1: boom"),
    ]
    rows = run.aggregate(samples, ["plaintext"], [64], ["fastasgi", "uvicorn", "granian"])
    by = {r["server"]: r for r in rows}
    assert by["granian"]["vs_baseline"] == pytest.approx(1.5)  # per-round ratio, not ratio of medians
    assert by["uvicorn"]["vs_baseline"] == pytest.approx(1.0)
    assert by["fastasgi"]["status"] == "skipped: exited with 1: boom"
    md = run.render_markdown(
        {
            "date": "d",
            "machine": "m",
            "python": "p",
            "packages": {},
            "wrk": "w",
            "command": "c",
            "settings": "s",
            "pinning": "x",
            "servers": {},
            "scenarios": {},
        },
        rows,
    )
    assert "| ⚠ granian |" in md and "skipped: exited with 1: boom" in md and "not comparable" in md


# -- bench/h2_run.py (HTTP/2, h2load) ---------------------------------------------------------

H2LOAD_OUTPUT = """\
Application protocol: h2c
finished in 59.42ms, 841.45 req/s, 33.33KB/s
requests: 50 total, 50 started, 50 done, 48 succeeded, 2 failed, 2 errored, 0 timeout
status codes: 47 2xx, 0 3xx, 1 4xx, 0 5xx
                     min         max         mean         sd        +/- sd
time for request:      876us     25.76ms      1.50s      8.58ms    80.00%
"""


def test_h2load_summary_is_parsed():
    res = h2_run.parse_h2load(H2LOAD_OUTPUT)
    assert res["seconds"] == pytest.approx(0.05942) and res["rps"] == pytest.approx(841.45)
    assert res["requests"]["succeeded"] == 48 and res["requests"]["errored"] == 2
    assert res["status"] == {"2xx": 47, "3xx": 0, "4xx": 1, "5xx": 0}
    assert (res["min_ms"], res["max_ms"], res["mean_ms"]) == pytest.approx((0.876, 25.76, 1500.0))
    assert res["protocol"] == "h2c"


def test_h2load_summary_in_microseconds_is_parsed():
    """A one-request check finishes in microseconds: h2load then says "us"."""
    res = h2_run.parse_h2load(H2LOAD_OUTPUT.replace("finished in 59.42ms", "finished in 776.50us"))
    assert res["seconds"] == pytest.approx(776.5e-6)
    assert res["rps"] == 841.45


def test_h2load_log_percentiles(tmp_path):
    log = tmp_path / "h2load.log"
    # start (us since epoch), status (-1: failed stream, left out), request time (us)
    log.write_text("".join(f"1700000000000000\t200\t{t}\n" for t in range(1000, 101000, 1000)) + "1\t-1\t9\n")
    assert h2_run.percentiles(log) == {"p50_ms": 51.0, "p90_ms": 91.0, "p99_ms": 100.0}
    assert h2_run.percentiles(tmp_path / "missing.log") == {}


def test_h2_aggregate_ratios_to_both_baselines():
    S = h2_run.Sample
    samples = [
        S(1, "h2c", "granian", rps=100.0), S(1, "h2c", "hypercorn", rps=10.0), S(1, "h2c", "fastasgi", rps=200.0),
        S(1, "h2c", "fastasgi-py", rps=40.0),
        S(1, "tls", "fastasgi", status="skipped", reason="check request: negotiated http/1.1, not HTTP/2"),
    ]  # fmt: skip
    rows = h2_run.aggregate(samples, ["h2c", "tls"], ["fastasgi", "fastasgi-py", "granian", "hypercorn"])
    by = {(r["scenario"], r["server"]): r for r in rows}
    assert by["h2c", "fastasgi"]["vs_granian"] == pytest.approx(2.0)
    assert by["h2c", "fastasgi"]["vs_hypercorn"] == pytest.approx(20.0)
    assert by["tls", "fastasgi"]["status"].startswith("skipped: check request")
    meta = {k: k for k in ("date", "machine", "python", "h2load", "command", "settings", "pinning")}
    meta.update(packages={}, servers={}, scenarios={"h2c": "", "tls": ""})
    md = h2_run.render_markdown(meta, rows)
    assert "| h2c | fastasgi | 200 |" in md and "h2c: 5.00×" in md and "not HTTP/2" in md


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")
def test_h2load_against_a_server():
    """The harness's h2load invocation and parser on this h2load, against fastasgi --http2."""
    pytest.importorskip("h2")
    from tests.conftest import run_server

    with run_server(apps.plaintext, "py", http2=True) as srv:
        url = f"{srv.url}/"
        assert h2_run.check(url, 10) is None
        res = h2_run.run_h2load(h2_run.h2load_argv(url, 2, 5, requests=40), 20, None)
    assert res["protocol"] == "h2c" and res["requests"]["succeeded"] == 40 and res["status"]["2xx"] == 40


def test_reports_name_the_command_without_the_output_dir():
    assert run.command_line(["bench/run.py", "--rounds", "3", "--output-dir", "/x/y", "--quick"]) == (
        "python3 bench/run.py --rounds 3 --quick"
    )
    assert run.command_line(["bench/h2_run.py", "--output-dir=/x/y"]) == "python3 bench/h2_run.py"
