"""HTTP/2 (``--http2``, issue 16), through a real server on loopback.

Clients: httpx with ``http2=True`` (prior knowledge in cleartext, ALPN over TLS),
curl where it is installed with HTTP/2, and :class:`RawH2`, a client that builds
frames by hand (hyperframe, hpack) so that it can also misbehave.  Every test runs
on both implementation sets (the ``impl`` fixture), as the HTTP/1.1 tests do: each
set's HTTP/2 protocol beside its HTTP/1.1 one and its event loop -- the compiled set's
is ``http2_c`` on libnghttp2 where it was built, the pure set's ``http2_py`` on ``h2``.
The tests of the HTTP/2 protocol alone (hostile clients, shutdown, timeouts) run once
per distinct HTTP/2 implementation (:data:`PER_HTTP2_IMPLEMENTATION`): both, unless the
compiled set was built without libnghttp2.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request

import pytest

pytest.importorskip("h2")  # the pure implementation (and httpx's HTTP/2) need it

import httpx
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from bench.fake_transport import FakeTransport
from fastasgi import _speedups, metrics
from fastasgi._speedups.stream_py import WAVE
from tests.apps import basic, h2app
from tests.conftest import raw_request, read_response, run_server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0, 1, 3, 7, 8, 11


def _distinct_http2_sets() -> list:
    """One implementation set per distinct HTTP/2 implementation: the pure set, and the
    compiled one when its HTTP/2 is not the pure one's (``http2_c`` on libnghttp2)."""
    sets: list = ["py"]
    if _speedups.compiled_error() is None and _speedups.load_http2("c") is not _speedups.load_http2("py"):
        sets.insert(0, pytest.param("c", marks=pytest.mark.c_extension))
    return sets


PER_HTTP2_IMPLEMENTATION = pytest.mark.parametrize("impl", _distinct_http2_sets(), indirect=True)


@pytest.fixture(scope="module")
def server(impl):
    with run_server(h2app.app, impl, http2=True, limit_request_body=100_000) as srv:
        yield srv


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("h2tls")
    paths = {"cert": str(d / "cert.pem"), "key": str(d / "key.pem"), "ca": str(d / "ca.pem")}
    cert.private_key_pem.write_to_path(paths["key"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    ca.cert_pem.write_to_path(paths["ca"])
    return paths


@pytest.fixture(scope="module")
def tls_server(impl, tls):
    with run_server(h2app.app, impl, http2=True, ssl_certfile=tls["cert"], ssl_keyfile=tls["key"]) as srv:
        yield srv


def h2c_client() -> httpx.Client:
    """httpx speaking HTTP/2 with prior knowledge on cleartext (no HTTP/1.1 at all).
    (``verify=False``: no TLS here, and loading the CA bundle costs a third of a second.)"""
    return httpx.Client(http1=False, http2=True, timeout=10, verify=False)


class RawH2:
    """An HTTP/2 client on a raw socket that builds every frame by hand, without a state
    machine: it sends what a test tells it, valid or not, and reads frames one by one."""

    def __init__(self, port: int, preface: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.buffer = b""
        self.held: list[Frame] = []  # other streams' frames that response() read past
        if preface:
            self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, *frames: Frame | bytes) -> None:
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))

    def block(self, path: str, method: str = "GET", extra: tuple = (), authority: str = "a") -> bytes:
        return self.encoder.encode(
            [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority), *extra]
        )

    def headers(self, stream_id: int, path: str, end_stream: bool = True, **kw: object) -> HeadersFrame:
        frame = HeadersFrame(stream_id, data=self.block(path, **kw))  # type: ignore[arg-type]
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame

    def read_frame(self) -> Frame | None:
        """The next frame, or None once the server closed (a stall fails the test: socket timeout)."""
        if self.held:
            return self.held.pop(0)
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    if isinstance(frame, HeadersFrame):
                        frame.decoded = self.decoder.decode(frame.data, raw=True)  # type: ignore[attr-defined]
                    return frame
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk

    def read_until(self, predicate) -> tuple[list[Frame], bool]:
        """Frames up to the first that ``predicate`` accepts; (frames, closed) where closed
        means the server closed the connection first."""
        frames = []
        while True:
            frame = self.read_frame()
            if frame is None:
                return frames, True
            frames.append(frame)
            if predicate(frame):
                return frames, False

    def response(self, stream_id: int) -> tuple[int | None, bytes, list[Frame]]:
        """(status, body, frames) of one stream, read until it ends, is reset or the connection goes."""
        frames, _ = self.read_until(
            lambda f: (
                (f.stream_id == stream_id and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame)))
                or isinstance(f, GoAwayFrame)
            )
        )
        status = None
        body = b""
        # the frames of other streams may come in between (HTTP/2 interleaves them): they
        # stay for the next read
        self.held[:0] = [f for f in frames if f.stream_id not in (0, stream_id)]
        for f in frames:
            if f.stream_id != stream_id:
                continue
            if isinstance(f, HeadersFrame):
                status = int(dict(f.decoded)[b":status"])  # type: ignore[attr-defined]
            elif isinstance(f, DataFrame):
                body += f.data
        return status, body, frames


def window_of_data(stream_id: int) -> list[DataFrame]:
    """A stream's whole initial window (65535 bytes) of DATA, in frames of at most 16384 bytes."""
    return [DataFrame(stream_id, data=b"d" * 16384) for _ in range(3)] + [DataFrame(stream_id, data=b"d" * 16383)]


def goaway_of(frames: list[Frame]) -> GoAwayFrame | None:
    for f in frames:
        if isinstance(f, GoAwayFrame):
            return f
    return None


# -- requests and responses ---------------------------------------------------------------


def test_get_and_scope(server):
    with h2c_client() as c:
        r = c.get(f"{server.url}/scope?a=1", headers={"x-test": "yes"})
        hello = c.get(f"{server.url}/")
    assert r.http_version == "HTTP/2"
    assert hello.text == "Hello, world!"
    scope = r.json()
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/scope", "/scope", "a=1")
    assert scope["scheme"] == "http"
    # :authority is the host header, first; no pseudo-header reaches the app
    assert scope["headers"][0] == ["host", f"127.0.0.1:{server.port}"]
    assert ["x-test", "yes"] in scope["headers"]
    assert not [name for name, _ in scope["headers"] if name.startswith(":")]


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/sc%6Fpe?a=1?b=%20", ("/scope", "/sc%6Fpe", "a=1?b=%20")),  # the first "?" starts the query
        ("/scope?x%41", ("/scope", "/scope", "x%41")),  # a "%" in the query leaves the path alone
        ("/scope?", ("/scope", "/scope", "")),
    ],
)
def test_target_is_path_and_query(server, target, expected):
    """:path is split as HTTP/1.1's request target is: path (percent-decoded) and query."""
    with RawH2(server.port) as h:
        h.send(h.headers(1, target))
        status, body, _ = h.response(1)
    assert status == 200
    scope = json.loads(body)
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == expected


def test_post_body_larger_than_the_windows(server):
    """Request and response bodies larger than a stream window (65535 bytes): both flow controls work."""
    body = bytes(range(256)) * 350  # 87.5 KiB (the server's --limit-request-body is 100 000)
    with h2c_client() as c:
        r = c.post(f"{server.url}/echo", content=body)
        big = c.get(f"{server.url}/big?400000")
    assert r.status_code == 200 and r.content == body
    assert big.content == b"x" * 400000
    assert big.headers["content-length"] == "400000"


def test_streaming_response(server):
    with h2c_client() as c:
        r = c.get(f"{server.url}/stream")
    assert r.content == b"chunk0;chunk1;chunk2;"
    assert "content-length" not in r.headers and "transfer-encoding" not in r.headers


