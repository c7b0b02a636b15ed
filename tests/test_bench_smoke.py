"""Smoke test of the benchmark harness (bench/): apps and report logic, no servers, no wrk."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import apps, run


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
