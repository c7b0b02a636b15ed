"""--metrics-port: Prometheus metrics of a real server, scraped after known traffic.

Every scrape is parsed with ``prometheus_client``'s own text parser and checked for
exact counts: one process on both implementations (in a thread, through the conftest
server), and ``--workers 2`` through the real CLI, where a worker is SIGKILLed after
traffic and its counts must survive in the sum exactly once.  Conditions that follow
a response (a connection closed, a worker reaped) are polled with deadlines, never
waited for with sleeps.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from typing import Any

import pytest
from websockets.sync.client import connect

from fastasgi import metrics
from tests.apps import metrics_app
from tests.apps.sup_helpers import ServerProcess, fastasgi_cmd, process_gone, wait_for
from tests.conftest import IMPL_HTTP, run_server

prometheus_client_parser = pytest.importorskip("prometheus_client.parser")  # (not installable everywhere: PyPy)
text_string_to_metric_families = prometheus_client_parser.text_string_to_metric_families

APP = "tests.apps.metrics_app:app"
METRICS_RE = r"Metrics on http://127\.0\.0\.1:(\d+)/metrics"

N_OK = 5
N_MISSING = 3
POST_BODY = b"x" * 1000
WS_MESSAGES = 4

# -- helpers ------------------------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape, parsed by prometheus_client: {(sample name, sorted labels): value}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/plain")
        text = response.read().decode()
    finally:
        conn.close()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def requests_by_label(samples: dict[Any, float]) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["method"], dict(labels)["status"]): v
        for (name, labels), v in samples.items()
        if name == "fastasgi_requests_total" and v
    }


class Raw:
    """A raw keep-alive connection that counts the bytes it sends and receives."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sent = 0
        self.received = 0
        self.buf = b""

    def request(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        self.sent += len(data)
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]
        return int(head.split(b" ", 2)[1]), rest[:length]

    def until_closed(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        self.sent += len(data)
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return self.buf
            self.received += len(chunk)
            self.buf += chunk

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a complete response")
        self.received += len(chunk)
        self.buf += chunk
        return chunk

    def close(self) -> None:
        self.sock.close()


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: metrics-test\r\n\r\n".encode()


POST_REQUEST = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(POST_BODY) + POST_BODY
# two different Content-Length values: refused with 400 (RFC 9112 §6.3)
MALFORMED = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"


def http_traffic(port: int, fresh: bool = False) -> dict[str, Any]:
    """N_OK GETs (200), N_MISSING GETs (404), one POST with a body, one malformed request.

    ``fresh``: one connection per request (spreads them over workers).  Returns the
    bytes and connections seen by the client and the PIDs that answered the GETs.
    """
    sent = received = connections = 0
    pids: list[int] = []
    raw = None
    requests = [get_request("/")] * N_OK + [get_request("/missing")] * N_MISSING + [POST_REQUEST]
    for data in requests:
        if raw is None or fresh:
            raw = Raw(port)
            connections += 1
        status, body = raw.request(data)
        if data is POST_REQUEST:
            assert (status, body) == (200, str(len(POST_BODY)).encode())
        else:
            assert status == (404 if b"/missing" in data else 200)
            pids.append(int(body))
        if fresh:
            raw.close()
            sent += raw.sent
            received += raw.received
    if not fresh:
        assert raw is not None
        raw.close()
        sent += raw.sent
        received += raw.received
    bad = Raw(port)
    connections += 1
    answer = bad.until_closed(MALFORMED)
    assert answer.startswith(b"HTTP/1.1 400 ")
    bad.close()
    return {
        "sent": sent + bad.sent,
        "received": received + bad.received,
        "connections": connections,
        "pids": pids,
    }


def websocket_traffic(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/ws", compression=None, open_timeout=10) as ws:
        for i in range(WS_MESSAGES):
            ws.send(f"message {i}")
            assert ws.recv(timeout=10) == f"message {i}"


def check_http(samples: dict[Any, float], traffic: dict[str, Any], factor: int = 1) -> None:
    assert requests_by_label(samples) == {
        ("GET", "2xx"): N_OK * factor,
        ("GET", "4xx"): N_MISSING * factor,
        ("POST", "2xx"): 1 * factor,
    }
    total = (N_OK + N_MISSING + 1) * factor
    assert value(samples, "fastasgi_request_duration_seconds_count") == total
    assert value(samples, "fastasgi_request_duration_seconds_bucket", le="+Inf") == total
    assert 0 < value(samples, "fastasgi_request_duration_seconds_sum") < 60 * total
    buckets = [v for (name, _), v in samples.items() if name == "fastasgi_request_duration_seconds_bucket"]
    assert buckets == sorted(buckets)  # cumulative
    assert value(samples, "fastasgi_parse_errors_total", kind="malformed") == 1 * factor
    for kind in metrics.PARSE_ERROR_KINDS[1:]:
        assert value(samples, "fastasgi_parse_errors_total", kind=kind) == 0
    assert value(samples, "fastasgi_received_bytes_total") == traffic["sent"]
    assert value(samples, "fastasgi_sent_bytes_total") == traffic["received"]
    assert value(samples, "fastasgi_connections_total") == traffic["connections"]
    assert value(samples, "fastasgi_requests_in_flight") == 0
    assert value(samples, "fastasgi_connections_open") == 0


def settled(port: int, requests: int, connections: int) -> dict[Any, float]:
    """Scrape until every request and connection of the traffic is accounted for (a response
    reaches the client a moment before the server counts it done)."""

    def done() -> dict[Any, float] | None:
        samples = scrape(port)
        if (
            value(samples, "fastasgi_request_duration_seconds_count") >= requests
            and value(samples, "fastasgi_connections_total") >= connections
            and value(samples, "fastasgi_connections_open") == 0
            and value(samples, "fastasgi_requests_in_flight") == 0
        ):
            return samples
        return None

    return wait_for(done, 30, "the traffic in the metrics")  # type: ignore[no-any-return]


# -- one process ----------------------------------------------------------------------------------------


def test_single_process_exact_counts(impl: str) -> None:
    with run_server(metrics_app.app, impl, metrics_port=0) as server:
        listener = server.metrics_listener
        assert listener is not None
        mport = listener.port
        assert mport != server.port
        samples = scrape(mport)
        assert requests_by_label(samples) == {}
        assert "fastasgi_worker_starts_total" not in {name for name, _ in samples}  # not under --workers

        traffic = http_traffic(server.port)
        samples = settled(mport, N_OK + N_MISSING + 1, traffic["connections"])
        check_http(samples, traffic)
        assert value(samples, "fastasgi_websocket_connections_total") == 0

        websocket_traffic(server.port)
        after = settled(mport, N_OK + N_MISSING + 1, traffic["connections"] + 1)
        assert value(after, "fastasgi_websocket_connections_total") == 1
        assert value(after, "fastasgi_websocket_connections_open") == 0
        assert value(after, "fastasgi_websocket_messages_total", direction="received") == WS_MESSAGES
        assert value(after, "fastasgi_websocket_messages_total", direction="sent") == WS_MESSAGES
        assert value(after, "fastasgi_connections_total") == traffic["connections"] + 1
        assert value(after, "fastasgi_received_bytes_total") > traffic["sent"]
        assert value(after, "fastasgi_sent_bytes_total") > traffic["received"]
        assert requests_by_label(after) == requests_by_label(samples)  # an upgrade is not an HTTP request

        # the app's port serves the app, never the metrics
        raw = Raw(server.port)
        status, body = raw.request(get_request("/metrics"))
        raw.close()
        assert (status, body) == (200, str(os.getpid()).encode())
    # stopped with the server
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", mport), timeout=5).close()


def test_in_flight_and_timeouts(impl: str) -> None:
    with run_server(
        metrics_app.app, impl, metrics_port=0, timeout_keep_alive=1, timeout_request_header=1, timeout_request_body=1
    ) as server:
        mport = server.metrics_listener.port  # type: ignore[union-attr]
        # a request whose body is still arriving is in flight
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        wait_for(lambda: value(scrape(mport), "fastasgi_requests_in_flight") == 1, 30, "one request in flight")
        assert value(scrape(mport), "fastasgi_connections_open") == 1
        # ... until the body-read timeout answers 408 and closes
        assert b" 408 " in slow.recv(65536)
        while slow.recv(65536):
            pass
        slow.close()
        # a head that never completes: the header-read timeout
        partial = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        partial.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert b" 408 " in partial.recv(65536)
        while partial.recv(65536):
            pass
        partial.close()
        samples = wait_for(
            lambda: (s := scrape(mport))["fastasgi_connections_open", ()] == 0 and s, 30, "connections closed"
        )
        assert value(samples, "fastasgi_timeouts_total", kind="request_body") == 1
        assert value(samples, "fastasgi_timeouts_total", kind="request_header") == 1
        assert value(samples, "fastasgi_timeouts_total", kind="keep_alive") == 0
        assert value(samples, "fastasgi_requests_in_flight") == 0
        assert requests_by_label(samples) == {}  # the client never got a response of the app's
        assert value(samples, "fastasgi_request_duration_seconds_count") == 0


def test_method_slots_match_the_layout() -> None:
    from fastasgi._speedups import http_py

    modules = [http_py]
    try:
        from fastasgi._speedups import http_c

        modules.append(http_c)
    except ImportError:
        pass
    for module in modules:
        for i, method in enumerate(metrics.METHODS[:-1]):
            assert module.method_index(method) == i
        assert module.method_index("PROPFIND") == len(metrics.METHODS) - 1
        assert module.method_index("get") == len(metrics.METHODS) - 1


def test_metrics_port_must_differ_from_the_app_port() -> None:
    result = subprocess.run(
        fastasgi_cmd(APP, "--port", "18765", "--metrics-port", "18765"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert "--metrics-port 18765 is the app's --port" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_import_stays_light() -> None:
    code = "import sys, fastasgi, fastasgi.cli; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode == 0


# -- --workers 2 --------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_workers_sum_and_a_killed_worker_counts_once(impl: str) -> None:
    server = ServerProcess(
        fastasgi_cmd(APP, "--workers", "2", "--port", "0", "--metrics-port", "0", "--http", IMPL_HTTP[impl])
    )
    try:
        port = server.port()
        mport = int(wait_for(lambda: server.find(METRICS_RE), 30, "the metrics address")[0].group(1))
        assert mport != port
        wait_for(lambda: len(server.ready_pids()) >= 2, 60, "2 ready workers")
        first = scrape(mport)
        assert value(first, "fastasgi_worker_starts_total") == 2
        assert value(first, "fastasgi_workers") == 2

        traffic = http_traffic(port, fresh=True)
        samples = settled(mport, N_OK + N_MISSING + 1, traffic["connections"])
        check_http(samples, traffic)
        websocket_traffic(port)
        samples = ws_done = settled(mport, N_OK + N_MISSING + 1, traffic["connections"] + 1)
        assert value(samples, "fastasgi_websocket_messages_total", direction="received") == WS_MESSAGES
        assert value(samples, "fastasgi_websocket_messages_total", direction="sent") == WS_MESSAGES
        assert value(samples, "fastasgi_websocket_connections_total") == 1

        # a worker killed mid-request: a keep-alive connection gets one answer from it (so the
        # worker is known and has counts of its own), then a POST whose body never completes
        hold = Raw(port)
        status, body = hold.request(get_request("/"))
        assert status == 200
        victim = int(body)
        partial = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nab"
        hold.sock.sendall(partial)
        hold.sent += len(partial)
        # (the GET's answer can reach this client before its worker counts it: until then the
        # one request in flight may still be the GET)
        before = wait_for(
            lambda: (
                (s := scrape(mport))["fastasgi_requests_in_flight", ()] == 1
                and requests_by_label(s).get(("GET", "2xx")) == N_OK + 1
                and s
            ),
            30,
            "the GET counted and the POST in flight",
        )
        assert value(before, "fastasgi_connections_open") == 1

        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: process_gone(victim), 30, "the killed worker gone")
        wait_for(lambda: len(server.ready_pids()) >= 3, 60, "a replacement worker ready")
        after = wait_for(
            lambda: (s := scrape(mport))["fastasgi_worker_exits_total", ()] == 1 and s, 30, "the dead worker reaped"
        )
        hold.close()
        assert value(after, "fastasgi_worker_starts_total") == 3
        assert value(after, "fastasgi_worker_restarts_total") == 1
        assert value(after, "fastasgi_workers") == 2
        # its gauges are gone with it; its counters stay, once
        assert value(after, "fastasgi_requests_in_flight") == 0
        assert value(after, "fastasgi_connections_open") == 0
        for key, v in before.items():
            if key[0].startswith("fastasgi_worker") or key[0] in (
                "fastasgi_requests_in_flight",
                "fastasgi_connections_open",
            ):
                continue
            assert after[key] == v, key
        held = {"sent": hold.sent, "received": hold.received, "connections": 1}

        # the same traffic again, on the replacement and the survivor: the counts add up exactly
        again = http_traffic(port, fresh=True)
        total = {k: traffic[k] + again[k] + held[k] for k in ("sent", "received", "connections")}
        samples = settled(mport, 2 * (N_OK + N_MISSING + 1) + 1, total["connections"] + 1)
        assert requests_by_label(samples) == {
            ("GET", "2xx"): 2 * N_OK + 1,
            ("GET", "4xx"): 2 * N_MISSING,
            ("POST", "2xx"): 2,
        }
        assert value(samples, "fastasgi_parse_errors_total", kind="malformed") == 2
        assert value(samples, "fastasgi_request_duration_seconds_count") == 2 * (N_OK + N_MISSING + 1) + 1
        assert value(samples, "fastasgi_connections_total") == total["connections"] + 1
        # bytes: every HTTP byte exactly, plus the WebSocket connection's
        ws_in = value(ws_done, "fastasgi_received_bytes_total") - traffic["sent"]
        ws_out = value(ws_done, "fastasgi_sent_bytes_total") - traffic["received"]
        assert value(samples, "fastasgi_received_bytes_total") == total["sent"] + ws_in
        assert value(samples, "fastasgi_sent_bytes_total") == total["received"] + ws_out
    finally:
        server.stop()
    assert server.proc.returncode is not None
    assert not server.find(r"Traceback")


# -- --reload ----------------------------------------------------------------------------------------------

RELOAD_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_reload_keeps_the_counts(tmp_path: Any) -> None:
    (tmp_path / "metrics_reload_app.py").write_text(RELOAD_APP.format(version="v1"))
    args = ["metrics_reload_app:app", "--reload", "--reload-dir", str(tmp_path), "--app-dir", str(tmp_path)]
    server = ServerProcess(
        fastasgi_cmd(*args, "--port", "0", "--reload-delay", "0.1", "--metrics-port", "0"), cwd=tmp_path
    )
    try:
        port = server.port()
        mport = int(wait_for(lambda: server.find(METRICS_RE), 30, "the metrics address")[0].group(1))

        def answer(expected: bytes) -> bool:
            try:
                raw = Raw(port)
            except OSError:
                return False
            try:
                return raw.request(get_request("/")) == (200, expected)
            except OSError:
                return False
            finally:
                raw.close()

        wait_for(lambda: answer(b"v1"), 30, "v1")
        ok_v1 = requests_by_label(settled(mport, 1, 1))["GET", "2xx"]
        (tmp_path / "metrics_reload_app.py").write_text(RELOAD_APP.format(version="v2"))
        wait_for(lambda: answer(b"v2"), 30, "the reloaded v2")
        # the first process's answers are still there, and the new one's add to them
        samples = settled(mport, ok_v1 + 1, 1)
        before = requests_by_label(samples)["GET", "2xx"]
        assert answer(b"v2")
        samples = settled(mport, before + 1, 1)
        assert requests_by_label(samples)["GET", "2xx"] == before + 1
        assert "fastasgi_workers" not in {name for name, _ in samples}
    finally:
        server.stop()
