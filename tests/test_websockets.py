"""WebSockets through a real server, for both backends (``ws``) via both HTTP paths (``impl``).

Also the helpers the other ``test_websockets_*.py`` modules import: a raw-socket
RFC 6455 client (:class:`RawWS`) and the apps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import run_server

WS_BACKENDS = ["websockets", "wsproto"]

KEY = base64.b64encode(b"0123456789abcdef")


def handshake_bytes(
    path: str = "/",
    extra: list[str] | None = None,
    *,
    key: bytes | None = KEY,
    version: str | None = "13",
    upgrade: str = "websocket",
    connection: str = "Upgrade",
) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    if upgrade:
        lines.append(f"Upgrade: {upgrade}")
    if connection:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append("Sec-WebSocket-Key: " + key.decode())
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines += extra or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


class RawWS:
    """A deliberately dumb client: writes whatever frames it is told to, reads frames back."""

    def __init__(self, port: int, path: str = "/", extra: list[str] | None = None, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(handshake_bytes(path, extra))
        self.status, self.headers, self.buf = read_head(self.sock)

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
        length: int | None = None,
    ) -> None:
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            masked = (
                bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 else _mask(payload, key)
            )
            self.sock.sendall(head + key + masked)
        else:
            self.sock.sendall(head + payload)

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.send_frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n)

    def recv_close(self) -> tuple[int | None, bytes]:
        """Skip data/ping frames until a close frame; its (code, reason)."""
        while True:
            _, op, payload = self.recv_frame()
            if op == 0x8:
                if not payload:
                    return None, b""
                return struct.unpack("!H", payload[:2])[0], payload[2:]

    def at_eof(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


# ----------------------------------------------------------------------------------------- apps


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            return


async def routes(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One app for the shared server: the path picks the behaviour."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["answer"] = 42
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    path = scope["path"]
    handler = ROUTES.get(path.rsplit("/", 1)[-1], echo_app)
    await handler(scope, receive, send)


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    info = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
    info["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    info["raw_path"] = scope["raw_path"].decode("latin-1")
    info["query_string"] = scope["query_string"].decode("latin-1")
    info["state"] = dict(scope["state"])
    info["types"] = {k: type(v).__name__ for k, v in scope.items()}
    await send({"type": "websocket.send", "text": json.dumps(info)})
    await receive()


async def subprotocol_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": scope["subprotocols"][-1] if scope["subprotocols"] else None,
            "headers": [(b"x-custom", b"yes"), (b"set-cookie", b"a=b")],
        }
    )
    await send({"type": "websocket.send", "text": ",".join(scope["subprotocols"])})
    await receive()


async def reject_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.close"})


async def deny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def app_close_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})
    await send({"type": "websocket.close", "code": 4001, "reason": "app says bye"})
    message = await receive()
    assert message["type"] == "websocket.disconnect", message
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("send after close must fail")


DISCONNECTS: list[dict[str, Any]] = []


async def record_disconnect_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            DISCONNECTS.append(message)
            # after the client closed, send() raises an OSError subclass (ASGI 2.4)
            try:
                await send({"type": "websocket.send", "text": "x"})
            except OSError:
                DISCONNECTS.append({"send": "OSError"})
            return


async def raise_before_accept_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise ValueError("boom before accept")


async def raise_after_accept_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    raise ValueError("boom after accept")


async def return_without_accept_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()


async def return_after_accept_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})


async def never_accept_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    message = await receive()  # only the disconnect can come
    DISCONNECTS.append({"never_accept": message["type"], "code": message.get("code")})


ROUTES = {
    "scope": scope_app,
    "subprotocol": subprotocol_app,
    "reject": reject_app,
    "deny": deny_app,
    "appclose": app_close_app,
    "record": record_disconnect_app,
    "raise-before": raise_before_accept_app,
    "raise-after": raise_after_accept_app,
    "return-without-accept": return_without_accept_app,
    "return-after-accept": return_after_accept_app,
    "never-accept": never_accept_app,
}


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session", params=WS_BACKENDS)
def ws(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def server(impl: str, ws: str) -> Any:
    with run_server(routes, impl, ws=ws, lifespan="on") as srv:
        yield srv


def url(server: Any, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ----------------------------------------------------------------------------------------- ASGI spec


def test_echo_text_and_bytes(server: Any) -> None:
    with connect(url(server, "/echo"), open_timeout=5, max_size=None) as c:
        c.send("hello")
        assert c.recv(timeout=5) == "hello"
        c.send("h\u00e9llo \u2603 \U0001f600")
        assert c.recv(timeout=5) == "h\u00e9llo \u2603 \U0001f600"
        c.send(b"\x00\x01\xff")
        assert c.recv(timeout=5) == b"\x00\x01\xff"
        c.send(b"")
        assert c.recv(timeout=5) == b""
        c.send("")
        assert c.recv(timeout=5) == ""
        for size in (125, 126, 65535, 65536, 1 << 20):
            data = os.urandom(size)
            c.send(data)
            assert c.recv(timeout=10) == data
        for i in range(200):  # many small ones, several per read
            c.send(str(i))
        assert [c.recv(timeout=5) for _ in range(200)] == [str(i) for i in range(200)]


def test_scope(server: Any, ws: str) -> None:
    with connect(
        url(server, "/a%20b/scope?x=1&y=%2F"),
        open_timeout=5,
        additional_headers={"X-Test": "v"},
        subprotocols=["p1", "p2"],
    ) as c:
        info = json.loads(c.recv(timeout=5))
        local = c.socket.getsockname()
    assert info["type"] == "websocket"
    assert info["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert info["http_version"] == "1.1"
    assert info["scheme"] == "ws"
    assert info["path"] == "/a b/scope"
    assert info["raw_path"] == "/a%20b/scope"
    assert info["query_string"] == "x=1&y=%2F"
    assert info["root_path"] == ""
    assert info["subprotocols"] == ["p1", "p2"]
    assert info["client"] == [local[0], local[1]]
    assert info["server"] == ["127.0.0.1", server.port]
    assert info["extensions"] == {"websocket.http.response": {}}
    assert info["state"] == {"answer": 42}  # lifespan state, copied per connection
    assert ["x-test", "v"] in info["headers"]
    assert all(k == k.lower() for k, _ in info["headers"])
    assert info["types"]["raw_path"] == "bytes" and info["types"]["query_string"] == "bytes"
    assert info["types"]["client"] == "tuple" and info["types"]["server"] == "tuple"


def test_root_path(impl: str, ws: str) -> None:
    with run_server(scope_app, impl, ws=ws, root_path="/api") as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/scope", open_timeout=5) as c:
            info = json.loads(c.recv(timeout=5))
    assert info["root_path"] == "/api"
    assert info["path"] == "/api/scope"
    assert info["raw_path"] == "/api/scope"


def test_proxy_headers_scheme_and_client(impl: str, ws: str) -> None:
    with run_server(scope_app, impl, ws=ws, proxy_headers=True, forwarded_allow_ips="*") as srv:
        with connect(
            f"ws://127.0.0.1:{srv.port}/scope",
            open_timeout=5,
            additional_headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"},
        ) as c:
            info = json.loads(c.recv(timeout=5))
    assert info["scheme"] == "wss"
    assert info["client"][0] == "1.2.3.4"


def test_subprotocol_and_accept_headers(server: Any) -> None:
    with connect(url(server, "/subprotocol"), open_timeout=5, subprotocols=["chat", "superchat"]) as c:
        assert c.subprotocol == "superchat"
        assert c.response.headers["x-custom"] == "yes"
        assert c.response.headers["set-cookie"] == "a=b"
        assert c.response.headers["server"] == "fastasgi"
        assert "date" in c.response.headers
        assert c.recv(timeout=5) == "chat,superchat"


def test_close_before_accept_is_403(server: Any) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(url(server, "/reject"), open_timeout=5)
    assert info.value.response.status_code == 403


def test_http_response_denial(server: Any) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(url(server, "/deny"), open_timeout=5)
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b"no entry"


def test_app_close_with_code_and_reason(server: Any) -> None:
    with connect(url(server, "/appclose"), open_timeout=5) as c:
        assert c.recv(timeout=5) == "bye"
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=5)
    assert info.value.rcvd.code == 4001
    assert info.value.rcvd.reason == "app says bye"


def test_client_close_code_and_reason_reach_app(server: Any) -> None:
    DISCONNECTS.clear()
    with connect(url(server, "/record"), open_timeout=5) as c:
        c.close(code=4321, reason="client leaves")
    assert wait_for(lambda: len(DISCONNECTS) == 2)
    assert DISCONNECTS[0] == {"type": "websocket.disconnect", "code": 4321, "reason": "client leaves"}
    assert DISCONNECTS[1] == {"send": "OSError"}


def test_abrupt_client_disconnect_is_1006(server: Any) -> None:
    DISCONNECTS.clear()
    raw = RawWS(server.port, "/record")
    assert raw.status == 101
    raw.close()
    assert wait_for(lambda: len(DISCONNECTS) == 2)
    assert DISCONNECTS[0]["code"] == 1006


def test_app_errors(server: Any) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(url(server, "/raise-before"), open_timeout=5)
    assert info.value.response.status_code == 500
    with pytest.raises(InvalidStatus) as info:
        connect(url(server, "/return-without-accept"), open_timeout=5)
    assert info.value.response.status_code == 500
    # after accept, the server closes TCP for an app that ended without websocket.close, as
    # uvicorn does: no close frame, the client sees 1006
    with connect(url(server, "/raise-after"), open_timeout=5) as c:
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=5)
    assert closed.value.rcvd is None
    assert c.close_code == 1006
    with connect(url(server, "/return-after-accept"), open_timeout=5) as c:
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=5)
    assert closed.value.rcvd is None
    assert c.close_code == 1006
    with connect(url(server, "/echo"), open_timeout=5) as c:  # still serving
        c.send("ok")
        assert c.recv(timeout=5) == "ok"


def test_never_accepting_app_does_not_leak(server: Any) -> None:
    DISCONNECTS.clear()
    before = len(server.server_state.connections)
    raw = RawWS.__new__(RawWS)
    raw.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    raw.sock.sendall(handshake_bytes("/never-accept"))
    time.sleep(0.2)
    raw.sock.close()
    assert wait_for(lambda: DISCONNECTS == [{"never_accept": "websocket.disconnect", "code": 1006}])
    assert wait_for(lambda: len(server.server_state.connections) <= before)


def test_plain_http_on_same_server(server: Any) -> None:
    from tests.conftest import raw_request

    out = raw_request(server.port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"plain http")


# ----------------------------------------------------------------------------------------- handshake errors


@pytest.mark.parametrize(
    "kwargs, status",
    [
        ({"key": None}, 400),
        ({"key": b"short"}, 400),
        ({"version": "8"}, 426),
        ({"version": None}, 400),
        ({"connection": "keep-alive, Upgrade", "upgrade": "WebSocket"}, 101),
    ],
)
def test_bad_handshake(server: Any, kwargs: dict[str, Any], status: int) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(handshake_bytes("/echo", **kwargs))
        got, headers, _ = read_head(sock)
    assert got == status
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    # and the server keeps serving
    with connect(url(server, "/echo"), open_timeout=5) as c:
        c.send("still here")
        assert c.recv(timeout=5) == "still here"


@pytest.mark.parametrize("kwargs", [{"upgrade": "h2c"}, {"connection": "keep-alive"}])
def test_bad_upgrade_or_connection_header(server: Any, kwargs: dict[str, Any]) -> None:
    """Not a WebSocket handshake: never a 101 (a 400, or the request served as plain HTTP)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(handshake_bytes("/echo", **kwargs))
        got, _, _ = read_head(sock)
    assert got in (400, 200)
    with connect(url(server, "/echo"), open_timeout=5) as c:
        c.send("still here")
        assert c.recv(timeout=5) == "still here"


