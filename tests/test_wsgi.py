"""``--interface wsgi``: a real Flask app through the ``fastasgi`` command, on both implementations.

Bodies arrive whole (chunked ones included), a body cut short is an error rather
than a short body, and SIGTERM / Ctrl+C stop the server promptly, within
``--timeout-graceful-shutdown`` when a handler is still running.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import sys
import threading
import time

import httpx
import pytest

from tests.apps.sup_helpers import ServerProcess, fastasgi_cmd, wait_for
from tests.conftest import IMPL_HTTP, read_response

pytest.importorskip("flask")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

APP = "tests.apps.flask_app:app"


def flask_server(impl: str, *extra: str) -> ServerProcess:
    return ServerProcess(fastasgi_cmd(APP, "--interface", "wsgi", "--port", "0", "--http", IMPL_HTTP[impl], *extra))


def digest(data: bytes) -> dict[str, object]:
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_flask_gets_whole_bodies_and_stops_promptly(impl: str) -> None:
    server = flask_server(impl)
    try:
        port = server.port()
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/").text == "hello from flask"

            body = bytes(range(256)) * 1200  # 300 KiB: several receive() calls
            assert client.post("/upload", content=body).json() == digest(body)

            # httpx sends a generator's body chunked (no Content-Length)
            parts = [b"first part;", b"x" * 70000, b";last part"]
            r = client.post("/upload", content=iter(parts))
            assert r.json() == digest(b"".join(parts))

            # the same by hand, with a chunk extension and a trailer
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n"
                    b"6\r\n world\r\n"
                    b"0\r\nX-Trailer: 1\r\n\r\n"
                )
                status, _headers, answer = read_response(sock)
            assert status == 200
            assert json.loads(answer) == digest(b"hello world")

            # an idle keep-alive connection (this client's) must not delay the exit
            server.signal(signal.SIGTERM)
            assert server.wait(5) == -signal.SIGTERM
        assert "Application shutdown complete." in server.output
    finally:
        server.stop()


def test_truncated_chunked_body_is_an_error_not_a_short_body(impl: str) -> None:
    server = flask_server(impl)
    try:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        # the client is gone before the last chunk: Flask's read must fail, not return b"hello"
        outcome = wait_for(lambda: server.find(r"upload(: \d+ bytes| failed: \w+)"), 15, "the upload's outcome")
        assert outcome[0].group(0) == "upload failed: ClientDisconnected"
    finally:
        server.stop()


def test_sigterm_does_not_wait_for_a_body_the_app_did_not_read(impl: str) -> None:
    server = flask_server(impl)
    try:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            # Flask answers 405 without reading the body; the client is still "sending" it
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc")
            status, _headers, _body = read_response(sock)
            assert status == 405
            server.signal(signal.SIGTERM)
            # the rest of the body would take --timeout-request-body (60 s) to time out;
            # the server half-closes and lingers at most 2 s instead
            assert server.wait(6) == -signal.SIGTERM
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_timeout_bounds_a_running_handler(impl: str, sig: int) -> None:
    server = flask_server(impl, "--timeout-graceful-shutdown", "1")
    errors: list[BaseException] = []

    def slow_request(port: int) -> None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/sleep?s=60", timeout=30)
        except httpx.HTTPError as exc:  # the server gives up on it: expected
            errors.append(exc)

    try:
        port = server.port()
        client = threading.Thread(target=slow_request, args=(port,), daemon=True)
        client.start()
        wait_for(lambda: server.find("sleep started"), 15, "the handler to start")
        server.signal(sig)
        # the handler's thread cannot be stopped, but it must not keep the process alive
        # past the timeout (the interpreter used to wait for it at exit after Ctrl+C)
        code = server.wait(1 + 5)
        assert code == (-signal.SIGTERM if sig == signal.SIGTERM else 0)
        assert "timeout graceful shutdown exceeded" in server.output
        client.join(10)
        assert errors  # the request was cut, not answered
    finally:
        server.stop()


def test_workers_stop_within_the_graceful_timeout() -> None:
    # a worker first drains its connections, then waits for what still runs: both
    # count against one --timeout-graceful-shutdown (the drain used to come on top)
    graceful = 3.0
    server = ServerProcess(
        fastasgi_cmd(
            APP, "--interface", "wsgi", "--port", "0", "--workers", "2", "--timeout-graceful-shutdown", f"{graceful:g}"
        )
    )
    errors: list[BaseException] = []

    def slow_request(port: int) -> None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/sleep?s=60", timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    try:
        port = server.port()
        wait_for(lambda: len(server.ready_pids()) >= 2, 60, "2 ready workers")
        client = threading.Thread(target=slow_request, args=(port,), daemon=True)
        client.start()
        wait_for(lambda: server.find("sleep started"), 15, "the handler to start")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        server.wait(graceful * 2 + 10)
        elapsed = time.monotonic() - started
        # the timeout plus process exit; twice the timeout would be the drain counted apart
        assert elapsed < graceful + 2.0, f"{elapsed:.1f}s"
        assert "timeout graceful shutdown exceeded" in server.output
        client.join(10)
        assert errors
    finally:
        server.stop()
