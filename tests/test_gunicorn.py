"""gunicorn -k fastasgi.workers.FastASGIWorker / FastASGIH11Worker, as real subprocesses."""

from __future__ import annotations

import http.client
import signal
import ssl
import sys
from pathlib import Path

import pytest

from tests.apps.sup_helpers import ServerProcess, get, wait_for

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn is POSIX only")

APP = "tests.apps.sup_app:app"


def gunicorn(*args: str) -> ServerProcess:
    cmd = [sys.executable, "-m", "gunicorn", APP, "--bind", "127.0.0.1:0", "--log-level", "info", *args]
    return ServerProcess(cmd)


@pytest.mark.parametrize("worker", ["FastASGIWorker", "FastASGIH11Worker"])
def test_gunicorn_worker_serves(worker: str) -> None:
    server = gunicorn("-k", f"fastasgi.workers.{worker}", "--workers", "2", "--keep-alive", "3")
    try:
        port = server.port()
        status, body = wait_for(lambda: _try(port), 30, "a response")
        assert status == 200 and int(body) > 0
        # both workers booted: a SIGTERM that reaches a worker between gunicorn's fork and
        # its init_signals() lands in the arbiter's inherited handler and is lost (gunicorn's
        # race, any worker class), and the arbiter then waits its 30 s graceful timeout
        wait_for(lambda: len(server.find("Application startup complete")) >= 2, 30, "both workers up")
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert "Application shutdown complete." in server.output
    finally:
        server.stop()


def _try(port: int) -> tuple[int, str] | None:
    try:
        return get(port, timeout=5)
    except OSError:
        return None


def test_gunicorn_limits_and_max_requests() -> None:
    server = gunicorn(
        "-k",
        "fastasgi.workers.FastASGIWorker",
        "--limit-request-line",
        "100",
        "--limit-request-fields",
        "5",
        "--max-requests",
        "10",
    )
    try:
        port = server.port()
        wait_for(lambda: _try(port), 30, "a response")
        assert get(port, "/" + "x" * 200)[0] == 400
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("GET", "/")
        for i in range(6):
            conn.putheader(f"x-h{i}", "v")
        conn.endheaders()
        assert conn.getresponse().status == 400
        conn.close()
        # --max-requests: the worker is replaced by the arbiter, requests keep succeeding
        # (the limit is checked on the server's 0.1 s tick: keep going until a new PID answers)
        pids = set()
        for _ in range(5000):
            status, body = get(port)
            assert status == 200
            pids.add(int(body))
            if len(pids) >= 2:
                break
        assert len(pids) >= 2
    finally:
        server.stop()


def test_gunicorn_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    server = gunicorn("-k", "fastasgi.workers.FastASGIWorker", "--certfile", str(certfile), "--keyfile", str(keyfile))
    try:
        port = server.port()
        context = ssl.create_default_context()
        ca.configure_trust(context)

        def request() -> int | None:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
                conn.request("GET", "/")
                status = conn.getresponse().status
                conn.close()
                return status
            except OSError:
                return None

        assert wait_for(request, 30, "an HTTPS response") == 200
    finally:
        server.stop()


@pytest.mark.parametrize("worker", ["FastASGIWorker", "FastASGIH11Worker"])
def test_gunicorn_access_logformat(worker: str) -> None:
    """gunicorn's --access-logformat is the worker's access-log format (escaped as ours)."""
    fmt = 'ALOG %(h)s "%(r)s" %(s)s %(m)s %({x-test}i)s'
    server = gunicorn("-k", f"fastasgi.workers.{worker}", "--access-logfile", "-", "--access-logformat", fmt)
    try:
        port = server.port()
        wait_for(lambda: _try(port), 30, "a response")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/some/path?q=1", headers={"X-Test": 'a"b\x85'})
        assert conn.getresponse().status == 200
        conn.close()
        line = wait_for(lambda: server.find(r"ALOG .*/some/path.*"), 30, "the access line")[0].group(0)
        assert line == 'ALOG 127.0.0.1 "GET /some/path?q=1 HTTP/1.1" 200 GET a\\"b\\x85'
    finally:
        server.stop()


def test_gunicorn_default_access_line_is_uvicorns() -> None:
    server = gunicorn("-k", "fastasgi.workers.FastASGIWorker", "--access-logfile", "-")
    try:
        port = server.port()
        wait_for(lambda: _try(port), 30, "a response")
        get(port, "/uvicorn/line")
        wait_for(lambda: server.find(r'127\.0\.0\.1:\d+ - "GET /uvicorn/line HTTP/1\.1" 200'), 30, "the access line")
    finally:
        server.stop()


def test_gunicorn_bad_access_logformat_is_a_boot_error() -> None:
    server = gunicorn("-k", "fastasgi.workers.FastASGIWorker", "--access-logformat", "%(h)s %(nope)s")
    try:
        assert server.wait(60) != 0
        assert "Invalid configuration: Invalid --access-log-format" in server.output
        assert "%(nope)s" in server.output
    finally:
        server.stop()