# ----------------------------------------------------------------------------------------- options


def test_max_size(impl: str, ws: str) -> None:
    with run_server(echo_app, impl, ws=ws, ws_max_size=1000) as srv:
        u = f"ws://127.0.0.1:{srv.port}/"
        with connect(u, open_timeout=5) as c:
            c.send(b"x" * 1000)
            assert c.recv(timeout=5) == b"x" * 1000
            c.send("\u00e9" * 500)  # 1000 bytes of UTF-8
            assert c.recv(timeout=5) == "\u00e9" * 500
            c.send(b"x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                c.recv(timeout=5)
            assert info.value.rcvd.code == 1009
        with connect(u, open_timeout=5) as c:
            c.send("\u00e9" * 501)  # 501 characters but 1002 bytes
            with pytest.raises(ConnectionClosed) as info:
                c.recv(timeout=5)
            assert info.value.rcvd.code == 1009
        raw = RawWS(srv.port)  # fragmented: the message, not the frame, counts
        raw.send_frame(0x2, b"a" * 400, fin=False)
        raw.send_frame(0x0, b"a" * 400, fin=False)
        raw.send_frame(0x0, b"a" * 400, fin=True)
        assert raw.recv_close()[0] == 1009
        assert raw.at_eof()
        raw.close()
        raw = RawWS(srv.port)  # a huge length in the header is refused without waiting for the body
        raw.send_frame(0x2, b"a" * 10, length=1 << 40)
        assert raw.recv_close()[0] == 1009
        raw.close()
        with connect(u, open_timeout=5) as c:
            c.send("ok")
            assert c.recv(timeout=5) == "ok"


def test_max_size_frame_arriving_in_pieces(impl: str, ws: str) -> None:
    with run_server(echo_app, impl, ws=ws, ws_max_size=30000, ws_per_message_deflate=False) as srv:
        raw = RawWS(srv.port)
        payload = os.urandom(30000)
        head = struct.pack("!BBH", 0x82, 0x80 | 126, len(payload)) + b"\x00\x00\x00\x00"
        raw.sock.sendall(head + payload[:10000])
        time.sleep(0.1)
        raw.sock.sendall(payload[10000:20000])
        time.sleep(0.1)
        raw.sock.sendall(payload[20000:])
        fin, op, data = raw.recv_frame()
        assert (fin, op, data) == (True, 0x2, payload)
        raw.close()


def test_max_queue_stops_reading(impl: str, ws: str) -> None:
    release = threading.Event()
    received: list[int] = []

    async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.02)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            received.append(len(message["bytes"]))
            if len(received) == 400:
                await send({"type": "websocket.send", "text": "done"})

    with run_server(slow_app, impl, ws=ws, ws_max_queue=2, ws_per_message_deflate=False) as srv:
        raw = RawWS(srv.port)
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        raw.sock.setblocking(False)
        frame_payload = b"z" * 65536
        sent = 0
        deadline = time.monotonic() + 3
        key = b"\x00\x00\x00\x00"  # a zero mask: payload goes as is
        frame = struct.pack("!BBQ", 0x82, 0x80 | 127, len(frame_payload)) + key + frame_payload
        pending = b""
        frames = 0
        while time.monotonic() < deadline and frames < 400:
            if not pending:
                pending = frame
                frames += 1
            try:
                n = raw.sock.send(pending)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            pending = pending[n:]
            sent += n
        # the app reads nothing: the server stopped reading, so the client could not push 400 x 64 KiB
        assert frames < 400, "the server kept reading for an app that does not"
        raw.sock.setblocking(True)
        release.set()
        raw.sock.sendall(pending)
        for _ in range(400 - frames):
            raw.sock.sendall(frame)
        raw.sock.settimeout(10)
        _fin, op, payload = raw.recv_frame()
        assert (op, payload) == (0x1, b"done")
        assert received == [65536] * 400
        raw.close()


