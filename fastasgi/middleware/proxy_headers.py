"""``ProxyHeadersMiddleware``: the server's proxy-header rules as an ASGI middleware.

The rules themselves (and :class:`ProxyTrust`) live in :mod:`fastasgi.proxy_trust`,
shared with the protocols, which apply them without this middleware when
``proxy_headers`` is on.
"""

from __future__ import annotations

from typing import Any

from fastasgi.proxy_trust import ProxyTrust, apply_forwarded


class ProxyHeadersMiddleware:
    """ASGI middleware applying the proxy-header rules (the server applies them itself with ``proxy_headers``)."""

    def __init__(self, app: Any, trusted_hosts: list[str] | str = "127.0.0.1", forwarded_host: bool = False) -> None:
        self.app = app
        self.trust = ProxyTrust(trusted_hosts, forwarded_host=forwarded_host)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if (client[0] if client else None) in self.trust:
                apply_forwarded(scope, self.trust)
        await self.app(scope, receive, send)


__all__ = ["ProxyHeadersMiddleware", "ProxyTrust"]