def test_app_errors_end_the_stream_not_the_connection(server):
    with h2c_client() as c:
        assert c.get(f"{server.url}/error").status_code == 500
        assert c.get(f"{server.url}/no-response").status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(f"{server.url}/too-long")  # more than its content-length: the stream is reset
        assert c.get(f"{server.url}/status/204").content == b""
        assert c.head(f"{server.url}/").content == b""
        assert c.get(f"{server.url}/").text == "Hello, world!"  # same connection, still serving


def test_concurrent_streams_each_in_its_own_task(server):
    """Five streams of one connection run at once (each waits for the others), each in a
    Task of its own whose context starts fresh."""

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=10, verify=False) as c:
            return await asyncio.gather(*[c.get(f"{server.url}/barrier?k1&5") for _ in range(5)])

    responses = asyncio.run(main())
    answers = [r.text.split() for r in responses]
    assert all(r.http_version == "HTTP/2" for r in responses)
    assert len({a[0] for a in answers}) == 5  # five Tasks
    assert {a[1] for a in answers} == {"unset"}  # fresh contexts
    assert len({a[2] for a in answers}) == 1  # one connection


def test_rst_stream_is_http_disconnect(server):
    started, disconnected = threading.Event(), threading.Event()
    basic.WAITERS[b"h2rst"] = (started, disconnected)
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/wait-disconnect?h2rst"))
        assert started.wait(10)
        h.send(RstStreamFrame(1, error_code=CANCEL))
        assert disconnected.wait(10)
        # the connection goes on
        h.send(h.headers(3, "/"))
        status, body, _ = h.response(3)
    assert (status, body) == (200, b"Hello, world!")


def test_receive_window_follows_the_app(server):
    """The client fills the stream's window; the server hands it back only once the app
    has read the body, not when the bytes arrive."""
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/lazy?w1", end_stream=False, method="POST"), *window_of_data(1))
        frames, _ = h.read_until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
        h.send(h.headers(3, "/open?w1"))
        more, _ = h.read_until(lambda f: f.stream_id == 3 and "END_STREAM" in f.flags)
        frames += more
        # up to /open's answer the app had read nothing (once /open set its gate it may
        # read at once, so its WINDOW_UPDATE may come before the end of /open's answer)
        before_open = frames[: next(i for i, f in enumerate(frames) if f.stream_id == 3)]
        assert not [f for f in before_open if isinstance(f, WindowUpdateFrame) and f.stream_id == 1]
        # the app reads now: its window comes back, and the client ends the body
        updates = [f for f in frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 1]
        if not updates:
            more, closed = h.read_until(lambda f: isinstance(f, WindowUpdateFrame) and f.stream_id == 1)
            assert not closed
            updates = more[-1:]
        assert updates[0].window_increment == 65535
        h.send(DataFrame(1, data=b"", flags=["END_STREAM"]))
        _, body, _ = h.response(1)
    assert body == b"65535"


# -- negotiation ------------------------------------------------------------------------


def test_http11_on_the_same_port(server):
    with httpx.Client(timeout=10, verify=False) as c:
        r = c.get(f"{server.url}/scope")
    assert r.http_version == "HTTP/1.1" and r.json()["http_version"] == "1.1"
    # bytes split anywhere before the decision are all handed on
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"G")
        sock.sendall(b"ET / HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"Hello, world!")
    # a request that starts like the preface and is not one is HTTP/1.1's to refuse
    answer = raw_request(server.port, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_client_settings_and_hpack_tables_across_streams(server):
    """The client's SETTINGS take effect, also when changed later (its stream window: 5 bytes,
    then 64 KiB), and both HPACK dynamic tables carry over from one stream to the next."""
    with RawH2(server.port, preface=False) as h:
        settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 5, SettingsFrame.MAX_HEADER_LIST_SIZE: 1 << 16}
        h.send(PREFACE, SettingsFrame(0, settings=settings), h.headers(1, "/", extra=(("x-custom", "one"),)))
        frames, _ = h.read_until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
        assert frames[-1].data == b"Hello"
        head = next(f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == 1)
        assert dict(head.decoded)[b":status"] == b"200"  # type: ignore[attr-defined]
        h.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}))  # RFC 9113 §6.9.2
        _, body, _ = h.response(1)
        assert body == b", world!"
        # the same field again: sent as an index into the server's decoding table; the
        # response's fields likewise come as indexes into the client's
        h.send(h.headers(3, "/scope", extra=(("x-custom", "one"),)))
        status, body, frames = h.response(3)
    assert status == 200 and ["x-custom", "one"] in json.loads(body)["headers"]
    head = next(f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == 3)
    assert dict(head.decoded)[b"content-type"].startswith(b"application/json")  # type: ignore[attr-defined]


def test_response_heads_one_after_another(impl, server):
    """Each response's head is its own app's, also when it looks like the one before
    (the server reuses the last head it checked for the same status and fields)."""

    def head_of(frames: list) -> list:
        fields = next(f for f in frames if isinstance(f, HeadersFrame)).decoded  # type: ignore[attr-defined]
        return [(name, value) for name, value in fields if name != b"date"]

    plain = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"server", b"fastasgi")]
    expected = {
        "/": [*plain, (b"content-length", b"13")],
        "/status/204": [(b":status", b"204"), (b"content-type", b"text/plain"), (b"server", b"fastasgi")],
        "/status/200": [*plain, (b"content-length", b"17")],
        "/custom-headers": [
            (b":status", b"200"),
            (b"content-type", b"text/plain"),
            (b"server", b"custom"),
            (b"x-multi", b"1"),
            (b"x-multi", b"2"),
            (b"content-length", b"6"),
        ],
    }
    paths = ["/", "/", "/status/204", "/status/200", "/custom-headers", "/", "/custom-headers", "/status/204", "/"]
    with RawH2(server.port) as h:
        for i, path in enumerate(paths):
            h.send(h.headers(2 * i + 1, path))
            _, _, frames = h.response(2 * i + 1)
            assert head_of(frames) == expected[path], path
    # another server's default fields (none here): the same app's head without them
    with run_server(h2app.app, impl, http2=True, server_header=False, date_header=False) as other:
        with RawH2(other.port) as h:
            h.send(h.headers(1, "/"))
            _, _, frames = h.response(1)
    assert head_of(frames) == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]


@PER_HTTP2_IMPLEMENTATION
def test_invalid_client_setting_is_a_connection_error(server):
    """RFC 9113 §6.5.2: an initial window above 2^31-1 is a FLOW_CONTROL_ERROR for the connection."""
    with RawH2(server.port, preface=False) as h:
        h.send(PREFACE, SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 31}))
        frames, _ = h.read_until(lambda f: isinstance(f, GoAwayFrame))
    assert frames[-1].error_code == FLOW_CONTROL_ERROR
    still_serving(server)


def test_preface_in_pieces(server):
    with RawH2(server.port, preface=False) as h:
        h.send(PREFACE[:5])
        h.send(PREFACE[5:20])
        h.send(PREFACE[20:] + SettingsFrame(0).serialize() + h.headers(1, "/").serialize())
        status, body, frames = h.response(1)
    assert (status, body) == (200, b"Hello, world!")
    settings = next(f for f in frames if isinstance(f, SettingsFrame) and "ACK" not in f.flags)
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100


def test_tls_alpn(tls_server, tls):
    ctx = ssl.create_default_context(cafile=tls["ca"])
    with httpx.Client(http2=True, verify=ctx, timeout=10) as c:
        r2 = c.get(f"{tls_server.url}/scope")
    with httpx.Client(verify=ctx, timeout=10) as c:
        r1 = c.get(f"{tls_server.url}/scope")
    assert r2.http_version == "HTTP/2" and r2.json()["http_version"] == "2"
    assert r2.json()["scheme"] == "https"
    assert r1.http_version == "HTTP/1.1" and r1.json()["http_version"] == "1.1"


