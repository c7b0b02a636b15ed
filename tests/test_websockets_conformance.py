"""RFC 6455 conformance through a raw-socket client, for both backends (``ws``) via both HTTP paths (``impl``).

The checks follow what the usual conformance suites (Autobahn's sections 1-7) look
at: fragmentation and continuation frames, control frames interleaved with
fragments, ping/pong payloads, reserved bits and opcodes, UTF-8 of text (also
split across fragments), close codes and reasons, the closing handshake.  After
every failure the server must still serve the next connection (the fixture
reuses one server for the whole module).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tests.conftest import run_server
from tests.test_websockets import RawWS, echo_app


@pytest.fixture(scope="module", params=["websockets", "wsproto"])
def ws(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def port(impl: str, ws: str) -> Any:
    with run_server(echo_app, impl, ws=ws) as srv:
        yield srv.port


@pytest.fixture
def raw(port: int) -> Any:
    client = RawWS(port)
    assert client.status == 101
    yield client
    client.close()


def expect_close(raw: RawWS, code: int | None) -> None:
    got, _ = raw.recv_close()
    assert got == code
    assert raw.at_eof(), "the server closes TCP after the closing handshake"


# ---------------------------------------------------------------------- framing, fragmentation


def test_fragmented_text_with_interleaved_ping(raw: RawWS) -> None:
    raw.send_frame(0x1, b"Hel", fin=False)
    raw.send_frame(0x9, b"ping-1")
    raw.send_frame(0x0, b"lo ", fin=False)
    raw.send_frame(0xA, b"unsolicited pong")  # ignored (RFC 6455 §5.5.3)
    raw.send_frame(0x0, b"world", fin=True)
    assert raw.recv_frame() == (True, 0xA, b"ping-1")
    assert raw.recv_frame() == (True, 0x1, b"Hello world")


def test_fragmented_binary_many_pieces(raw: RawWS) -> None:
    raw.send_frame(0x2, b"", fin=False)
    for i in range(20):
        raw.send_frame(0x0, bytes([i]) * 100, fin=False)
    raw.send_frame(0x0, b"", fin=True)
    assert raw.recv_frame() == (True, 0x2, b"".join(bytes([i]) * 100 for i in range(20)))


def test_utf8_split_across_fragments(raw: RawWS) -> None:
    text = "\u00e9\u20ac\U0001f600".encode()  # 2-, 3- and 4-byte sequences
    for i in range(len(text)):  # split at every byte
        raw.send_frame(0x1, text[:i], fin=False)
        raw.send_frame(0x0, text[i:], fin=True)
        assert raw.recv_frame() == (True, 0x1, text)


def test_ping_payloads(raw: RawWS) -> None:
    for payload in (b"", b"x", bytes(range(125))):
        raw.send_frame(0x9, payload)
        assert raw.recv_frame() == (True, 0xA, payload)


def test_empty_and_large_frames(raw: RawWS) -> None:
    for size in (0, 125, 126, 127, 65535, 65536, 300000):
        payload = bytes([size % 256]) * size
        raw.send_frame(0x2, payload)
        assert raw.recv_frame() == (True, 0x2, payload)


@pytest.mark.parametrize(
    "frames, code",
    [
        pytest.param([dict(opcode=0x1, payload=b"\xff\xfe")], 1007, id="invalid-utf8"),
        pytest.param([dict(opcode=0x1, payload=b"\xed\xa0\x80")], 1007, id="utf8-surrogate"),
        pytest.param(
            [dict(opcode=0x1, payload=b"ok", fin=False), dict(opcode=0x0, payload=b"\xc0\xaf", fin=False)],
            1007,
            id="invalid-utf8-in-fragment-fails-fast",
        ),
        pytest.param(
            [dict(opcode=0x1, payload=b"\xce", fin=False), dict(opcode=0x0, payload=b"", fin=True)],
            1007,
            id="truncated-utf8-at-end",
        ),
        pytest.param([dict(opcode=0x1, payload=b"x", rsv=1)], 1002, id="rsv1-without-extension"),
        pytest.param([dict(opcode=0x1, payload=b"x", rsv=2)], 1002, id="rsv2"),
        pytest.param([dict(opcode=0x1, payload=b"x", rsv=4)], 1002, id="rsv3"),
        pytest.param([dict(opcode=0x3, payload=b"x")], 1002, id="reserved-data-opcode"),
        pytest.param([dict(opcode=0xB, payload=b"x")], 1002, id="reserved-control-opcode"),
        pytest.param([dict(opcode=0x1, payload=b"x", mask=False)], 1002, id="unmasked"),
        pytest.param([dict(opcode=0x9, payload=b"x", fin=False)], 1002, id="fragmented-ping"),
        pytest.param([dict(opcode=0x9, payload=b"x" * 126)], 1002, id="ping-too-long"),
        pytest.param([dict(opcode=0x0, payload=b"x")], 1002, id="continuation-without-start"),
        pytest.param(
            [dict(opcode=0x1, payload=b"a", fin=False), dict(opcode=0x1, payload=b"b")],
            1002,
            id="data-frame-inside-fragmented-message",
        ),
    ],
)
def test_protocol_errors(raw: RawWS, frames: list[dict[str, Any]], code: int) -> None:
    for frame in frames:
        frame = dict(frame)
        raw.send_frame(frame.pop("opcode"), frame.pop("payload"), **frame)
    expect_close(raw, code)


# ---------------------------------------------------------------------- closing handshake


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_codes_are_echoed(raw: RawWS, ws: str, code: int) -> None:
    if ws == "wsproto" and code == 1014:
        # wsproto 1.3 rejects 1014 (registered with IANA after RFC 6455) as "reserved" with 1002;
        # a library limitation, listed in README.md, section WebSockets
        pytest.skip("wsproto does not know close code 1014")
    raw.send_close(code, b"reason \xe2\x98\x83")
    got, _reason = raw.recv_close()
    assert got == code
    assert raw.at_eof()


def test_empty_close_gets_empty_close(raw: RawWS) -> None:
    raw.send_close(None)
    assert raw.recv_frame() == (True, 0x8, b"")
    assert raw.at_eof()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_codes(raw: RawWS, code: int) -> None:
    raw.send_close(code)
    expect_close(raw, 1002)


def test_close_with_one_byte_payload(raw: RawWS) -> None:
    raw.send_frame(0x8, b"\x03")
    expect_close(raw, 1002)


def test_close_reason_invalid_utf8(raw: RawWS) -> None:
    raw.send_frame(0x8, struct.pack("!H", 1000) + b"\xff")
    expect_close(raw, 1007)


def test_close_in_the_middle_of_a_fragmented_message(raw: RawWS) -> None:
    # control frames may come between fragments (RFC 6455 §5.4), a close frame included
    raw.send_frame(0x1, b"part", fin=False)
    raw.send_close(1000, b"bye")
    expect_close(raw, 1000)


def test_nothing_is_processed_after_close(raw: RawWS) -> None:
    raw.send_frame(0x1, b"before")
    raw.send_close(1000)
    raw.send_frame(0x1, b"after")
    assert raw.recv_frame() == (True, 0x1, b"before")
    expect_close(raw, 1000)


def test_message_then_close_in_one_write(raw: RawWS, port: int) -> None:
    raw.send_frame(0x1, b"a")
    raw.send_frame(0x9, b"p")
    raw.send_close(1001, b"going away")
    assert raw.recv_frame() == (True, 0x1, b"a")
    assert raw.recv_frame() == (True, 0xA, b"p")
    expect_close(raw, 1001)
