"""Hardening (issue 7), through a real server on both implementations, with raw sockets:
request limits, slow-client timeouts, RFC 9112 framing, app misbehaviour, fd limit, concurrency."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from tests.apps import hardening
from tests.apps.basic import app as basic_app
from tests.conftest import raw_request, read_response, run_server

H = b"Host: a\r\n"


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split(b" ", 2)[1])


def closed_after(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection (fails if it does not within timeout)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


# -- 1. limits ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(impl):
    with run_server(
        hardening.app,
        impl,
        limit_request_line=100,
        limit_request_fields=5,
        limit_request_field_size=200,
        limit_request_header_size=600,
        limit_chunk_extension_size=16,
        limit_request_body=1000,
    ) as srv:
        yield srv


LIMITS = {
    "request line": (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "request line unfinished": (b"GET /" + b"a" * 200, 414),
    "field count": (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n", 431),
    "field size": (b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * 200 + b"\r\n\r\n", 431),
    "header block": (
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 190) for i in range(4)) + b"\r\n",
        431,
    ),
    "header block unfinished": (b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * 700, 431),
    "chunk extension": (
        b"POST /read HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n5;"
        + b"e" * 20
        + b"\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "body content-length": (b"POST /read HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n" + b"x" * 1001, 413),
    "body chunked in one chunk": (
        b"POST /read HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n",
        413,
    ),
}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limits(limited, name):
    data, status = LIMITS[name]
    before = hardening.calls["n"]
    answer = raw_request(limited.port, data + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(answer) == status
    assert answer.count(b"HTTP/1.1 ") == 1 and b"connection: close" in answer
    if name != "chunk extension":
        assert hardening.calls["n"] == before  # refused before the app was called
    ok = raw_request(
        limited.port,
        b"POST /read HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\nConnection: close\r\n\r\n" + b"x" * 1000,
    )
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"1000")


def test_body_limit_chunked_stops_the_app_reading(limited):
    """A chunked body crossing the limit after the app started reading: 413, the app sees a disconnect."""
    before = hardening.calls["disconnects"]
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.sendall(
            b"POST /read HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1f4\r\n" + b"x" * 500 + b"\r\n"
        )
        time.sleep(0.2)
        sock.sendall(b"1f5\r\n" + b"y" * 501 + b"\r\n0\r\n\r\n")
        answer = closed_after(sock)
    assert status_of(answer) == 413 and answer.count(b"HTTP/1.1") == 1
    deadline = time.monotonic() + 5
    while hardening.calls["disconnects"] == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hardening.calls["disconnects"] == before + 1


def test_limit_defaults_and_h11_option_compatible():
    from fastasgi.config import Config

    config = Config(basic_app)
    assert config.parser_limits() == {
        "max_header_size": 16384,
        "max_request_line": 8190,
        "max_headers": 100,
        "max_field_size": 8190,
        "max_chunk_ext": 4096,
        "max_body_size": -1,
    }
    assert Config(basic_app, h11_max_incomplete_event_size=4096).parser_limits()["max_header_size"] == 4096
    both = Config(basic_app, h11_max_incomplete_event_size=4096, limit_request_header_size=8192)
    assert both.parser_limits()["max_header_size"] == 8192
    assert (Config(basic_app).timeout_request_header, Config(basic_app).timeout_request_body) == (30.0, 60.0)
    assert Config(basic_app).timeout_response_body == 60.0  # (HTTP/2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit_request_line": 0},
        {"limit_request_body": -1},
        {"timeout_request_header": -1},
        {"timeout_response_body": -1},
    ],
)
def test_limit_validation(kwargs):
    from fastasgi.config import Config, ConfigError

    with pytest.raises(ConfigError):
        Config(basic_app, **kwargs)


def test_cli_options():
    from tests.conftest import run_cli

    out = run_cli(["--help"]).stdout
    for flag in (
        "--limit-request-line",
        "--limit-request-fields",
        "--limit-request-field-size",
        "--limit-request-header-size",
        "--limit-chunk-extension-size",
        "--limit-request-body",
        "--timeout-request-header",
        "--timeout-request-body",
        "--timeout-response-body",
    ):
        assert flag in out


# -- 2. timeouts -------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(impl):
    with run_server(
        hardening.app, impl, timeout_keep_alive=1, timeout_request_header=1.5, timeout_request_body=1.0
    ) as srv:
        yield srv


def test_slowloris_header_timeout(quick):
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        t0 = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(3):  # trickle bytes: each arrives before the keep-alive timeout
            time.sleep(0.4)
            sock.sendall(b"X-A: b\r\n")
        answer = closed_after(sock)
        elapsed = time.monotonic() - t0
    assert status_of(answer) == 408
    assert 1.3 < elapsed < 3.5, elapsed


def test_idle_connection_closed_silently(quick):
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        t0 = time.monotonic()
        assert closed_after(sock) == b""
        assert 0.8 < time.monotonic() - t0 < 3


def test_header_timeout_counts_from_previous_response(quick):
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert status_of(closed_after(sock)) == 408


def test_body_read_timeout(quick):
    before = hardening.calls["disconnects"]
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\n" + b"x" * 10)
        t0 = time.monotonic()
        answer = closed_after(sock)
        elapsed = time.monotonic() - t0
    assert status_of(answer) == 408
    assert 0.9 < elapsed < 3.5, elapsed
    deadline = time.monotonic() + 3
    while hardening.calls["disconnects"] == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hardening.calls["disconnects"] == before + 1


def test_slow_but_steady_body_is_not_cut(quick):
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\n")
        for _ in range(6):  # one byte every 0.4 s: 2.4 s in all, more than the body timeout
            time.sleep(0.4)
            sock.sendall(b"x")
        assert read_response(sock)[2] == b"6"


def test_slow_app_is_not_a_body_timeout(quick):
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        sock.sendall(b"GET /sleep?2.2 HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock)[0] == 200


# -- 3. framing (RFC 9112) -----------------------------------------------------------


@pytest.fixture(scope="module")
def server(impl):
    with run_server(basic_app, impl) as srv:
        yield srv


FRAMING_BAD = {
    "host missing in 1.1": b"GET / HTTP/1.1\r\n\r\n",
    "host twice": b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "CL and TE": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "TE final not chunked": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    "TE chunked twice": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "TE in HTTP/1.0": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk size not hex": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
    "chunk size with space": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    "bare LF in chunk line": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    "bare LF in head": b"GET / HTTP/1.1\nHost: a\r\n\r\n",
    "bare CR in head": b"GET / HTTP/1.1\rHost: a\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n",
    "asterisk for GET": b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-form empty host": b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "CL in trailers": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(FRAMING_BAD))
def test_framing_rejected_with_400_and_close(server, name):
    answer = raw_request(server.port, FRAMING_BAD[name] + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(answer) == 400
    assert answer.count(b"HTTP/1.1 ") == 1 and b"connection: close" in answer


def test_absolute_form_path_from_uri(server):
    import json

    answer = raw_request(
        server.port, b"GET http://example.com/scope?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    )
    scope = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/scope", "/scope", "x=1")


def test_asterisk_options_accepted(server):
    answer = raw_request(server.port, b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 404  # reaches the app (path "*")


def test_http10_without_host_accepted_and_never_chunked(server):
    answer = raw_request(server.port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"transfer-encoding" not in head.lower()
    assert body == b"chunk0;chunk1;chunk2;"


# -- 4. app misbehaviour -------------------------------------------------------------


@pytest.fixture(scope="module")
def misbehaving(impl):
    with run_server(hardening.app, impl) as srv:
        yield srv


@pytest.mark.parametrize(
    "path",
    [
        "/bad-status-type",
        "/bad-status-range",
        "/missing-status",
        "/missing-type",
        "/headers-not-pairs",
        "/header-str",
        "/body-str",
        "/wrong-type",
        "/unknown-type",
        "/more-body-then-str",
    ],
)
def test_malformed_messages_are_logged_errors(misbehaving, path, caplog):
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        with socket.create_connection(("127.0.0.1", misbehaving.port)) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
            data = closed_after(sock)
        deadline = time.monotonic() + 3
        while not any(r.levelno >= logging.ERROR for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert any(r.levelno >= logging.ERROR for r in caplog.records), path
    # one well-formed response at most, never a corrupted stream: a clean 500, or the
    # started response cut short and the connection closed
    responses = data.count(b"HTTP/1.1 ")
    assert responses <= 2
    if data:
        assert data.startswith(b"HTTP/1.1 ")
    assert b"text" not in data.partition(b"\r\n\r\n")[2] or data.startswith(b"HTTP/1.1 500")


@pytest.mark.parametrize("path", ["/100-with-body", "/204-with-body", "/304-with-body"])
def test_no_body_statuses_drop_the_body(misbehaving, path):
    with socket.create_connection(("127.0.0.1", misbehaving.port)) as sock:
        sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % path.encode()
        )
        data = closed_after(sock)
    assert b"SMUGGLED" not in data
    assert data.endswith(b"\r\n\r\nok")


def test_head_streamed_body_dropped(misbehaving):
    with socket.create_connection(("127.0.0.1", misbehaving.port)) as sock:
        sock.sendall(
            b"HEAD /head-streamed HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        data = closed_after(sock)
    assert b"SMUGGLED" not in data and data.count(b"HTTP/1.1 200") == 2 and data.endswith(b"ok")


# -- 7. fd limit and concurrency ------------------------------------------------------


def test_nofile_raised_or_logged(monkeypatch):
    import resource

    from fastasgi import server as server_mod

    calls = []
    monkeypatch.setattr(resource, "getrlimit", lambda what: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda what, limits: calls.append(limits))
    assert server_mod.raise_nofile_limit() == 4096 and calls == [(4096, 4096)]

    def refuse(what, limits):
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "setrlimit", refuse)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        assert server_mod.raise_nofile_limit() is None
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    assert any("Could not raise the open file limit" in r.getMessage() for r in records)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (4096, 4096))
    assert server_mod.raise_nofile_limit() == 4096  # nothing to do


def _concurrent_clients(
    port: int, n: int, request: bytes, timeout: float = 60.0, times: list | None = None
) -> list[bytes]:
    """Open n connections at once (non-blocking), send one request on each, read each answer until close."""
    import selectors

    sel = selectors.DefaultSelector()
    answers: dict[int, bytearray] = {}
    socks = []
    try:
        for i in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
            answers[i] = bytearray()
            sel.register(s, selectors.EVENT_WRITE, i)
        deadline = time.monotonic() + timeout
        open_ = n
        while open_ and time.monotonic() < deadline:
            for key, mask in sel.select(timeout=1):
                s, i = key.fileobj, key.data
                if mask & selectors.EVENT_WRITE:
                    s.send(request)  # small: fits the socket buffer
                    sel.modify(s, selectors.EVENT_READ, i)
                    continue
                try:
                    chunk = s.recv(65536)
                except ConnectionError:
                    chunk = b""
                if chunk:
                    answers[i] += chunk
                else:
                    sel.unregister(s)
                    open_ -= 1
                    if times is not None:
                        times.append((time.monotonic(), bytes(answers[i][:12])))
        return [bytes(answers[i]) for i in range(n)]
    finally:
        for s in socks:
            s.close()
        sel.close()


def test_thousands_of_concurrent_connections(impl):
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = 3000
    if hard < 2 * n + 100:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} too low for {n} connections")
    with run_server(basic_app, impl, backlog=4096) as srv:
        # the app holds every request for a while, so all n are open together
        answers = _concurrent_clients(srv.port, n, b"GET /sleep?0.5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    ok = sum(a.startswith(b"HTTP/1.1 200") and a.endswith(b"slept") for a in answers)
    assert ok == n, (ok, [a[:80] for a in answers if not a.endswith(b"slept")][:3])


def test_limit_concurrency_answers_503_quickly(impl):
    hardening.calls["n"] = 0
    with run_server(hardening.app, impl, limit_concurrency=10) as srv:
        results: list[bytes] = []

        def slow() -> None:
            results.append(raw_request(srv.port, b"GET /sleep?1.5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))

        threads = [threading.Thread(target=slow) for _ in range(5)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        times: list = []
        t1 = time.monotonic()
        answers = _concurrent_clients(
            srv.port, 200, b"GET /sleep?1.5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", times=times
        )
        quick = max(t for t, head in times if head.startswith(b"HTTP/1.1 503")) - t1
        for t in threads:
            t.join(10)
    n503 = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
    n200 = sum(a.startswith(b"HTTP/1.1 200") for a in answers)
    assert n503 + n200 == 200 and n503 >= 190, (n503, n200)
    assert all(r.startswith(b"HTTP/1.1 200") for r in results)
    assert hardening.calls["n"] <= 10 + 5  # the app never saw the refused requests
    assert quick < 1.0, quick  # the 503s did not wait for the slow requests