def _curl_has_http2() -> bool:
    curl = shutil.which("curl")
    if curl is None:
        return False
    out = subprocess.run([curl, "-V"], capture_output=True, text=True, timeout=10, check=False).stdout
    return "HTTP2" in out


@pytest.mark.skipif(not _curl_has_http2(), reason="curl with HTTP/2 is not installed")
def test_curl(server, tls_server, tls):
    base = ["curl", "-s", "-S", "--max-time", "10", "-w", "|%{http_version}"]
    out = subprocess.run(
        [*base, "--http2-prior-knowledge", "-d", "posted", f"{server.url}/echo"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert out.stdout == "posted|2", out.stderr
    out = subprocess.run(
        [*base, "--http2", "--cacert", tls["ca"], f"{tls_server.url}/"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert out.stdout == "Hello, world!|2", out.stderr


# -- Upgrade: h2c (RFC 7540 §3.2) ---------------------------------------------------------------

UPGRADE_FIELDS = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"


def upgrade_request(path: bytes, settings: bytes, extra: bytes = b"", method: bytes = b"GET") -> bytes:
    return (
        method + b" " + path + b" HTTP/1.1\r\nHost: a\r\n" + UPGRADE_FIELDS
        + b"HTTP2-Settings: " + settings + b"\r\n" + extra + b"\r\n"
    )  # fmt: skip


def h2_events_until(sock: socket.socket, conn, done) -> list:
    """h2 events from ``sock`` until ``done(events)``; a stall fails (socket timeout)."""
    events: list = []
    while not done(events):
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        events += conn.receive_data(data)
        sock.sendall(conn.data_to_send())
    return events


def stream_answer(events: list, stream_id: int) -> tuple[int, bytes]:
    status = body = None
    for ev in events:
        if getattr(ev, "stream_id", None) != stream_id:
            continue
        if type(ev).__name__ == "ResponseReceived":
            status = int(dict(ev.headers)[b":status"])
        elif type(ev).__name__ == "DataReceived":
            body = (body or b"") + ev.data
    return status, body or b""


def ended(stream_id: int):
    return lambda events: any(type(e).__name__ == "StreamEnded" and e.stream_id == stream_id for e in events)


def upgraded_get(port: int, path: bytes) -> tuple:
    """GET ``path`` with an h2c upgrade (h2 as the client): the (status, body) of stream 1."""
    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(upgrade_request(path, settings))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(conn.data_to_send())  # the client's preface, after the 101
        events = conn.receive_data(rest)
        sock.sendall(conn.data_to_send())
        if not ended(1)(events):
            events += h2_events_until(sock, conn, ended(1))
    return stream_answer(events, 1)


def test_h2c_upgrade(server):
    """An h2c upgrade with h2 as the client: 101, then HTTP/2, the request as stream 1
    (here the preface comes with the request, so it is handed on from the HTTP/1.1 side)."""
    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade_request(b"/scope?u=1", settings) + conn.data_to_send())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.lower() == b"http/1.1 101 switching protocols\r\nconnection: upgrade\r\nupgrade: h2c"
        events = conn.receive_data(rest)
        sock.sendall(conn.data_to_send())
        if not ended(1)(events):
            events += h2_events_until(sock, conn, ended(1))
        status, body = stream_answer(events, 1)
        # the connection goes on as HTTP/2: stream 3
        conn.send_headers(
            3, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")], end_stream=True
        )
        sock.sendall(conn.data_to_send())
        more = h2_events_until(sock, conn, ended(3))
    assert status == 200
    scope = json.loads(body)
    assert scope["http_version"] == "2" and scope["query_string"] == "u=1"
    # the upgrade's connection-specific fields are not the HTTP/2 request's
    assert [name for name, _ in scope["headers"]] == ["host"]
    assert stream_answer(more, 3) == (200, b"Hello, world!")


@pytest.mark.skipif(not _curl_has_http2(), reason="curl with HTTP/2 is not installed")
def test_h2c_upgrade_curl(server):
    """curl --http2 on http:// asks for Upgrade: h2c: taken without body, not with one."""
    base = ["curl", "-s", "-S", "--max-time", "10", "--http2", "-w", "|%{http_version}"]
    out = subprocess.run([*base, f"{server.url}/scope"], capture_output=True, text=True, timeout=20, check=False)
    body, _, version = out.stdout.rpartition("|")
    assert version == "2", out.stderr
    assert json.loads(body)["http_version"] == "2"
    out = subprocess.run(
        [*base, "-d", "posted", f"{server.url}/echo"], capture_output=True, text=True, timeout=20, check=False
    )
    assert out.stdout == "posted|1.1", out.stderr


@pytest.mark.parametrize(
    "request_bytes, keeps_alive",
    [
        (upgrade_request(b"/echo", b"AAMAAABk", b"Content-Length: 4\r\n", b"POST") + b"body", True),
        (upgrade_request(b"/echo", b"AAMAAABk", b"HTTP2-Settings: AAMAAABk\r\n"), True),  # two fields
        (upgrade_request(b"/echo", b"!not base64!"), False),
        (upgrade_request(b"/echo", b"AAMAAAB"), False),  # not a whole setting
        (upgrade_request(b"/echo", b"AAQAAAAA_w"), False),  # MAX_FRAME_SIZE 255: not allowed
    ],
)
def test_h2c_upgrade_not_taken_is_http11(server, request_bytes, keeps_alive):
    """With a body, or without one valid HTTP2-Settings field, the request is served as
    HTTP/1.1 (after a bad HTTP2-Settings the connection closes: the parser stopped)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = read_response(sock)
        assert (status, body) == (200, b"body" if b"POST" in request_bytes else b"")
        assert (headers.get(b"connection") != b"close") == keeps_alive
        if keeps_alive:
            assert read_response(sock)[2] == b"Hello, world!"
        else:
            assert sock.recv(65536) == b""


def test_h2c_upgrade_without_http2_or_over_tls_is_http11(impl, tls_server, tls):
    """Without --http2 the request is served as today, on a connection that stays
    HTTP/1.1; over TLS (h2 is ALPN's there) likewise."""
    pipelined = upgrade_request(b"/", b"AAMAAABk") + b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
    with run_server(basic.app, impl) as srv, socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(pipelined)
        first, second = read_response(sock), read_response(sock)
    ctx = ssl.create_default_context(cafile=tls["ca"])
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(pipelined)
            first_tls, second_tls = read_response(sock), read_response(sock)
    for answer in (first, first_tls):
        assert answer[0] == 200 and answer[2] == b"Hello, world!" and b"connection" not in answer[1]
    assert second[:1] == second_tls[:1] == (200,)


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")
def test_h2load(server, tls_server):
    """nghttp2's load generator, in cleartext (prior knowledge) and over TLS (ALPN): every
    request of 4 connections x 10 concurrent streams answered 2xx."""
    for url, protocol in ((f"{server.url}/", "h2c"), (f"{tls_server.url}/", "h2")):
        out = subprocess.run(
            ["h2load", "-n", "200", "-c", "4", "-m", "10", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"Application protocol: {protocol}\n" in out.stdout
        assert "requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored" in out.stdout
        assert "status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx" in out.stdout


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@PER_HTTP2_IMPLEMENTATION
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_browser_loads_a_page_over_h2(tls_server, tmp_path):
    """Headless Chromium loads a page and its script over TLS: both over HTTP/2 (ALPN h2),
    and the DOM it dumps shows the page and what the script did."""
    key = f"browser-{tls_server.port}"
    argv = [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
        f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--dump-dom", f"{tls_server.url}/page?{key}",
    ]  # fmt: skip
    # its own session, so that on a timeout the browser and its helpers (one process group) go
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        dom, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("chromium did not finish within 30 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers of the browser we started, if any are left
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    text = dom.decode()
    assert '<p id="static">served by fastasgi</p>' in text
    assert '<p id="dynamic">script ran</p>' in text  # the script came, and ran
    assert h2app.SEEN[key] == [("/page", "2", "https"), ("/page.js", "2", "https")]


# -- shutdown and timeouts -----------------------------------------------------------------


@PER_HTTP2_IMPLEMENTATION
def test_graceful_shutdown_sends_goaway_and_finishes_streams(impl):
    with run_server(h2app.app, impl, http2=True, timeout_graceful_shutdown=10) as srv:
        with RawH2(srv.port) as h:
            h.send(h.headers(1, "/echo", end_stream=False, method="POST"), DataFrame(1, data=b"abc"))
            h.send(PingFrame(0, opaque_data=b"12345678"))
            h.read_until(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)  # stream 1 is running
            srv.should_exit = True
            frames, closed = h.read_until(lambda f: isinstance(f, GoAwayFrame))
            assert not closed
            goaway = frames[-1]
            assert (goaway.error_code, goaway.last_stream_id) == (NO_ERROR, 1)
            # a new stream is refused; the one in progress finishes
            h.send(h.headers(3, "/"))
            refused, _ = h.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 3)
            assert refused[-1].error_code == REFUSED_STREAM
            h.send(DataFrame(1, data=b"def", flags=["END_STREAM"]))
            status, body, _ = h.response(1)
            assert (status, body) == (200, b"abcdef")
            _, closed = h.read_until(lambda f: False)
            assert closed
        srv.thread.join(10)
        assert not srv.thread.is_alive()


@PER_HTTP2_IMPLEMENTATION
def test_client_goaway_lets_streams_in_progress_finish(server):
    """RFC 9113 §6.8: after the client's GOAWAY (NO_ERROR) the stream it has in progress
    finishes (its body still arrives, its response is sent), a new one is refused; then
    the server closes."""
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/echo", end_stream=False, method="POST"), DataFrame(1, data=b"abc"))
        h.send(GoAwayFrame(0, last_stream_id=0, error_code=NO_ERROR))
        h.send(h.headers(3, "/"))  # a new stream after it is refused (safe to retry)
        refused, closed = h.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 3)
        assert not closed and refused[-1].error_code == REFUSED_STREAM
        h.send(DataFrame(1, data=b"def", flags=["END_STREAM"]))
        status, body, _ = h.response(1)
        assert (status, body) == (200, b"abcdef")
        _, closed = h.read_until(lambda f: False)
        assert closed
    still_serving(server)


@PER_HTTP2_IMPLEMENTATION
def test_preface_then_silence_is_closed(impl):
    with run_server(h2app.app, impl, http2=True, timeout_keep_alive=1) as srv:
        with RawH2(srv.port) as h:
            frames, closed = h.read_until(lambda f: False)
    assert closed
    goaway = goaway_of(frames)
    assert goaway is not None and goaway.error_code == NO_ERROR


@PER_HTTP2_IMPLEMENTATION
def test_half_sent_header_block_is_timed_out(impl, caplog):
    """A HEADERS frame without END_HEADERS and then silence: the header-read timeout closes
    the connection (GOAWAY), said as such in the log; it is not an open stream that waits."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    with run_server(h2app.app, impl, http2=True, timeout_keep_alive=1, timeout_request_header=1) as srv:
        with RawH2(srv.port) as h:
            block = h.block("/", extra=[("x-a", "b" * 100)])
            h.send(HeadersFrame(1, data=block[:20]))  # no END_HEADERS: the block goes on ...
            frames, closed = h.read_until(lambda f: False)  # ... never
        assert closed
        goaway = goaway_of(frames)
        assert goaway is not None and goaway.error_code == NO_ERROR
        assert not [f for f in frames if isinstance(f, HeadersFrame)]  # the app was never called
        still_serving(srv)
    assert "Request timed out: no complete header block" in caplog.text


# (--timeout-response-body) key -> (what the app's send did, what receive() gave after it)
ANSWERED: dict = {}
ANSWERED_EVENTS: dict = {}


def answered(key: bytes) -> threading.Event:
    return ANSWERED_EVENTS.setdefault(key, threading.Event())


async def stalling_app(scope, receive, send):
    """/stalled?<key>: a 100-byte response; /firehose?<key>: 8 MiB in 64 KiB messages.  Each
    then notes whether its sends returned or raised, and what ``receive()`` gave after."""
    path = scope.get("path")
    if path not in ("/stalled", "/firehose"):
        await h2app.app(scope, receive, send)
        return
    key = scope["query_string"]
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if path == "/stalled":
            await send({"type": "http.response.body", "body": b"x" * 100})
        else:
            for i in range(128):
                await send({"type": "http.response.body", "body": b"f" * 65536, "more_body": i < 127})
        sent = "returned"
    except Exception as exc:  # (what the test reports)
        sent = repr(exc)
    message = await receive()
    ANSWERED[key] = (sent, message["type"])
    answered(key).set()


@pytest.fixture(scope="module")
def stalling_server(impl):
    counted = {"metrics_port": 0} if importlib.util.find_spec("prometheus_client") else {}
    with run_server(stalling_app, impl, http2=True, timeout_response_body=0.3, **counted) as srv:
        yield srv


def response_timeouts(server) -> int:
    """fastasgi_timeouts_total{kind="response_body"} of ``server`` (0 without --metrics-port)."""
    block = server.server_state.metrics
    return 0 if block is None else block[metrics.TIMEOUTS + metrics.TIMEOUT_RESPONSE_BODY]


@PER_HTTP2_IMPLEMENTATION
def test_closed_window_times_out_the_response(stalling_server, caplog):
    """--timeout-response-body: a client whose stream window stays 0 (INITIAL_WINDOW_SIZE 0)
    gets its response's head, then RST_STREAM CANCEL on that stream; the app's send
    returned and its receive() gave http.disconnect, as when the client resets; the
    connection serves the next stream.  Likewise when the connection's window stays 0."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    counted = response_timeouts(stalling_server)
    key = b"closed-window-%d" % stalling_server.port
    with RawH2(stalling_server.port, preface=False) as h:
        h.send(PREFACE, SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}))
        h.send(h.headers(1, "/stalled?" + key.decode()))
        frames, closed = h.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1)
        assert not closed
        assert frames[-1].error_code == CANCEL
        assert [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == 1]
        assert not [f for f in frames if isinstance(f, DataFrame) and f.stream_id == 1 and f.data]
        assert answered(key).wait(10)
        assert ANSWERED[key] == ("returned", "http.disconnect")
        # the connection goes on, once the client opens its windows
        h.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20}), h.headers(3, "/"))
        assert h.response(3)[:2] == (200, b"Hello, world!")
        # the connection's window, never handed back (65535 bytes, 13 of them taken): the
        # rest of a larger response waits for it, and its stream is reset the same way
        h.send(h.headers(5, "/big?70000"))
        frames, closed = h.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 5)
        assert not closed and frames[-1].error_code == CANCEL
        assert sum(len(f.data) for f in frames if isinstance(f, DataFrame) and f.stream_id == 5) == 65535 - 13
        h.send(WindowUpdateFrame(0, window_increment=1 << 20), h.headers(7, "/"))
        assert h.response(7)[:2] == (200, b"Hello, world!")
    assert caplog.text.count("Response timed out: the client's flow-control window stayed closed") == 2
    if stalling_server.server_state.metrics is not None:
        assert response_timeouts(stalling_server) == counted + 2


