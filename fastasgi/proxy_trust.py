"""Trusting X-Forwarded-For / -Proto / -Port from known proxies: the logic exists once, here.

The HTTP request cycle and the WebSocket protocols (compiled or not) decide trust
once per connection with :meth:`ProxyTrust.__contains__` and call
:func:`apply_forwarded` only for requests that carry ``x-forwarded-*`` headers;
:class:`fastasgi.middleware.proxy_headers.ProxyHeadersMiddleware` offers the same
rules to users as an ASGI middleware (uvicorn's ``ProxyHeadersMiddleware``
equivalent).  A leaf: it imports nothing from fastasgi.

* ``X-Forwarded-Proto``: sets ``scope["scheme"]`` (http/https, ws/wss for WebSockets).
* ``X-Forwarded-For``: the client is the right-most address that is not a
  trusted proxy (all trusted: the left-most); ``host:port`` and ``[v6]:port``
  give the port too, else it is 0.
* ``X-Forwarded-Port``: sets the port of ``scope["server"]`` (the port the
  client reached on the proxy).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Union

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _parse_host_port(value: str) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):  # [v6]:port or [v6]
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return host, 0
    if value.count(":") == 1:  # v4:port or name:port
        host, port = value.rsplit(":", 1)
        if port.isdigit():
            return host, int(port)
    return value, 0


class ProxyTrust:
    """The set of trusted proxies: IPs, CIDR networks, literals (e.g. a UNIX socket path), or ``*``."""

    def __init__(self, trusted_hosts: list[str] | str) -> None:
        if isinstance(trusted_hosts, str):
            trusted_hosts = [h.strip() for h in trusted_hosts.split(",")]
        self.always_trust = "*" in trusted_hosts
        self.addresses: set[Any] = set()
        self.networks: list[_Network] = []
        self.literals: set[str] = set()
        if self.always_trust:
            return
        for host in trusted_hosts:
            if not host:
                continue
            try:
                if "/" in host:
                    self.networks.append(ipaddress.ip_network(host, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(host))
            except ValueError:
                self.literals.add(host)

    def __contains__(self, host: object) -> bool:
        if self.always_trust:
            return True
        if not isinstance(host, str) or not host:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        if ip in self.addresses:
            return True
        return any(ip in net for net in self.networks)

    def client_from_forwarded_for(self, x_forwarded_for: str) -> tuple[str, int] | None:
        hosts = [h.strip() for h in x_forwarded_for.split(",") if h.strip()]
        if not hosts:
            return None
        if self.always_trust:
            return _parse_host_port(hosts[0])
        for item in reversed(hosts):
            host, port = _parse_host_port(item)
            if host not in self:
                return host, port
        return _parse_host_port(hosts[0])


def apply_forwarded(scope: dict[str, Any], trust: ProxyTrust) -> None:
    """Rewrite ``scheme``, ``client`` and ``server`` of a scope whose peer is a trusted proxy."""
    proto = forwarded_for = port = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
        elif name == b"x-forwarded-port":
            port = value
    if proto is not None:
        p = proto.decode("latin-1").strip().lower()
        if p in ("http", "https", "ws", "wss"):
            if scope["type"] == "websocket":
                p = p.replace("http", "ws")
            else:
                p = p.replace("ws", "http")
            scope["scheme"] = p
    if forwarded_for is not None:
        client = trust.client_from_forwarded_for(forwarded_for.decode("latin-1"))
        if client is not None:
            scope["client"] = client
    if port is not None:
        text = port.decode("latin-1").strip()
        if text.isdigit() and 0 < int(text) < 65536 and scope.get("server"):
            scope["server"] = (scope["server"][0], int(text))


def has_forwarded_headers(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, _ in headers:
        if name.startswith(b"x-forwarded-"):
            return True
    return False
