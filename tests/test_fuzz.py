"""Fuzzing (issue 7): a hypothesis differential fuzzer comparing the compiled and the pure
server on random valid and invalid requests, randomly fragmented, and a bounded atheris run.

Longer runs::

    FASTASGI_FUZZ_EXAMPLES=5000 python3 -m pytest -q -p no:cacheprovider tests/test_fuzz.py
    python3 fuzz/seed_corpus.py fuzz/corpus && python3 fuzz/fuzz_parser.py -max_len=4096 fuzz/corpus

A divergence found here becomes an entry of tests/corpus/requests.json (parser level)
or of SERVER_CORPUS below (server level).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, require_compiled, run_server

EXAMPLES = int(os.environ.get("FASTASGI_FUZZ_EXAMPLES", "40"))


async def echo_app(scope, receive, send):
    """Answers with what it saw (deterministic: no client port, no time)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message["body"]
        if not message["more_body"]:
            break
    seen = b"%s %s %s %s %s\n" % (
        scope["method"].encode(),
        scope["path"].encode("utf-8", "replace"),
        scope["raw_path"],
        scope["query_string"],
        scope["http_version"].encode(),
    )
    seen += b"".join(k + b"=" + v + b"\n" for k, v in scope["headers"]) + b"\n" + body
    if scope["path"].startswith("/stream"):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-seen", b"1")]})
        await send({"type": "http.response.body", "body": seen, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": seen})


@pytest.fixture(scope="module")
def servers():
    require_compiled()  # its users are c_extension cases: missing is an error, not a skip
    kwargs = dict(
        timeout_keep_alive=1,
        timeout_request_header=1,
        timeout_request_body=1,
        limit_request_body=4096,
        limit_request_line=512,
        limit_request_fields=20,
        limit_request_field_size=256,
        limit_request_header_size=2048,
        date_header=False,
    )
    with run_server(echo_app, "c", **kwargs) as c, run_server(echo_app, "py", **kwargs) as py:
        yield c, py


def exchange(port: int, pieces: list[bytes], timeout: float = 6.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.002)
        except OSError:
            pass  # the server closed early (refused request): read what it answered
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionError):
                break
            if not chunk:
                break
            out += chunk
        return out


def normalize(answer: bytes) -> bytes:
    return re.sub(rb"(?i)\r\ndate: [^\r]*", b"", answer)


# -- request generator ---------------------------------------------------------------

TOKENS = [b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"DELETE", b"get", b"FOO", b"CONNECT"]
TARGETS = [
    b"/",
    b"/echo",
    b"/stream",
    b"/a%20b?x=1",
    b"*",
    b"http://h/p?q",
    b"/\x01",
    b"/#f",
    b"//x",
    b"/" + b"a" * 600,
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1"]
HEADER_LINES = [
    b"Host: a",
    b"Host: b",
    b"Connection: close",
    b"Connection: keep-alive",
    b"X-A: 1",
    b"X-B:  spaced  ",
    b"X-Long: " + b"v" * 300,
    b"Bad Name: x",
    b"X-C: a\rb",
    b"X-D: a\x00b",
    b" folded",
    b"NoColon",
    b"Expect: 100-continue",
    b"Upgrade: h2c",
    b"Cookie: a=b; c=d",
]
SEP = [b"\r\n", b"\n", b"\r"]


@st.composite
def request(draw):
    method = draw(st.sampled_from(TOKENS))
    line = method + b" " + draw(st.sampled_from(TARGETS)) + b" " + draw(st.sampled_from(VERSIONS))
    lines = [line] + draw(st.lists(st.sampled_from(HEADER_LINES), max_size=5))
    if draw(st.booleans()):
        lines.insert(1, b"Host: a")
    body = draw(st.binary(max_size=40))
    framing = draw(
        st.sampled_from(["none", "cl", "cl-wrong", "chunked", "chunked-bad", "both", "te-gzip", "cl-dup", "big"])
    )
    tail = b""
    if framing == "cl":
        lines.append(b"Content-Length: %d" % len(body))
        tail = body
    elif framing == "cl-wrong":
        lines.append(b"Content-Length: %d" % (len(body) + draw(st.integers(-3, 3))))
        tail = body
    elif framing == "cl-dup":
        lines += [b"Content-Length: %d" % len(body)] * 2
        tail = body
    elif framing in ("chunked", "chunked-bad", "both"):
        lines.append(b"Transfer-Encoding: chunked")
        if framing == "both":
            lines.append(b"Content-Length: 3")
        # chunk extensions, with BWS (RFC 9112 §7.1.1) on some
        ext = draw(st.sampled_from([b"", b"", b";a", b" ;a=b", b"; a = b", b'\t;\tq="x y" ;r']))
        chunks = b"".join(
            b"%x%s\r\n%s\r\n" % (len(body[i : i + 7]), ext, body[i : i + 7]) for i in range(0, len(body), 7)
        )
        if framing == "chunked-bad":
            bad = [b"zz\r\n", b"5 \r\nhello\r\n", b'1;a="x\r\nx\r\n', b"-1\r\n", b"5\nhello\r\n"]
            bad += [b"5 5\r\nhello\r\n", b" 5\r\nhello\r\n", b"5;a=b \r\nhello\r\n", b"5;a b\r\nhello\r\n"]
            chunks = draw(st.sampled_from(bad)) + chunks
        tail = chunks + b"0\r\n" + draw(st.sampled_from([b"", b"X-T: 1\r\n", b"Content-Length: 1\r\n"])) + b"\r\n"
    elif framing == "te-gzip":
        lines.append(b"Transfer-Encoding: gzip")
    elif framing == "big":
        lines.append(b"Content-Length: 5000")
        tail = b"x" * 5000
    sep = draw(st.sampled_from(SEP)) if draw(st.integers(0, 9)) == 0 else b"\r\n"
    return sep.join(lines) + b"\r\n\r\n" + tail


END = b"GET /end HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


@pytest.mark.c_extension  # compares the compiled server with the pure one
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(st.lists(request(), min_size=1, max_size=3), st.data())
def test_compiled_and_pure_servers_agree(servers, reqs, data):
    blob = b"".join(reqs) + END
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(blob) - 1)), max_size=6))))
    bounds = [0, *cuts, len(blob)]
    pieces = [blob[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    c, py = (normalize(exchange(srv.port, pieces)) for srv in servers)
    assert c.startswith(b"HTTP/1."), (blob, c)  # every stream gets an answer (at worst 400/408)
    if c != py:
        # which error wins when one request breaks several rules may differ
        # (tests/corpus/DIFFERENCES.md): then both must have refused at the same point
        rc, rpy = c.rsplit(b"HTTP/1.1 ", 1), py.rsplit(b"HTTP/1.1 ", 1)
        assert rc[0] == rpy[0] and rc[1][:1] == rpy[1][:1] == b"4", (blob, cuts, c, py)


# Server-level cases (pipelining, errors after good requests, close handling, limits),
# kept as regressions: name -> (bytes sent, the statuses answered, in order).  Both
# servers must answer byte for byte alike, with exactly these statuses.
_GET = b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
_CHUNKED = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
SERVER_CORPUS: dict[str, tuple[bytes, list[int]]] = {
    "pipelined-get-cl-chunked-bws": (
        _GET + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        + _CHUNKED + b"3 ; a = b\r\nxyz\r\n0\t;\tlast\r\n\r\n" + END,
        [200, 200, 200, 200],
    ),
    "pipelined-then-bad-bytes": (_GET + _GET + b"\x16\x03\x01\x00\xa5\x01\r\n\r\n", [200, 200, 400]),
    "good-then-chunk-size-split-by-space": (_GET + _CHUNKED + b"5 5\r\nhello\r\n0\r\n\r\n" + END, [200, 400]),
    "good-then-chunk-bws-before-crlf": (_GET + _CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n" + END, [200, 400]),
    "post-after-connection-close-never-runs": (
        b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
        [200],
    ),
    "head-then-streamed": (b"HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\n" + b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n" + END, [200, 200, 200]),
    "http10-streamed-closes": (b"GET /stream HTTP/1.0\r\n\r\n" + END, [200]),
    "body-over-limit": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000 + END, [413]),
}


@pytest.mark.c_extension
def test_server_corpus(servers):
    # One test over the whole corpus, so that an empty or unloaded corpus fails
    # instead of collecting no case.
    assert len(SERVER_CORPUS) >= 8, "the server corpus is empty or not loaded"
    for name, (blob, statuses) in SERVER_CORPUS.items():
        c, py = (normalize(exchange(srv.port, [blob])) for srv in servers)
        assert c == py, (name, c, py)
        assert [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", c)] == statuses, (name, c)


# The request corpus (tests/corpus/requests.json: valid, malformed, pipelined,
# chunked, smuggling attempts) through both real servers: status, headers and body
# must match byte for byte (date aside).  A request that closes the connection
# follows each entry, so every exchange ends by itself.
from tests.corpus import load as load_corpus

CORPUS = {entry["name"]: entry for entry in load_corpus()}
SMALL_VALID = [name for name, e in CORPUS.items() if "error" not in e and len(e["data"]) <= 200][:20]


def test_request_corpus_is_loaded():
    # the parametrized tests below collect nothing from an empty corpus: make that an error
    assert len(CORPUS) >= 100, "tests/corpus/requests.json is empty or not loaded"
    assert len(SMALL_VALID) == 20
    assert sum("error" in e for e in CORPUS.values()) >= 50


@pytest.mark.c_extension
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_through_both_servers(servers, name):
    blob = CORPUS[name]["data"] + END
    c, py = (normalize(exchange(srv.port, [blob])) for srv in servers)
    assert c == py, (name, c, py)


@pytest.mark.c_extension
@pytest.mark.parametrize("name", SMALL_VALID)
def test_corpus_byte_by_byte_through_both_servers(servers, name):
    blob = CORPUS[name]["data"] + END
    pieces = [blob[i : i + 1] for i in range(len(CORPUS[name]["data"]))] + [END]
    whole = normalize(exchange(servers[0].port, [blob]))
    c, py = (normalize(exchange(srv.port, pieces)) for srv in servers)
    assert c == py == whole, (name, c, py, whole)


@pytest.mark.c_extension  # fuzzes parser_c against parser_py, and http_c
def test_atheris_bounded_run(tmp_path):
    # atheris ships wheels for CPython 3.11 on Linux x86_64 only (the test extra's marker)
    pytest.importorskip("atheris")
    require_compiled()
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, os.path.join(REPO, "fuzz", "seed_corpus.py"), str(corpus)], check=True, timeout=60)
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "fuzz", "fuzz_parser.py"),
            "-runs=3000",
            "-max_total_time=20",
            "-max_len=2048",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr
