"""An app for the access-log tests: a plain answer, a streamed one, a failure."""

from __future__ import annotations


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("kaboom in the app")
    if path == "/stream":  # chunked: 3 chunks of 5 bytes
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-resp", b"streamed")]})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"chunk", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    status = 404 if path.startswith("/missing") else 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"X-Resp", b"r-value")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})
