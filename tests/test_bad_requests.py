"""Malformed and hostile requests: a clear status, the connection closed, the server keeps serving."""

from __future__ import annotations

import socket

import pytest

from tests.apps.basic import app
from tests.conftest import raw_request, read_response, run_server


@pytest.fixture(scope="session")
def server(impl):
    with run_server(app, impl) as srv:
        yield srv


BAD = {
    "garbage request line": (b"THIS IS NOT HTTP\r\n\r\n", 400),
    "bad version": (b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 400),
    "invalid header name": (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
    "header without colon": (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    "bare CR in header": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    "NUL in header": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "CL and TE": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "duplicate CL": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    "conflicting CL": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "negative CL": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    "non-numeric CL": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400),
    "TE not chunked last": (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    "bad chunk size": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk without CRLF": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    ),
    "asterisk form for GET": (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "non-ascii target": (b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_request_rejected_and_closed(server, name):
    data, status = BAD[name]
    # a second, valid request follows the bad one: it must never be answered (no smuggling)
    answer = raw_request(server.port, data + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert answer.count(b"HTTP/1.1") == 1, answer
    assert b"connection: close" in answer.lower()
    # and the server keeps serving everyone else
    assert raw_request(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").endswith(
        b"Hello, world!"
    )


def test_headers_too_large(server):
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n"
    answer = raw_request(server.port, data)
    assert answer.split(b" ", 2)[1] in (b"431", b"400")
    assert b"connection: close" in answer.lower()


def test_header_block_limit_option(impl):
    with run_server(app, impl, h11_max_incomplete_event_size=1024) as srv:
        ok = raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 500 + b"\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200")
        big = raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 2000 + b"\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 431")


def test_fragmented_request_byte_by_byte(server):
    req = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(req)):
            sock.sendall(req[i : i + 1])
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"hello")


def test_client_closes_mid_request(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly-part")
    sock.close()
    assert raw_request(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").endswith(
        b"Hello, world!"
    )


def test_http2_preface_rejected(server):
    answer = raw_request(server.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") or answer == b""


GOOD = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
SLOW = b"GET /sleep?0.05 HTTP/1.1\r\nHost: a\r\n\r\n"  # suspends before answering


@pytest.mark.parametrize(
    ("good", "answers"),
    [
        ([GOOD], [b"Hello, world!"]),
        ([GOOD, GOOD], [b"Hello, world!", b"Hello, world!"]),
        ([SLOW, GOOD], [b"slept", b"Hello, world!"]),
        ([GOOD, SLOW, GOOD], [b"Hello, world!", b"slept", b"Hello, world!"]),
    ],
    ids=["one", "two", "slow-then-fast", "fast-slow-fast"],
)
@pytest.mark.parametrize("warm", [False, True], ids=["new-connection", "after-a-response"])
def test_requests_before_bad_bytes_are_answered_first(server, good, answers, warm):
    # Complete requests pipelined ahead of bad bytes in the same packet are answered,
    # in order, and then the bad bytes get their 400 and the connection is closed.
    # After a first response, apps start eagerly in the connection's runner (and on
    # CPython 3.12+ a new connection's first app starts eagerly in its Task).
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        if warm:
            sock.sendall(GOOD)
            assert read_response(sock)[0] == 200
        sock.sendall(b"".join(good) + b"THIS IS NOT HTTP\r\n\r\n")
        for expected in answers:
            status, _headers, body = read_response(sock)
            assert (status, body) == (200, expected)
        status, headers, _body = read_response(sock)
        assert status == 400
        assert headers.get(b"connection") == b"close"
        sock.settimeout(10)
        assert sock.recv(1) == b""  # closed: nothing after the bad bytes is parsed


def test_error_response_survives_unread_request_bytes(server):
    # The client goes on sending after bad bytes (here 1 MB the server never parses).
    # Closing with those bytes unread would make the kernel reset the connection and
    # could destroy the 400 in flight; the server half-closes and drains instead, so
    # sendall completes and the 400 is read in full.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n" + b"x" * 1_000_000)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    assert data.endswith(b"Invalid HTTP request received.")


def test_bad_bytes_in_a_later_read_wait_for_the_response_in_progress(server):
    # The same rule whether the bad bytes come in the same read as the request before
    # them or in a later one (here: most likely while its app is suspended).
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(GOOD)
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /sleep?0.2 HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert read_response(sock)[::2] == (200, b"slept")
        status, headers, _body = read_response(sock)
        assert (status, headers.get(b"connection")) == (400, b"close")
        sock.settimeout(10)
        assert sock.recv(1) == b""
