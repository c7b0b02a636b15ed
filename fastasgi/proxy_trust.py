"""Trusting proxy headers from known proxies: the logic exists once, here.

The HTTP request cycle and the WebSocket protocols (compiled or not) decide trust
once per connection with :meth:`ProxyTrust.__contains__` and call
:func:`apply_forwarded` only for requests that carry a ``forwarded`` or an
``x-forwarded-*`` header (:func:`has_forwarded_headers`; the HTTP path has a
compiled twin of it, ``http_py.has_proxy_headers``), so an untrusted peer, or
``--no-proxy-headers``, costs nothing per request;
:class:`fastasgi.middleware.proxy_headers.ProxyHeadersMiddleware` offers the same
rules to users as an ASGI middleware (uvicorn's ``ProxyHeadersMiddleware``
equivalent).  A leaf: it imports nothing from fastasgi.

Which headers apply (the X-Forwarded-* ones win):

* A request with ``X-Forwarded-For`` or ``X-Forwarded-Proto`` is read as uvicorn
  0.54 reads it, and ``Forwarded`` is ignored entirely.  Most proxies (nginx,
  Traefik, Caddy, Envoy, the AWS and GCP load balancers) set these, and nginx
  passes a client's own ``Forwarded`` through unless told not to: were
  ``Forwarded`` to win, a client behind the usual uvicorn nginx config could
  choose its own address.
* Only a request with neither uses ``Forwarded`` (RFC 7239), when it has one,
  and then nothing else: ``X-Forwarded-Host`` and ``-Port`` are ignored too.
  Its elements are walked from the right, as ``X-Forwarded-For`` is: the first
  element whose ``for=`` is not a trusted proxy (or has no ``for=``) describes
  the client, and its ``for``, ``proto`` and ``host`` apply.  A ``Forwarded``
  value that breaks RFC 7239's syntax is ignored as a whole, so nothing changes.

The X-Forwarded-* headers, as uvicorn 0.54 reads them:

* ``X-Forwarded-Proto``: sets ``scope["scheme"]`` (``http``/``https``/``ws``/``wss``
  exactly; ``http`` becomes ``ws`` for WebSockets).
* ``X-Forwarded-For``: the client is the right-most address that is not a
  trusted proxy (all trusted: the left-most); ``host:port`` and ``[v6]:port``
  give the port too, else it is 0.

and beyond uvicorn, only with ``ProxyTrust(forwarded_host=True)``
(``--forwarded-host``; uvicorn ignores both headers):

* ``X-Forwarded-Host`` (its right-most value: the one the trusted proxy added),
  and ``host=`` of ``Forwarded``: the ``host`` header the app sees.
* ``X-Forwarded-Port``: sets the port of ``scope["server"]`` (the port the
  client reached on the proxy).  Off by default,
  as Django's ``USE_X_FORWARDED_HOST`` and Werkzeug's ``ProxyFix(x_host=0)``:
  nginx passes a client's ``X-Forwarded-Host`` through unless told not to, and a
  host the client chooses poisons the links an app builds (password resets).
"""

from __future__ import annotations

import ipaddress
import re
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

    def __init__(self, trusted_hosts: list[str] | str, forwarded_host: bool = False) -> None:
        # whether a trusted proxy's X-Forwarded-Host / Forwarded host= sets the host (opt-in)
        self.forwarded_host = forwarded_host
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


# -- RFC 7239 --------------------------------------------------------------------------------

# RFC 9110 §5.6.2 token, §5.6.4 quoted-string (with quoted-pair); RFC 7239 §4:
#   forwarded-pair = token "=" value ; value = token / quoted-string
_PAIR = re.compile(
    r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)="
    r"(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)|\"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)\")"
)
_OWS = re.compile(r"[ \t]*")
_QUOTED_PAIR = re.compile(r"\\(.)")
# RFC 7239 §6: obfnode / obfport = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" )
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+\Z")
# RFC 3986 §3.1 scheme (RFC 7239 §5.4: proto is a URI scheme name)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
# RFC 9110 §7.2 Host = uri-host [ ":" port ]: a reg-name (RFC 3986 §3.2.2 without the ","
# a list would split on), an IPv4 address (a reg-name by its characters) or an IP-literal
_HOST = re.compile(r"(?:(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~!$&'()*+;=-])+|\[([0-9A-Fa-f:.]+)\])(?::([0-9]{0,5}))?\Z")


