"""Lifespan, interfaces, proxy headers, root_path, TLS, limits and the Python API, on every implementation."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import httpx
import pytest

from fastasgi import Config, Server
from tests.apps import misc
from tests.apps.basic import app as basic_app
from tests.conftest import raw_request, read_response, run_server

# -- lifespan ---------------------------------------------------------------------------


def test_lifespan_state_copied_into_scope(impl):
    with run_server(misc.lifespan_state, impl, lifespan="on") as srv:
        r = httpx.get(srv.url)
    assert r.text == "[('db', 'connected')]"


def test_lifespan_auto_tolerates_unsupported(impl, caplog):
    caplog.set_level("INFO", logger="uvicorn.error")
    with run_server(misc.no_lifespan, impl, lifespan="auto") as srv:
        assert httpx.get(srv.url).text == "ok"
    assert "ASGI 'lifespan' protocol appears unsupported." in caplog.text


def test_lifespan_on_failure_does_not_start(impl):
    config = Config(misc.lifespan_fails, port=0, lifespan="on", log_config=None, http="h11")
    server = Server(config)
    server.run()
    assert not server.started


def test_lifespan_off_never_calls_app(impl):
    with run_server(misc.lifespan_fails, impl, lifespan="off") as srv:
        # the app asserts scope["type"] == "lifespan", so any http call fails with 500, but startup succeeded
        assert httpx.get(srv.url).status_code == 500


# -- interfaces -------------------------------------------------------------------------


def test_asgi2_autodetected(impl):
    with run_server(misc.ASGI2App, impl) as srv:
        assert httpx.get(srv.url).text == "asgi2"
        assert srv.config.interface == "asgi2"


def test_wsgi_interface(impl):
    with run_server(misc.wsgi_app, impl, interface="wsgi") as srv:
        r = httpx.post(srv.url + "/x", content=b"payload")
    assert r.text == "wsgi /x payload"


def test_factory(impl):
    with run_server("tests.apps.misc:create_app", impl, factory=True) as srv:
        assert httpx.get(srv.url).text == "hello"


def test_starlette_end_to_end(impl):
    from tests.apps.starlette_app import app

    with run_server(app, impl, lifespan="on") as srv:
        with httpx.Client(base_url=srv.url) as c:
            assert c.get("/?q=x").json() == {"hello": "world", "path": "/", "q": "x"}
            assert c.post("/echo", content=b"abc").text == "abc"
            assert c.get("/sync").text == "sync ok"
            assert c.get("/stream").text == "part0\npart1\npart2\n"


# -- proxy headers ----------------------------------------------------------------------

FORWARDED = b"GET /scope HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\nConnection: close\r\n\r\n"


def _scope(port):
    import json

    data = raw_request(port, FORWARDED)
    return json.loads(data.partition(b"\r\n\r\n")[2])


def test_proxy_headers_trusted(impl):
    with run_server(basic_app, impl, forwarded_allow_ips="127.0.0.1,10.0.0.0/8") as srv:
        scope = _scope(srv.port)
        port = srv.port
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    assert scope["server"] == ["127.0.0.1", port]  # X-Forwarded-Port: ignored, as uvicorn does
    with run_server(basic_app, impl, forwarded_allow_ips="127.0.0.1,10.0.0.0/8", forwarded_host=True) as srv:
        assert _scope(srv.port)["server"] == ["127.0.0.1", 8443]  # ... unless --forwarded-host


def test_proxy_headers_untrusted_ignored(impl):
    with run_server(basic_app, impl, forwarded_allow_ips="192.0.2.1") as srv:
        scope = _scope(srv.port)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


def test_proxy_headers_star_and_disabled(impl):
    with run_server(basic_app, impl, forwarded_allow_ips="*") as srv:
        assert _scope(srv.port)["client"] == ["203.0.113.7", 0]  # everything trusted: the left-most address
    with run_server(basic_app, impl, proxy_headers=False, forwarded_allow_ips="*") as srv:
        assert _scope(srv.port)["client"][0] == "127.0.0.1"


def test_proxy_trust_rules():
    from fastasgi.proxy_trust import ProxyTrust

    trust = ProxyTrust("127.0.0.1, 10.0.0.0/8, /run/app.sock, ::1")
    assert "127.0.0.1" in trust
    assert "10.1.2.3" in trust
    assert "::1" in trust
    assert "/run/app.sock" in trust
    assert "192.168.1.1" not in trust
    assert None not in trust
    assert trust.client_from_forwarded_for("1.2.3.4, 10.0.0.2") == ("1.2.3.4", 0)
    assert trust.client_from_forwarded_for("[2001:db8::1]:4711, 10.0.0.2") == ("2001:db8::1", 4711)
    assert trust.client_from_forwarded_for("10.0.0.3, 10.0.0.2") == ("10.0.0.3", 0)
    assert ProxyTrust("*").client_from_forwarded_for("1.1.1.1, 2.2.2.2") == ("1.1.1.1", 0)


# -- root_path, headers -----------------------------------------------------------------


def test_root_path(impl):
    import json

    with run_server(basic_app, impl, root_path="/api") as srv:
        data = raw_request(srv.port, b"GET /scope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    scope = json.loads(data.partition(b"\r\n\r\n")[2])
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/scope"
    assert scope["raw_path"] == "/api/scope"


def test_extra_headers_and_no_server_date(impl):
    with run_server(
        basic_app, impl, headers=[("X-Powered-By", "tests")], server_header=False, date_header=False
    ) as srv:
        r = httpx.get(srv.url)
    assert r.headers["x-powered-by"] == "tests"
    assert "server" not in r.headers
    assert "date" not in r.headers


# -- limits -----------------------------------------------------------------------------


def test_limit_concurrency_503(impl):
    with run_server(basic_app, impl, limit_concurrency=1) as srv:
        blocker = socket.create_connection(("127.0.0.1", srv.port))
        try:
            blocker.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: a\r\n\r\n")
            # a second connection exceeds the limit of 1 and is told so at once
            r = httpx.get(srv.url)
            assert r.status_code == 503
        finally:
            blocker.close()


def test_limit_max_requests_exits(impl):
    with run_server(basic_app, impl, limit_max_requests=3) as srv:
        with httpx.Client(base_url=srv.url) as c:
            for _ in range(3):
                assert c.get("/").status_code == 200
        # The server must stop by itself: wait for its thread here, before
        # run_server's exit sets should_exit (which would stop it anyway).
        assert srv.thread is not None
        srv.thread.join(30)
        assert not srv.thread.is_alive(), "the server did not exit after limit_max_requests"
        assert not srv.should_exit  # nobody told it to


def test_keep_alive_timeout_closes_idle(impl):
    with run_server(basic_app, impl, timeout_keep_alive=1) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            # several requests: the later ones run eagerly in the connection's runner,
            # and the idle clock must start after each of them too
            for _ in range(3):
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                assert read_response(sock)[0] == 200
            assert sock.recv(10) == b""  # closed by the server once idle


def test_keep_alive_clock_follows_the_loop(impl):
    # The idle clock reads CLOCK_MONOTONIC directly only where loop.time() is that
    # clock (asyncio's loops, uvloop's); a loop with a clock of its own is asked.
    from fastasgi import _speedups
    from fastasgi.config import Config
    from fastasgi.server import ServerState

    http = _speedups.load(impl).http

    class OwnClockLoop(asyncio.SelectorEventLoop):
        def time(self):
            return 1_000_000.0

    uvloop = pytest.importorskip("uvloop")
    loops = [asyncio.SelectorEventLoop(), uvloop.new_event_loop(), OwnClockLoop()]
    try:
        assert [http.clock_is_monotonic(loop) for loop in loops] == [True, True, False]
        config = Config(basic_app, lifespan="off", log_config=None)
        config.load()
        for loop in loops:
            proto = http.HttpProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
            # (exactly the fake clock's value only when the fake clock was asked)
            assert (proto.clock() == 1_000_000.0) is (type(loop) is OwnClockLoop)
            assert abs(proto.clock() - loop.time()) < 60
    finally:
        for loop in loops:
            loop.close()


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    cert_path = d / "cert.pem"
    key_path = d / "key.pem"
    ca_path = d / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    ca.cert_pem.write_to_path(str(ca_path))
    client_cert = ca.issue_cert("client@example.com")
    client_path = d / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(client_path))
    return {"ca": ca, "cert": str(cert_path), "key": str(key_path), "ca_path": str(ca_path), "client": str(client_path)}


def test_tls(impl, tls):
    with run_server(basic_app, impl, ssl_certfile=tls["cert"], ssl_keyfile=tls["key"]) as srv:
        ctx = ssl.create_default_context(cafile=tls["ca_path"])
        with httpx.Client(verify=ctx) as c:
            r = c.get(srv.url + "/scope")
    assert r.json()["scheme"] == "https"


def test_tls_client_cert_required(impl, tls):
    with run_server(
        basic_app,
        impl,
        ssl_certfile=tls["cert"],
        ssl_keyfile=tls["key"],
        ssl_ca_certs=tls["ca_path"],
        ssl_cert_reqs=int(ssl.CERT_REQUIRED),
    ) as srv:
        ctx = ssl.create_default_context(cafile=tls["ca_path"])
        with pytest.raises(httpx.HTTPError):
            with httpx.Client(verify=ctx) as c:
                c.get(srv.url)
        ctx.load_cert_chain(tls["client"])
        with httpx.Client(verify=ctx) as c:
            assert c.get(srv.url).status_code == 200


def test_tls_context_factory(impl, tls):
    calls = []

    def factory(config, default):
        calls.append(config)
        return default()

    with run_server(
        basic_app, impl, ssl_certfile=tls["cert"], ssl_keyfile=tls["key"], ssl_context_factory=factory
    ) as srv:
        ctx = ssl.create_default_context(cafile=tls["ca_path"])
        assert httpx.get(srv.url, verify=ctx).status_code == 200
    assert len(calls) == 1


# -- IPv6 -------------------------------------------------------------------------------


def test_ipv6(impl):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with run_server(basic_app, impl, host="::1") as srv:
        port = srv.servers[0].sockets[0].getsockname()[1]
        r = httpx.get(f"http://[::1]:{port}/scope")
    assert r.json()["client"][0] == "::1"


# -- Python API -------------------------------------------------------------------------


def test_serve_inside_running_loop(impl):
    async def main():
        config = Config(basic_app, port=0, log_config=None, http="h11" if impl == "py" else "httptools")
        server = Server(config)
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0)  # yield to the server task until it listens
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/")
        server.should_exit = True
        await task
        return r.text

    assert asyncio.run(main()) == "Hello, world!"


def test_graceful_shutdown_finishes_in_flight(impl):
    with run_server(basic_app, impl) as srv:
        result = {}

        def slow_request():
            result["r"] = httpx.get(srv.url + "/sleep?0.5", timeout=20)

        t = threading.Thread(target=slow_request)
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        read_response(sock)
        t.start()
        # wait until the slow request is in flight: its head was read (the first
        # request's Task may still be in the set for a moment after its response)
        for _ in range(2000):
            if srv.server_state.total_requests >= 2 and srv.server_state.tasks:
                break
            threading.Event().wait(0.01)
        srv.should_exit = True
        t.join(20)
        assert result["r"].text == "slept"
        assert result["r"].headers["connection"] == "close"
        # the idle keep-alive connection was closed cleanly
        sock.settimeout(10)
        assert sock.recv(10) == b""
        sock.close()


def test_graceful_shutdown_answers_partial_request(impl):
    with run_server(basic_app, impl) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # head incomplete
        while not any(getattr(c, "head_partial", True) for c in srv.server_state.connections):
            threading.Event().wait(0.01)
        srv.should_exit = True
        while not any(getattr(c, "close_after_response", False) for c in srv.server_state.connections):
            threading.Event().wait(0.01)
        sock.sendall(b"\r\n")
        status, headers, body = read_response(sock)
        assert (status, body) == (200, b"Hello, world!")
        assert headers[b"connection"] == b"close"
        sock.close()


# -- how apps run ----------------------------------------------------------------------


def test_apps_run_in_a_real_task_on_every_request(impl):
    # the first request of a connection and the keep-alive ones after it (eager starts) alike
    with run_server(basic_app, impl) as srv:
        with httpx.Client(base_url=srv.url) as c:
            for _ in range(5):
                assert c.get("/current-task").text == "True True"


def test_shutdown_timeout_cancels_suspended_apps(impl):
    from tests.apps import basic

    with run_server(basic_app, impl, timeout_graceful_shutdown=1) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[2] == b"Hello, world!"
        # second request on the same connection: started eagerly, then suspended forever
        sock.sendall(b"GET /forever?%s HTTP/1.1\r\nHost: a\r\n\r\n" % impl.encode())
        while not srv.server_state.tasks:
            threading.Event().wait(0.01)
        srv.should_exit = True
    # the server has stopped: the app was cancelled and the connection closed
    assert impl.encode() in basic.CANCELLED
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        data = b""
    sock.close()
    assert data == b""
