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
# framing_py / framing_c (response head + chunked encoding) are being written.
# Add one benchmark per public function here, same shape as above, e.g.
#
#   @pytest.mark.benchmark(group="framing: response head")
#   @pytest.mark.parametrize("impl", IMPLS)
#   def test_framing_head(benchmark, impl):
#       mod = _module("framing", impl)
#       benchmark(mod.<function>, 200, HEADERS, ...)


@pytest.mark.parametrize("impl", IMPLS)
def test_framing_placeholder(benchmark, impl):
    _module("framing", impl)
    pytest.skip("framing benchmarks not written yet: add them once framing_py's API is settled")
