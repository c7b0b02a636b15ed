"""Plain ASGI3 apps served by every server in the end-to-end benchmark.

No framework, nothing clever: each app does the least a real handler does, so
that the server's own per-request cost dominates.  Each is a module attribute
(``bench.apps:plaintext`` ...), and each answers the lifespan protocol so that
no server logs about it.
"""

from __future__ import annotations

import json as _json
import os
import tempfile
from pathlib import Path

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


# -- static files (static-64k, static-1m; nginx serves the same files in bench/run.py) ----

# (static_100m: bench/files_rss.py, many slow clients downloading one big file)
STATIC_SIZES = {"static_64k": 64 * 1024, "static_1m": 1024 * 1024, "static_100m": 100 * 1024 * 1024}


def static_dir() -> Path:
    """Where the files live: $FASTASGI_BENCH_STATIC, else a folder in the temporary directory."""
    return Path(os.environ.get("FASTASGI_BENCH_STATIC") or Path(tempfile.gettempdir()) / "fastasgi-bench-static")


def static_file(size: int) -> Path:
    """The file of ``size`` bytes (made once; the same bytes every time: a repeated pattern)."""
    path = static_dir() / f"file-{size}.bin"
    if not path.is_file() or path.stat().st_size != size:
        path.parent.mkdir(parents=True, exist_ok=True)
        pattern = bytes(range(256))
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes((pattern * (size // len(pattern) + 1))[:size])
        os.replace(tmp, path)  # atomic: a server starting meanwhile never sees half a file
    return path


def _file_app(size: int):
    """GET -> the file through Starlette's FileResponse, as a handler returning
    ``FileResponse(path)`` does (stat per request; pathsend where the server offers it)."""
    path = str(static_file(size))
    response_class = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await _lifespan(receive, send)
        if not response_class:
            from starlette.responses import FileResponse  # only the static scenarios need Starlette

            response_class.append(FileResponse)
        await response_class[0](path)(scope, receive, send)

    app.__doc__ = f"GET -> a {size // 1024} KiB file through Starlette's FileResponse."
    return app


def __getattr__(name: str):
    # static_64k, static_1m, static_100m are made on first use: importing bench.apps writes no file
    size = STATIC_SIZES.get(name)
    if size is None:
        raise AttributeError(name)
    app = _file_app(size)
    globals()[name] = app
    return app
