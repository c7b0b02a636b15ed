"""Trusting X-Forwarded-For / -Proto / -Port from known proxies: the logic exists once, here.

The HTTP request cycle and the WebSocket protocols (compiled or not) decide trust
once per connection with :meth:`ProxyTrust.__contains__` and call
:func:`apply_forwarded` only for requests that carry ``x-forwarded-*`` headers;
:class:`fastasgi.middleware.proxy_headers.ProxyHeadersMiddleware` offers the same
rules to users as an ASGI middleware (uvicorn's ``ProxyHeadersMiddleware``
equivalent).  A leaf: it imports nothing from fastasgi.

* ``X-Forwarded-Proto``: sets ``scope["scheme"]`` (``http``/``https``/``ws``/``wss``
  exactly; ``http`` becomes ``ws`` for WebSockets), as uvicorn 0.54 does.
* ``X-Forwarded-For``: the client is the right-most address that is not a
  trusted proxy (all trusted: the left-most); ``host:port`` and ``[v6]:port``
  give the port too, else it is 0 (uvicorn 0.54's rule, item for item).
* ``X-Forwarded-Port``: sets the port of ``scope["server"]`` (the port the
  client reached on the proxy).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Union

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _parse_host_port(value: str) -> tuple[str, int]:
    """An ``X-Forwarded-For`` item as uvicorn 0.54 reads it: ``host``, ``host:port``, ``[v6]:port``."""
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, 0
        host, rest = value[1:end], value[end + 1 :]
        if not rest:
            return host, 0
        if not rest.startswith(":"):
            return value, 0
        try:
            return host, int(rest[1:])
        except ValueError:
            return host, 0
    if value.count(":") == 1:
        host, port = value.rsplit(":", 1)
        try:
            return host, int(port)
        except ValueError:
            return value, 0
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
        """The client of an ``X-Forwarded-For`` value (uvicorn 0.54's rule), or None if it names none."""
        # empty items are kept, as uvicorn keeps them: an empty right-most item means no client
        hosts = [h.strip() for h in x_forwarded_for.split(",")]
        if self.always_trust:
            client = _parse_host_port(hosts[0])
        else:
            for item in reversed(hosts):
                client = _parse_host_port(item)
                if client[0] not in self:
                    break
            else:  # every hop is a trusted proxy: the left-most is the client
                client = _parse_host_port(hosts[0])
        return client if client[0] else None


def apply_forwarded(scope: dict[str, Any], trust: ProxyTrust) -> None:
    """Rewrite ``scheme``, ``client`` and ``server`` of a scope whose peer is a trusted proxy."""
    proto = port = None
    forwarded_for: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"x-forwarded-port":
            port = value
    if proto is not None:
        p = proto.decode("latin-1").strip()
        if p in ("http", "https", "ws", "wss"):  # exactly, as uvicorn: no case folding
            scope["scheme"] = p.replace("http", "ws") if scope["type"] == "websocket" else p
    if forwarded_for:
        client = trust.client_from_forwarded_for(b", ".join(forwarded_for).decode("latin-1"))
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
