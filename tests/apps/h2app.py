"""The HTTP/2 tests' app: basic.app, plus endpoints about streams running side by side."""

from __future__ import annotations

import asyncio

from tests.apps import basic

# /barrier?<key>&<n>: the first n-1 requests wait until the n-th arrives (per loop and key)
_BARRIERS: dict = {}
# /lazy?<key> waits for /open?<key> before it reads its body
_GATES: dict = {}
# /page?<key> and the script it loads, /page.js?<key>: key -> [(path, http_version, scheme)]
SEEN: dict = {}

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>h2 page</title></head>
<body><p id="static">served by fastasgi</p><p id="dynamic">script not run</p>
<script src="/page.js?%s"></script></body></html>
"""
PAGE_JS = b"document.getElementById('dynamic').textContent = 'script ran';\n"


def _gate(key: bytes) -> asyncio.Event:
    loop = asyncio.get_running_loop()
    return _GATES.setdefault((loop, key), asyncio.Event())


async def app(scope, receive, send):
    path = scope.get("path")
    if path == "/barrier":
        # answers only once n requests run at the same time: n streams of one connection,
        # each in its own Task with a fresh context
        key, n = scope["query_string"].split(b"&")
        loop = asyncio.get_running_loop()
        state = _BARRIERS.setdefault((loop, key), {"count": 0, "event": asyncio.Event()})
        before = basic.request_var.get()
        basic.request_var.set(key.decode())
        state["count"] += 1
        if state["count"] >= int(n):
            state["event"].set()
        await state["event"].wait()
        task = asyncio.current_task()
        body = b"%d %s %d" % (id(task), before.encode(), scope["client"][1])
        await basic.respond(send, body=body)
    elif path == "/lazy":
        # starts its response, then reads no body until /open?<key> came
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ready;", "more_body": True})
        await _gate(scope["query_string"]).wait()
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.body", "body": b"%d" % size})
    elif path in ("/page", "/page.js"):
        # for a browser: an HTML page and its script; who asked what, over which protocol
        key = scope["query_string"]
        SEEN.setdefault(key.decode(), []).append((path, scope["http_version"], scope["scheme"]))
        if path == "/page":
            await basic.respond(send, body=PAGE % key, content_type=b"text/html; charset=utf-8")
        else:
            await basic.respond(send, body=PAGE_JS, content_type=b"text/javascript")
    elif path == "/tasks":
        # the Tasks of the loop at this app's first step (streams started and not yet run)
        await basic.respond(send, body=b"%d" % len(asyncio.all_tasks()))
    elif path.startswith("/echo-path/"):
        await basic.respond(send, body=path.encode())
    elif path == "/open":
        _gate(scope["query_string"]).set()
        await basic.respond(send, body=b"opened")
    else:
        await basic.app(scope, receive, send)