def test_keepalive_ping_timeout_closes(impl: str, ws: str) -> None:
    with run_server(echo_app, impl, ws=ws, ws_ping_interval=0.2, ws_ping_timeout=0.3) as srv:
        raw = RawWS(srv.port)
        _, op, payload = raw.recv_frame()
        assert op == 0x9 and len(payload) == 4  # a ping; this client never answers it
        t0 = time.monotonic()
        assert raw.recv_close()[0] == 1011
        assert time.monotonic() - t0 < 3
        assert raw.at_eof()
        raw.close()
        # a client that answers pings stays connected
        with connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5) as c:
            time.sleep(1.2)
            c.send("alive")
            assert c.recv(timeout=5) == "alive"


def test_keepalive_pong_answered_by_raw_client(impl: str, ws: str) -> None:
    with run_server(echo_app, impl, ws=ws, ws_ping_interval=0.1, ws_ping_timeout=0.5) as srv:
        raw = RawWS(srv.port)
        for _ in range(3):
            _, op, payload = raw.recv_frame()
            assert op == 0x9
            raw.send_frame(0xA, payload)
        raw.send_frame(0x1, b"still")
        while True:
            _, op, payload = raw.recv_frame()
            if op == 0x9:
                raw.send_frame(0xA, payload)
                continue
            assert (op, payload) == (0x1, b"still")
            break
        raw.close()


