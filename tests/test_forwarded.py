"""Proxy headers: ``X-Forwarded-For`` / ``-Proto`` against uvicorn 0.54's middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastasgi.middleware.proxy_headers import ProxyHeadersMiddleware

# -- X-Forwarded-For / -Proto: exactly uvicorn 0.54's ----------------------------------

_XFF_ITEMS = ["203.0.113.7", "10.0.0.1", "10.0.0.2:80", "127.0.0.1", "[2001:db8::1]:4711", "[2001:db8::1]", "::1",
              "1.2.3.4:+5", "1.2.3.4:1_0", "1.2.3.4:-1", "unknown", "", " ", "[x]y", "[::1]:zz", "a:b:c"]
_XFP = ["http", "https", "ws", "wss", "HTTPS", " https ", "ftp", "", "https, http"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_XFF_ITEMS), min_size=1, max_size=3), max_size=2),
    st.lists(st.sampled_from(_XFP), max_size=2),
    st.sampled_from(["http", "websocket"]),
    st.sampled_from(["*", "127.0.0.1, 10.0.0.0/8, ::1"]),
)
def test_x_forwarded_for_and_proto_match_uvicorn(xff: list[list[str]], xfp: list[str], kind: str, trusted: str) -> None:
    uvicorn_mw = pytest.importorskip("uvicorn.middleware.proxy_headers")
    headers = [(b"x-forwarded-for", ", ".join(items).encode()) for items in xff]
    headers += [(b"x-forwarded-proto", p.encode()) for p in xfp]
    seen = []
    for mw in (uvicorn_mw.ProxyHeadersMiddleware, ProxyHeadersMiddleware):
        out: dict[str, Any] = {}

        async def app(scope: Any, receive: Any, send: Any, out: dict[str, Any] = out) -> None:
            out.update(scope)

        scope = {"type": kind, "scheme": "ws" if kind == "websocket" else "http", "client": ("127.0.0.1", 5),
                 "server": ("127.0.0.1", 8000), "headers": list(headers)}
        asyncio.run(mw(app, trusted)(scope, None, None))
        seen.append(out)
    assert seen[0] == seen[1]
