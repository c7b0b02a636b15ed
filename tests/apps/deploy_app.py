"""The app of the deployment tests (listeners, systemd, nginx): it answers what it was given.

HTTP: a JSON object with the process id and the parts of the scope a proxy or a
listener decides (scheme, client, server, host header, forwarded headers).
WebSocket: the same object as the first text message, then an echo of one message.

``FASTASGI_TEST_GATE=PATH`` holds the lifespan startup until the file PATH exists,
and creates ``PATH.entered`` when it begins to wait: a test can then check what the
server did (or did not) announce while its startup was still running.
"""

from __future__ import annotations

import asyncio
import json
import os


def describe(scope):
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    return {
        "pid": os.getpid(),
        "type": scope["type"],
        "scheme": scope["scheme"],
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "path": scope["path"],
        "host": headers.get("host"),
        "x-forwarded-for": headers.get("x-forwarded-for"),
        "forwarded": headers.get("forwarded"),
    }


def touch(path):
    with open(path, "w"):
        pass


async def wait_for_gate():
    gate = os.environ.get("FASTASGI_TEST_GATE")
    if not gate:
        return
    touch(gate + ".entered")
    for _ in range(6000):  # at most about 60 s, then start anyway (the test fails on its own deadline)
        if os.path.exists(gate):
            return
        await asyncio.sleep(0.01)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await wait_for_gate()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
            await send({"type": "websocket.close", "code": 1000})
        return
    body = json.dumps(describe(scope)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
