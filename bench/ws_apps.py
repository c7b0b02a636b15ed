"""ASGI3 WebSocket echo app for ``bench/ws_run.py`` (served by every server alike)."""

from __future__ import annotations


async def echo(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ws echo"})
        return
    while True:
        message = await receive()
        mtype = message["type"]
        if mtype == "websocket.receive":
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message["text"]})
        elif mtype == "websocket.connect":
            await send({"type": "websocket.accept"})
        else:
            return
