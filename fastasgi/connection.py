"""Connection helpers and error pages shared by the HTTP request cycle and the WebSocket protocols.

Not hot, so written once in plain Python for both implementation sets: the
compiled and pure HTTP protocols (``fastasgi._speedups.http_*``) and the
WebSocket protocols import them from here.  A leaf: it imports nothing from fastasgi.
(``fastasgi.protocols.utils``, uvicorn's name for this module, re-exports them.)
"""

from __future__ import annotations

import asyncio
import http
import socket
from typing import Any


def get_remote_addr(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            if sock.family == socket.AF_UNIX:
                return None
            info = sock.getpeername()
            return (str(info[0]), int(info[1])) if isinstance(info, (list, tuple)) else None
        except (OSError, AttributeError, TypeError):  # pragma: no cover
            pass
    info = transport.get_extra_info("peername")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def get_local_addr(transport: asyncio.BaseTransport) -> tuple[str, int | None] | None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            info = sock.getsockname()
        except (OSError, AttributeError):  # pragma: no cover
            info = None
        if isinstance(info, (list, tuple)) and len(info) >= 2:
            return (str(info[0]), int(info[1]))
        if isinstance(info, str):  # UNIX socket: the path, no port
            return (info, None)
        return None
    info = transport.get_extra_info("sockname")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def is_ssl(transport: asyncio.BaseTransport) -> bool:
    return bool(transport.get_extra_info("sslcontext"))


def trust_key(transport: asyncio.BaseTransport, client: tuple[str, int] | None) -> str | None:
    """What proxy trust is decided on: the peer IP, or the socket path for UNIX sockets."""
    if client is not None:
        return client[0]
    local = get_local_addr(transport)
    return local[0] if local else None


def error_response(status: int, message: str) -> bytes:
    """A complete ``text/plain`` error response that closes the connection."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:  # pragma: no cover
        phrase = ""
    body = message.encode("utf-8")
    return (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode("latin-1") + body


def format_client(client: Any) -> str:
    if not client:
        return ""
    return f"{client[0]}:{client[1]:d}"