class MalformedForwarded(ValueError):
    """A ``Forwarded`` field value that does not follow RFC 7239."""


def parse_node(value: str) -> tuple[str, int, bool]:
    """An RFC 7239 §6 node (``for=`` / ``by=``) -> ``(name, port, is_address)``.

    ``name`` is the IPv4 or IPv6 address (without brackets), ``unknown`` or an
    obfuscated identifier (``_hidden``); ``port`` is 0 when absent or obfuscated.
    Raises :class:`MalformedForwarded` for anything else (a host name, an IPv6
    address without brackets, a port above 65535).
    """
    port = 0
    if value.startswith("["):  # "[" IPv6address "]" [ ":" node-port ]
        name, sep, rest = value[1:].partition("]")
        if not sep:
            raise MalformedForwarded(value)
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise MalformedForwarded(value) from None
        if "%" in name:  # a zone id is not in RFC 3986's IPv6address
            raise MalformedForwarded(value)
        if rest:
            if rest[0] != ":":
                raise MalformedForwarded(value)
            port = _node_port(rest[1:], value)
        return name, port, True
    name, sep, port_text = value.partition(":")
    if sep:
        port = _node_port(port_text, value)
    if name == "unknown" or _OBFUSCATED.match(name):
        return name, port, False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        raise MalformedForwarded(value) from None
    return name, port, True


