"""Apps for the supervisor tests: each response body is the worker's PID."""

from __future__ import annotations

import asyncio
import os
import time


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
    if path == "/slow":
        await asyncio.sleep(0.2)
    elif path == "/block":
        time.sleep(30)  # blocks the event loop: the worker fails its health check
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def failing_lifespan(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


# -- a leaking app for --limit-max-rss ------------------------------------------------------
# Each request keeps 1 MiB (written, so resident) until the process's RSS reaches
# $LEAK_UNTIL_MIB: the worker crosses the test's limit quickly and then stops growing,
# whatever its baseline on this interpreter.
_leaked: list[bytes] = []
_LEAK_UNTIL = int(os.environ.get("LEAK_UNTIL_MIB", "0")) * 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def leaky(scope, receive, send):
    if scope["type"] == "http" and _rss() < _LEAK_UNTIL:
        _leaked.append(b"x" * (1024 * 1024))
    await app(scope, receive, send)