@pytest.mark.parametrize("deflate", [True, False])
def test_per_message_deflate(impl: str, ws: str, deflate: bool) -> None:
    with run_server(echo_app, impl, ws=ws, ws_per_message_deflate=deflate) as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5, max_size=None) as c:
            ext = c.response.headers.get("sec-websocket-extensions")
            if deflate:
                assert ext is not None and ext.startswith("permessage-deflate")
            else:
                assert ext is None
            for msg in ("a" * 10000, b"\x00" * 100000, "short", os.urandom(70000)):
                c.send(msg)
                assert c.recv(timeout=5) == msg
            c.send(["frag", "mented ", "text"])  # fragmented + compressed
            assert c.recv(timeout=5) == "fragmented text"


def test_graceful_shutdown_closes_with_1012(impl: str, ws: str) -> None:
    with run_server(echo_app, impl, ws=ws, timeout_graceful_shutdown=5) as srv:
        stack = contextlib.ExitStack()
        clients = [stack.enter_context(connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5)) for _ in range(3)]
        for c in clients:
            c.send("x")
            assert c.recv(timeout=5) == "x"
        t0 = time.monotonic()
        srv.should_exit = True
        for c in clients:
            with pytest.raises(ConnectionClosed) as info:
                c.recv(timeout=5)
            assert info.value.rcvd.code == 1012
        stack.close()
    assert time.monotonic() - t0 < 4


