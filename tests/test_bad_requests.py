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
