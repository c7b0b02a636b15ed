"""Tests of the request parsers: ``parser_py`` (h11 adapter) and ``parser_c`` (llhttp binding).

Every test runs against both implementations with the same expectations; the
corpus tests (``tests/corpus``) also check that both give the same events for
any split of the bytes.  The ``c`` cases are marked ``c_extension`` (tests/conftest.py):
``--no-c-extensions`` deselects them; otherwise a parser_c that is not built
(``python3 setup.py build_ext --inplace``) makes them fail, never skip.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastasgi._speedups import parser_py
from tests.corpus import load as load_corpus

try:
    from fastasgi._speedups import parser_c
except ImportError as exc:  # not built: the c cases fail (see get_impl)
    parser_c = None  # type: ignore[assignment]
    C_MISSING = (
        f"fastasgi._speedups.parser_c is not built ({exc}); run `python3 setup.py build_ext --inplace`"
        " or pass --no-c-extensions"
    )
else:
    C_MISSING = ""

CORPUS = load_corpus()
H = b"Host: example.com\r\n"


def impls() -> list[Any]:
    return [pytest.param("c", marks=pytest.mark.c_extension, id="c"), pytest.param("py", id="py")]


def get_impl(tag: str) -> ModuleType:
    if tag == "c":
        if parser_c is None:
            pytest.fail(C_MISSING)
        return parser_c
    return parser_py


@pytest.fixture(params=impls())
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return get_impl(request.param)


def both() -> list[ModuleType]:
    """parser_c and parser_py, for a ``c_extension`` case that compares them."""
    return [get_impl("c"), parser_py]


def all_impls(config: pytest.Config) -> list[ModuleType]:
    """Both parsers; parser_py alone under --no-c-extensions (a missing parser_c fails otherwise)."""
    if config.getoption("--no-c-extensions"):
        return [parser_py]
    return both()


# -- helpers ------------------------------------------------------------------


class Outcome:
    """Everything a parser handed out for some bytes: events, error status, trailing bytes."""

    def __init__(self, events: list[Any], error: int | None, trailing: bytes) -> None:
        self.events = events
        self.error = error
        self.trailing = trailing

    def key(self) -> tuple[Any, ...]:
        return (tuple(_coalesce(self.events)), self.error, self.trailing)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and self.key() == other.key()

    def __repr__(self) -> str:
        return f"Outcome(events={_coalesce(self.events)!r}, error={self.error!r}, trailing={self.trailing!r})"


def _coalesce(events: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for ev in events:
        if type(ev) is bytes and out and type(out[-1]) is bytes:
            out[-1] += ev
        else:
            out.append(ev)
    return out


def parse(mod: ModuleType, data: bytes, cuts: Sequence[int] = (), **limits: int) -> Outcome:
    """Feed ``data`` cut at ``cuts``; collect events (including those carried by a ParseError)."""
    parser = mod.RequestParser(**limits)
    events: list[Any] = []
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    for i in range(len(bounds) - 1):
        try:
            got = parser.feed(data[bounds[i] : bounds[i + 1]])
        except mod.ParseError as exc:
            assert exc.status in (400, 413, 414, 431)
            assert isinstance(exc.reason, str) and exc.reason
            return Outcome(events + list(exc.events), exc.status, parser.trailing)
        assert type(got) is list
        events += got
        if any(type(ev) is tuple and ev[8] is not None for ev in got):
            # After an upgrade the consumer stops feeding: the rest is the new protocol's.
            return Outcome(events, None, parser.trailing + data[bounds[i + 1] :])
    return Outcome(events, None, parser.trailing)


def bytewise(mod: ModuleType, data: bytes, **limits: int) -> Outcome:
    return parse(mod, data, range(1, len(data)), **limits)


HEAD_FIELDS = (
    "method",
    "path",
    "raw_path",
    "query",
    "version",
    "headers",
    "keep_alive",
    "expect_continue",
    "upgrade",
    "te_trailers",
)


def summarize(events: Sequence[Any]) -> list[dict[str, Any]]:
    """Events -> one dict per request (head fields, body, complete), checking the event grammar."""
    requests: list[dict[str, Any]] = []
    for ev in events:
        if type(ev) is tuple:
            assert len(ev) == 10
            assert not requests or requests[-1]["complete"], "head before the previous end of message"
            method, path, raw_path, query, version, headers, keep_alive, expect_continue, upgrade, te_trailers = ev
            assert type(method) is str and type(path) is str and type(version) is str
            assert type(raw_path) is bytes and type(query) is bytes
            assert type(headers) is list and all(type(h) is tuple and len(h) == 2 for h in headers)
            assert all(type(n) is bytes and type(v) is bytes and n == n.lower() for n, v in headers)
            assert type(keep_alive) is bool and type(expect_continue) is bool and type(te_trailers) is bool
            assert upgrade is None or upgrade == b"websocket"
            requests.append(
                {
                    "method": method,
                    "path": path,
                    "raw_path": raw_path,
                    "query": query,
                    "version": version,
                    "headers": headers,
                    "keep_alive": keep_alive,
                    "expect_continue": expect_continue,
                    "upgrade": upgrade,
                    "te_trailers": te_trailers,
                    "body": b"",
                    "complete": False,
                }
            )
        elif type(ev) is bytes:
            assert ev, "empty body chunk"
            assert requests and not requests[-1]["complete"], "body outside a request"
            requests[-1]["body"] += ev
        else:
            assert ev is None, f"unexpected event {ev!r}"
            assert requests and not requests[-1]["complete"], "end of message outside a request"
            requests[-1]["complete"] = True
    return requests


def expected_requests(entry: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for req in entry["requests"]:
        exp = dict(req)
        exp.setdefault("complete", True)
        for key in ("raw_path", "query", "body"):
            if key in exp:
                exp[key] = exp[key].encode("latin-1")
        if "headers" in exp:
            exp["headers"] = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in exp["headers"]]
        if exp.get("upgrade") is not None:
            exp["upgrade"] = exp["upgrade"].encode("latin-1")
        out.append(exp)
    return out


def check_entry(entry: dict[str, Any], outcome: Outcome) -> None:
    got = summarize(outcome.events)
    want = expected_requests(entry)
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert {k: g[k] for k in w} == w
    assert outcome.error == entry.get("error")
    if "trailing" in entry:
        assert outcome.trailing == entry["trailing"]
    elif outcome.error is None:
        assert outcome.trailing == b""


def head(events: Sequence[Any], index: int = 0) -> tuple[Any, ...]:
    heads = [ev for ev in events if type(ev) is tuple]
    return heads[index]


def status(mod: ModuleType, data: bytes, **limits: int) -> int | None:
    return parse(mod, data, **limits).error


# -- the corpus -----------------------------------------------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=[e["name"] for e in CORPUS])
def test_corpus(mod: ModuleType, entry: dict[str, Any]) -> None:
    check_entry(entry, parse(mod, entry["data"]))


@pytest.mark.parametrize("entry", CORPUS, ids=[e["name"] for e in CORPUS])
def test_corpus_one_byte_at_a_time(mod: ModuleType, entry: dict[str, Any]) -> None:
    data = entry["data"]
    if len(data) > 4000:
        # Long entries: every 7th byte boundary keeps the run short yet splits everything.
        check_entry(entry, parse(mod, data, range(1, len(data), 7)))
    else:
        check_entry(entry, bytewise(mod, data))


@pytest.mark.c_extension  # compares the two parsers
@pytest.mark.parametrize("entry", CORPUS, ids=[e["name"] for e in CORPUS])
def test_corpus_both_implementations_agree(entry: dict[str, Any]) -> None:
    c, py = both()
    data = entry["data"]
    assert parse(c, data) == parse(py, data)
    cuts = range(1, len(data), 1 if len(data) <= 4000 else 7)
    assert parse(c, data, cuts) == parse(py, data, cuts)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_splits_give_the_same_outcome(pytestconfig: pytest.Config, data: st.DataObject) -> None:
    """Random split points of corpus entries (alone or pipelined): same outcome whole or split, c or py."""
    impl_list = all_impls(pytestconfig)
    entries = data.draw(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=3))
    # The final blank line completes an unfinished head (see test_random_mutations_agree).
    blob = b"".join(e["data"] for e in entries) + b"\r\n\r\n"
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=max(1, len(blob) - 1)), max_size=12))
    whole = parse(impl_list[0], blob)
    for impl in impl_list:
        assert parse(impl, blob) == whole
        assert parse(impl, blob, cuts) == whole


@pytest.mark.parametrize("after", [b"X: a\x00b\r\n", b"Bad Name: v\r\n"], ids=["nul", "bad-name"])
def test_header_block_past_the_limit_is_431_before_what_follows(pytestconfig: pytest.Config, after: bytes) -> None:
    """A head that runs past --limit-request-header-size before a bad byte or line is 431 on
    both sets, whole or in pieces (llhttp stops at the limit; hypothesis found the pure set
    answering 400 for a complete head whose bad line came after the limit)."""
    blob = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"v" * 20000 + b"\r\n" + after + b"\r\n"
    for impl in all_impls(pytestconfig):
        assert parse(impl, blob, max_header_size=16384).error == 431
        assert parse(impl, blob, range(1, len(blob), 997), max_header_size=16384).error == 431
    small = b"GET / HTTP/1.1\r\nHost: example.com\r\n" + after + b"X-Big: " + b"v" * 20000 + b"\r\n\r\n"
    for impl in all_impls(pytestconfig):
        assert parse(impl, small, max_header_size=16384).error == 400


# -- valid requests ---------------------------------------------------------------


def test_simple_get(mod: ModuleType) -> None:
    events = mod.RequestParser().feed(b"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
    assert events == [
        (
            "GET",
            "/index.html",
            b"/index.html",
            b"a=1",
            "1.1",
            [(b"host", b"example.com"), (b"accept", b"*/*")],
            True,
            False,
            None,
            False,
        ),
        None,
    ]


def test_post_body_in_pieces(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    events = parser.feed(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
    assert events[0][0] == "POST" and events[1:] == [b"01234"]
    assert parser.feed(b"567") == [b"567"]
    assert parser.feed(b"89GET") == [b"89", None]
    assert parser.feed(b" / HTTP/1.1\r\nHost: h\r\n\r\n")[1:] == [None]


def test_head_request_has_no_body(mod: ModuleType) -> None:
    events = mod.RequestParser().feed(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert events[0][0] == "HEAD" and events[1:] == [None]


@pytest.mark.parametrize(
    "target, path, raw_path, query",
    [
        (b"/", "/", b"/", b""),
        (b"/a/b/", "/a/b/", b"/a/b/", b""),
        (b"/a?", "/a", b"/a", b""),
        (b"/a?x=1&y=2", "/a", b"/a", b"x=1&y=2"),
        (b"/a?x=%20", "/a", b"/a", b"x=%20"),
        (b"/%7Euser/%20a%2fb", "/~user/ a/b", b"/%7Euser/%20a%2fb", b""),
        (b"/%E2%82%AC", "/\u20ac", b"/%E2%82%AC", b""),
        (b"/%e2%82%ac%", "/\u20ac%", b"/%e2%82%ac%", b""),
        (b"/%C3%28", "/\ufffd(", b"/%C3%28", b""),
        (b"/%E2%82", "/\ufffd", b"/%E2%82", b""),
        (b"/%G0%0", "/%G0%0", b"/%G0%0", b""),
        (b"//double//slash", "//double//slash", b"//double//slash", b""),
        (b"http://example.com", "/", b"/", b""),
        (b"http://example.com/p?q", "/p", b"/p", b"q"),
        (b"HTTPS://user@example.com:443/%41?q", "/A", b"/%41", b"q"),
        (b"http://[::1]:8000/v6", "/v6", b"/v6", b""),
    ],
)
def test_targets(mod: ModuleType, target: bytes, path: str, raw_path: bytes, query: bytes) -> None:
    ev = head(mod.RequestParser().feed(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert ev[1:4] == (path, raw_path, query)


def test_asterisk_form(mod: ModuleType) -> None:
    ev = head(mod.RequestParser().feed(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert ev[:4] == ("OPTIONS", "*", b"*", b"")
    for method in (b"GET", b"POST", b"DELETE"):
        assert status(mod, method + b" * HTTP/1.1\r\nHost: h\r\n\r\n") == 400


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["a", "/", "%", "%2", "%41", "%C3", "%A9", "%E2%82%AC", "%F0%9F%98", "%80", "%FF", "%zz", "~", "."]
        ),
        max_size=12,
    )
)
def test_path_decoding_matches_unquote(pytestconfig: pytest.Config, parts: list[str]) -> None:
    raw = "/" + "".join(parts)
    for impl in all_impls(pytestconfig):
        ev = head(impl.RequestParser().feed(b"GET " + raw.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n"))
        assert ev[2] == raw.encode()
        assert ev[1] == unquote(raw)


@pytest.mark.parametrize(
    "version, connection, keep_alive",
    [
        (b"1.1", None, True),
        (b"1.1", b"keep-alive", True),
        (b"1.1", b"close", False),
        (b"1.1", b"Close", False),
        (b"1.1", b"upgrade, close", False),
        (b"1.1", b"closed", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"foo ,  keep-alive", True),
        (b"1.0", b"keep-alive, close", False),
        (b"1.0", b"close", False),
    ],
)
def test_keep_alive_rules(mod: ModuleType, version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: h\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    ev = head(mod.RequestParser().feed(data + b"\r\n"))
    assert ev[4] == version.decode() and ev[6] is keep_alive


def test_no_parsing_after_a_request_without_keep_alive(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    events = parser.feed(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [ev[1] for ev in events if type(ev) is tuple] == ["/a"]
    assert events[-1] is None
    assert parser.feed(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n") == []
    assert parser.feed(b"\x00garbage") == []


@pytest.mark.parametrize(
    "version, value, expected",
    [
        (b"1.1", b"100-continue", True),
        (b"1.1", b"100-CONTINUE", True),
        (b"1.1", b"foo", False),
        (b"1.0", b"100-continue", False),
    ],
)
def test_expect_continue(mod: ModuleType, version: bytes, value: bytes, expected: bool) -> None:
    data = b"PUT / HTTP/" + version + b"\r\nHost: h\r\nExpect: " + value + b"\r\nContent-Length: 1\r\n\r\n"
    parser = mod.RequestParser()
    assert head(parser.feed(data))[7] is expected
    assert parser.feed(b"x") == [b"x", None]


@pytest.mark.parametrize(
    "version, fields, expected",
    [
        (b"1.1", b"TE: trailers\r\n", True),
        (b"1.1", b"te: gzip;q=0.5 , Trailers\r\n", True),
        (b"1.1", b"TE: gzip\r\nTE: trailers\r\n", True),
        (b"1.1", b"TE: trailersx, gzip\r\n", False),
        (b"1.1", b"TE: trailers;q=1\r\n", False),  # RFC 9110 §10.1.4: "trailers" takes no weight
        (b"1.1", b"Trailer: x\r\n", False),
        (b"1.1", b"", False),
        (b"1.0", b"TE: trailers\r\n", False),  # no chunked body for an HTTP/1.0 client
    ],
)
def test_te_trailers(mod: ModuleType, version: bytes, fields: bytes, expected: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: h\r\n" + fields + b"\r\n"
    assert head(mod.RequestParser().feed(data))[9] is expected


def test_header_names_lowercased_values_stripped(mod: ModuleType) -> None:
    ev = head(mod.RequestParser().feed(b"GET / HTTP/1.1\r\nHOST: h\r\nX-CuStOm:\t  a  b \t\r\nEmpty:\r\n\r\n"))
    assert ev[5] == [(b"host", b"h"), (b"x-custom", b"a  b"), (b"empty", b"")]


def test_header_name_and_value_split_across_feeds(mod: ModuleType) -> None:
    data = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Long-Header-Name: " + b"v" * 300 + b"\r\n\r\n"
    for step in (1, 2, 5, 31):
        assert head(parse(mod, data, range(step, len(data), step)).events)[5] == [
            (b"host", b"example.com"),
            (b"x-long-header-name", b"v" * 300),
        ]


def test_chunked_with_extensions_and_trailers(mod: ModuleType) -> None:
    data = (
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;name=value\r\nWiki\r\n"
        b'5;a;b="c d"\r\npedia\r\n'
        b"E\r\n in\r\n\r\nchunks.\r\n"
        b"0;end\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n"
    )
    for outcome in (parse(mod, data), bytewise(mod, data)):
        reqs = summarize(outcome.events)
        assert outcome.error is None
        assert len(reqs) == 1 and reqs[0]["complete"]
        assert reqs[0]["body"] == b"Wikipedia in\r\n\r\nchunks."
        # trailers are parsed and discarded, never added to the head
        assert reqs[0]["headers"] == [(b"host", b"h"), (b"transfer-encoding", b"chunked")]


def test_large_chunk_streamed(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    events = parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n")
    body = b"".join(ev for ev in events[1:])
    for _ in range(16):
        body += b"".join(parser.feed(b"x" * 0x10000))
    assert body == b"x" * 0x100000
    assert parser.feed(b"\r\n0\r\n\r\n") == [None]


def test_huge_content_length_streams(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    events = parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\nabc")
    assert events[1:] == [b"abc"]
    assert parser.feed(b"def") == [b"def"]


def test_pipelined_requests_in_one_buffer(mod: ModuleType) -> None:
    one = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    two = b"POST /y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    three = b"POST /z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n\r\n"
    events = mod.RequestParser().feed((one + two + three) * 20)
    reqs = summarize(events)
    assert [r["path"] for r in reqs] == ["/x", "/y", "/z"] * 20
    assert [r["body"] for r in reqs] == [b"", b"abc", b"q"] * 20
    assert all(r["complete"] for r in reqs)


def test_feed_returns_a_new_list_each_call(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    first = parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    kept = list(first)
    second = parser.feed(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert first is not second and first == kept
    assert parser.feed(b"") == []


def test_bytes_like_input(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    events = parser.feed(bytearray(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    events += parser.feed(memoryview(b"GET /m HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert [ev[1] for ev in events if type(ev) is tuple] == ["/", "/m"]


# -- upgrade ------------------------------------------------------------------------


def test_websocket_upgrade_stops_and_keeps_trailing(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    data = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    events = parser.feed(data + b"\x81\x05hello")
    assert len(events) == 2 and events[1] is None
    assert events[0][8] == b"websocket"
    assert parser.trailing == b"\x81\x05hello"


def test_websocket_upgrade_fragmented(mod: ModuleType) -> None:
    data = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade:  WebSocket \r\n\r\nFRAME"
    for step in (1, 3, 7):
        outcome = parse(mod, data, range(step, len(data), step))
        assert summarize(outcome.events)[0]["upgrade"] == b"websocket"
        assert outcome.trailing == b"FRAME"
    parser = mod.RequestParser()
    parser.feed(data[:-5])
    assert parser.trailing == b""


@pytest.mark.parametrize(
    "headers",
    [
        b"Upgrade: websocket\r\n",  # no Connection: upgrade
        b"Connection: upgrade\r\n",  # no Upgrade
        b"Connection: upgrade\r\nUpgrade: h2c\r\n",
        b"Connection: upgrade\r\nUpgrade: websocket2\r\n",
        b"Connection: upgrader\r\nUpgrade: websocket\r\n",
    ],
)
def test_other_upgrades_are_plain_http(mod: ModuleType, headers: bytes) -> None:
    parser = mod.RequestParser()
    events = parser.feed(b"GET /a HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [(ev[1], ev[8]) for ev in events if type(ev) is tuple] == [("/a", None), ("/b", None)]
    assert parser.trailing == b""


H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"


def test_h2c_upgrade_stops_and_keeps_trailing(mod: ModuleType) -> None:
    """With ``h2c`` set (--http2, cleartext), an h2c upgrade request without body stops
    the parser as a WebSocket handshake does (RFC 7540 §3.2): what follows is HTTP/2."""
    data = b"GET /a HTTP/1.1\r\nHost: h\r\n" + H2C + b"\r\nPRI * HTTP/2.0\r\n"
    for step in (1, 5, len(data)):
        parser = mod.RequestParser()
        parser.h2c = True
        events = []
        for i in range(0, len(data), step):
            events += parser.feed(data[i : i + step])
        assert [ev[8] for ev in events if type(ev) is tuple] == [b"h2c"] and events[-1] is None
        assert parser.trailing == (b"PRI * HTTP/2.0\r\n" if step == len(data) else b"")
    parser = mod.RequestParser()
    parser.h2c = True
    events = parser.feed(b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n" + H2C + b"\r\nX")
    assert events[0][8] == b"h2c" and parser.trailing == b"X"


@pytest.mark.parametrize(
    "request_head",
    [
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n" + H2C + b"\r\nab",  # a body
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n" + H2C + b"\r\n0\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\n" + H2C + b"HTTP2-Settings: AAMAAABk\r\n\r\n",  # two fields
        b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n\r\n",
        b"GET /a HTTP/1.0\r\n" + H2C + b"\r\n",  # RFC 9110 §7.8: not in HTTP/1.0
    ],
)
def test_h2c_upgrade_not_taken_is_plain_http(mod: ModuleType, request_head: bytes) -> None:
    for h2c in (True, False):
        parser = mod.RequestParser()
        parser.h2c = h2c
        events = parser.feed(request_head + b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        heads = [(ev[1], ev[8]) for ev in events if type(ev) is tuple]
        assert heads[0] == ("/a", None) and parser.trailing == b""
        if b"HTTP/1.0" not in request_head:
            assert heads[1] == ("/b", None)  # not stopped: the next request is parsed


def test_h2c_upgrade_is_plain_http_without_the_flag(mod: ModuleType) -> None:
    parser = mod.RequestParser()  # (no --http2, or TLS)
    events = parser.feed(b"GET /a HTTP/1.1\r\nHost: h\r\n" + H2C + b"\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [(ev[1], ev[8]) for ev in events if type(ev) is tuple] == [("/a", None), ("/b", None)]


# -- errors -----------------------------------------------------------------------


ERRORS = {
    # RFC 9112 §3: request line
    "method lowercase": (b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "method unknown": (b"BREW / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "method CONNECT": (b"CONNECT h:443 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "version 1.2": (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400),
    "version 2.0": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 400),
    "version 0.9": (b"GET /\r\n\r\n", 400),
    "http2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "target fragment": (b"GET /#x HTTP/1.1\r\n" + H + b"\r\n", 400),
    "target non-ascii": (b"GET /\xff HTTP/1.1\r\n" + H + b"\r\n", 400),
    "target relative": (b"GET x HTTP/1.1\r\n" + H + b"\r\n", 400),
    "target empty host": (b"GET http:// HTTP/1.1\r\n" + H + b"\r\n", 400),
    "two spaces": (b"GET /  HTTP/1.1\r\n" + H + b"\r\n", 400),
    # RFC 9112 §2.2: bare CR / LF
    "bare LF request line": (b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    "bare LF header": (b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400),
    "bare LF end of head": (b"GET / HTTP/1.1\r\nHost: h\n\n", 400),
    "bare CR header": (b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),
    # RFC 9110 §5.1 / §5.5: field names and values
    "space before colon": (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    "invalid name": (b"GET / HTTP/1.1\r\n" + H + b"X@Y: z\r\n\r\n", 400),
    "NUL in value": (b"GET / HTTP/1.1\r\n" + H + b"X: \x00\r\n\r\n", 400),
    "CTL in value": (b"GET / HTTP/1.1\r\n" + H + b"X: a\x1fb\r\n\r\n", 400),
    # RFC 9112 §5.2: obs-fold
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    # RFC 9112 §3.2: Host
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "duplicate host": (b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    # RFC 9112 §6.1 / §6.3: framing
    "CL and TE": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "duplicate CL equal": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    "CL non-numeric": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1a\r\n\r\n", 400),
    "CL negative": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    "TE not chunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "TE chunked not last": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    "TE chunked twice": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    "TE in HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 §7.1: chunked coding
    "chunk size invalid": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nx\r\n", 400),
    "chunk size with space": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n",
        400,
    ),
    "chunk missing CRLF": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n", 400),
    "chunk ext too long": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1;e=" + b"x" * 4096 + b"\r\nx\r\n0\r\n\r\n",
        400,
    ),
    "trailer obs-fold": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n",
        400,
    ),
}


@pytest.mark.parametrize("data, expected", list(ERRORS.values()), ids=list(ERRORS))
def test_error_status(mod: ModuleType, data: bytes, expected: int) -> None:
    assert parse(mod, data).error == expected
    assert bytewise(mod, data).error == expected


def test_parser_is_dead_after_an_error(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    with pytest.raises(mod.ParseError) as info:
        parser.feed(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
    assert info.value.status == 400
    assert str(info.value).startswith("400 ")
    with pytest.raises(mod.ParseError) as again:
        parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert again.value.status == 400
    assert again.value.events == []


def test_events_before_an_error_travel_with_it(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    with pytest.raises(mod.ParseError) as info:
        parser.feed(
            b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\nGET /never HTTP/1.1\r\n\r\n"
        )
    assert [ev[1] if type(ev) is tuple else ev for ev in info.value.events] == ["/ok", None]


@pytest.mark.parametrize(
    "smuggle",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        b"Content-Length: 0\r\nContent-Length: 40\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n0\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n1;x\nx\r\n0\r\n\r\n",
    ],
)
def test_nothing_is_parsed_after_a_framing_error(mod: ModuleType, smuggle: bytes) -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\n" + smuggle + b"GET /admin HTTP/1.1\r\nHost: h\r\n\r\n"
    for outcome in (parse(mod, data), bytewise(mod, data)):
        assert outcome.error == 400
        assert "/admin" not in [r["path"] for r in summarize(outcome.events)]


# -- limits -------------------------------------------------------------------------


def _request_line(length: int) -> bytes:
    # "GET /aaa HTTP/1.1" of exactly ``length`` bytes (CRLF not counted)
    return b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"


@pytest.mark.parametrize("limit", [30, 100, 8190])
def test_request_line_limit(mod: ModuleType, limit: int) -> None:
    ok = _request_line(limit) + b"\r\nHost: h\r\n\r\n"
    too_long = _request_line(limit + 1) + b"\r\nHost: h\r\n\r\n"
    assert parse(mod, ok, max_request_line=limit).error is None
    assert bytewise(mod, ok, max_request_line=limit).error is None
    assert parse(mod, too_long, max_request_line=limit).error == 414
    assert bytewise(mod, too_long, max_request_line=limit).error == 414
    # unfinished: fails as soon as the limit is passed
    parser = mod.RequestParser(max_request_line=limit)
    parser.feed(too_long[:limit])
    with pytest.raises(mod.ParseError) as info:
        parser.feed(too_long[limit : limit + 2])
    assert info.value.status == 414


@pytest.mark.parametrize("limit", [64, 200, 16384])
def test_header_block_limit(mod: ModuleType, limit: int) -> None:
    start = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
    ok = start + b"v" * (limit - len(start) - 4) + b"\r\n\r\n"
    assert len(ok) == limit
    too_large = start + b"v" * (limit - len(start) - 3) + b"\r\n\r\n"
    # (one field as large as the block: lift the per-field limit, tested on its own)
    assert parse(mod, ok, max_header_size=limit, max_field_size=limit).error is None
    assert parse(mod, ok, range(1, limit, 3), max_header_size=limit, max_field_size=limit).error is None
    assert parse(mod, too_large, max_header_size=limit, max_field_size=limit).error == 431
    assert parse(mod, too_large, range(1, limit, 3), max_header_size=limit, max_field_size=limit).error == 431
    # unfinished header block already too large
    assert parse(mod, start + b"v" * limit, max_header_size=limit, max_field_size=limit).error == 431


def test_leading_empty_lines_do_not_count(mod: ModuleType) -> None:
    data = b"\r\n" * 50 + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert parse(mod, data, max_header_size=40).error is None


@pytest.mark.parametrize("limit", [1, 2, 100])
def test_header_count_limit(mod: ModuleType, limit: int) -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(limit - 1))
    ok = b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n"
    too_many = b"GET / HTTP/1.1\r\nHost: h\r\nX-Extra: v\r\n" + fields + b"\r\n"
    assert parse(mod, ok, max_headers=limit).error is None
    assert parse(mod, too_many, max_headers=limit).error == 431
    assert bytewise(mod, too_many, max_headers=limit).error == 431


def test_trailer_limits(mod: ModuleType) -> None:
    start = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
    trailer = b"T: " + b"v" * 50 + b"\r\n"
    ok = start + trailer + b"\r\n"
    assert parse(mod, ok, max_header_size=len(trailer) + 2).error is None
    assert parse(mod, ok, max_header_size=len(trailer) + 1).error == 431
    many = start + trailer * 3 + b"\r\n"
    assert parse(mod, many, max_headers=3).error is None
    assert parse(mod, many, max_headers=2).error == 431
    assert bytewise(mod, many, max_headers=2).error == 431


@pytest.mark.parametrize("ext_len, expected", [(4096, None), (4097, 400)])
def test_chunk_extension_limit_default(mod: ModuleType, ext_len: int, expected: int | None) -> None:
    ext = b";" + b"e" * (ext_len - 1)
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1" + ext + b"\r\nx\r\n0\r\n\r\n"
    assert parse(mod, data).error == expected
    assert parse(mod, data, range(1, len(data), 5)).error == expected


# -- the twins agree on random garbage too -------------------------------------


@pytest.mark.c_extension  # compares the two parsers
def test_random_mutations_agree() -> None:
    """Mutated corpus entries: both give the same outcome (once the bytes are complete)."""
    c, py = both()
    rng = random.Random(1234)
    valid = [e["data"] for e in CORPUS if "error" not in e and len(e["data"]) < 2000]
    alphabet = b'\r\n \t:;="\x00\x7f\x80#%?/*,-0aA9zZ\\'
    for _ in range(3000):
        data = bytearray(rng.choice(valid))
        for _ in range(rng.randrange(1, 3)):
            i = rng.randrange(len(data) + 1)
            op = rng.randrange(3)
            if op == 0:
                data[i:i] = bytes([rng.choice(alphabet)])
            elif op == 1:
                del data[i : i + 1]
            else:
                data[i : i + 1] = bytes([rng.randrange(256)])
        # A final blank line completes any unfinished head, so that the h11
        # adapter (which checks lines when they end) and llhttp (which fails at
        # the first bad byte) are compared on complete input.
        blob = bytes(data) + b"\r\n\r\n"
        cuts = sorted(rng.sample(range(1, len(blob)), 3))
        expected = parse(c, blob)
        assert parse(py, blob) == expected, blob
        assert parse(py, blob, cuts) == parse(c, blob, cuts), (blob, cuts)


# -- limits added with the hardening work (issue 7) -------------------------------


@pytest.mark.parametrize("limit", [1, 10, 8190])
def test_header_field_size_limit(mod: ModuleType, limit: int) -> None:
    # name + value, OWS around the value not counted
    ok = b"GET / HTTP/1.1\r\nHost: h\r\nX:  " + b"v" * (limit - 1) + b"  \r\n\r\n"
    too_large = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * limit + b"\r\n\r\n"
    assert parse(mod, ok, max_field_size=limit + 4).error is None  # "host" + "h" fits too
    for cuts in ((), range(1, len(too_large), 7)):
        assert parse(mod, ok, cuts, max_field_size=max(limit, 5)).error is None
        assert parse(mod, too_large, cuts, max_field_size=limit).error == 431


def test_chunk_extension_limit(mod: ModuleType) -> None:
    def req(ext: bytes) -> bytes:
        return b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5" + ext + b"\r\nhello\r\n0\r\n\r\n"

    ok, too_long = req(b";aaaaaaa=b"), req(b";aaaaaaaa=b")  # 10 and 11 bytes from the ';'
    for cuts in ((), range(1, len(ok), 3)):
        assert parse(mod, ok, cuts, max_chunk_ext=10).error is None
        assert parse(mod, too_long, cuts, max_chunk_ext=10).error == 400
    # unfinished chunk line already too long
    assert parse(mod, req(b";" + b"a" * 50)[:-20], max_chunk_ext=10).error == 400


def test_body_size_limit_content_length(mod: ModuleType) -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n"
    assert parse(mod, head % 10 + b"x" * 10, max_body_size=10).error is None
    out = parse(mod, head % 11 + b"x" * 11, max_body_size=10)
    assert (out.error, out.events) == (413, [])  # refused at the head: nothing handed out
    assert parse(mod, head % 0, max_body_size=0).error is None


def test_body_size_limit_chunked(mod: ModuleType) -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    ok = head + b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"
    over = head + b"5\r\nhello\r\n5\r\nworld\r\n1\r\n!\r\n0\r\n\r\n"
    huge = head + b"ffffffffffffffff\r\n"
    for cuts in ((), range(1, len(over), 2)):
        assert parse(mod, ok, cuts, max_body_size=10).error is None
        out = parse(mod, over, cuts, max_body_size=10)
        assert out.error == 413
        # the chunk that crosses the limit is refused before any of its bytes
        assert b"".join(e for e in out.events if type(e) is bytes) == b"helloworld"
    assert parse(mod, huge, max_body_size=10).error == 413


def test_fed_counts_bytes(mod: ModuleType) -> None:
    parser = mod.RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n")
    parser.feed(b"Host: h\r\n\r\n")
    assert parser.fed == 27
