"""The floor: a bare uvloop protocol that answers without parsing and without ASGI.

    python3 -m bench.floor --host 127.0.0.1 --port 8000 bench.apps:plaintext

No server built on uvloop can answer faster than this: per request it finds the
end of the request head (``\\r\\n\\r\\n``), builds the response the benchmark app
would send (for ``json``, serializing the same payload per request, as the app
does) and writes it, with nothing else -- no parser, no scope, no coroutine, no
header validation, no keep-alive or error handling.  GET scenarios only
(``plaintext`` and ``json``); ``bench/run.py`` runs it as the ``uvloop-floor``
server so that every server can be compared to the ceiling in the same run.
It is a measuring stick, not a server: never use it for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from email.utils import formatdate

import uvloop

from bench import apps

_date = [0, b""]  # (second, "date" value): formatted once a second, as real servers do


def _head(content_type: bytes, length: int) -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0] = now
        _date[1] = formatdate(now, usegmt=True).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\ncontent-length: %d\r\ndate: %b\r\nserver: floor\r\n\r\n" % (
        content_type,
        length,
        _date[1],
    )


def plaintext_response() -> bytes:
    return _head(b"text/plain", len(apps.PLAINTEXT_BODY)) + apps.PLAINTEXT_BODY


def json_response() -> bytes:
    body = json.dumps(apps.JSON_PAYLOAD).encode()
    return _head(b"application/json", len(body)) + body


class Floor(asyncio.Protocol):
    def __init__(self, respond) -> None:
        self.respond = respond
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        start = 0
        out = []
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end < 0:
                break
            out.append(self.respond())
            start = end + 4
        self.buffer = buf[start:]
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("app", help="bench.apps:plaintext or bench.apps:json")
    args = p.parse_args()
    name = args.app.rpartition(":")[2]
    if name == "plaintext":
        respond = plaintext_response
    elif name == "json":
        respond = json_response
    else:
        print(f"floor: only plaintext and json (GET) are supported, not {args.app}", file=sys.stderr)
        return 2

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Floor(respond), args.host, args.port, backlog=2048)
        async with server:
            await server.serve_forever()

    try:
        uvloop.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
