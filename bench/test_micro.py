"""Microbenchmarks: compiled hot-path functions against their pure-Python twins.

Not part of the test suite (that is tests/).  Run from the repo root:

    python3 -m pytest bench/test_micro.py --benchmark-only
    python3 -m pytest bench/test_micro.py --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,ops

Each benchmark is parametrized over ``c`` and ``py`` and grouped by what it
measures, so pytest-benchmark prints the two twins next to each other.  A
module that cannot be imported (compiled set not built, twin not written yet)
is skipped with the reason.
"""

from __future__ import annotations

import importlib

import pytest

IMPLS = ["c", "py"]

GET_REQUEST = (
    b"GET /api/items?page=2&sort=desc HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=4f6d2a1c9b8e7f60; theme=dark\r\n"
    b"\r\n"
)
PIPELINE_DEPTH = 16
PIPELINED = GET_REQUEST * PIPELINE_DEPTH


def _module(stem: str, tag: str):
    name = f"fastasgi._speedups.{stem}_{tag}"
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.skip(f"{name} not importable: {exc}")


def _messages(events) -> int:
    """Number of complete messages in a feed() result (None marks the end of one)."""
    return sum(1 for e in events if e is None)


# --------------------------------------------------------------------------- parser
# Contract: RequestParser() then feed(data: bytes) -> list of events
# (head tuple, body bytes, None at the end of each message).


@pytest.mark.benchmark(group="parser: one GET, fresh parser")
@pytest.mark.parametrize("impl", IMPLS)
def test_parser_get(benchmark, impl):
    mod = _module("parser", impl)

    def run():
        return mod.RequestParser().feed(GET_REQUEST)

    events = benchmark(run)
    assert _messages(events) == 1


@pytest.mark.benchmark(group="parser: one GET, parser reused (keep-alive)")
@pytest.mark.parametrize("impl", IMPLS)
def test_parser_get_keepalive(benchmark, impl):
    mod = _module("parser", impl)
    parser = mod.RequestParser()
    # The pure twin (h11) may need the response side finished before it reads the
    # next request; if reuse is not supported this way, say so instead of timing nothing.
    for _ in range(2):
        if _messages(parser.feed(GET_REQUEST)) != 1:
            pytest.skip(f"parser_{impl}: feeding a second request to the same parser gives no message")

    events = benchmark(parser.feed, GET_REQUEST)
    assert _messages(events) == 1


@pytest.mark.benchmark(group=f"parser: {PIPELINE_DEPTH} pipelined GETs in one feed")
@pytest.mark.parametrize("impl", IMPLS)
def test_parser_pipelined(benchmark, impl):
    mod = _module("parser", impl)

    def run():
        return mod.RequestParser().feed(PIPELINED)

    events = benchmark(run)
    assert _messages(events) == PIPELINE_DEPTH


# --------------------------------------------------------------------------- framing
# --------------------------------------------------------------------------- framing
# encode_head(status, headers, default_headers, http11, is_head, body_length, keep_alive)

APP_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", b"104"),
    (b"Cache-Control", b"no-store"),
    (b"x-request-id", b"4f6d2a1c9b8e7f60"),
]
DEFAULT_HEADERS = b"server: fastasgi\r\ndate: Wed, 25 Nov 2026 10:00:00 GMT\r\n"


@pytest.mark.benchmark(group="framing: response head, 4 app headers")
@pytest.mark.parametrize("impl", IMPLS)
def test_framing_head(benchmark, impl):
    mod = _module("framing", impl)
    head, _mode, length, keep_alive = benchmark(
        mod.encode_head, 200, APP_HEADERS, DEFAULT_HEADERS, True, False, 104, True
    )
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and length == 104 and keep_alive


@pytest.mark.benchmark(group="framing: streamed response head (chunked)")
@pytest.mark.parametrize("impl", IMPLS)
def test_framing_head_chunked(benchmark, impl):
    mod = _module("framing", impl)
    _head, mode, _length, _keep_alive = benchmark(
        mod.encode_head, 200, APP_HEADERS[:1], DEFAULT_HEADERS, True, False, -1, True
    )
    assert mode == mod.CHUNKED


@pytest.mark.benchmark(group="framing: one 1 KiB chunk")
@pytest.mark.parametrize("impl", IMPLS)
def test_framing_chunk(benchmark, impl):
    mod = _module("framing", impl)
    data = b"x" * 1024
    assert benchmark(mod.chunk, data).startswith(b"400\r\n")
