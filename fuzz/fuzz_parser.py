"""atheris fuzz target: the compiled parser binding (parser_c) and the compiled request cycle (http_c).

For each input: the first bytes choose how the rest is cut into pieces; the pieces go
to ``parser_c`` and to ``parser_py`` (their outcomes must agree: events, error status,
trailing bytes), then through an ``http_c`` ``HttpProtocol`` on a fake transport with a
small app (it must not raise, and everything it writes must be HTTP/1.x responses).

Short run (what the test suite does)::

    python3 fuzz/fuzz_parser.py -runs=3000 -max_total_time=20 <corpus-dir>

Long run (hours; libFuzzer options as usual, e.g. -jobs/-workers, -max_len)::

    python3 fuzz/seed_corpus.py fuzz/corpus && python3 fuzz/fuzz_parser.py -max_len=4096 -timeout=10 fuzz/corpus

A crash or disagreement leaves ``crash-*`` files: add the input to
``tests/corpus/requests.json`` (with the expected outcome) once fixed.  Python-level
coverage guides atheris; for coverage of llhttp's C code too, build parser_c with
``CC=clang CFLAGS=-fsanitize=fuzzer-no-link`` and preload atheris' libFuzzer
(see atheris' "native extensions" documentation).
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import atheris

with atheris.instrument_imports():
    from fastasgi._speedups import parser_py

from fastasgi._speedups import parser_c  # compiled: not instrumentable
from fastasgi.config import Config
from fastasgi.server import ServerState


def outcome(mod, pieces):
    parser = mod.RequestParser(max_body_size=1 << 16)
    events = []
    try:
        for piece in pieces:
            events += parser.feed(piece)
    except mod.ParseError as exc:
        return _coalesce(events + exc.events), exc.status, parser.trailing
    return _coalesce(events), None, parser.trailing


def _coalesce(events):
    out = []
    for ev in events:
        if type(ev) is bytes and out and type(out[-1]) is bytes:
            out[-1] += ev
        else:
            out.append(ev)
    return out


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.protocol = None

    def write(self, data):
        if not self.closed:
            self.out += data

    def close(self):
        if not self.closed:
            self.closed = True
            asyncio.get_event_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self):
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 1234), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def set_protocol(self, protocol):
        self.protocol = protocol


async def app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message["body"]
        if not message["more_body"]:
            break
    if scope["path"].startswith("/stream"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


import logging

logging.getLogger("uvicorn").setLevel(logging.CRITICAL)
LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
CONFIG = Config(
    app, log_config=None, lifespan="off", http="httptools", ws="none", access_log=False, limit_request_body=1 << 16
)
CONFIG.load()
logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
STATE = ServerState()


def run_protocol(pieces):
    transport = FakeTransport()
    protocol = CONFIG.http_protocol_class(config=CONFIG, server_state=STATE, app_state={}, _loop=LOOP)
    transport.protocol = protocol
    protocol.connection_made(transport)

    async def drive():
        for piece in pieces:
            if transport.closed:
                break
            protocol.data_received(piece)
            for _ in range(3):
                await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        if not transport.closed:
            transport.close()
        await asyncio.sleep(0)

    LOOP.run_until_complete(drive())
    out = bytes(transport.out)
    assert not out or out.startswith(b"HTTP/1."), out[:100]
    for task in list(STATE.tasks):
        task.cancel()
    STATE.tasks.clear()
    STATE.connections.clear()


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    ncuts = fdp.ConsumeIntInRange(0, 8)
    cuts = sorted(fdp.ConsumeIntInRange(0, 4096) for _ in range(ncuts))
    blob = fdp.ConsumeBytes(fdp.remaining_bytes())
    bounds = [0] + [c for c in cuts if 0 < c < len(blob)] + [len(blob)]
    pieces = [blob[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    c = outcome(parser_c, pieces)
    py = outcome(parser_py, pieces)
    if (c[1] is None) != (py[1] is None) and pieces:
        # an unfinished bad head fails at once on llhttp, at its end on h11
        # (tests/corpus/DIFFERENCES.md): complete it, as the tests do
        pieces = pieces + [b"\r\n\r\n"]
        c = outcome(parser_c, pieces)
        py = outcome(parser_py, pieces)
    # Both must accept alike (same events), or both refuse; which error status wins
    # when a request breaks several rules may differ (DIFFERENCES.md).
    if (c[1] is None) != (py[1] is None) or (c[1] is None and c != py):
        raise AssertionError(f"parsers disagree on {blob!r} cut {cuts}:\nc:  {c}\npy: {py}")
    run_protocol(pieces)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
