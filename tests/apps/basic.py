"""One ASGI app with many endpoints, used by the HTTP tests (dispatches on the path)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading

_RELEASE: dict = {}  # loop -> asyncio.Event, used by /sse and /release


def release_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    if loop not in _RELEASE:
        _RELEASE[loop] = asyncio.Event()
    return _RELEASE[loop]


CANCELLED: list = []  # query strings of /forever requests that were cancelled
# /wait-disconnect?<token>: (started, disconnected), set by the app once the request
# runs and once it has received http.disconnect (a test registers the token first).
WAITERS: dict[bytes, tuple[threading.Event, threading.Event]] = {}
request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")


async def read_body(receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("disconnected")
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def respond(send, status=200, body=b"", headers=None, content_type=b"text/plain"):
    hdrs = [(b"content-type", content_type)] + list(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _jsonable(scope):
    out = {}
    for key, value in scope.items():
        if key == "headers":
            out[key] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in value]
        elif isinstance(value, bytes):
            out[key] = value.decode("latin-1")
        elif key == "state":
            out[key] = sorted(value)
        elif key in ("app", "extensions"):
            continue
        else:
            out[key] = value
    return out


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    if path == "/":
        await respond(send, body=b"Hello, world!")
    elif path == "/echo":
        body = await read_body(receive)
        await respond(send, body=body, content_type=b"application/octet-stream")
    elif path == "/echo-chunks":
        # echoes each received chunk as it arrives (streamed response)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/scope":
        await respond(send, body=json.dumps(_jsonable(scope)).encode(), content_type=b"application/json")
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"chunk%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
        await respond(send, status=status, body=b"should-not-appear")
    elif path == "/error":
        raise RuntimeError("boom")
    elif path == "/error-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/no-response":
        return
    elif path == "/too-long":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"0123456789SMUGGLED"})
    elif path == "/too-long-streamed":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"012", "more_body": True})
        await send({"type": "http.response.body", "body": b"3456789SMUGGLED"})
    elif path == "/too-short":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"01234"})
    elif path == "/bad-header":
        await respond(send, headers=[(b"x-evil", b"a\r\nset-cookie: pwned=1")], body=b"x")
    elif path == "/bad-header-name":
        await respond(send, headers=[(b"x evil", b"1")], body=b"x")
    elif path == "/double-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 500, "headers": []})
    elif path == "/send-after-complete":
        await respond(send, body=b"done")
        await send({"type": "http.response.body", "body": b"EXTRA"})
    elif path == "/noread":
        await respond(send, body=b"did not read")
    elif path == "/wait-disconnect":
        waiter = WAITERS.get(scope["query_string"])
        if waiter is not None:
            waiter[0].set()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if waiter is not None:
                    waiter[1].set()
                break
    elif path == "/big":
        size = int(scope["query_string"] or b"1048576")
        await respond(send, body=b"x" * size)
    elif path == "/contextvar":
        before = request_var.get()
        request_var.set(scope["query_string"].decode())
        await asyncio.sleep(0)
        await respond(send, body=f"{before}|{request_var.get()}".encode())
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"0.2"))
        await respond(send, body=b"slept")
    elif path == "/current-task":
        task = asyncio.current_task()
        await asyncio.sleep(0)  # suspend once: the same task must still be current
        same = asyncio.current_task() is task
        await respond(send, body=b"%s %s" % (str(task is not None).encode(), str(same).encode()))
    elif path == "/forever":
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            CANCELLED.append(scope["query_string"])
            raise
    elif path == "/sse":
        # a chunk, then wait until /release is requested: the chunk must reach the
        # client while the app waits (streamed bytes are not held back)
        release_event().clear()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await release_event().wait()
        await send({"type": "http.response.body", "body": b"data: second\n\n"})
    elif path == "/release":
        release_event().set()
        await respond(send, body=b"released")
    elif path == "/custom-headers":
        await respond(
            send,
            headers=[(b"Server", b"custom"), (b"X-Multi", b"1"), (b"x-multi", b"2")],
            body=b"custom",
        )
    else:
        await respond(send, status=404, body=b"Not Found")
