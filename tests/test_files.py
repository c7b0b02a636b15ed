"""File responses: the ASGI ``http.response.pathsend`` and ``http.response.zerocopysend``
extensions, end to end through the real server, on both implementations, over plain TCP
(``sendfile``) and TLS (chunks with back-pressure).

``os.sendfile`` and ``os.pread`` are wrapped for the whole module (:class:`Spy`): the
server runs on a thread of this process, so the wrappers count what it hands to the
kernel and what it reads into memory, which is how "no copy through Python" and "a slow
client does not make the server read the file" are checked without timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import stat
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.conftest import run_server

pytest.importorskip("starlette")
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

SMALL = b"hello, file\n" * 100  # 1200 bytes
DATA_SIZE = 100_000
BIG_SIZE = 3 * 1024 * 1024  # more than one sendfile call (filesend.SENDFILE_MAX)
# more than the kernel buffers of one loopback connection whose client asks for a small
# receive buffer (the sender's autotuned buffer tops out at 4 MiB by default)
HUGE_SIZE = 16 * 1024 * 1024
HAS_SENDFILE = hasattr(os, "sendfile")


class Spy:
    """Counts the bytes the process passes to ``os.sendfile`` and reads with ``os.pread``."""

    def __init__(self) -> None:
        self.sendfile = 0
        self.pread = 0
        self.sendfile_ports: set[int] = set()
        self.real_sendfile = getattr(os, "sendfile", None)
        self.real_pread = os.pread

    def reset(self) -> None:
        self.sendfile = 0
        self.pread = 0
        self.sendfile_ports: set[int] = set()

    def wrapped_sendfile(self, out_fd: int, *args: Any, **kwargs: Any) -> int:
        assert self.real_sendfile is not None
        n = self.real_sendfile(out_fd, *args, **kwargs)
        self.sendfile += n
        # the listening port of the server that sent it (other tests' servers share the spy)
        sock = socket.socket(fileno=out_fd)
        try:
            name = sock.getsockname()
            if isinstance(name, tuple):
                self.sendfile_ports.add(name[1])
        finally:
            sock.detach()
        return int(n)

    def wrapped_pread(self, *args: Any, **kwargs: Any) -> bytes:
        data = self.real_pread(*args, **kwargs)
        self.pread += len(data)
        return data


@pytest.fixture(scope="module")
def spy() -> Any:
    s = Spy()
    mp = pytest.MonkeyPatch()
    if HAS_SENDFILE:
        mp.setattr(os, "sendfile", s.wrapped_sendfile)
    mp.setattr(os, "pread", s.wrapped_pread)
    yield s
    mp.undo()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("files")
    (d / "small.txt").write_bytes(SMALL)
    (d / "data.bin").write_bytes(os.urandom(DATA_SIZE))
    (d / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    (d / "huge.bin").write_bytes(os.urandom(HUGE_SIZE))
    (d / "empty.bin").write_bytes(b"")
    (d / "dir").mkdir()
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "fifo")
    (d / "secret.bin").write_bytes(b"secret")
    os.chmod(d / "secret.bin", 0)
    yield d
    os.chmod(d / "secret.bin", stat.S_IRUSR | stat.S_IWUSR)


class Recorder:
    """What the apps saw (the message types each request sent, errors raised by send)."""

    def __init__(self) -> None:
        self.types: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}
        self.stall: dict[str, Any] = {}


def make_app(root: Path, rec: Recorder) -> Any:
    async def file_response(request: Any) -> Any:
        return FileResponse(root / request.path_params["name"])

    starlette_app = Starlette(
        routes=[
            Route("/starlette/{name}", file_response),
            Mount("/static", StaticFiles(directory=str(root))),
        ]
    )

    async def start(send: Any, status: int = 200, headers: Any = ()) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})

    async def raw(scope: dict, receive: Any, send: Any) -> None:
        path = scope["path"]
        q = dict(parse_qsl(scope["query_string"].decode()))
        if path == "/raw/extensions":
            body = json.dumps(sorted(scope["extensions"])).encode()
            await start(send, headers=[(b"content-length", str(len(body)).encode())])
            await send({"type": "http.response.body", "body": body})
        elif path == "/raw/pathsend":
            # ?name=...&cl=<declared content-length>&status=...
            headers = [(b"content-type", b"application/octet-stream")]
            if "cl" in q:
                headers.append((b"content-length", q["cl"].encode()))
            await start(send, int(q.get("status", "200")), headers)
            await send({"type": "http.response.pathsend", "path": str(root / q["name"])})
        elif path == "/raw/after-body":
            # pathsend cannot follow a body: refused, the response goes on as bodies
            await start(send)
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            try:
                await send({"type": "http.response.pathsend", "path": str(root / "small.txt")})
            except RuntimeError as exc:
                rec.errors[path] = str(exc)
            await send({"type": "http.response.body", "body": b"b"})
        elif path == "/raw/send-after":
            await start(send)
            await send({"type": "http.response.pathsend", "path": str(root / "small.txt")})
            try:
                await send({"type": "http.response.body", "body": b"more"})
            except RuntimeError as exc:
                rec.errors[path] = str(exc)
        elif path == "/raw/zerocopy":
            await zerocopy(q["case"], send)
        elif path == "/raw/stall":
            await stall(q, send)
        else:
            await start(send, 404, [(b"content-length", b"0")])
            await send({"type": "http.response.body"})

    async def zerocopy(case: str, send: Any) -> None:
        name = "data.bin"
        if case == "shrink":
            name = "shrink.bin"
            (root / name).write_bytes((root / "data.bin").read_bytes())
        with open(root / name, "rb") as f:  # noqa: ASYNC230 (a test app; the file is local and small)
            if case == "pieces":
                # no content-length: chunked; ranges, a body between, the file's own position
                await start(send)
                await send(
                    {"type": "http.response.zerocopysend", "file": f, "offset": 10, "count": 1000, "more_body": True}
                )
                await send({"type": "http.response.body", "body": b"--", "more_body": True})
                f.seek(5000)
                await send({"type": "http.response.zerocopysend", "file": f, "count": 300, "more_body": True})
                rec.errors["tell"] = str(f.tell())
                await send({"type": "http.response.zerocopysend", "file": f, "count": 0, "more_body": True})
                await send({"type": "http.response.zerocopysend", "file": f})
            elif case == "length":
                await start(send, headers=[(b"content-length", b"2000")])
                await send(
                    {"type": "http.response.zerocopysend", "file": f, "offset": 0, "count": 1000, "more_body": True}
                )
                await send({"type": "http.response.zerocopysend", "file": f.fileno(), "offset": 1000, "count": 1000})
            elif case == "whole":
                # offset and count left out: the whole file, content-length from its size
                await start(send)
                await send({"type": "http.response.zerocopysend", "file": f})
            elif case == "too-long":
                await start(send, headers=[(b"content-length", b"100")])
                try:
                    await send({"type": "http.response.zerocopysend", "file": f, "offset": 0, "count": 150})
                except RuntimeError as exc:
                    rec.errors["too-long"] = str(exc)
            elif case == "shrink":
                await start(send, headers=[(b"content-length", str(DATA_SIZE).encode())])
                half = DATA_SIZE // 2
                await send(
                    {"type": "http.response.zerocopysend", "file": f, "offset": 0, "count": half, "more_body": True}
                )
                os.truncate(root / name, DATA_SIZE // 4)
                await send({"type": "http.response.zerocopysend", "file": f, "offset": half, "count": DATA_SIZE - half})
                rec.errors["shrink"] = "returned"
            elif case == "bad-file":
                await start(send)
                await send({"type": "http.response.zerocopysend", "file": object()})

    async def stall(q: dict, send: Any) -> None:
        # The pathsend runs in a task of its own; once that task has taken one step the
        # client (which reads nothing yet) has filled every buffer, so the send is
        # suspended: another send must be refused, and the test looks at what the
        # server has read of the file so far.  ?truncate=N shrinks the file meanwhile.
        info = rec.stall
        name = q["name"]
        await start(send)
        task = asyncio.ensure_future(send({"type": "http.response.pathsend", "path": str(root / name)}))
        await asyncio.sleep(0)
        info["suspended"] = not task.done()
        try:
            await send({"type": "http.response.body", "body": b"x"})
        except RuntimeError as exc:
            info["concurrent"] = str(exc)
        if "truncate" in q:
            os.truncate(root / name, int(q["truncate"]))
        if "cancel" in q:
            task.cancel()
        info["event"].set()
        try:
            await task
        except asyncio.CancelledError:
            info["cancelled"] = True
        info["done"] = True
        info["finished"].set()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        types = rec.types.setdefault(scope["path"], [])

        async def recording_send(message: dict) -> None:
            types.append(message["type"])
            await send(message)

        if scope["path"].startswith("/raw/"):
            await raw(scope, receive, recording_send)
        else:
            await starlette_app(scope, receive, recording_send)

    return app


@pytest.fixture(scope="module")
def rec() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def server(impl: str, root: Path, rec: Recorder, spy: Spy) -> Any:
    with run_server(make_app(root, rec), impl) as srv:
        yield srv


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    d = tmp_path_factory.mktemp("files-tls")
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {"cert": str(d / "cert.pem"), "key": str(d / "key.pem"), "ca": str(d / "ca.pem")}


@pytest.fixture(scope="module")
def tls_server(impl: str, root: Path, rec: Recorder, spy: Spy, tls: dict) -> Any:
    with run_server(make_app(root, rec), impl, ssl_certfile=tls["cert"], ssl_keyfile=tls["key"]) as srv:
        yield srv


def connect(port: int, rcvbuf: int = 0, tls: dict | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    if tls is not None:
        ctx = ssl.create_default_context(cafile=tls["ca"])
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


class Reader:
    """Responses read off one connection, in order (HEAD-aware, content-length or chunked)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def fill(self) -> bool:
        data = self.sock.recv(1 << 18)
        self.buf += data
        return bool(data)

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            assert self.fill(), f"closed before a complete head: {bytes(self.buf[:200])!r}"
        end = self.buf.index(b"\r\n\r\n")
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            assert self.fill(), "closed mid-body"
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def response(self, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        if head_request or status == 304:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self.take(int(headers["content-length"]))
        assert headers.get("transfer-encoding") == "chunked", headers
        body = bytearray()
        while True:
            while b"\r\n" not in self.buf:
                assert self.fill()
            end = self.buf.index(b"\r\n")
            size = int(bytes(self.buf[:end]), 16)
            del self.buf[: end + 2]
            body += self.take(size)
            assert self.take(2) == b"\r\n"
            if size == 0:
                return status, headers, bytes(body)

    def until_close(self) -> bytes:
        try:
            while self.fill():
                pass
        except ConnectionResetError:
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data


def req(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: x\r\n{extra}\r\n".encode()


# -- advertised, Starlette ---------------------------------------------------------------


def test_extensions_advertised(server: Any) -> None:
    r = httpx.get(server.url + "/raw/extensions")
    assert {"http.response.pathsend", "http.response.zerocopysend"} <= set(r.json())


def test_starlette_file_response_uses_pathsend(server: Any, root: Path, rec: Recorder, spy: Spy) -> None:
    spy.reset()
    rec.types.clear()
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/starlette/big.bin")
        assert r.status_code == 200
        assert r.content == (root / "big.bin").read_bytes()
        assert r.headers["content-length"] == str(BIG_SIZE)
        assert "etag" in r.headers and "last-modified" in r.headers
        # keep-alive: the next response on the same connection is whole
        r = c.get("/starlette/small.txt")
        assert r.content == SMALL and r.headers["content-type"].startswith("text/plain")
    assert rec.types["/starlette/big.bin"] == ["http.response.start", "http.response.pathsend"]
    if HAS_SENDFILE:
        assert spy.sendfile >= BIG_SIZE  # the kernel moved the file ...
        assert spy.pread <= 2 * 16384  # ... Python read at most a piece or two (a full socket)


def test_static_files_get_head_304_range(server: Any, root: Path) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/static/data.bin")
        assert r.status_code == 200 and r.content == (root / "data.bin").read_bytes()
        etag = r.headers["etag"]
        r = c.head("/static/data.bin")
        assert r.status_code == 200 and r.headers["content-length"] == str(DATA_SIZE) and r.content == b""
        r = c.get("/static/data.bin", headers={"if-none-match": etag})
        assert r.status_code == 304 and r.content == b""
        r = c.get("/static/data.bin", headers={"range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == (root / "data.bin").read_bytes()[10:20]
        r = c.get("/static/empty.bin")
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"


# -- pathsend ----------------------------------------------------------------------------


def test_pathsend_pipelined_keep_alive(server: Any, root: Path) -> None:
    """A file response in a pipeline: nothing lost, nothing reordered, HEAD and 304 bodiless."""
    big = (root / "big.bin").read_bytes()
    data = (root / "data.bin").read_bytes()
    with connect(server.port) as sock:
        sock.sendall(
            req("/raw/pathsend?name=big.bin")
            + req("/raw/pathsend?name=data.bin", "HEAD")
            + req("/raw/pathsend?name=small.txt&status=304")
            + req(f"/raw/pathsend?name=data.bin&cl={DATA_SIZE}")
            + req("/raw/extensions")
            + req("/static/small.txt")
        )
        rd = Reader(sock)
        status, headers, body = rd.response()
        assert (status, headers["content-length"], body == big) == (200, str(BIG_SIZE), True)
        status, headers, body = rd.response(head_request=True)
        assert (status, headers["content-length"]) == (200, str(DATA_SIZE))  # the file's size, no body
        status, headers, body = rd.response()
        assert status == 304 and "content-length" not in headers and "transfer-encoding" not in headers
        status, headers, body = rd.response()
        assert (status, body == data) == (200, True)
        status, headers, body = rd.response()
        assert {"http.response.pathsend", "http.response.zerocopysend"} <= set(json.loads(body))
        status, headers, body = rd.response()
        assert body == SMALL
        assert rd.buf == b""  # no stray byte after the last response


@pytest.mark.parametrize(
    ("name", "extra", "reason"),
    [
        ("missing.bin", "", "No such file or directory"),
        ("dir", "", "is not a regular file"),
        ("fifo", "", "is not a regular file"),
        ("secret.bin", "", "Permission denied"),
        ("small.txt", "&cl=5", "is not the size of"),
    ],
)
def test_pathsend_errors_before_the_response_are_500(
    server: Any, name: str, extra: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    if name == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    if name == "secret.bin" and hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root reads a file with mode 000")
    with caplog.at_level("ERROR", logger="uvicorn.error"):
        r = httpx.get(server.url + f"/raw/pathsend?name={name}{extra}")
    assert r.status_code == 500 and r.text == "Internal Server Error"
    assert "'http.response.pathsend'" in caplog.text and reason in caplog.text


def test_pathsend_after_body_and_send_after_pathsend_are_refused(server: Any, rec: Recorder) -> None:
    r = httpx.get(server.url + "/raw/after-body")
    assert r.status_code == 200 and r.content == b"ab"
    assert "cannot follow 'http.response.body'" in rec.errors["/raw/after-body"]
    r = httpx.get(server.url + "/raw/send-after")
    assert r.content == SMALL
    # the client has the whole response once the file is sent: the app's next send may
    # still be on its way (polled, bounded)
    deadline = time.monotonic() + 10
    while "/raw/send-after" not in rec.errors and time.monotonic() < deadline:
        time.sleep(0.005)
    assert "after response already completed" in rec.errors["/raw/send-after"]


# -- zerocopysend ------------------------------------------------------------------------


def test_zerocopysend(server: Any, root: Path, rec: Recorder) -> None:
    data = (root / "data.bin").read_bytes()
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/raw/zerocopy?case=pieces")
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.content == data[10:1010] + b"--" + data[5000:5300] + data[5300:]
        assert rec.errors["tell"] == "5300"  # without offset: from the position, which moves on
        r = c.get("/raw/zerocopy?case=length")
        assert r.headers["content-length"] == "2000" and r.content == data[:2000]
        r = c.get("/raw/zerocopy?case=whole")
        assert r.headers["content-length"] == str(DATA_SIZE) and r.content == data
        r = c.head("/raw/zerocopy?case=whole")
        assert r.headers["content-length"] == str(DATA_SIZE) and r.content == b""
        r = c.get("/raw/zerocopy?case=bad-file")
        assert r.status_code == 500


def test_zerocopysend_longer_than_content_length_is_cut(server: Any, root: Path, rec: Recorder) -> None:
    with connect(server.port) as sock:
        sock.sendall(req("/raw/zerocopy?case=too-long"))
        rd = Reader(sock)
        _, headers = rd.head()
        assert headers["content-length"] == "100"
        assert rd.until_close() == (root / "data.bin").read_bytes()[:100]
    assert "longer than Content-Length" in rec.errors["too-long"]


def test_zerocopysend_file_shrinking_between_messages_closes(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR", logger="uvicorn.error"):
        with connect(server.port) as sock:
            sock.sendall(req("/raw/zerocopy?case=shrink"))
            rd = Reader(sock)
            _, headers = rd.head()
            assert headers["content-length"] == str(DATA_SIZE)
            assert len(rd.until_close()) == DATA_SIZE // 2  # the first half, then the connection ends
    assert "File ended while being sent" in caplog.text


# -- slow clients, files shrinking mid-send, TLS ------------------------------------------


def stalled(
    srv: Any, rec: Recorder, spy: Spy, tls: dict | None, truncate: int = -1, extra: str = ""
) -> tuple[socket.socket, Reader]:
    """A client that reads nothing asks for the huge file: returns once the server's send is suspended."""
    rec.stall = {"event": threading.Event(), "finished": threading.Event()}
    spy.reset()
    sock = connect(srv.port, rcvbuf=16384, tls=tls)
    query = "name=huge.bin" if truncate < 0 else f"name=shrinking.bin&truncate={truncate}"
    query += extra
    sock.sendall(req("/raw/stall?" + query))
    assert rec.stall["event"].wait(30), "the app did not get past its pathsend"
    assert rec.stall["suspended"], "the send finished although the client read nothing"
    assert "while a file of the response is being sent" in rec.stall["concurrent"]
    return sock, Reader(sock)


@pytest.mark.parametrize("secure", [False, True], ids=["tcp", "tls"])
def test_slow_client_is_not_buffered(
    secure: bool, server: Any, tls_server: Any, tls: dict, root: Path, rec: Recorder, spy: Spy
) -> None:
    srv = tls_server if secure else server
    sock, rd = stalled(srv, rec, spy, tls if secure else None)
    with sock:
        # What the server took from the file so far is what the kernel buffers hold (a few
        # MiB at most), not the file: sendfile hands over no more than fits, the TLS path
        # stops reading while the transport is paused.
        assert spy.sendfile + spy.pread < HUGE_SIZE // 2
        if secure or not HAS_SENDFILE:
            assert srv.port not in spy.sendfile_ports
        else:
            assert spy.pread <= 16384  # at most one piece through the transport
        for conn in list(srv.server_state.connections):
            assert conn.transport.get_write_buffer_size() <= 4 * 65536
        _, headers, body = rd.response()
        assert headers["content-length"] == str(HUGE_SIZE)
        assert body == (root / "huge.bin").read_bytes()
    assert rec.stall.get("done")


@pytest.mark.parametrize("secure", [False, True], ids=["tcp", "tls"])
def test_file_shrinking_mid_send_closes(
    secure: bool,
    server: Any,
    tls_server: Any,
    tls: dict,
    root: Path,
    rec: Recorder,
    spy: Spy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv = tls_server if secure else server
    (root / "shrinking.bin").write_bytes((root / "huge.bin").read_bytes())
    with caplog.at_level("ERROR", logger="uvicorn.error"):
        sock, rd = stalled(srv, rec, spy, tls if secure else None, truncate=1024 * 1024)
        with sock:
            _, headers = rd.head()
            assert headers["content-length"] == str(HUGE_SIZE)
            assert len(rd.until_close()) < HUGE_SIZE  # cut short, then the connection ends
    assert "File ended while being sent" in caplog.text


def test_cancelled_or_disconnected_mid_file(server: Any, rec: Recorder, spy: Spy) -> None:
    # the app's send is cancelled in the middle of the file: the connection ends there
    sock, rd = stalled(server, rec, spy, None, extra="&cancel=1")
    with sock:
        _, headers = rd.head()
        assert len(rd.until_close()) < int(headers["content-length"])
    assert rec.stall["finished"].wait(10) and rec.stall.get("cancelled")
    # the client goes away in the middle of the file: the app's send returns, the server goes on
    sock, rd = stalled(server, rec, spy, None)
    sock.close()
    assert rec.stall["finished"].wait(10) and not rec.stall.get("cancelled")
    assert httpx.get(server.url + "/raw/pathsend?name=small.txt").content == SMALL


def test_tls_pathsend_and_zerocopysend(tls_server: Any, tls: dict, root: Path, spy: Spy) -> None:
    spy.reset()
    ctx = ssl.create_default_context(cafile=tls["ca"])
    with httpx.Client(base_url=tls_server.url, verify=ctx) as c:
        r = c.get("/starlette/big.bin")
        assert r.content == (root / "big.bin").read_bytes()
        r = c.get("/raw/zerocopy?case=pieces")
        data = (root / "data.bin").read_bytes()
        assert r.content == data[10:1010] + b"--" + data[5000:5300] + data[5300:]
    # TLS: read in chunks, encrypted by the transport; never sendfile on this server's sockets
    assert tls_server.port not in spy.sendfile_ports and spy.pread >= BIG_SIZE
