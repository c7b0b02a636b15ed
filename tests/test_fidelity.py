"""Drop-in fidelity of the request cycle: one Task per request, and nothing runs once closing.

Every request's app runs in an ``asyncio.Task`` of its own (as under uvicorn), whose
context is a fresh copy of the server's: ``current_task()``, its cancellation, its
done callbacks, ``cancelling()`` and ContextVars never carry from one request to the
next on a keep-alive connection.  And once the server has decided to close a
connection, no request pipelined behind that point is started: its client never
sees an answer and would retry it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import socket
import sys
from typing import Any

import pytest

from tests.conftest import read_response, run_server, run_uvicorn

REQUEST_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar("REQUEST_VAR", default=None)


async def reply(send: Any, body: bytes, status: int = 200, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


class TaskApp:
    """Reports, for each request, what it sees of its Task and context."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task] = []  # kept alive: ids can't be reused
        self.done: dict[int, asyncio.Event] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        task = asyncio.current_task()
        assert task is not None
        n = len(self.tasks)
        prev = self.tasks[-1] if self.tasks else None
        path = scope["path"]
        info: dict[str, Any] = {
            "n": n,
            "distinct": all(t is not task for t in self.tasks),
            # asyncio's default name, one per request (fastasgi's own counter on 3.11, compiled)
            "default_name": re.fullmatch(r"Task-[1-9][0-9]*", task.get_name()) is not None,
            "name_distinct": all(t.get_name() != task.get_name() for t in self.tasks),
            "var": REQUEST_VAR.get(),
            "prev_done": prev.done() if prev is not None else None,
            "cancelling": task.cancelling() if sys.version_info >= (3, 11) else 0,
            "in_task_context": (REQUEST_VAR in task.get_context()) if sys.version_info >= (3, 12) else False,
        }
        if prev is not None:
            # done callbacks of the request before fire when it ends, not when the
            # connection closes (bounded wait: a hang here is the bug)
            try:
                await asyncio.wait_for(self.done[n - 1].wait(), 10)
                info["prev_callback"] = True
            except asyncio.TimeoutError:
                info["prev_callback"] = False
        self.tasks.append(task)
        event = self.done[n] = asyncio.Event()
        task.add_done_callback(lambda _t: event.set())
        REQUEST_VAR.set(f"request {n}")
        if path == "/cancel-prev" and prev is not None:
            prev.cancel()  # a watchdog of an earlier request fires late: must not hit this one
            for _ in range(3):
                await asyncio.sleep(0)
        if path == "/swallow-cancel":
            task.cancel()
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass  # swallowed without uncancel(): cancelling() stays 1 for *this* Task
        if path == "/suspend":
            await asyncio.sleep(0)
        await reply(send, json.dumps(info).encode(), headers=[(b"content-type", b"application/json")])


def _get(sock: socket.socket, path: str) -> dict:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, _, body = read_response(sock)
    assert status == 200, body
    return json.loads(body)


@pytest.mark.parametrize("first", ["/", "/suspend"])
def test_each_request_runs_in_its_own_task(impl: str, first: str) -> None:
    app = TaskApp()
    with run_server(app, impl) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        paths = [first, "/", "/swallow-cancel", "/", "/cancel-prev", "/suspend", "/", "/"]
        seen = [_get(sock, p) for p in paths]
    for i, info in enumerate(seen):
        assert info["n"] == i
        assert info["distinct"], info
        assert info["default_name"] and info["name_distinct"], info
        assert info["var"] is None, info  # no ContextVar of request i-1 in request i
        assert info["in_task_context"] is False, info
        assert info["cancelling"] == 0, info
        if i:
            assert info["prev_done"] is True, info  # the Task of request i-1 ended with it
            assert info["prev_callback"] is True, info


@pytest.mark.parametrize("first", ["/", "/suspend"])
def test_task_semantics_match_uvicorn(impl: str, first: str) -> None:
    # the same keep-alive sequence against uvicorn 0.54 and fastasgi: what each
    # request saw of its Task and context is the same
    paths = [first, "/", "/swallow-cancel", "/", "/cancel-prev", "/suspend", "/"]
    seen = {}
    for name, runner in (("uvicorn", run_uvicorn), ("fastasgi", run_server)):
        app = TaskApp()
        with runner(app, impl) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
            seen[name] = [_get(sock, p) for p in paths]
    assert seen["fastasgi"] == seen["uvicorn"]


def test_pipelined_request_gets_a_fresh_context(impl: str) -> None:
    # The first app suspends, so the second request waits in the pipeline and is
    # started from inside the first one's send(): its context must still be the
    # server's, not a copy of the first request's.
    app = TaskApp()
    with run_server(app, impl) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = [json.loads(read_response(sock)[2]) for _ in range(3)]
    assert [info["n"] for info in seen] == [0, 1, 2]
    for info in seen:
        assert info["var"] is None, info
        assert info["in_task_context"] is False, info
        assert info["distinct"], info
        assert info["default_name"] and info["name_distinct"], info


