"""HTTP/1.1 behaviour through a real server on loopback, on every implementation (``impl``)."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import sys
import threading
import types
import warnings

import httpx
import pytest

from tests.apps.basic import WAITERS, app
from tests.conftest import raw_request, read_response, run_server


@pytest.fixture(scope="session")
def server(impl):
    with run_server(app, impl, lifespan="on") as srv:
        yield srv


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_hello(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.text == "Hello, world!"
    assert r.headers["content-length"] == "13"
    assert r.headers["server"] == "fastasgi"
    assert "date" in r.headers


def test_scope(client, server):
    r = client.get("/scope/caf%C3%A9%20x?a=1&b=%20", headers={"X-Custom": "Value"})
    # path dispatch: unknown path -> 404; use /scope with a query instead
    assert r.status_code == 404
    r = client.get("/scope?a=1&b=%20", headers={"X-Custom": "Value"})
    scope = r.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "a=1&b=%20"
    assert scope["root_path"] == ""
    assert ["x-custom", "Value"] in scope["headers"]
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["client"][0] == "127.0.0.1"
    assert isinstance(scope["client"][1], int)
    assert scope["state"] == []


def test_percent_decoding(server):
    data = raw_request(server.port, b"GET /caf%C3%A9%20x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 404")
    # the scope endpoint sees decoded path on a prefix dispatch: check via the 404 body-less route
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /scope?x=%41 HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200
    assert json.loads(body)["query_string"] == "x=%41"


def test_post_echo(client):
    body = bytes(range(256)) * 100
    r = client.post("/echo", content=body)
    assert r.status_code == 200
    assert r.content == body


def test_chunked_request_body(client):
    def gen():
        yield b"hello "
        yield b"chunked "
        yield b"world"

    r = client.post("/echo", content=gen())
    assert r.content == b"hello chunked world"


def test_chunked_request_raw(server):
    req = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    )
    data = raw_request(server.port, req)
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"hello world")


def test_streamed_response_is_chunked(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 200
    assert headers[b"transfer-encoding"] == b"chunked"
    assert b"content-length" not in headers
    assert body == b"chunk0;chunk1;chunk2;"


def test_http10_streamed_response_is_close_delimited(server):
    data = raw_request(server.port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"chunk0;chunk1;chunk2;"


def test_http10_keep_alive(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = read_response(sock)
            assert status == 200
            assert body == b"Hello, world!"
            assert headers[b"connection"].lower() == b"keep-alive"


def test_http10_closes_by_default(server):
    data = raw_request(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert data.endswith(b"Hello, world!")
    assert b"connection: close" in data.lower()


def test_keep_alive_many_requests(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for i in range(50):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            status, _, body = read_response(sock)
            assert (status, body) == (200, b"Hello, world!")


def test_pipelined_requests_answered_in_order(server):
    reqs = b"".join(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(b"req%d" % i), b"req%d" % i)
        for i in range(20)
    )
    reqs += b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(reqs)
        for i in range(20):
            status, _, body = read_response(sock)
            assert (status, body) == (200, b"req%d" % i)
        assert read_response(sock)[2] == b"chunk0;chunk1;chunk2;"
        assert read_response(sock)[2] == b"Hello, world!"


def test_head_has_no_body_but_length(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(10)
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"Hello, world!"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-length: 13" in first.lower()
    assert rest.startswith(b"HTTP/1.1 200")  # no body bytes between the two responses


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_drop_body(server, status):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /status/%d HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" % status)
        sock.settimeout(10)
        data = b""
        while not data.endswith(b"Hello, world!"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert b"should-not-appear" not in data
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 %d" % status)
    assert b"transfer-encoding" not in first.lower()
    assert rest.startswith(b"HTTP/1.1 200")


def test_expect_100_continue(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"hello")


def test_expect_100_continue_not_sent_when_app_does_not_read(server):
    data = raw_request(
        server.port, b"POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert b"100 Continue" not in data
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"did not read")


def test_unread_body_is_skipped_on_keep_alive(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert read_response(sock)[2] == b"did not read"
        assert read_response(sock)[2] == b"Hello, world!"


def test_app_exception_gives_500(client, caplog):
    r = client.get("/error")
    assert r.status_code == 500
    assert r.text == "Internal Server Error"
    assert "Exception in ASGI application" in caplog.text
    assert client.get("/").status_code == 200  # the server keeps serving


def test_exception_after_start_closes(server):
    data = raw_request(server.port, b"GET /error-after-start HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"partial")  # truncated, then closed: the client sees an incomplete body


def test_no_response_gives_500(client, caplog):
    r = client.get("/no-response")
    assert r.status_code == 500
    assert "ASGI callable returned without starting response" in caplog.text


def test_body_longer_than_content_length_is_cut(server):
    for path in (b"/too-long", b"/too-long-streamed"):
        data = raw_request(server.port, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        assert b"SMUGGLED" not in data
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"content-length: 5" in head.lower()
        assert body == b"01234"  # connection closed after the declared length; the 2nd request is not answered


def test_body_shorter_than_content_length_closes(server):
    data = raw_request(server.port, b"GET /too-short HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    _head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"01234"


@pytest.mark.parametrize("path", ["/bad-header", "/bad-header-name", "/double-start"])
def test_bad_app_headers_never_reach_the_wire(server, path, caplog):
    data = raw_request(server.port, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    assert b"pwned" not in data
    assert b"x evil" not in data
    if path != "/double-start":
        assert data.startswith(b"HTTP/1.1 500")
    assert "Exception in ASGI application" in caplog.text


def test_send_after_complete_is_an_error(server, caplog):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /send-after-complete HTTP/1.1\r\nHost: a\r\n\r\n")
        _status, _, body = read_response(sock)
        assert body == b"done"
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        _status, _, body = read_response(sock)
        assert body == b"Hello, world!"  # the stream was not corrupted by EXTRA
    assert "after response already completed" in caplog.text


def test_app_headers_override_defaults(client):
    r = client.get("/custom-headers")
    assert r.headers.get_list("server") == ["custom"]
    assert r.headers.get_list("x-multi") == ["1", "2"]


def test_large_response_flow_control(server):
    size = 8 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /big?%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
        status, _headers, body = read_response(sock, timeout=30)
    assert status == 200
    assert len(body) == size


def test_large_request_streams(client):
    body = b"y" * (4 * 1024 * 1024)
    r = client.post("/echo", content=body)
    assert r.status_code == 200
    assert len(r.content) == len(body)


def test_disconnect_is_reported(server, impl):
    # the app waits for http.disconnect: closing our side must deliver it to the app
    token = b"disconnect-" + impl.encode()
    started, disconnected = WAITERS.setdefault(token, (threading.Event(), threading.Event()))
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET /wait-disconnect?" + token + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert started.wait(10), "the request never reached the app"
    assert not disconnected.is_set()
    sock.close()
    assert disconnected.wait(10), "the app never received http.disconnect"
    # and the server goes on answering
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/").status_code == 200


def test_contextvars_isolated_per_request(client):
    assert client.get("/contextvar?one").text == "unset|one"
    assert client.get("/contextvar?two").text == "unset|two"


def test_many_concurrent_clients(server):
    import concurrent.futures

    def one(i):
        with httpx.Client(base_url=server.url, timeout=20) as c:
            return c.post("/echo", content=b"%d" % i).content

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [b"%d" % i for i in range(64)]


def test_streamed_chunk_reaches_client_while_app_waits(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while b"data: first" not in data:
            chunk = sock.recv(65536)  # times out (fails) if the first chunk is held back
            assert chunk
            data += chunk
        assert b"second" not in data
        with httpx.Client(base_url=server.url) as c:
            assert c.get("/release").text == "released"
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert b"data: second" in data


def test_many_small_chunks_arrive_intact(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(3):
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
            status, headers, body = read_response(sock)
            assert (status, body) == (200, b"chunk0;chunk1;chunk2;")
            assert headers[b"transfer-encoding"] == b"chunked"


# -- how the app is called ------------------------------------------------------------
# send() is a coroutine function, as under uvicorn, and each app runs in a Task of
# its own that may start eagerly: these check that apps relying on the usual shapes
# (create_task, wait_for, gather, a send left un-awaited) see what uvicorn shows them.

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


async def _send_shapes_app(scope, receive, send):
    path = scope["path"]
    if path == "/wait-for":
        await asyncio.wait_for(send(START), 5)
        await asyncio.ensure_future(send({"type": "http.response.body", "body": b"wait_for"}))
    elif path == "/gather":
        await asyncio.gather(send(START))
        await asyncio.gather(send({"type": "http.response.body", "body": b"gather"}))
    elif path == "/suspend-then-send":
        await asyncio.sleep(0)
        await send(START)
        await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": b"later", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})
    elif path == "/create-task":
        await asyncio.create_task(send(START))
        await asyncio.create_task(send({"type": "http.response.body", "body": b"create_task"}))
    elif path == "/not-awaited":
        # a send that is never awaited does nothing (and its error is never raised)
        # send is a coroutine function to asyncio and inspect, as under uvicorn
        # (3.9's inspect recognises Python functions only; 3.10+ also function-like objects)
        assert asyncio.iscoroutinefunction(send)
        assert inspect.iscoroutinefunction(send) or sys.version_info < (3, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine ... was never awaited"
            early = send({"type": "http.response.body", "body": b"too early"})
            assert asyncio.iscoroutine(early) and inspect.isawaitable(early)
            del early
        await send(START)
        await send({"type": "http.response.body", "body": b"nothing sent early"})


class _Awaitable:
    def __init__(self, coro):
        self.coro = coro

    def __await__(self):
        return self.coro.__await__()


class _ObjectApp:
    """An ASGI app whose __call__ returns an awaitable that is not a coroutine."""

    def __call__(self, scope, receive, send):
        return _Awaitable(_send_shapes_app({**scope, "path": "/gather"}, receive, send))


@types.coroutine
def _generator_app(scope, receive, send):
    # a generator-based coroutine: `yield from` what send returns, directly and
    # through its __await__ iterator (both work under uvicorn)
    yield from send(START)
    yield from send({"type": "http.response.body", "body": b"generator"}).__await__()


def _not_awaitable_app(scope, receive, send):
    return 42


@pytest.fixture(scope="module")
def shapes_server(impl):
    with run_server(_send_shapes_app, impl) as srv:
        yield srv


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/wait-for", b"wait_for"),
        ("/gather", b"gather"),
        ("/suspend-then-send", b"later!"),
        ("/create-task", b"create_task"),
        ("/not-awaited", b"nothing sent early"),
    ],
)
def test_send_result_is_a_usual_awaitable(shapes_server, path, body):
    with socket.create_connection(("127.0.0.1", shapes_server.port)) as sock:
        for _ in range(2):  # a fresh connection, then a keep-alive one
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
            status, _headers, got = read_response(sock)
            assert (status, got) == (200, body)


@pytest.mark.parametrize(("app", "body"), [(_ObjectApp(), b"gather"), (_generator_app, b"generator")])
def test_apps_returning_other_awaitables(impl, app, body):
    with run_server(app, impl, interface="asgi3") as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            status, _headers, got = read_response(sock)
            assert (status, got) == (200, body)


def test_app_returning_a_non_awaitable_gets_500(impl, caplog):
    with run_server(_not_awaitable_app, impl, interface="asgi3") as srv:
        for _ in range(2):  # the 500 closes the connection: a new one each time
            data = raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 500 ")
    assert "Exception in ASGI application" in caplog.text
    assert "can't be used in 'await' expression" in caplog.text


async def _count_tasks(srv):
    await asyncio.sleep(0)
    return len(srv.server_state.tasks)


def test_runner_task_leaves_the_task_set_when_the_client_goes_mid_app(impl):
    # A keep-alive connection's second request runs eagerly in the connection's
    # runner; its app suspends, answers, and is still running when the client
    # closes.  The runner must still leave the server's task set when the app
    # ends, or a graceful shutdown would wait for it forever.
    seen = {}
    done = threading.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/linger":
            seen["loop"] = asyncio.get_running_loop()
            await asyncio.sleep(0)  # suspended: the runner drives the rest
            await send(START)
            await send({"type": "http.response.body", "body": b"bye"})
            for _ in range(1000):  # until the server has seen the client go (bounded)
                if not seen["server"].server_state.connections:
                    break
                await asyncio.sleep(0.01)
            done.set()
            return
        await send(START)
        await send({"type": "http.response.body", "body": b"hi"})

    with run_server(app, impl) as srv:
        seen["server"] = srv
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            for path, body in ((b"/", b"hi"), (b"/linger", b"bye")):
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
                assert read_response(sock)[2] == body
        assert done.wait(15)
        assert asyncio.run_coroutine_threadsafe(_count_tasks(srv), seen["loop"]).result(10) == 0
