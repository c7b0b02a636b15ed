"""Test fixtures: the implementation matrix and a real server on a loopback port.

Every HTTP test takes the ``impl`` fixture, so it runs once against the compiled
set (``"c"``, marked ``c_extension``) and once against the pure-Python set
(``"py"``).  ``--no-c-extensions`` deselects the compiled cases (PyPy, or a
build without a compiler); without it, a missing compiled set is an error, not a
silent pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import socket
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from fastasgi import _speedups
from fastasgi.config import Config
from fastasgi.server import Server


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="Do not run tests against the compiled implementation (PyPy, or no compiler).",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--no-c-extensions"):
        return
    selected, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("c_extension") else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


if platform.python_implementation() == "PyPy" and sys.version_info < (3, 10):
    # PyPy 7.3.11 (Python 3.9): when two threads join the same thread (the websockets
    # sync client does), the second can get "RuntimeError: cannot release un-acquired
    # lock" from threading's tstate lock after its acquire() succeeded, which means the
    # thread has ended: record that instead of failing the test.
    _wait_for_tstate_lock = threading.Thread._wait_for_tstate_lock  # type: ignore[attr-defined]

    def _patched_wait_for_tstate_lock(self: threading.Thread, block: bool = True, timeout: float = -1) -> None:
        try:
            _wait_for_tstate_lock(self, block, timeout)
        except RuntimeError:
            self._stop()  # type: ignore[attr-defined]

    threading.Thread._wait_for_tstate_lock = _patched_wait_for_tstate_lock  # type: ignore[attr-defined]


IMPL_HTTP = {"c": "httptools", "py": "h11"}


def require_compiled() -> None:
    """For a ``c_extension`` case: fail, never skip, when the compiled set is missing.

    Only ``--no-c-extensions`` may leave the compiled cases out (it deselects them).
    """
    reason = _speedups.compiled_error()
    if reason is not None:
        pytest.fail(f"the compiled implementation is {reason}; build it or pass --no-c-extensions")


@pytest.fixture(scope="session", params=[pytest.param("c", marks=pytest.mark.c_extension), "py"])
def impl(request: pytest.FixtureRequest) -> str:
    tag: str = request.param
    if tag == "c":
        require_compiled()
    return tag


class ReadyOnStartup:
    """Mixed into a Server class (fastasgi's or uvicorn's) run on a thread: ``ready``
    is set once it listens (or failed); ``port`` is the one it picked."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)  # type: ignore[call-arg]
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets=sockets)  # type: ignore[misc]
        finally:
            self.ready.set()

    @property
    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])  # type: ignore[attr-defined]


class ThreadedServer(ReadyOnStartup, Server):
    """A real Server on its own thread and event loop."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.thread: threading.Thread | None = None  # set by run_server

    @property
    def url(self) -> str:
        scheme = "https" if self.config.is_ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


@contextlib.contextmanager
def run_server(app: Any, impl: str = "py", **kwargs: Any) -> Iterator[ThreadedServer]:
    kwargs.setdefault("port", 0)
    kwargs.setdefault("log_config", None)
    kwargs.setdefault("lifespan", "off")
    kwargs.setdefault("http", IMPL_HTTP[impl])
    kwargs.setdefault("loop", "asyncio" if impl == "py" else "auto")
    config = Config(app, **kwargs)
    server = ThreadedServer(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # reported to the test
            errors.append(exc)
            server.ready.set()

    thread = threading.Thread(target=target, daemon=True)
    server.thread = thread
    thread.start()
    assert server.ready.wait(30), "server did not start"
    if errors:
        raise errors[0]
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "server did not stop"


@contextlib.contextmanager
def run_uvicorn(app: Any, impl: str = "py", **kwargs: Any) -> Iterator[Any]:
    """uvicorn 0.54 serving ``app`` on a thread, for differential tests (the same
    scenario against uvicorn and fastasgi): httptools for the compiled ``impl``, h11
    for the pure one.  Skips where uvicorn is not installed (Python 3.9)."""
    uvicorn = pytest.importorskip("uvicorn")

    class UvicornThread(ReadyOnStartup, uvicorn.Server):  # type: ignore[misc,name-defined]
        pass

    kwargs.setdefault("lifespan", "off")
    kwargs.setdefault("log_config", None)
    kwargs.setdefault("loop", "asyncio")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=IMPL_HTTP[impl], **kwargs)
    server = UvicornThread(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.ready.wait(30), "uvicorn did not start"
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"


def raw_request(port: int, data: bytes, timeout: float = 10.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes on a fresh connection and read the answer until the server closes (bounded by timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


_leftover: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[bytes, bytes], bytes]:
    """Read exactly one response (content-length or chunked) from a keep-alive socket."""
    sock.settimeout(timeout)
    buf = _leftover.pop(sock, b"")
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a complete head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        acc = bytearray(rest)
        while len(acc) < n:
            chunk = sock.recv(262144)
            if not chunk:
                raise ConnectionError("closed mid-body")
            acc += chunk
        rest = bytes(acc)
        if rest[n:]:
            _leftover[sock] = rest[n:]
        return status, headers, rest[:n]
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                if rest:
                    _leftover[sock] = rest
                return status, headers, body
    return status, headers, rest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


__all__ = ["ThreadedServer", "asyncio", "raw_request", "read_response", "require_compiled", "run_server"]


import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNING_RE = re.compile(r"running on (\w+)://([^ ]+):(\d+)")


class CLIServer:
    """``python -m fastasgi ...`` in a subprocess; the port is read from its startup line.

    A reader thread collects the output lines, so waiting for a line never
    depends on pipe buffering.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        import queue

        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.setdefault("PYTHONPATH", REPO)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastasgi", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd or REPO,
            text=True,
        )
        self.lines: list[str] = []
        self.port = 0
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_line(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        import queue
        import time

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            m = pattern.search(line)
            if m:
                return m
        raise AssertionError(f"no line matching {pattern.pattern!r}:\n" + "".join(self.lines) + self.rest())

    def wait_ready(self, timeout: float = 30, pattern: re.Pattern[str] = RUNNING_RE) -> int:
        m = self.wait_line(pattern, timeout)
        self.port = int(m.group(3)) if pattern is RUNNING_RE else 0
        return self.port

    def rest(self, timeout: float = 15) -> str:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        out = []
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                out.append(line)
        self.lines.extend(out)
        return "".join(out)

    def stop(self, sig: int = 2, timeout: float = 20) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.rest(timeout)
        return self.proc.returncode, "".join(self.lines)


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONPATH", REPO)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fastasgi", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