def test_request_task_is_one_of_asyncios_tasks(impl: str) -> None:
    # asyncio.all_tasks() lists the request's Task while it runs, as under uvicorn
    # (before 3.12 the compiled build registers Tasks through C callbacks: same set)
    seen: list[bool] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(asyncio.current_task() in asyncio.all_tasks())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task() in asyncio.all_tasks())
        await reply(send, b"ok")

    with run_server(app, impl) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(3):
            assert _get_raw(sock, "/") == b"ok"
    assert seen == [True] * 6


def _get_raw(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, _, body = read_response(sock)
    assert status == 200, body
    return body


@pytest.mark.c_extension
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio's task registry changed in 3.12: not sped up there")
def test_task_registry_speedup_keeps_weakset_semantics() -> None:
    # The compiled build gives asyncio's WeakSet of tasks a C add() whose weak
    # references remove dead tasks from C: the set must behave exactly as before.
    import gc
    import weakref

    from tests.conftest import require_compiled

    require_compiled()
    from fastasgi._speedups import coro_c, http_c  # noqa: F401  (importing http_c installs it)
    assert coro_c.speed_up_task_registry() is True
    registry = asyncio.tasks._all_tasks  # type: ignore[attr-defined]
    assert "add" in vars(registry)  # installed (importing the compiled protocol does it)

    async def nothing() -> None:
        pass

    def refs_of(tasks: list) -> list:
        # the weak references the registry holds for these tasks (the registry is
        # process-wide: servers of other tests add and remove their own meanwhile)
        return [r for r in list(registry.data) if any(r() is t for t in tasks)]

    async def main() -> None:
        tasks = [asyncio.ensure_future(nothing()) for _ in range(5)]
        held = refs_of(tasks)
        assert len(held) == 5 and all(t in registry for t in tasks)
        for task in tasks:
            await task
        del tasks, task
        await asyncio.sleep(0)  # (this Task holds the last future it waited on until it steps again)
        gc.collect()
        assert all(r() is None for r in held)
        assert not any(r in registry.data for r in held)  # removed as they died
        # a task that dies while the set is being iterated is removed afterwards,
        # as WeakSet defers it (no "set changed size during iteration")
        keep = [asyncio.ensure_future(nothing()) for _ in range(2)]
        for task in keep:
            await task
        await asyncio.sleep(0)
        it = iter(registry)
        current = next(it)  # (the iterator holds the task it yielded)
        target = keep[1] if keep[0] is current else keep[0]
        (ref,) = refs_of([target])
        del keep, current, task, target
        gc.collect()
        assert ref() is None
        assert any(r is ref for r in registry._pending_removals)  # type: ignore[attr-defined]
        assert ref in registry.data  # not removed while iterating
        list(it)
        extra = asyncio.ensure_future(nothing())  # add() commits the pending removals first
        assert ref not in registry.data
        await extra

    asyncio.run(main())


def test_current_task_is_not_shared_with_a_scoped_session_pattern(impl: str) -> None:
    # SQLAlchemy's async_scoped_session(scopefunc=current_task): one key per request
    keys: list[int] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        keys.append(id(asyncio.current_task()))
        await reply(send, b"ok")

    tasks_alive: list[Any] = []

    async def keeping(scope: dict, receive: Any, send: Any) -> None:
        tasks_alive.append(asyncio.current_task())
        await app(scope, receive, send)

    with run_server(keeping, impl) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(5):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200
    assert len(set(keys)) == 5


# -- nothing runs after the server decided to close ---------------------------------


class ChargeApp:
    """``POST /charge`` has a side effect a client must never see happen without an answer."""

    def __init__(self) -> None:
        self.charged = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.release: asyncio.Event | None = None
        self.entered: asyncio.Event | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.loop is None:  # events of the server's loop, for the shutdown test
            self.loop = asyncio.get_running_loop()
            self.release = asyncio.Event()
            self.entered = asyncio.Event()
        path = scope["path"]
        if path.startswith("/suspend"):
            await asyncio.sleep(0)
            path = path[len("/suspend") :]
        while True:  # read the whole body
            message = await receive()
            if not message.get("more_body"):
                break
        if path == "/charge":
            self.charged += 1
            await reply(send, b"charged")
        elif path == "/bye":
            await reply(send, b"bye", headers=[(b"connection", b"close")])
        elif path == "/boom":
            raise RuntimeError("boom")
        elif path == "/too-long":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"too long"})
        elif path == "/too-short":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"20")]})
            await send({"type": "http.response.body", "body": b"short"})
        elif path == "/slow":
            assert self.release is not None and self.entered is not None
            self.entered.set()
            await asyncio.wait_for(self.release.wait(), 20)
            await reply(send, b"slow")
        else:
            await reply(send, b"ok")