@PER_HTTP2_IMPLEMENTATION
def test_client_that_reads_nothing_is_closed(stalling_server, caplog):
    """--timeout-response-body: a client that opens every window and then never reads its
    socket while an 8 MiB response streams: once the server's transport stayed paused that
    long, the connection is closed and its buffer dropped (the app's sends return, its
    receive() gives http.disconnect); the server serves others."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    counted = response_timeouts(stalling_server)
    key = b"reads-nothing-%d" % stalling_server.port
    encoder = Encoder()
    block = encoder.encode([(":method", "GET"), (":scheme", "http"), (":path", "/firehose?" + key.decode()),
                            (":authority", "a")])  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connect: a small window)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", stalling_server.port))
        sock.sendall(
            PREFACE
            + SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1}).serialize()
            + WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535).serialize()
            + HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        )
        # nothing is read until the app is done: it can only be, here, if the server gave up
        assert answered(key).wait(10)
        assert ANSWERED[key] == ("returned", "http.disconnect")
        received = 0
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < 8 << 20  # the response was not all sent: the connection closed before
    assert "Response timed out: the client reads nothing" in caplog.text
    if stalling_server.server_state.metrics is not None:
        assert response_timeouts(stalling_server) == counted + 1
    still_serving(stalling_server)


# -- hostile clients --------------------------------------------------------------------------


def still_serving(server) -> None:
    with h2c_client() as c:
        assert c.get(f"{server.url}/").text == "Hello, world!"


def rapid_reset(port: int) -> None:
    """CVE-2023-44487: streams opened and cancelled at once, by the thousand."""
    with RawH2(port) as h:
        batch = []
        for i in range(700):
            sid = 1 + 2 * i
            batch += [h.headers(sid, "/"), RstStreamFrame(sid, error_code=CANCEL)]
        try:
            h.send(*batch)
        except OSError:
            pass  # closed while sending: fine
        frames, closed = h.read_until(lambda f: isinstance(f, GoAwayFrame))
    assert not closed and frames[-1].error_code == ENHANCE_YOUR_CALM


def ping_flood(port: int) -> None:
    with RawH2(port) as h:
        try:
            h.send(*[PingFrame(0, opaque_data=b"%08d" % i) for i in range(1200)])
        except OSError:
            pass
        frames, closed = h.read_until(lambda f: isinstance(f, GoAwayFrame))
    assert not closed and frames[-1].error_code == ENHANCE_YOUR_CALM


def continuation_flood(port: int) -> None:
    """A header block that never ends: 40 CONTINUATION frames of 16000 bytes."""
    with RawH2(port) as h:
        first = HeadersFrame(1, data=h.block("/", extra=[("x-a", "b" * 8000)]), flags=["END_STREAM"])
        try:
            h.send(first, *[ContinuationFrame(1, data=b"\x00" * 16000) for _ in range(40)])
        except OSError:
            pass
        frames, _ = h.read_until(lambda f: isinstance(f, GoAwayFrame))
    goaway = goaway_of(frames)
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM


def tiny_continuation_flood(port: int) -> None:
    """A small header block in one-byte frames (CVE-2024-27316's shape): past a count of
    CONTINUATION frames (h2's, 64; nghttp2's own where it has one, else ours, 64), a
    connection error; the app never runs."""
    with RawH2(port) as h:
        block = h.block("/", extra=[("x-a", "b" * 300)])
        first = HeadersFrame(1, data=block[:1], flags=["END_STREAM"])
        try:
            h.send(first, *[ContinuationFrame(1, data=block[i : i + 1]) for i in range(1, len(block))])
        except OSError:
            pass
        frames, _ = h.read_until(lambda f: isinstance(f, GoAwayFrame))
    goaway = goaway_of(frames)
    assert goaway is not None and goaway.error_code in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM)
    assert not [f for f in frames if isinstance(f, HeadersFrame)]


def hpack_bomb(port: int) -> None:
    """A 4 KB field stored in the HPACK table once, then referenced 500 times (2 MB decoded)."""
    with RawH2(port) as h:
        block = h.block("/", extra=[("x-bomb", "b" * 4000)]) + b"\xbe" * 500  # 0xbe: dynamic entry 62
        h.send(HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]))
        frames, _ = h.read_until(lambda f: isinstance(f, GoAwayFrame))
    assert goaway_of(frames) is not None
    assert not [f for f in frames if isinstance(f, HeadersFrame)]  # no response: the app never ran


@PER_HTTP2_IMPLEMENTATION
def test_rapid_reset_is_bounded(server):
    rapid_reset(server.port)
    still_serving(server)


@PER_HTTP2_IMPLEMENTATION
def test_ping_flood_is_bounded(server):
    ping_flood(server.port)
    still_serving(server)


@pytest.mark.parametrize("attack", [continuation_flood, tiny_continuation_flood], ids=["large", "tiny"])
@PER_HTTP2_IMPLEMENTATION
def test_continuation_flood_is_bounded(server, attack):
    attack(server.port)
    still_serving(server)


@PER_HTTP2_IMPLEMENTATION
def test_hpack_bomb_is_bounded(server):
    hpack_bomb(server.port)
    still_serving(server)


def _flood_frames(h: RawH2, kind: str) -> list:
    """1200 frames of ``kind`` (the control budget is 1000 at once), each costing the server
    work but carrying no request; the empty DATA ones on stream 1, a POST whose body never
    ends, whose app waits for it."""
    n = 1200
    if kind == "settings":
        return [SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 16384}) for _ in range(n)]
    if kind == "PING ACK":  # (the server sends no PING: each is unsolicited)
        return [PingFrame(0, opaque_data=b"%08d" % i, flags=["ACK"]) for i in range(n)]
    if kind == "empty DATA":
        return [h.headers(1, "/wait-disconnect", end_stream=False, method="POST")] + [DataFrame(1) for _ in range(n)]
    if kind == "padded empty DATA":  # (padding only: no byte for the app, the window handed back)
        return [h.headers(1, "/wait-disconnect", end_stream=False, method="POST")] + [
            DataFrame(1, pad_length=8, flags=["PADDED"]) for _ in range(n)
        ]
    if kind == "WINDOW_UPDATE":  # no response in progress: nothing for them to unblock
        return [WindowUpdateFrame(0, window_increment=1) for _ in range(n)]
    if kind == "PRIORITY":  # for idle streams, each a different one (RFC 9113 §5.3.2)
        return [PriorityFrame(1 + 2 * i, depends_on=0, stream_weight=16) for i in range(n)]
    if kind == "ALTSVC":  # RFC 7838 §4: a server ignores it
        return [b"\x00\x00\x02\x0a\x00\x00\x00\x00\x00\x00\x00" for _ in range(n)]
    assert kind == "unknown type"  # RFC 9113 §5.5: ignored, but read and counted
    # (by hand: hyperframe's ExtensionFrame.serialize() writes its length as 0)
    return [b"\x00\x00\x08\xfa\x00\x00\x00\x00\x00" + b"x" * 8 for _ in range(n)]


FLOODS = (
    "settings",
    "PING ACK",
    "empty DATA",
    "padded empty DATA",
    "WINDOW_UPDATE",
    "PRIORITY",
    "ALTSVC",
    "unknown type",
)


def run_flood(port: int, kind: str) -> None:
    """One flood of ``kind`` on a fresh connection: it must end with GOAWAY ENHANCE_YOUR_CALM."""
    with RawH2(port) as h:
        try:
            h.send(*_flood_frames(h, kind))
        except OSError:
            pass  # closed while sending: fine
        frames, closed = h.read_until(lambda f: isinstance(f, GoAwayFrame))
    assert not closed, kind
    assert frames[-1].error_code == ENHANCE_YOUR_CALM, (kind, frames[-1])


@pytest.mark.parametrize("kind", FLOODS)
@PER_HTTP2_IMPLEMENTATION
def test_control_frame_flood_is_bounded(server, kind):
    """SETTINGS, empty DATA (on an open stream whose body is not ended), WINDOW_UPDATE
    while no response is being sent, PRIORITY, ALTSVC, unknown frame types: beyond the control
    budget, GOAWAY ENHANCE_YOUR_CALM; the server goes on serving."""
    run_flood(server.port, kind)
    still_serving(server)


def rss_bytes() -> int:
    """Resident memory of this process (the server runs in it, on a thread)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


ATTACKS = [rapid_reset, ping_flood, continuation_flood, tiny_continuation_flood, hpack_bomb] + [
    functools.partial(run_flood, kind=kind) for kind in FLOODS
]


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.skipif(
    sys.implementation.name != "cpython", reason="PyPy's heap grows by MiBs between its collections (not a leak)"
)
@PER_HTTP2_IMPLEMENTATION
def test_attacks_leave_memory_bounded(server):
    """Every attack above, again and again: each ends as it should, and the server's memory
    does not keep the attacks' connections (what a connection holds, nghttp2's or h2's
    state, buffered frames, answers never read, is freed when it ends).  One round first,
    so that what is allocated once (code paths, caches, the allocator's arenas) is there
    before the measure.  The bound, 2 MiB: about 0.5 MiB grows here (CPython 3.9-3.13),
    and keeping every byte the attacks sent (75 KiB an attack) grows 3 MiB; no time is
    measured."""
    for attack in ATTACKS:
        attack(server.port)
    gc.collect()
    before = rss_bytes()
    rounds = 4
    for _ in range(rounds):
        for attack in ATTACKS:
            attack(server.port)
    still_serving(server)
    gc.collect()
    grown = rss_bytes() - before
    print(f"RSS grew {grown / 1024:.0f} KiB over {rounds * len(ATTACKS)} attacks")
    assert grown < 2 << 20, f"RSS grew {grown / 1024:.0f} KiB over {rounds * len(ATTACKS)} attacks"


BAD_REQUESTS = {
    "uppercase name": dict(extra=[("X-Upper", "1")]),
    "CR LF in value": dict(extra=[("x-a", "1\r\nx-b: 2")]),
    "NUL in value": dict(extra=[("x-a", "1\x002")]),
    "CR LF in name": dict(extra=[("x-a\r\nx-b", "1")]),
    "NUL in name": dict(extra=[("x-a\x00b", "1")]),
    "second host": dict(extra=[("host", "a"), ("host", "b")]),
    "second :authority": dict(extra=[(":authority", "b")]),
    "host differs from :authority": dict(extra=[("host", "evil")]),
    "fragment in path": dict(path="/#frag"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
@PER_HTTP2_IMPLEMENTATION
def test_bad_request_never_reaches_the_app(server, name):
    """Refused with 400 on the stream, a stream reset or a connection error; never a 200."""
    kw = dict(BAD_REQUESTS[name])
    path = kw.pop("path", "/")
    with RawH2(server.port) as h:
        frame = HeadersFrame(1, data=h.block(path, **kw), flags=["END_HEADERS", "END_STREAM"])
        h.send(frame)
        status, _, frames = h.response(1)
    assert status in (None, 400), status
    assert status == 400 or goaway_of(frames) is not None or any(isinstance(f, RstStreamFrame) for f in frames)
    still_serving(server)


@pytest.mark.parametrize("length, body", [("3", b"abcdef"), ("10", b"abc")], ids=["longer", "shorter"])
@PER_HTTP2_IMPLEMENTATION
def test_body_other_than_content_length_is_refused(server, length, body):
    """RFC 9113 §8.1.1: DATA that add up to more, or end at less, than ``content-length``
    make the request malformed: the stream is reset (nghttp2) or the connection ends
    (h2); the app never answers it."""
    with RawH2(server.port) as h:
        h.send(
            h.headers(1, "/echo", end_stream=False, method="POST", extra=[("content-length", length)]),
            DataFrame(1, data=body, flags=["END_STREAM"]),
        )
        status, echoed, frames = h.response(1)
    assert status is None and echoed == b""
    assert goaway_of(frames) is not None or any(isinstance(f, RstStreamFrame) for f in frames)
    still_serving(server)


@PER_HTTP2_IMPLEMENTATION
def test_too_many_streams_are_refused(server):
    """MAX_CONCURRENT_STREAMS is 100: a 101st stream while 100 apps run is not served."""
    with RawH2(server.port) as h:
        h.send(*[h.headers(1 + 2 * i, "/wait-disconnect", end_stream=False) for i in range(101)])
        frames, closed = h.read_until(
            lambda f: (isinstance(f, RstStreamFrame) and f.stream_id == 201) or isinstance(f, GoAwayFrame)
        )
    assert not closed
    last = frames[-1]
    assert (isinstance(last, RstStreamFrame) and last.error_code == REFUSED_STREAM) or last.error_code == PROTOCOL_ERROR
    still_serving(server)


def test_streams_start_in_waves(server):
    """A hundred requests in one read: their apps start in waves of at most ``WAVE`` per
    pass of the loop (stream_py.Wave), all of them answered; the first app to run finds
    no more than a wave of Tasks made before it (without waves, on CPython < 3.12, all
    hundred; 3.12+ runs each app as its Task is made)."""
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/tasks"))
        status, body, _ = h.response(1)
        assert status == 200
        before = int(body) - 1  # the loop's other Tasks (server, other tests' apps)
        h.send(*[h.headers(3 + 2 * i, "/tasks") for i in range(100)])
        answers = [h.response(3 + 2 * i) for i in range(100)]
    assert [a[0] for a in answers] == [200] * 100
    waiting = [int(a[1]) - before for a in answers]
    assert waiting[0] <= WAVE
    assert max(waiting) <= WAVE + WAVE // 2
    still_serving(server)


def test_connections_over_a_wave_are_all_served(server):
    """Three connections send a hundred requests each at once, more than a wave: the
    bytes of those past it wait for the next wave (reading paused), none is lost."""
    clients = [RawH2(server.port) for _ in range(3)]
    try:
        for h in clients:
            h.send(*[h.headers(1 + 2 * i, f"/echo-path/{i}") for i in range(100)])
        for h in clients:
            answers = [h.response(1 + 2 * i) for i in range(100)]
            assert [(a[0], a[1]) for a in answers] == [(200, f"/echo-path/{i}".encode()) for i in range(100)]
            h.send(h.headers(201, "/"))  # and the connection goes on after it
            assert h.response(201)[0] == 200
    finally:
        for h in clients:
            h.sock.close()


def _frames_and_block_ends() -> tuple[bytes, list[int]]:
    """A client's first bytes, and where in them each header block ends."""
    encoder = Encoder()
    block = encoder.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
    parts: list[tuple[bytes, bool]] = [(PREFACE, False), (SettingsFrame(0).serialize(), False)]
    parts.append((HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize(), True))
    parts.append((HeadersFrame(3, data=block[:3]).serialize(), False))  # a block in three frames
    parts.append((ContinuationFrame(3, data=block[3:5]).serialize(), False))
    parts.append((ContinuationFrame(3, data=block[5:], flags=["END_HEADERS"]).serialize(), True))
    parts.append((DataFrame(3, data=b"x" * 300, flags=["END_STREAM"]).serialize(), False))
    parts.append((PingFrame(0, opaque_data=b"12345678").serialize(), False))
    parts.append((HeadersFrame(5, data=b"", flags=["END_HEADERS"]).serialize(), True))  # an empty one
    parts.append((WindowUpdateFrame(0, window_increment=10).serialize(), False))
    parts.append((HeadersFrame(7, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize(), True))
    data = b""
    ends = []
    for part, ends_block in parts:
        data += part
        if ends_block:
            ends.append(len(data))
    return data, ends


@PER_HTTP2_IMPLEMENTATION
def test_frame_scan_finds_header_block_ends_across_reads(impl):
    """``StreamProtocol.scan`` (where a wave's budget cuts the bytes read): the end of each
    header block, the frame headers and payloads it counts split anywhere between reads."""
    from fastasgi.config import Config
    from fastasgi.server import ServerState

    data, ends = _frames_and_block_ends()
    config = Config(basic.app, http2=True, lifespan="off", log_config=None, access_log=False)
    config.load()
    protocol_class = _speedups.load_http2(impl).Http2Protocol
    loop = asyncio.new_event_loop()
    try:
        splits = [(i,) for i in range(1, len(data))] + [(i, i + 7) for i in range(1, len(data) - 7, 5)]
        for split in splits:
            proto = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
            bounds = [0, *split, len(data)]
            cuts = []
            for lo, hi in zip(bounds, bounds[1:]):
                chunk = data[lo:hi]
                start = 0
                while start < len(chunk):
                    end = proto.scan(chunk, start, 1)
                    assert start < end <= len(chunk)
                    if end < len(chunk):
                        cuts.append(lo + end)
                    start = end
            inside = [e for e in ends if all(e != b for b in bounds)]
            assert cuts == inside, split
    finally:
        loop.close()


def test_scope_is_json_serializable_over_h2(server):
    # the scope of an HTTP/2 request holds only what HTTP/1.1's does
    with h2c_client() as c:
        scope = c.get(f"{server.url}/scope").json()
    assert json.dumps(scope)
    assert set(scope) == {
        "type",
        "asgi",
        "http_version",
        "server",
        "client",
        "scheme",
        "method",
        "root_path",
        "path",
        "raw_path",
        "query_string",
        "headers",
        "state",
    }


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@PER_HTTP2_IMPLEMENTATION
def test_access_log_and_metrics_count_http2_requests(impl):
    pytest.importorskip("prometheus_client")
    access = logging.getLogger("uvicorn.access")
    saved = (access.handlers[:], access.level, access.propagate)
    records = _Records()
    access.handlers, access.propagate = [records], False
    access.setLevel(logging.INFO)
    try:
        with run_server(h2app.app, impl, http2=True, metrics_port=0) as srv:
            with h2c_client() as c:
                assert c.get(f"{srv.url}/").status_code == 200
                assert c.post(f"{srv.url}/echo", content=b"x").status_code == 200
                assert c.get(f"{srv.url}/missing").status_code == 404
            assert upgraded_get(srv.port, b"/") == (200, b"Hello, world!")  # Upgrade: h2c
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_listener.port}/metrics", timeout=10) as r:
                text = r.read().decode()
    finally:
        access.handlers, access.level, access.propagate = saved
    assert [line.split(" - ", 1)[1] for line in records.lines] == [
        '"GET / HTTP/2" 200',
        '"POST /echo HTTP/2" 200',
        '"GET /missing HTTP/2" 404',
        '"GET / HTTP/2" 200',
    ]
    # the upgraded connection is counted once (by the HTTP/2 protocol it became)
    assert "fastasgi_connections_total 2.0" in text
    assert 'fastasgi_requests_total{method="GET",status="2xx"} 2.0' in text
    assert 'fastasgi_requests_total{method="POST",status="2xx"} 1.0' in text
    assert 'fastasgi_requests_total{method="GET",status="4xx"} 1.0' in text
    assert "fastasgi_requests_in_flight 0.0" in text


@PER_HTTP2_IMPLEMENTATION
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([(f"x-{i}", "v") for i in range(101)], id="101 fields"),  # --limit-request-fields 100
        pytest.param([("x-big", "v" * 9000)], id="9000-byte field"),  # --limit-request-field-size 8190
    ],
)
def test_request_limits_answer_431_on_the_stream(server, extra):
    with RawH2(server.port) as h:
        h.send(HeadersFrame(1, data=h.block("/", extra=extra), flags=["END_HEADERS", "END_STREAM"]))
        h.send(h.headers(3, "/"))  # the connection goes on
        status, _, _ = h.response(1)
        assert status == 431
        assert h.response(3)[:2] == (200, b"Hello, world!")


def test_http2_without_h2_is_a_config_error(monkeypatch):
    from fastasgi.config import Config, ConfigError

    def missing(tag=None):
        raise ImportError("No module named 'h2'")

    monkeypatch.setattr(_speedups, "load_http2", missing)
    config = Config(h2app.app, http2=True, log_config=None)
    with pytest.raises(ConfigError, match=r"--http2 needs the h2 package"):
        config.load()


@PER_HTTP2_IMPLEMENTATION
def test_request_body_limit_answers_413(server):
    """--limit-request-body (100 000 on this server): refused from content-length before the
    app runs, and as a body without one arrives."""
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/echo", end_stream=False, method="POST", extra=[("content-length", "100001")]))
        assert h.response(1)[0] == 413
        # no content-length: the stream's whole window, read by the app, then more than the limit
        h.send(h.headers(3, "/echo", end_stream=False, method="POST"), *window_of_data(3))
        h.read_until(lambda f: isinstance(f, WindowUpdateFrame) and f.stream_id == 3)
        h.send(*[DataFrame(3, data=b"d" * 16384) for _ in range(3)])
        assert h.response(3)[0] == 413
        h.send(h.headers(5, "/"))
        assert h.response(5)[:2] == (200, b"Hello, world!")


def test_compiled_set_runs_nghttp2_where_built(impl):
    """The compiled set's HTTP/2 is http2_c (libnghttp2) when setup.py built it, and
    ``--version``'s label says so; the pure set's is always http2_py (h2)."""
    module = _speedups.load_http2(impl)
    if impl == "py":
        assert module.__name__.endswith(".http2_py")
        return
    try:
        import fastasgi._speedups.http2_c as compiled
    except ImportError:
        pytest.skip("built without libnghttp2")
    assert module is compiled
    assert module.DESCRIPTION.startswith("compiled: nghttp2 ")
    assert _speedups.describe_http2("c") == module.DESCRIPTION


class _Wire(FakeTransport):
    """A transport that keeps what the protocol writes (the in-process tests below)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data


def test_h2c_upgrade_entry_point_of_the_compiled_protocol():
    """``upgrade(settings_payload, scope)`` (RFC 7540 §3.2), the entry point the HTTP/1.1
    side calls after its 101: the client's HTTP2-Settings apply and stream 1 answers the
    request the HTTP/1.1 side received.  (The pure protocol's is tested with the h2c
    upgrade itself.)"""
    import base64

    import h2.config
    import h2.connection
    import h2.events

    from fastasgi.config import Config
    from fastasgi.server import ServerState

    try:
        from fastasgi._speedups import http2_c
    except ImportError:
        pytest.skip("built without libnghttp2")

    async def main() -> list:
        config = Config(basic.app, http2=True, lifespan="off", log_config=None, access_log=False)
        config.load()
        proto = http2_c.Http2Protocol(config=config, server_state=ServerState(), app_state={})
        wire = _Wire()
        proto.connection_made(wire)
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        header = client.initiate_upgrade_connection()
        payload = base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "2",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "GET",
            "root_path": "",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [(b"host", b"a")],
            "state": {},
        }
        proto.upgrade(payload, scope)
        proto.data_received(client.data_to_send())
        events: list = []
        for _ in range(100):  # bounded: the answer takes a few loop iterations
            await asyncio.sleep(0)
            if wire.out:
                events += client.receive_data(bytes(wire.out))
                wire.out.clear()
                if any(isinstance(e, h2.events.StreamEnded) for e in events):
                    break
        proto.connection_lost(None)
        return events

    events = asyncio.run(main())
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    assert response.stream_id == 1 and dict(response.headers)[b":status"] == b"200"
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == 1)
    assert body == b"Hello, world!"


def test_compiled_protocol_sends_trailers_after_the_body():
    """``send_trailers(cycle, trailers)`` of the compiled protocol (what the cycle will use
    for ``http.response.trailers``): the body's last DATA without END_STREAM, then the
    trailer block with END_STREAM (nghttp2's NO_END_STREAM + submit_trailer)."""
    import h2.config
    import h2.connection
    import h2.events

    from fastasgi.config import Config
    from fastasgi.server import ServerState

    try:
        from fastasgi._speedups import http2_c
    except ImportError:
        pytest.skip("built without libnghttp2")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        cycle = send  # compiled, the app's send is the stream's cycle itself
        assert cycle.protocol.send_trailers(cycle, [(b"x-checksum", b"900150983cd24fb0")])
        cycle.complete()

    async def main() -> list:
        config = Config(app, http2=True, lifespan="off", log_config=None, access_log=False)
        config.load()
        proto = http2_c.Http2Protocol(config=config, server_state=ServerState(), app_state={})
        wire = _Wire()
        proto.connection_made(wire)
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")], True)
        proto.data_received(client.data_to_send())
        events: list = []
        for _ in range(100):  # bounded: the answer takes a few loop iterations
            await asyncio.sleep(0)
            if wire.out:
                events += client.receive_data(bytes(wire.out))
                wire.out.clear()
                if any(isinstance(e, h2.events.StreamEnded) for e in events):
                    break
        proto.connection_lost(None)
        return events

    events = asyncio.run(main())
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
    assert body == b"abc"
    assert trailers and dict(trailers[0].headers) == {b"x-checksum": b"900150983cd24fb0"}
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_compiled_protocol_serves_after_an_idle_trim():
    """An idle connection on nghttp2 is trimmed (``on_timer`` once idle for
    ``IDLE_RELEASE``: the frame buffer's pages go back to the kernel, emptied tables
    go): its next streams' responses, large enough to fill every frame the buffer
    holds, arrive intact, before and after the trim."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    from fastasgi.config import Config
    from fastasgi.server import ServerState

    try:
        from fastasgi._speedups import http2_c
    except ImportError:
        pytest.skip("built without libnghttp2")

    body = bytes(range(256)) * 160  # 40 KiB: full 16 KiB DATA frames

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-path", scope["path"].encode())]})
        await send({"type": "http.response.body", "body": body})

    async def main() -> list:
        config = Config(app, http2=True, lifespan="off", log_config=None, access_log=False)
        config.load()
        proto = http2_c.Http2Protocol(config=config, server_state=ServerState(), app_state={})
        wire = _Wire()
        proto.connection_made(wire)
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        client.increment_flow_control_window(2**20)
        client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**20})
        answers = []
        for sid in (1, 3, 5):
            client.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":path", f"/{sid}"),
                                      (":authority", "a")], end_stream=True)  # fmt: skip
            proto.data_received(client.data_to_send())
            events: list = []
            for _ in range(200):  # bounded: the answer takes a few loop iterations
                await asyncio.sleep(0)
                if wire.out:
                    events += client.receive_data(bytes(wire.out))
                    wire.out.clear()
                    proto.data_received(client.data_to_send())
                    if any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in events):
                        break
            answers.append((sid, events))
            assert proto.streams == {}
            proto.idle_since -= 2.0  # idle long enough: the timer trims the connection
            proto.on_timer()
        proto.connection_lost(None)
        return answers

    for sid, events in asyncio.run(main()):
        response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
        assert dict(response.headers)[b"x-path"] == f"/{sid}".encode()
        got = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
        assert got == body


@pytest.mark.parametrize("impl", _distinct_http2_sets())
def test_answered_streams_leave_no_reference_cycles(impl):
    """A stream's objects (its cycle, scope, outbox) go when it is answered, by reference
    counting: garbage the collector must find costs it time under load, and it has to
    traverse every stream alive meanwhile (h2load -c 16 -m 100 keeps 1600 of them)."""
    import argparse
    import gc
    import platform

    from bench import h2_inproc

    if platform.python_implementation() != "CPython":
        pytest.skip("reference counting and gc.DEBUG_SAVEALL are CPython's")

    args = argparse.Namespace(app="plaintext", impl=impl, connections=2)
    start, batches = h2_inproc.encode(201, 50)
    gc.collect()
    gc.disable()
    try:
        asyncio.run(h2_inproc.drive(args, start, batches))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        # (the connections' own objects are garbage too: drive() dropped them; and on the
        # pure path, h2's streams refer to their state machines, which is h2's own affair)
        kinds = {type(o).__name__ for o in gc.garbage if type(o).__module__.startswith("fastasgi")}
        per_stream = sorted(kinds & {"StreamCycle", "Outbox", "AppRun", "SendOp"})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert per_stream == []


@pytest.mark.parametrize("impl", [pytest.param("c", marks=pytest.mark.c_extension)], indirect=True)
def test_compiled_connection_serves_after_idle_release(server):
    """A real connection on nghttp2, its HPACK tables filled both ways (the client's fields
    and the server's indexed), released while idle (``trim``: nghttp2's pages that hold
    nothing go back to the kernel, the first response after it indexes none of the server's
    own fields): its next requests, HPACK-indexed as before, are answered in full, and the
    client's decoder follows every response.  Twice, so that released pages are used again."""
    import h2.config
    import h2.connection
    import h2.events

    if _speedups.load_http2("c") is _speedups.load_http2("py"):
        pytest.skip("built without libnghttp2")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/scope"), (":authority", "a"),
              ("x-token", "t" * 40), ("user-agent", "idle-release-test")]  # fmt: skip

    def get(stream_id: int) -> tuple:
        client.send_headers(stream_id, fields, end_stream=True)
        sock.sendall(client.data_to_send())
        headers: dict = {}
        body = b""
        for _ in range(100):  # bounded: a few reads per response
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    client.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    sock.sendall(client.data_to_send())
                    return headers, body
            sock.sendall(client.data_to_send())
        raise AssertionError("no complete response")

    def release() -> None:
        """The server-side trim, now: the connection's timer as if it had been idle long enough."""
        local = sock.getsockname()
        (proto,) = [
            c for c in list(server.server_state.connections)
            if getattr(c, "client", None) and tuple(c.client) == local[:2]
        ]  # fmt: skip
        done = threading.Event()

        def trim() -> None:
            assert not proto.streams
            proto.idle_since -= 2.0  # (IDLE_RELEASE is 1 s; the keep-alive timeout, 5 s, not reached)
            proto.on_timer()
            done.set()

        proto.loop.call_soon_threadsafe(trim)
        assert done.wait(10)

    try:
        stream_id = 1
        for _ in range(3):  # release twice, with requests before, between and after
            for _ in range(3):
                headers, body = get(stream_id)
                stream_id += 2
                assert headers[b":status"] == b"200"
                assert headers[b"content-type"] == b"application/json"
                assert b"server" in headers and b"date" in headers
                assert int(headers[b"content-length"]) == len(body)
                scope = json.loads(body)
                assert ["x-token", "t" * 40] in scope["headers"]
                assert ["user-agent", "idle-release-test"] in scope["headers"]
            release()
    finally:
        sock.close()