def test_shutdown_with_app_that_never_reads(impl: str, ws: str) -> None:
    async def stuck_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(3600)

    t0 = time.monotonic()
    with run_server(stuck_app, impl, ws=ws, timeout_graceful_shutdown=1) as srv:
        raw = RawWS(srv.port)
        raw.send_frame(0x1, b"unread")
        srv.should_exit = True
        assert raw.recv_close()[0] == 1012
        raw.close()
    assert time.monotonic() - t0 < 6


def test_ws_none_serves_plain_http(impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"no ws"})

    with run_server(app, impl, ws="none") as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(handshake_bytes("/"))
            status, _, _ = read_head(sock)
        assert status == 200


# ----------------------------------------------------------------------------------------- wsproto as the client


def test_wsproto_client(impl: str, ws: str) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    with run_server(echo_app, impl, ws=ws) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        client = WSConnection(ConnectionType.CLIENT)
        sock.sendall(client.send(Request(host="127.0.0.1", target="/", extensions=[PerMessageDeflate()])))

        def events() -> list[Any]:
            out: list[Any] = []
            while not out:
                data = sock.recv(65536)
                client.receive_data(data or None)
                out = list(client.events())
            return out

        assert isinstance(events()[0], AcceptConnection)
        sock.sendall(client.send(TextMessage(data="hi \u2603")))
        text = ""
        while True:
            evs = events()
            text += "".join(e.data for e in evs if isinstance(e, TextMessage))
            if any(isinstance(e, TextMessage) and e.message_finished for e in evs):
                break
        assert text == "hi \u2603"
        sock.sendall(client.send(BytesMessage(data=b"\x01" * 5000)))
        data = b""
        while len(data) < 5000:
            data += b"".join(e.data for e in events() if isinstance(e, BytesMessage))
        assert data == b"\x01" * 5000
        sock.sendall(client.send(CloseConnection(code=1000, reason="done")))
        evs = events()
        assert isinstance(evs[0], CloseConnection) and evs[0].code == 1000
        sock.close()