CHARGE = b"POST /charge HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
TRIGGERS = {
    "connection-close": b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\n",
    "app-exception": b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n",
    "content-length-exceeded": b"GET /too-long HTTP/1.1\r\nHost: x\r\n\r\n",
    "content-length-short": b"GET /too-short HTTP/1.1\r\nHost: x\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
    "request-connection-close": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "bad-request": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
}


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run_charge_scenario(runner: Any, impl: str, trigger: str, suspend: bool, warm: bool) -> tuple[ChargeApp, bytes]:
    """A trigger with two POST /charge pipelined behind it, on a fresh or warm
    connection of the server ``runner`` starts; what the app did and the client got."""
    app = ChargeApp()
    data = TRIGGERS[trigger]
    if suspend and data.startswith(b"GET /"):
        data = b"GET /suspend" + data[4:]
    with runner(app, impl) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            if warm:  # a connection that has answered before (other code paths)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock)[0] == 200
            sock.sendall(data + CHARGE + CHARGE)
            received = _read_all(sock)
        # the server is still serving, and by now any wrongly started app has run
        with socket.create_connection(("127.0.0.1", server.port)) as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(other)[0] == 200
    return app, received


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("suspend", [False, True], ids=["answers-at-once", "suspends"])
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_no_request_runs_after_the_connection_is_closing(impl: str, trigger: str, suspend: bool, warm: bool) -> None:
    app, received = run_charge_scenario(run_server, impl, trigger, suspend, warm)
    assert app.charged == 0, received
    assert b"charged" not in received
    assert received.count(b"HTTP/1.") <= 1, received


@pytest.mark.parametrize("suspend", [False, True], ids=["answers-at-once", "suspends"])
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_closing_triggers_match_uvicorn(impl: str, trigger: str, suspend: bool) -> None:
    # what the client gets and whether /charge ran: the same as under uvicorn 0.54
    seen = {}
    for name, runner in (("uvicorn", run_uvicorn), ("fastasgi", run_server)):
        app, received = run_charge_scenario(runner, impl, trigger, suspend, warm=True)
        statuses = [int(line.split()[1]) for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.")]
        seen[name] = {"charged": app.charged, "statuses": statuses}
    assert seen["fastasgi"] == seen["uvicorn"]


def test_graceful_shutdown_runs_no_pipelined_request(impl: str) -> None:
    app = ChargeApp()
    with run_server(app, impl) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        loop = app.loop
        assert loop is not None and app.entered is not None and app.release is not None
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + CHARGE)
        asyncio.run_coroutine_threadsafe(app.entered.wait(), loop).result(10)
        server.should_exit = True  # graceful shutdown while /slow runs, /charge queued behind it

        async def release_after_shutdown() -> None:
            # once the server has asked its connections to shut down, /slow may answer
            for _ in range(4000):  # bounded: 20 s at most
                if all(c.close_after_response for c in list(server.server_state.connections)):
                    break
                await asyncio.sleep(0.005)
            app.release.set()  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(release_after_shutdown(), loop).result(25)
        received = _read_all(sock)
    assert app.charged == 0, received
    assert received.count(b"HTTP/1.1 200") == 1, received
    assert received.endswith(b"slow"), received
    assert b"connection: close" in received.lower()


def test_graceful_shutdown_during_a_partial_head_runs_that_request_only(impl: str) -> None:
    # Shutdown arrives while a request head is half-received: that request is still
    # answered (with connection: close), but nothing pipelined behind it may run.
    app = ChargeApp()
    with run_server(app, impl) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        loop = app.loop
        assert loop is not None
        sock.sendall(b"GET / HTTP/1.1\r\nHo")

        async def shutdown_seen() -> None:
            # the server has asked this connection to shut down (bounded: 20 s at most)
            for _ in range(4000):
                conns = list(server.server_state.connections)
                if conns and all(c.close_after_response for c in conns):
                    return
                await asyncio.sleep(0.005)
            raise AssertionError("the connection was never asked to shut down")

        async def head_buffered() -> None:
            for _ in range(4000):
                conns = list(server.server_state.connections)
                if conns and all(c.head_partial for c in conns):
                    return
                await asyncio.sleep(0.005)
            raise AssertionError("the partial head never arrived")

        asyncio.run_coroutine_threadsafe(head_buffered(), loop).result(25)
        server.should_exit = True
        asyncio.run_coroutine_threadsafe(shutdown_seen(), loop).result(25)
        sock.sendall(b"st: x\r\n\r\n" + CHARGE)
        received = _read_all(sock)
    assert app.charged == 0, received
    assert received.count(b"HTTP/1.1 200") == 1, received
    assert b"connection: close" in received.lower()
