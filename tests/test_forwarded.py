"""Proxy headers: RFC 7239 ``Forwarded``, ``X-Forwarded-Host``, and which wins.

``server`` trusts ``TRUSTED`` with ``forwarded_host`` on (the host tests need it);
``default_server`` has the defaults (``--proxy-headers``, trust 127.0.0.1,
``--no-forwarded-host``): what a uvicorn user gets by switching.

Real servers on both implementations (and both WebSocket backends), plus unit
tests of the pure parser in :mod:`fastasgi.proxy_trust` and a differential test
of ``X-Forwarded-For`` / ``-Proto`` against uvicorn 0.54's middleware.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from fastasgi.config import Config
from fastasgi.middleware.proxy_headers import ProxyHeadersMiddleware
from fastasgi.proxy_trust import MalformedForwarded, ProxyTrust, apply_forwarded, parse_forwarded, parse_node
from tests.apps.basic import app as basic_app
from tests.conftest import raw_request, run_server
from tests.test_websockets import scope_app

TRUSTED = "127.0.0.1,10.0.0.0/8"


def scope_via(port: int, headers: list[str], version: str = "1.1", host: str | None = "app.internal") -> dict[str, Any]:
    """The scope ``/scope`` saw for a request with these extra header lines."""
    lines = [f"GET /scope HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += headers + ["Connection: close"]
    data = raw_request(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.%s 200 " % version[-1:].encode()), data
    scope: dict[str, Any] = json.loads(body)
    return scope


def host_of(scope: dict[str, Any]) -> list[str]:
    return [value for name, value in scope["headers"] if name == "host"]


@pytest.fixture(scope="module")
def server(impl: str) -> Any:
    with run_server(basic_app, impl, forwarded_allow_ips=TRUSTED, forwarded_host=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def default_server(impl: str) -> Any:
    with run_server(basic_app, impl) as srv:  # trusts 127.0.0.1 and ::1
        yield srv


# -- Forwarded (RFC 7239) through a real server ----------------------------------------


def test_forwarded_sets_client_scheme_and_host(server: Any) -> None:
    scope = scope_via(server.port, ['Forwarded: for="[2001:db8::1]:4711";proto=https;host=example.com'])
    assert scope["client"] == ["2001:db8::1", 4711]
    assert scope["scheme"] == "https"
    assert host_of(scope) == ["example.com"]
    assert scope["server"] == ["127.0.0.1", server.port]  # no port in host=: unchanged


@pytest.mark.parametrize(
    "headers, client, scheme",
    [
        (["Forwarded: for=203.0.113.7"], ["203.0.113.7", 0], "http"),  # token
        (['Forwarded: for="203.0.113.7:8080"'], ["203.0.113.7", 8080], "http"),  # quoted, with a port
        (['Forwarded: for="[2001:db8::1]"'], ["2001:db8::1", 0], "http"),  # IPv6 without port
        (['Forwarded: for="203.0.113.7:_p1"'], ["203.0.113.7", 0], "http"),  # obfuscated port
        (["Forwarded: FOR=203.0.113.7;Proto=HTTPS"], ["203.0.113.7", 0], "https"),  # names, scheme: any case
        (["Forwarded: for=203.0.113.7 ; proto=https"], ["203.0.113.7", 0], "https"),  # whitespace around ";"
        # several proxies in one header: walked from the right, trusted hops skipped
        (["Forwarded: for=203.0.113.7;proto=https, for=10.0.0.2;proto=http"], ["203.0.113.7", 0], "https"),
        (["Forwarded: for=198.51.100.1, for=203.0.113.7, for=10.0.0.2"], ["203.0.113.7", 0], "http"),
        # ... and across several header lines
        (["Forwarded: for=203.0.113.7;proto=https", "Forwarded: for=10.0.0.2;proto=http"], ["203.0.113.7", 0], "https"),
        # every hop trusted: the left-most
        (["Forwarded: for=10.0.0.3;proto=https, for=10.0.0.2"], ["10.0.0.3", 0], "https"),
        # empty list elements are skipped (RFC 9110 §5.6.1)
        (["Forwarded: , for=203.0.113.7,, "], ["203.0.113.7", 0], "http"),
        # a hop without for=: the walk stops there, the client is left as it was
        (["Forwarded: for=203.0.113.7, proto=https"], ["127.0.0.1", None], "https"),
    ],
)
def test_forwarded_syntax(server: Any, headers: list[str], client: list[Any], scheme: str) -> None:
    scope = scope_via(server.port, headers)
    if client[1] is None:  # unchanged: the peer's own port
        assert scope["client"][0] == client[0]
    else:
        assert scope["client"] == client
    assert scope["scheme"] == scheme


@pytest.mark.parametrize("node", ["unknown", "_hidden", '"_hidden:_port"', '"unknown:4711"'])
def test_forwarded_obfuscated_client_is_none(server: Any, node: str) -> None:
    scope = scope_via(server.port, [f"Forwarded: for={node};proto=https"])
    assert scope["client"] is None  # ASGI's "no client information", never ("unknown", 0)
    assert scope["scheme"] == "https"


def test_forwarded_obfuscated_proxy_can_be_trusted(impl: str) -> None:
    # an obfuscated identifier listed in --forwarded-allow-ips is a trusted hop like an address
    with run_server(basic_app, impl, forwarded_allow_ips="127.0.0.1,_lb1", forwarded_host=True) as srv:
        scope = scope_via(srv.port, ["Forwarded: for=203.0.113.7;host=example.com, for=_lb1;host=lb.internal"])
    assert scope["client"] == ["203.0.113.7", 0]
    assert host_of(scope) == ["example.com"]


def test_forwarded_host_port_sets_server_port(server: Any) -> None:
    scope = scope_via(server.port, ['Forwarded: proto=https;host="example.com:8443"'])
    assert host_of(scope) == ["example.com:8443"]
    assert scope["server"] == ["127.0.0.1", 8443]
    assert scope["client"][0] == "127.0.0.1"


@pytest.mark.parametrize(
    "value",
    [
        "for=[2001:db8::1]",  # IPv6 must be quoted
        "for=203.0.113.7:80",  # ":" is not a token character
        'for="2001:db8::1"',  # IPv6 without brackets
        "for=example.com",  # not a node
        "for=203.0.113.7;for=198.51.100.1",  # a parameter twice in one element
        'for="203.0.113.7',  # unterminated quoted string
        "for = 203.0.113.7",  # whitespace around "="
        'host="exa mple.com"',  # not a Host
        "proto=ht/tp",  # not a URI scheme
        "for=203.0.113.7 proto=https",  # no separator
    ],
)
def test_malformed_forwarded_changes_nothing(server: Any, value: str) -> None:
    scope = scope_via(
        server.port,
        [f"Forwarded: {value}", "X-Forwarded-Host: x.example", "X-Forwarded-Port: 9999"],
    )
    # ignored as a whole, and (Forwarded being the header in use) X-Forwarded-Host/-Port too
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"
    assert host_of(scope) == ["app.internal"]
    assert scope["server"] == ["127.0.0.1", server.port]


def test_malformed_in_second_line_ignores_both(server: Any) -> None:
    scope = scope_via(server.port, ["Forwarded: for=203.0.113.7", "Forwarded: for=[::1]"])
    assert scope["client"][0] == "127.0.0.1"


@pytest.mark.parametrize(
    "x_forwarded",
    [
        ["X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: http"],
        ["X-Forwarded-For: 198.51.100.9"],
        ["X-Forwarded-Proto: http"],
        ["X-Forwarded-Proto: nonsense"],  # present is enough, even with a value uvicorn ignores
    ],
)
def test_x_forwarded_wins_over_forwarded(server: Any, x_forwarded: list[str]) -> None:
    scope = scope_via(
        server.port,
        x_forwarded + ["X-Forwarded-Host: x.example", 'Forwarded: for=203.0.113.7;proto=https;host="example.com:8443"'],
    )
    # Forwarded ignored entirely: no field of it fills in what X-Forwarded-* leaves out
    assert scope["client"][0] == ("198.51.100.9" if "X-Forwarded-For: 198.51.100.9" in x_forwarded else "127.0.0.1")
    assert scope["scheme"] == "http"
    assert host_of(scope) == ["x.example"]
    assert scope["server"] == ["127.0.0.1", server.port]


def test_forwarded_alone_is_used_and_shuts_out_host_and_port(server: Any) -> None:
    # neither X-Forwarded-For nor -Proto: Forwarded applies, and is the only header used
    scope = scope_via(
        server.port,
        ["X-Forwarded-Host: x.example", "X-Forwarded-Port: 9999", "Forwarded: for=203.0.113.7;proto=https"],
    )
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    assert host_of(scope) == ["app.internal"]
    assert scope["server"] == ["127.0.0.1", server.port]


# -- the defaults: a uvicorn user's nginx config (X-Forwarded-For/-Proto only) -----------


def test_client_forwarded_beside_proxy_x_forwarded_for_is_ignored(default_server: Any) -> None:
    # nginx appends the peer to X-Forwarded-For and passes the client's Forwarded on
    scope = scope_via(
        default_server.port,
        ["Forwarded: for=1.2.3.4;proto=https", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: http"],
    )
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "http"


@pytest.mark.parametrize(
    "headers",
    [
        ["X-Forwarded-Host: evil.example", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"],
        ["X-Forwarded-Host: evil.example:8443"],
        ["Forwarded: host=evil.example"],
        ['Forwarded: for=203.0.113.7;proto=https;host="evil.example:8443"'],
    ],
)
def test_host_not_taken_from_proxy_headers_by_default(default_server: Any, headers: list[str]) -> None:
    # host-header poisoning: the peer is trusted (127.0.0.1, the default), the headers the client's
    scope = scope_via(default_server.port, headers)
    assert host_of(scope) == ["app.internal"]
    assert scope["server"] == ["127.0.0.1", default_server.port]


def test_forwarded_alone_applies_by_default(default_server: Any) -> None:
    # a difference from uvicorn (README: Behind a proxy): client and scheme, never the host
    scope = scope_via(default_server.port, ["Forwarded: for=203.0.113.7;proto=https;host=example.com"])
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    assert host_of(scope) == ["app.internal"]


def test_forwarded_host_option_on_the_command_line() -> None:
    from fastasgi.cli import main

    for args, expected in (([], False), (["--forwarded-host"], True), (["--no-forwarded-host"], False)):
        ctx = main.make_context("fastasgi", ["tests.apps.basic:app", *args])
        assert ctx.params["forwarded_host"] is expected
    assert Config("tests.apps.basic:app").forwarded_host is False


# -- X-Forwarded-Host ------------------------------------------------------------------


def test_x_forwarded_host(server: Any) -> None:
    scope = scope_via(server.port, ["X-Forwarded-Host: example.com", "X-Forwarded-Proto: https"])
    assert host_of(scope) == ["example.com"]
    assert scope["scheme"] == "https"
    assert scope["server"] == ["127.0.0.1", server.port]


def test_x_forwarded_host_with_port_and_x_forwarded_port(server: Any) -> None:
    scope = scope_via(server.port, ["X-Forwarded-Host: example.com:8443"])
    assert host_of(scope) == ["example.com:8443"]
    assert scope["server"] == ["127.0.0.1", 8443]
    scope = scope_via(server.port, ["X-Forwarded-Host: example.com:8443", "X-Forwarded-Port: 443"])
    assert scope["server"] == ["127.0.0.1", 443]  # X-Forwarded-Port wins for the server port


def test_x_forwarded_host_right_most_value(server: Any) -> None:
    # a proxy that appends (Apache's mod_proxy) keeps what the client sent on the left
    scope = scope_via(server.port, ["X-Forwarded-Host: evil.example, example.com"])
    assert host_of(scope) == ["example.com"]
    scope = scope_via(server.port, ["X-Forwarded-Host: evil.example", "X-Forwarded-Host: example.com"])
    assert host_of(scope) == ["example.com"]


@pytest.mark.parametrize("value", ["exa mple.com", "a/b", "[zz]", "example.com:99999", ""])
def test_x_forwarded_host_invalid_is_ignored(server: Any, value: str) -> None:
    scope = scope_via(server.port, [f"X-Forwarded-Host: {value}", "X-Forwarded-For: 203.0.113.7"])
    assert host_of(scope) == ["app.internal"]
    assert scope["client"] == ["203.0.113.7", 0]  # the other headers still apply


def test_x_forwarded_host_added_to_http10_without_host(server: Any) -> None:
    scope = scope_via(server.port, ["X-Forwarded-Host: example.com"], version="1.0", host=None)
    assert host_of(scope) == ["example.com"]


def test_starlette_url_follows_forwarded(impl: str) -> None:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    async def app(scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        await PlainTextResponse(f"{request.url} {request.client.host if request.client else None}")(
            scope, receive, send
        )

    with run_server(app, impl, forwarded_allow_ips="127.0.0.1", forwarded_host=True) as srv:
        lines = [
            "GET /p?q=1 HTTP/1.1",
            "Host: app.internal",
            'Forwarded: for="[2001:db8::1]";proto=https;host=example.com',
        ]
        data = raw_request(srv.port, ("\r\n".join(lines + ["Connection: close"]) + "\r\n\r\n").encode())
        assert data.endswith(b"\r\n\r\nhttps://example.com/p?q=1 2001:db8::1"), data
        lines[2] = "Forwarded: for=_hidden;proto=https;host=example.com"
        data = raw_request(srv.port, ("\r\n".join(lines + ["Connection: close"]) + "\r\n\r\n").encode())
        assert data.endswith(b"\r\n\r\nhttps://example.com/p?q=1 None"), data


# -- untrusted peers, --no-proxy-headers ----------------------------------------------

SPOOF = [
    'Forwarded: for="[2001:db8::1]:4711";proto=https;host="example.com:8443"',
    "X-Forwarded-For: 203.0.113.7",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Host: example.com:8443",
    "X-Forwarded-Port: 8443",
]


@pytest.mark.parametrize("headers", [SPOOF, SPOOF[:1], SPOOF[1:], ["X-Forwarded-Host: example.com"]])
def test_untrusted_peer_changes_nothing(impl: str, headers: list[str]) -> None:
    with run_server(basic_app, impl, forwarded_allow_ips="192.0.2.1,10.0.0.0/8", forwarded_host=True) as srv:
        scope = scope_via(srv.port, headers)
        port = srv.port
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"
    assert host_of(scope) == ["app.internal"]
    assert scope["server"] == ["127.0.0.1", port]


def test_proxy_headers_off_changes_nothing(impl: str) -> None:
    with run_server(basic_app, impl, proxy_headers=False, forwarded_allow_ips="*", forwarded_host=True) as srv:
        scope = scope_via(srv.port, SPOOF)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"
    assert host_of(scope) == ["app.internal"]


def test_star_trusts_left_most_element(impl: str) -> None:
    with run_server(basic_app, impl, forwarded_allow_ips="*") as srv:
        scope = scope_via(srv.port, ["Forwarded: for=198.51.100.1;proto=https, for=203.0.113.7;proto=http"])
    assert scope["client"] == ["198.51.100.1", 0]
    assert scope["scheme"] == "https"


# -- WebSockets ----------------------------------------------------------------------


@pytest.mark.parametrize("ws", ["websockets", "wsproto"])
def test_websocket_scope_from_forwarded(impl: str, ws: str) -> None:
    with run_server(scope_app, impl, ws=ws, forwarded_allow_ips="127.0.0.1", forwarded_host=True) as srv:
        with connect(
            f"ws://127.0.0.1:{srv.port}/scope",
            open_timeout=5,
            additional_headers={"Forwarded": 'for="[2001:db8::1]:4711";proto=https;host="example.com:8443"'},
        ) as c:
            info = json.loads(c.recv(timeout=5))
        with connect(
            f"ws://127.0.0.1:{srv.port}/scope",
            open_timeout=5,
            additional_headers={"X-Forwarded-Host": "example.com", "X-Forwarded-Proto": "https"},
        ) as c:
            info2 = json.loads(c.recv(timeout=5))
    assert info["scheme"] == "wss"
    assert info["client"] == ["2001:db8::1", 4711]
    assert ["host", "example.com:8443"] in info["headers"]
    assert info["server"] == ["127.0.0.1", 8443]
    assert info2["scheme"] == "wss"
    assert ["host", "example.com"] in info2["headers"]


@pytest.mark.parametrize("ws", ["websockets", "wsproto"])
def test_websocket_untrusted_peer_changes_nothing(impl: str, ws: str) -> None:
    with run_server(scope_app, impl, ws=ws, forwarded_allow_ips="192.0.2.1", forwarded_host=True) as srv:
        with connect(
            f"ws://127.0.0.1:{srv.port}/scope",
            open_timeout=5,
            additional_headers={
                "Forwarded": "for=203.0.113.7;proto=https;host=example.com",
                "X-Forwarded-Host": "x.example",
            },
        ) as c:
            info = json.loads(c.recv(timeout=5))
        port = srv.port
    assert info["scheme"] == "ws"
    assert info["client"][0] == "127.0.0.1"
    assert ["host", f"127.0.0.1:{port}"] in info["headers"]


# -- the parser (a pure function) ----------------------------------------------------


@pytest.mark.parametrize(
    "value, elements",
    [
        (  # RFC 7239 §4's example
            "for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com",
            [
                {"for": "192.0.2.43"},
                {"for": "198.51.100.17", "by": "203.0.113.60", "proto": "http", "host": "example.com"},
            ],
        ),
        ('For="[2001:db8:cafe::17]:4711"', [{"for": "[2001:db8:cafe::17]:4711"}]),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}]),
        ('for="_gazonk"', [{"for": "_gazonk"}]),
        ("for=unknown", [{"for": "unknown"}]),
        ('host="a\\.b"', [{"host": "a.b"}]),  # quoted-pair
        ('ext="x, y; z"', [{"ext": "x, y; z"}]),  # separators inside a quoted string
        (";;for=1.2.3.4;", [{"for": "1.2.3.4"}]),  # empty pairs (RFC 7239 §4 grammar)
        (" , ,", []),
        ("", []),
    ],
)
def test_parse_forwarded(value: str, elements: list[dict[str, str]]) -> None:
    assert parse_forwarded(value) == elements


@pytest.mark.parametrize(
    "value",
    [
        "for=[::1]",
        "for=1.2.3.4:80",
        'for="1.2.3.4:99999"',
        'for="1.2.3.4:"',
        'for="[::1"',
        'for="[::1]x"',
        'for="[fe80::1%eth0]"',
        'for=""',
        "for=01.2.3.4",
        'for="\\"x"',
        "for",
        "=x",
        "for=1.2.3.4;FOR=5.6.7.8",
        'for="x',
        "proto=1http",
        'host=""',
        'host="[::1]:65536"',
        "for=1.2.3.4\x00",
    ],
)
def test_parse_forwarded_malformed(value: str) -> None:
    with pytest.raises(MalformedForwarded):
        parse_forwarded(value)


def test_parse_node() -> None:
    assert parse_node("192.0.2.43") == ("192.0.2.43", 0, True)
    assert parse_node("192.0.2.43:47011") == ("192.0.2.43", 47011, True)
    assert parse_node("[2001:db8:cafe::17]:4711") == ("2001:db8:cafe::17", 4711, True)
    assert parse_node("[2001:db8:cafe::17]:_abc") == ("2001:db8:cafe::17", 0, True)
    assert parse_node("unknown") == ("unknown", 0, False)
    assert parse_node("_hidden:_p") == ("_hidden", 0, False)
    with pytest.raises(MalformedForwarded):
        parse_node("example.com")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('for=_h[]:";, \\\t0123456789.abcdefxpHOST\x7f\xe9')), max_size=60))
def test_parser_never_crashes(value: str) -> None:
    try:
        elements = parse_forwarded(value)
    except MalformedForwarded:
        elements = None
    scope = {
        "type": "http",
        "scheme": "http",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "headers": [(b"host", b"a"), (b"forwarded", value.encode("latin-1"))],
    }
    apply_forwarded(scope, ProxyTrust("127.0.0.1"))
    if elements is None:  # malformed: nothing changed
        assert scope["client"] == ("127.0.0.1", 1) and scope["scheme"] == "http"


def test_middleware_applies_forwarded() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {
        "type": "websocket",
        "scheme": "ws",
        "client": ("10.0.0.1", 5),
        "server": ("10.0.0.9", 80),
        "headers": [(b"host", b"a"), (b"forwarded", b"for=_x;proto=https;host=example.com")],
    }
    asyncio.run(ProxyHeadersMiddleware(app, "10.0.0.0/8", forwarded_host=True)(scope, None, None))
    assert seen["client"] is None and seen["scheme"] == "wss" and seen["headers"][0] == (b"host", b"example.com")
    seen.clear()
    scope.update(client=("10.0.0.1", 5), scheme="ws", headers=[(b"host", b"a"), (b"forwarded", b"host=example.com")])
    asyncio.run(ProxyHeadersMiddleware(app, "10.0.0.0/8")(scope, None, None))
    assert seen["headers"][0] == (b"host", b"a")  # forwarded_host off by default


# -- X-Forwarded-For / -Proto: exactly uvicorn 0.54's ----------------------------------

_XFF_ITEMS = [
    "203.0.113.7",
    "10.0.0.1",
    "10.0.0.2:80",
    "127.0.0.1",
    "[2001:db8::1]:4711",
    "[2001:db8::1]",
    "::1",
    "1.2.3.4:+5",
    "1.2.3.4:1_0",
    "1.2.3.4:-1",
    "unknown",
    "",
    " ",
    "[x]y",
    "[::1]:zz",
    "a:b:c",
]
_XFP = ["http", "https", "ws", "wss", "HTTPS", " https ", "ftp", "", "https, http"]


@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="uvicorn is not installed")
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_XFF_ITEMS), min_size=1, max_size=3), max_size=2),
    st.lists(st.sampled_from(_XFP), max_size=2),
    st.sampled_from(["http", "websocket"]),
    st.sampled_from(["*", "127.0.0.1, 10.0.0.0/8, ::1"]),
)
def test_x_forwarded_for_and_proto_match_uvicorn(xff: list[list[str]], xfp: list[str], kind: str, trusted: str) -> None:
    from uvicorn.middleware import proxy_headers as uvicorn_mw

    headers = [(b"x-forwarded-for", ", ".join(items).encode()) for items in xff]
    headers += [(b"x-forwarded-proto", p.encode()) for p in xfp]
    seen = []
    for mw in (uvicorn_mw.ProxyHeadersMiddleware, ProxyHeadersMiddleware):
        out: dict[str, Any] = {}

        async def app(scope: Any, receive: Any, send: Any, out: dict[str, Any] = out) -> None:
            out.update(scope)

        scope = {
            "type": kind,
            "scheme": "ws" if kind == "websocket" else "http",
            "client": ("127.0.0.1", 5),
            "server": ("127.0.0.1", 8000),
            "headers": list(headers),
        }
        asyncio.run(mw(app, trusted)(scope, None, None))
        seen.append(out)
    assert seen[0] == seen[1]


# -- the per-request scan ------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        [],
        [b"host", b"user-agent", b"accept"],
        [b"host", b"forwarded"],
        [b"x-forwarded-for"],
        [b"x-forwarded-host", b"host"],
        [b"x-forwarded-"],
        [b"x-forwarded", b"forwarde", b"forwarded-x", b"fxxxxxxxx", b"xxxxxxxxxxxx", b"f", b"x", b""],
        [b"x-real-ip", b"x-original-forwarded-for"],
    ],
)
def test_hot_scan_agrees_with_proxy_trust(impl: str, names: list[bytes]) -> None:
    from fastasgi import _speedups
    from fastasgi.proxy_trust import has_forwarded_headers

    headers = [(name, b"v") for name in names]
    expected = any(n == b"forwarded" or n.startswith(b"x-forwarded-") for n in names)
    assert _speedups.load(impl).http.has_proxy_headers(headers) is expected
    assert has_forwarded_headers(headers) is expected