def _node_port(text: str, value: str) -> int:
    if _OBFUSCATED.match(text):
        return 0
    if 0 < len(text) <= 5 and text.isdigit() and text.isascii() and int(text) <= 65535:
        return int(text)
    raise MalformedForwarded(value)


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` field value (RFC 7239 §4), left to right.

    Several field lines are one list (join them with ``,``, RFC 9110 §5.3).  Each
    element is a dict of lower-cased parameter names (they are case-insensitive)
    to values, quoted strings unquoted.  Empty list elements are skipped (RFC 9110
    §5.6.1); optional whitespace around ``,`` and ``;`` is allowed.  Raises
    :class:`MalformedForwarded` on a syntax error, a parameter given twice in one
    element, or a ``for``, ``host`` or ``proto`` value that RFC 7239 §5-6 does not
    allow (``by`` and extension parameters are not checked: nothing uses them).
    """
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    pos = 0
    end = len(value)
    while True:  # each turn consumes at least one character or ends the loop
        pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
        if pos == end:
            break
        char = value[pos]
        if char == ",":
            if element:
                elements.append(element)
                element = {}
            pos += 1
            continue
        if char == ";":
            pos += 1
            continue
        m = _PAIR.match(value, pos)
        if m is None:
            raise MalformedForwarded(value)
        name = m.group(1).lower()
        if name in element:  # RFC 7239 §4: a parameter at most once per element
            raise MalformedForwarded(value)
        token, quoted = m.group(2), m.group(3)
        element[name] = token if token is not None else _QUOTED_PAIR.sub(r"\1", quoted)
        pos = _OWS.match(value, m.end()).end()  # type: ignore[union-attr]
        if pos < end and value[pos] not in ",;":
            raise MalformedForwarded(value)
    if element:
        elements.append(element)
    for element in elements:
        if "for" in element:
            parse_node(element["for"])
        if "host" in element and not valid_host(element["host"]):
            raise MalformedForwarded(value)
        if "proto" in element and not _SCHEME.match(element["proto"]):
            raise MalformedForwarded(value)
    return elements


def valid_host(value: str) -> bool:
    """Whether ``value`` is a ``Host`` field value (RFC 9110 §7.2: ``uri-host [":" port]``)."""
    m = _HOST.match(value)
    if m is None:
        return False
    literal, port = m.group(1, 2)
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
    return not port or int(port) <= 65535


def forwarded_element(elements: list[dict[str, str]], trust: ProxyTrust) -> dict[str, str]:
    """The element that describes the client: walked from the right, the first whose
    ``for`` is not a trusted proxy or is missing (all trusted: the left-most)."""
    if not trust.always_trust:
        for element in reversed(elements):
            node = element.get("for")
            if node is None or parse_node(node)[0] not in trust:
                return element
    return elements[0]


def _set_scheme(scope: dict[str, Any], proto: str) -> None:
    """An RFC 7239 ``proto``: a case-insensitive URI scheme, matched to the scope's type."""
    proto = proto.lower()
    if proto in ("http", "https", "ws", "wss"):
        secure = proto.endswith("s")
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = "https" if secure else "http"


def _set_host(scope: dict[str, Any], host: str) -> None:
    """The ``host`` header the app sees; an explicit port also becomes ``scope["server"]``'s."""
    raw = host.encode("latin-1")
    headers = [(name, raw) if name == b"host" else (name, value) for name, value in scope["headers"]]
    if not any(name == b"host" for name, _ in headers):  # HTTP/1.0 without Host
        headers.append((b"host", raw))
    scope["headers"] = headers
    port = _HOST.match(host).group(2)  # type: ignore[union-attr]
    if port and scope.get("server"):
        scope["server"] = (scope["server"][0], int(port))


def _apply_rfc7239(scope: dict[str, Any], trust: ProxyTrust, value: str) -> None:
    try:
        elements = parse_forwarded(value)
    except MalformedForwarded:
        return
    if not elements:
        return
    element = forwarded_element(elements, trust)
    node = element.get("for")
    if node is not None:
        name, port, is_address = parse_node(node)
        # "unknown" or an obfuscated identifier: the client's address is not known, and
        # ASGI's word for that is None (the proxy's address would be a wrong answer)
        scope["client"] = (name, port) if is_address else None
    proto = element.get("proto")
    if proto is not None:
        _set_scheme(scope, proto)
    host = element.get("host")
    if host is not None and trust.forwarded_host:
        _set_host(scope, host)


def apply_forwarded(scope: dict[str, Any], trust: ProxyTrust) -> None:
    """Rewrite ``scheme``, ``client``, ``server`` and the ``host`` header of a scope whose peer is a trusted proxy."""
    proto = port = forwarded = None
    forwarded_for: list[bytes] = []
    forwarded_host: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"forwarded":
            forwarded = value if forwarded is None else forwarded + b"," + value
        elif name == b"x-forwarded-host":
            forwarded_host.append(value)
        elif name == b"x-forwarded-port":
            port = value
    if forwarded is not None and proto is None and not forwarded_for:
        # X-Forwarded-For / -Proto win: with either present, Forwarded is ignored (a
        # client's own, passed through by a proxy that sets only those); without, it
        # is the only header used
        _apply_rfc7239(scope, trust, forwarded.decode("latin-1"))
        return
    if proto is not None:
        p = proto.decode("latin-1").strip()
        if p in ("http", "https", "ws", "wss"):  # exactly, as uvicorn: no case folding
            scope["scheme"] = p.replace("http", "ws") if scope["type"] == "websocket" else p
    if forwarded_for:
        client = trust.client_from_forwarded_for(b", ".join(forwarded_for).decode("latin-1"))
        if client is not None:
            scope["client"] = client
    if forwarded_host and trust.forwarded_host:
        # the right-most value: the one the trusted proxy added (one that appends, as
        # Apache's mod_proxy does, keeps what a client sent on the left)
        host = b",".join(forwarded_host).decode("latin-1").rsplit(",", 1)[-1].strip()
        if valid_host(host):
            _set_host(scope, host)
    if port is not None and trust.forwarded_host:
        text = port.decode("latin-1").strip()
        if text.isdigit() and 0 < int(text) < 65536 and scope.get("server"):
            scope["server"] = (scope["server"][0], int(text))


def has_forwarded_headers(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether :func:`apply_forwarded` has anything to do with these request headers.

    The WebSocket handshake asks this; the HTTP path asks ``http_py.has_proxy_headers``,
    the same test written to compile to C (keep the two in step).
    """
    for name, _ in headers:
        if name == b"forwarded" or name.startswith(b"x-forwarded-"):
            return True
    return False
