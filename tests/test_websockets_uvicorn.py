"""WebSockets compared with uvicorn 0.54: the same scenario run against both servers.

Each scenario is an ASGI app plus a client.  It runs once on fastasgi (both
WebSocket backends, ``ws``, via both HTTP implementations, ``impl``) and once on
uvicorn with the matching backend (``websockets`` -> uvicorn's
``websockets-sansio``, its default; ``wsproto`` -> ``wsproto``) and HTTP
implementation (compiled -> ``httptools``, pure -> ``h11``).  What the client saw
(status, headers, body, frames, end of stream), what the app saw (events,
exceptions from ``send``, whether a late ``receive()`` returns or waits) and the
server's WebSocket log records (logger, level, message; the websockets library's
own lines included) must be equal.

Synchronization is by events only: the client reads until the server closes (a
socket timeout bounds every read), and the app says when it has connected and
when it has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import run_server, run_uvicorn
from tests.test_websockets import handshake_bytes

uvicorn = pytest.importorskip("uvicorn")

UVICORN_WS = {"websockets": "websockets-sansio", "wsproto": "wsproto"}
TRACE = 5  # --log-level trace
TIMEOUT = 10.0


@pytest.fixture(scope="module", params=["websockets", "wsproto"])
def ws(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ----------------------------------------------------------------------------------------- servers


@contextlib.contextmanager
def run_uvicorn_ws(app: Any, impl: str, ws: str, **kwargs: Any) -> Iterator[Any]:
    with run_uvicorn(app, impl, ws=UVICORN_WS[ws], **kwargs) as server:
        yield server


class LogCapture(logging.Handler):
    """The servers' WebSocket-related log records as (logger, level, message, exception class),
    the client's address and port replaced."""

    LOGGERS = ("uvicorn.error",)  # (both servers log there, and hand it to the websockets library)
    # the server's own lines, the websockets library's ("connection open", "connection rejected
    # (403 Forbidden)", "connection closed", "opening handshake failed", "parser failed") and
    # graceful shutdown cancelling an app; at DEBUG, the library's frame, header and state
    # lines ("< TEXT 'hi' [2 bytes]", "> Upgrade: websocket", "= connection is OPEN"); not the
    # server's start and stop lines, which differ
    KEEP = re.compile(
        r"\"WebSocket |ASGI|handshake|^connection |^HTTP response sent|^parser failed|running task|^[<>=!] "
        r"|WebSocket connection|WebSocket keepalive"
    )

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(logging.NOTSET)
        self.level_set = level
        self.lines: list[tuple[str, str, str, str | None]] = []
        self.saved: list[tuple[logging.Logger, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.KEEP.search(message):
            message = re.sub(r"127\.0\.0\.1:\d+", "CLIENT", message)
            exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
            self.lines.append((record.name, record.levelname, message.strip(), exc))

    def __enter__(self) -> LogCapture:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self.saved.append((logger, logger.level))
            logger.setLevel(self.level_set)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        for logger, level in self.saved:
            logger.removeHandler(self)
            logger.setLevel(level)


class Recorder:
    """What the app saw; ``connected`` once it received websocket.connect, ``finished`` once it ended."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.connected = threading.Event()
        self.finished = threading.Event()
        self.waiting = threading.Event()  # wait_past_loss is about to wait in receive()

    async def receive(self, receive: Any) -> dict[str, Any]:
        message = await receive()
        self.events.append(dict(message))
        if message["type"] == "websocket.connect":
            self.connected.set()
        return dict(message)

    async def send(self, send: Any, message: dict[str, Any]) -> None:
        try:
            await send(message)
        except Exception as exc:
            self.events.append(describe_exception(exc))
            raise

    async def receive_or_wait(self, receive: Any) -> None:
        """``receive()`` once the connection loss was read: record what it returns, or WAITS.

        Nothing can be queued any more (the loss is queued when the server learns of it, and
        a lost connection is out of the server's shutdown list), so a ``receive()`` that
        returns does so without waiting for I/O: a few loop rounds tell it from one that waits
        forever.  A waiting one is then cancelled, which must end it (CancelledError).
        """
        task = asyncio.ensure_future(receive())
        for _ in range(20):  # bounded; two rounds are enough for a receive() that returns
            if task.done():
                break
            await asyncio.sleep(0)
        if task.done():
            self.events.append(dict(task.result()))
            return
        task.cancel()
        try:
            message = await task
        except asyncio.CancelledError:
            self.events.append(WAITS)
        else:  # pragma: no cover - only if receive() swallowed the cancellation
            self.events.append(("returned after cancel", message))


WAITS = "receive() waits (until cancelled)"


def is_loss(message: dict[str, Any]) -> bool:
    """The disconnect for a lost connection: no close frame, so no "reason" (1005 or 1006)."""
    return message["type"] == "websocket.disconnect" and "reason" not in message and message["code"] in (1005, 1006)


def describe_exception(exc: BaseException) -> tuple[str, str, str]:
    """An exception as the app sees it: OSError for any subclass (ASGI 2.4 names no class), else
    the class; and a RuntimeError's message."""
    kind = "OSError" if isinstance(exc, OSError) else type(exc).__name__
    return ("raised", kind, str(exc) if isinstance(exc, RuntimeError) else "")


Scenario = Callable[..., Any]


def run_scenario(
    server_kind: str,
    impl: str,
    ws: str,
    app: Scenario,
    client: Scenario,
    options: dict[str, Any],
    log_level: int = logging.INFO,
) -> dict[str, Any]:
    """Run ``app`` (``app(rec, scope, receive, send)``) on one server and ``client(port, rec, stop)`` against it."""
    rec = Recorder()

    started = threading.Event()

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        started.set()
        try:
            return await app(rec, scope, receive, send)
        finally:
            rec.finished.set()

    with LogCapture(log_level) as logs:
        if server_kind == "uvicorn":
            runner = run_uvicorn_ws(asgi, impl, ws, **options)
        else:
            runner = run_server(asgi, impl, ws=ws, **options)
        with runner as server:

            def stop() -> None:
                server.should_exit = True

            seen = client(server.port, rec, stop)
            # the app runs only for a handshake the server passed on; then it must end
            finished = rec.finished.wait(TIMEOUT) if started.is_set() else None
    return {"client": seen, "app": rec.events, "app finished": finished, "logs": logs.lines}


def compare(
    impl: str, ws: str, app: Scenario, client: Scenario, log_level: int = logging.INFO, **options: Any
) -> dict[str, Any]:
    ours = run_scenario("fastasgi", impl, ws, app, client, options, log_level)
    theirs = run_scenario("uvicorn", impl, ws, app, client, options, log_level)
    if log_level < logging.INFO:  # the response's server and date headers differ, as on the wire
        for seen in (ours, theirs):
            seen["logs"] = [line for line in seen["logs"] if not re.match(r"> (server|date): ", line[2], re.I)]
    # uvicorn reports a connection lost after the handshake as 1005 ("no status received");
    # RFC 6455 §7.1.5 makes it 1006 when no close frame came, and so does fastasgi (README)
    theirs["app"] = [LOST if e == {"type": "websocket.disconnect", "code": 1005} else e for e in theirs["app"]]
    assert ours == theirs
    return ours


# ----------------------------------------------------------------------------------------- clients


def _read_until_eof(sock: socket.socket, buf: bytes) -> tuple[bytes, bool]:
    """Everything up to the server's close; False if the read timed out first."""
    chunks = [buf]
    while True:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def _dechunk(body: bytes) -> bytes:
    out = b""
    for _ in range(len(body) + 1):  # bounded: each round consumes at least one line
        size_line, sep, body = body.partition(b"\r\n")
        if not sep:
            raise AssertionError("truncated chunked body")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += body[:size]
        body = body[size + 2 :]
    raise AssertionError("chunked body without an end")


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while len(data) >= 2:
        b0, b1 = data[0], data[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            (n,) = struct.unpack("!H", data[2:4])
            pos = 4
        elif n == 127:
            (n,) = struct.unpack("!Q", data[2:10])
            pos = 10
        frames.append((b0 & 0x0F, data[pos : pos + n]))
        data = data[pos + n :]
    assert not data, f"a partial frame: {data!r}"
    return frames


def parse_answer(raw: bytes, eof: bool) -> dict[str, Any]:
    """The server's answer: status, headers without date/server, body or frames, and whether it closed."""
    if b"\r\n\r\n" not in raw:
        return {"raw": raw, "eof": eof}
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    answer: dict[str, Any] = {"status": status, "eof": eof}
    if status == 101:
        answer["frames"] = _frames(rest)
        return answer
    answer["headers"] = sorted(h for h in headers if h[0] not in ("date", "server"))
    answer["body"] = _dechunk(rest) if ("transfer-encoding", "chunked") in headers else rest
    return answer


def handshake_client(request: bytes | None = None) -> Scenario:
    """Send a handshake (or ``request``) and read the answer until the server closes."""

    def client(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(request or handshake_bytes())
            return parse_answer(*_read_until_eof(sock, b""))

    return client


def read_head(sock: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a head: {buf!r}")
        buf += chunk
    return buf


def drop_after_101(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Complete the handshake, then close TCP without a close frame."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        head = read_head(sock)
    return {"status": int(head.split()[1])}


def drop_before_accept(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Send the handshake, wait for the app to see websocket.connect, close TCP."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        assert rec.connected.wait(TIMEOUT)
    return {}


def shutdown_after_101(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Complete the handshake, stop the server, read what it sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        head = read_head(sock)
        stop()
        return parse_answer(*_read_until_eof(sock, head))


def shutdown_before_accept(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Send the handshake, stop the server while the app has not accepted, read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        assert rec.connected.wait(TIMEOUT)
        stop()
        return parse_answer(*_read_until_eof(sock, b""))


def close_frame(code: int, reason: bytes = b"") -> bytes:
    payload = struct.pack("!H", code) + reason
    return bytes((0x88, 0x80 | len(payload))) + b"\0\0\0\0" + payload  # a zero mask leaves the payload as is


def client_closes(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Complete the handshake, send a close frame with a code and reason, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        head = read_head(sock)
        sock.sendall(close_frame(1001, b"custom reason"))
        return parse_answer(*_read_until_eof(sock, head))


def echo_close(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Complete the handshake, answer the server's close frame with the same, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        buf = read_head(sock)
        for _ in range(100):
            head, _, rest = buf.partition(b"\r\n\r\n")
            if len(rest) >= 2 and len(rest) >= 2 + (rest[1] & 0x7F):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        frames = _frames(buf.partition(b"\r\n\r\n")[2])
        assert frames and frames[-1][0] == 0x8, frames
        sock.sendall(close_frame(*struct.unpack("!H", frames[-1][1][:2]), frames[-1][1][2:]))
        return parse_answer(*_read_until_eof(sock, buf))


# ----------------------------------------------------------------------------------------- apps


async def accept_then_return(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})


async def accept_twice(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    await rec.send(send, {"type": "websocket.accept"})


async def accept_then_return_value(rec: Recorder, scope: Any, receive: Any, send: Any) -> int:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    return 123


async def accept_then_raise(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    raise ValueError("boom")


async def raise_before_accept(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    raise ValueError("boom")


async def return_without_handshake(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)


async def return_value_without_handshake(rec: Recorder, scope: Any, receive: Any, send: Any) -> int:
    await rec.receive(receive)
    return 123


async def send_before_accept(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.send", "text": "123"})


async def accept_then_wait_for_disconnect(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    await rec.receive(receive)
    with contextlib.suppress(Exception):
        await rec.send(send, {"type": "websocket.send", "text": "after"})


async def wait_for_disconnect_then_accept(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.receive(receive)
    with contextlib.suppress(Exception):
        await rec.send(send, {"type": "websocket.accept"})


async def app_closes(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    await rec.send(send, {"type": "websocket.close", "code": 4001, "reason": "app says bye"})
    await rec.receive(receive)
    with contextlib.suppress(Exception):
        await rec.send(send, {"type": "websocket.send", "text": "too late"})


async def read_past_disconnect(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    """Accept, then read two events: the disconnect, and what comes once TCP is gone."""
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    await rec.receive(receive)
    await rec.receive(receive)


def read_on(extra: int, close: dict[str, Any] | None = None) -> Scenario:
    """Accept (then send ``close``, a websocket.close, if given), read up to the first
    websocket.disconnect, then call receive() ``extra`` times more: awaited until the
    connection loss was read, probed (Recorder.receive_or_wait) from then on."""

    async def app(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
        await rec.receive(receive)
        await rec.send(send, {"type": "websocket.accept"})
        if close is not None:
            await rec.send(send, close)
        message = await rec.receive(receive)
        for _ in range(10):  # bounded: a test client sends no data frames
            if message["type"] == "websocket.disconnect":
                break
            message = await rec.receive(receive)
        lost = is_loss(message)
        for _ in range(extra):
            if lost:
                await rec.receive_or_wait(receive)
            else:
                lost = is_loss(await rec.receive(receive))

    return app


async def wait_past_loss(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    """Accept, read the connection loss, probe one more receive(), then wait in receive()
    until shutdown cancels the task."""
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    await rec.receive(receive)
    await rec.receive_or_wait(receive)
    rec.waiting.set()
    try:
        await rec.receive(receive)
    except asyncio.CancelledError:
        rec.events.append("cancelled")
        raise


def big_text_frame(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Complete the handshake, send a 100-byte text frame (over a 16-byte --ws-max-size), read until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        head = read_head(sock)
        sock.sendall(bytes((0x81, 0x80 | 100)) + b"\0\0\0\0" + b"x" * 100)
        return parse_answer(*_read_until_eof(sock, head))


async def close_before_accept(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.close"})
    await rec.receive(receive)


LOST = {"type": "websocket.disconnect", "code": 1006}


def deny(*messages: dict[str, Any], then_receive: bool = True) -> Scenario:
    """An app that denies the handshake with ``messages`` (websocket.http.response.*)."""

    async def app(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
        await rec.receive(receive)
        for message in messages:
            await rec.send(send, message)
        if then_receive:
            await rec.receive(receive)

    return app


def start(status: int, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "websocket.http.response.start", "status": status, "headers": headers or []}


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "websocket.http.response.body", "body": data}
    if more:
        message["more_body"] = True
    return message


LENGTH_0 = [(b"content-length", b"0"), (b"content-type", b"text/plain")]

# name -> (app, client)
SCENARIOS: dict[str, tuple[Scenario, Scenario]] = {
    "accept then return": (accept_then_return, handshake_client()),
    "accept twice": (accept_twice, handshake_client()),
    "accept then return a value": (accept_then_return_value, handshake_client()),
    "accept then raise": (accept_then_raise, handshake_client()),
    "raise before accept": (raise_before_accept, handshake_client()),
    "return without handshake": (return_without_handshake, handshake_client()),
    "return a value without handshake": (return_value_without_handshake, handshake_client()),
    "send before accept": (send_before_accept, handshake_client()),
    "connection lost after accept": (accept_then_wait_for_disconnect, drop_after_101),
    "connection lost before accept": (wait_for_disconnect_then_accept, drop_before_accept),
    "shutdown after accept": (accept_then_wait_for_disconnect, shutdown_after_101),
    "shutdown before accept": (wait_for_disconnect_then_accept, shutdown_before_accept),
    "client closes": (accept_then_wait_for_disconnect, client_closes),
    "app closes": (app_closes, echo_close),
    "close before accept": (close_before_accept, handshake_client()),
    # receive() after a disconnect: each disconnect queued is returned once (a close frame,
    # then the connection loss: two), then receive() waits
    "client closes, app reads on": (read_on(3), client_closes),
    "app closes, app reads on": (read_on(3, {"type": "websocket.close"}), echo_close),
    "shutdown, app reads on": (read_on(3), shutdown_after_101),
    "deny with body": (
        deny(start(400, [(b"content-length", b"7")]), body(b"goodbye")),
        handshake_client(),
    ),
    "deny with content headers": (
        deny(start(401, [(b"content-type", b"application/json"), (b"content-length", b"2")]), body(b"{}")),
        handshake_client(),
    ),
    "deny with more_body": (
        deny(
            start(400, [(b"Content-Length", b"20"), (b"Content-Type", b"text/plain")]),
            body(b"x" * 10, more=True),
            body(b"y" * 10),
        ),
        handshake_client(),
    ),
    "deny without content-length": (deny(start(403), body(b"hardbody")), handshake_client()),
    "deny with non-UTF-8 body": (
        deny(start(400, [(b"content-type", b"application/octet-stream")]), body(b"\x81\xfe\x00\xff bad \xff")),
        handshake_client(),
    ),
    "deny with an invalid status": (deny(start(700, LENGTH_0), then_receive=False), handshake_client()),
    "deny with a missing body": (deny(start(404, LENGTH_0), then_receive=False), handshake_client()),
    "deny with two start events": (deny(start(404, LENGTH_0), start(404, LENGTH_0)), handshake_client()),
    "deny with an invalid message": (
        deny(start(404, LENGTH_0), {"type": "websocket.accept"}),
        handshake_client(),
    ),
}


CONNECT = {"type": "websocket.connect"}

# what the app sees in the "reads on" scenarios, checked besides the comparison (two equal
# wrong answers must not pass): each disconnect once, then receive() waits
READ_ON = {
    "client closes, app reads on": [
        CONNECT,
        {"type": "websocket.disconnect", "code": 1001, "reason": "custom reason"},
        LOST,
        WAITS,
        WAITS,
    ],
    "app closes, app reads on": [
        CONNECT,
        {"type": "websocket.disconnect", "code": 1000, "reason": ""},
        LOST,
        WAITS,
        WAITS,
    ],
    "shutdown, app reads on": [CONNECT, {"type": "websocket.disconnect", "code": 1012}, LOST, WAITS, WAITS],
}


# the log records of two scenarios, checked besides the comparison: the websockets library's
# lines are among them (uvicorn hands it uvicorn.error), and uvicorn's websockets-sansio marks
# the handshake complete only at accept or loss, so an app that returns after a complete
# denial is logged as "returned without completing handshake" (wsproto: at the denial's start)
LOGS = {
    ("client closes", "websockets"): [
        ("uvicorn.error", "INFO", 'CLIENT - "WebSocket /" [accepted]', None),
        ("uvicorn.error", "INFO", "connection open", None),
    ],
    ("client closes", "wsproto"): [("uvicorn.error", "INFO", 'CLIENT - "WebSocket /" [accepted]', None)],
    ("deny with body", "websockets"): [
        ("uvicorn.error", "INFO", 'CLIENT - "WebSocket /" 400', None),
        ("uvicorn.error", "INFO", "connection rejected (400 Bad Request)", None),
        ("uvicorn.error", "ERROR", "ASGI callable returned without completing handshake.", None),
    ],
    ("deny with body", "wsproto"): [("uvicorn.error", "INFO", 'CLIENT - "WebSocket /" 400', None)],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_as_uvicorn(impl: str, ws: str, name: str) -> None:
    app, client = SCENARIOS[name]
    seen = compare(impl, ws, app, client)
    if name in READ_ON:
        assert seen["app"] == READ_ON[name]
        assert seen["app finished"]
    if (name, ws) in LOGS:
        assert seen["logs"] == LOGS[name, ws]


def test_message_over_max_size_same_as_uvicorn(impl: str, ws: str) -> None:
    compare(impl, ws, read_past_disconnect, big_text_frame, ws_max_size=16)


BAD_HANDSHAKES = {
    "missing Sec-WebSocket-Key": handshake_bytes(key=None),
    "missing key, version 11": handshake_bytes(key=None, version="11"),
    "invalid Sec-WebSocket-Key": handshake_bytes(key=b"short"),
    "missing Sec-WebSocket-Version": handshake_bytes(version=None),
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKES))
def test_bad_handshake_same_as_uvicorn(impl: str, ws: str, name: str) -> None:
    client = handshake_client(BAD_HANDSHAKES[name])
    if name == "invalid Sec-WebSocket-Key" and ws == "wsproto":
        # wsproto does not check the key's length, so uvicorn accepts it; RFC 6455 §4.2.1
        # (item 5) makes it a 400, which fastasgi sends (README, "Differences from uvicorn")
        ours = run_scenario("fastasgi", impl, ws, accept_then_return, client, {})
        theirs = run_scenario("uvicorn", impl, ws, accept_then_return, client, {})
        assert (ours["client"]["status"], theirs["client"]["status"]) == (400, 101)
        return
    compare(impl, ws, accept_then_return, client)


def drop_then_stop(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Complete the handshake, close TCP, stop the server once the app waits in receive()."""
    answer = drop_after_101(port, rec, stop)
    assert rec.waiting.wait(TIMEOUT)
    stop()
    return answer


def test_waiting_receive_and_graceful_shutdown_same_as_uvicorn(impl: str, ws: str) -> None:
    """After the connection loss (no close frame) receive() waits, as uvicorn's, and such a
    receive() holds graceful shutdown as long as under uvicorn: until
    --timeout-graceful-shutdown, which cancels the app's task."""
    seen = compare(impl, ws, wait_past_loss, drop_then_stop, timeout_graceful_shutdown=0.1)
    assert seen["app"] == [CONNECT, LOST, WAITS, "cancelled"]
    cancelled = ("uvicorn.error", "ERROR", "Cancel 1 running task(s), timeout graceful shutdown exceeded", None)
    assert cancelled in seen["logs"]


def text_frame(text: str) -> bytes:
    payload = text.encode()
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload  # under 126 bytes, zero mask


def echo_once_then_close(port: int, rec: Recorder, stop: Callable[[], None]) -> dict[str, Any]:
    """Complete the handshake, send a text frame, read its echo, send a close frame, read until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_bytes())
        buf = read_head(sock)
        sock.sendall(text_frame("hello"))
        for _ in range(100):  # bounded: until the echo (7 bytes) is in
            if len(buf.partition(b"\r\n\r\n")[2]) >= 7:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        sock.sendall(close_frame(1000))
        return parse_answer(*_read_until_eof(sock, buf))


async def echo_once(rec: Recorder, scope: Any, receive: Any, send: Any) -> None:
    await rec.receive(receive)
    await rec.send(send, {"type": "websocket.accept"})
    message = await rec.receive(receive)
    await rec.send(send, {"type": "websocket.send", "text": message["text"]})
    await rec.receive(receive)


def test_debug_and_trace_log_records_same_as_uvicorn(impl: str, ws: str) -> None:
    """At DEBUG (--log-level debug) the websockets library logs the handshake, every frame and
    each state change on uvicorn.error; fastasgi then sends every frame through it, so the lines
    are uvicorn's (the response's server and date headers aside).  At TRACE the backend adds
    "WebSocket connection made" / "lost", as uvicorn's do."""
    seen = compare(impl, ws, echo_once, echo_once_then_close, log_level=TRACE)
    frames = [line[2] for line in seen["logs"] if line[2].startswith(("< TEXT", "> TEXT"))]
    assert frames == (["< TEXT 'hello' [5 bytes]", "> TEXT 'hello' [5 bytes]"] if ws == "websockets" else [])
    made_lost = [line for line in seen["logs"] if "WebSocket connection" in line[2]]
    assert made_lost == [
        ("uvicorn.error", "TRACE", "CLIENT - WebSocket connection made", None),
        ("uvicorn.error", "TRACE", "CLIENT - WebSocket connection lost", None),
    ]
