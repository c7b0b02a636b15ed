"""Plain ASGI3 apps served by every server in the end-to-end benchmark.

No framework, nothing clever: each app does the least a real handler does, so
that the server's own per-request cost dominates.  Each is a module attribute
(``bench.apps:plaintext`` ...), and each answers the lifespan protocol so that
no server logs about it.
"""

from __future__ import annotations

import json as _json

PLAINTEXT_BODY = b"Hello, world!"
STREAM_CHUNK = b"x" * 1024
STREAM_CHUNKS = 10

# ~100 bytes once serialized; serialized per request, as a real handler would.
JSON_PAYLOAD = {
    "message": "Hello, world!",
    "id": 12345,
    "tags": ["asgi", "bench", "json"],
    "ok": True,
    "ratio": 0.875,
}


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def plaintext(scope, receive, send):
    """GET -> 200 "Hello, world!" text/plain, with content-length."""
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", b"13"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": PLAINTEXT_BODY})


async def json(scope, receive, send):
    """GET -> 200 application/json (~100 bytes, serialized per request)."""
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    body = _json.dumps(JSON_PAYLOAD).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def echo(scope, receive, send):
    """POST -> reads the whole request body and sends it back, with content-length."""
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    chunks = []
    more_body = True
    while more_body:
        message = await receive()
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def stream(scope, receive, send):
    """GET -> 10 x 1 KiB chunks with more_body, no content-length (so chunked)."""
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    for _ in range(STREAM_CHUNKS):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
