"""The ASGI extensions on HTTP/2 streams (``--http2``), and the per-stream body timeout.

The same extensions as over HTTP/1.1 (tests/test_extensions.py, tests/test_files.py),
framed the HTTP/2 way: trailers as a HEADERS frame with END_STREAM after the DATA
(RFC 9113 §8.1), early hints as 103 HEADERS, files read in pieces as the client's
windows allow, ``tls`` on TLS connections.  Through a real server on loopback, both
implementation sets (the ``impl`` fixture), with the hand-made client of
tests/test_http2.py where frames matter and httpx where a real client is enough.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

pytest.importorskip("h2")

import httpx
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from tests import test_extensions
from tests.apps import basic
from tests.conftest import run_server
from tests.test_http2 import CANCEL, NO_ERROR, PREFACE, RawH2, h2c_client

INTERNAL_ERROR = 2
FILE = bytes(range(256)) * 800  # 200 KiB: more than a stream window and than a file piece
ERRORS: list = []  # (kind, message) of errors the app caught or raised


async def app(scope, receive, send):
    """tests/test_extensions.py's app, plus file endpoints (pathsend, zerocopysend)."""
    path = scope.get("path", "")
    if scope["type"] != "http" or not path.startswith("/file"):
        await test_extensions.app(scope, receive, send)
        return
    name = scope["query_string"].decode()
    error = b""
    try:
        if path == "/file-path":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.pathsend", "path": name})
        elif path == "/file-path-cl":  # a content-length that is not the file's size
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.pathsend", "path": name})
        elif path == "/file-after-body":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"body;", "more_body": True})
            try:
                await send({"type": "http.response.pathsend", "path": name})
            except RuntimeError as exc:
                error = str(exc).encode()
            await send({"type": "http.response.body", "body": error})
        elif path == "/file-zerocopy":
            with open(name, "rb") as f:  # noqa: ASYNC230 (a test's small local file)
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send(
                    {"type": "http.response.zerocopysend", "file": f, "offset": 10, "count": 100, "more_body": True}
                )
                # from the file's position (0), which moves past what was sent
                await send({"type": "http.response.zerocopysend", "file": f, "count": 50, "more_body": True})
                await send({"type": "http.response.body", "body": b"|%d" % f.tell()})
        elif path == "/file-zerocopy-long":  # more than the content-length: cut, and the stream reset
            with open(name, "rb") as f:  # noqa: ASYNC230 (a test's small local file)
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"20")]})
                try:
                    await send({"type": "http.response.zerocopysend", "file": f, "count": 100})
                except RuntimeError as exc:
                    ERRORS.append(("zerocopy-long", str(exc)))
    except RuntimeError as exc:
        ERRORS.append(("file-error", str(exc)))
        raise


@pytest.fixture(scope="module")
def server(impl):
    with run_server(app, impl, http2=True, server_header=False, date_header=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("h2files") / "big.bin"
    path.write_bytes(FILE)
    return path


def stream_frames(h: RawH2, stream_id: int) -> tuple[list, bool]:
    """The frames of one stream until it ends (END_STREAM or RST_STREAM); (frames, closed)."""
    frames, closed = h.read_until(
        lambda f: f.stream_id == stream_id and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame))
    )
    return [f for f in frames if f.stream_id == stream_id], closed


def headers_of(frame) -> dict:
    return dict(frame.decoded)


# -- which extensions a stream is offered ---------------------------------------------------


def test_extensions_offered(server):
    with h2c_client() as c:
        view = c.get(f"{server.url}/ext").json()
    assert view == {"keys": sorted([*test_extensions.ALWAYS, "http.response.trailers"]), "tls": None}


def test_tls_extension(impl, tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    d = tmp_path_factory.mktemp("h2exttls")
    cert.private_key_pem.write_to_path(d / "key.pem")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    ca.cert_pem.write_to_path(d / "ca.pem")
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    with run_server(app, impl, http2=True, ssl_certfile=str(d / "cert.pem"), ssl_keyfile=str(d / "key.pem")) as srv:
        with httpx.Client(http2=True, verify=ctx, timeout=10) as c:
            r2 = c.get(f"{srv.url}/ext")
        with httpx.Client(verify=ctx, timeout=10) as c:
            r1 = c.get(f"{srv.url}/ext")
    assert r2.http_version == "HTTP/2" and r1.http_version == "HTTP/1.1"
    tls2, tls1 = r2.json()["tls"], r1.json()["tls"]
    assert "tls" in r2.json()["keys"]
    assert tls2["server_cert"] and tls2["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert tls2["tls_version"] == tls1["tls_version"] and tls2["tls_version"] >= 0x0303
    assert tls2 == tls1  # the same TLS information as HTTP/1.1 gives


# -- http.response.trailers -----------------------------------------------------------------


def test_trailers_after_the_data(server):
    ended = set()

    def both_ended(f) -> bool:
        if f.stream_id and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame)):
            ended.add(f.stream_id)
        return ended == {1, 3}

    with RawH2(server.port) as h:
        h.send(h.headers(1, "/trailers"), h.headers(3, "/trailers-one"))
        frames, _ = h.read_until(both_ended)  # (the two streams' frames may interleave)
    first = [f for f in frames if f.stream_id == 1]
    second = [f for f in frames if f.stream_id == 3]
    for frames, length in ((first, None), (second, b"11")):
        head, *data, trailers = frames
        assert isinstance(head, HeadersFrame) and "END_STREAM" not in head.flags
        fields = headers_of(head)
        assert fields[b":status"] == b"200" and fields[b"trailer"] == b"x-checksum, x-count"
        assert fields.get(b"content-length") == length  # HTTP/2 needs no chunked framing for trailers
        assert all(isinstance(f, DataFrame) and "END_STREAM" not in f.flags for f in data)
        assert b"".join(f.data for f in data) == b"hello world"
        # one trailer block ends the stream; the framing field the app put there was dropped
        assert isinstance(trailers, HeadersFrame) and "END_STREAM" in trailers.flags
        assert trailers.decoded == [(b"x-checksum", b"abc"), (b"x-count", b"2")]


def test_trailers_head_request(server):
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/trailers", method="HEAD"))
        frames, _ = stream_frames(h, 1)
    # no content, no trailers: the head, then an empty DATA frame ends the stream
    assert isinstance(frames[0], HeadersFrame) and headers_of(frames[0])[b":status"] == b"200"
    assert [(type(f), f.data) for f in frames[1:]] == [(DataFrame, b"")] and "END_STREAM" in frames[-1].flags


@pytest.mark.parametrize(
    "path, error",
    [
        ("/trailers-body-after", b"Expected ASGI message 'http.response.trailers', but got 'http.response.body'."),
        ("/trailers-bad-field", b"Invalid response trailer value b'a\\r\\nx-evil: 1' for b'x-checksum'"),
    ],
)
def test_trailers_misuse_refused(server, path, error):
    with RawH2(server.port) as h:
        h.send(h.headers(1, path))
        frames, _ = stream_frames(h, 1)
    assert b"".join(f.data for f in frames if isinstance(f, DataFrame)) == b"ok"
    assert frames[-1].decoded == [(b"x-error", error)] and "END_STREAM" in frames[-1].flags


def test_trailers_never_sent_reset_the_stream(server):
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/trailers-never"))
        frames, _ = stream_frames(h, 1)
        h.send(h.headers(3, "/ext"))  # the connection goes on
        status, _, _ = h.response(3)
    # the stream is reset, not ended as if it had no trailers (the body sent before the
    # reset may or may not have left: a library may drop DATA it had queued)
    assert b"".join(f.data for f in frames if isinstance(f, DataFrame)) in (b"ok", b"")
    assert not [f for f in frames if "END_STREAM" in f.flags]
    assert isinstance(frames[-1], RstStreamFrame) and frames[-1].error_code == INTERNAL_ERROR
    assert status == 200


# -- http.response.early_hint ---------------------------------------------------------------


def test_early_hints_are_103_headers(server):
    with RawH2(server.port) as h:
        h.send(h.headers(1, "/hints"))
        frames, _ = stream_frames(h, 1)
    heads = [f.decoded for f in frames if isinstance(f, HeadersFrame)]
    assert heads[0] == [(b":status", b"103"), (b"link", b"</style.css>; rel=preload; as=style")]
    assert heads[1] == [
        (b":status", b"103"),
        (b"link", b"</app.js>; rel=preload; as=script"),
        (b"link", b"</f.woff2>; rel=preload; as=font"),
    ]
    assert heads[2][0] == (b":status", b"200") and len(heads) == 3
    assert frames[-1].data == b"hinted" and "END_STREAM" in frames[-1].flags


def test_early_hint_misuse_refused(server):
    with h2c_client() as c:
        bad = c.get(f"{server.url}/hints-bad").text
        late = c.get(f"{server.url}/hints-late").text
    # the same errors as over HTTP/1.1
    assert bad.split("\n") == [
        "Invalid early hint link value b'</a.css>\\r\\nx-evil: 1' for b'link'",
        "'links' of http.response.early_hint must be an iterable of byte strings",
        "Early hint link values must be bytes, got str",
    ]
    assert late == "head out;Expected ASGI message 'http.response.body', but got 'http.response.early_hint'."


# -- files: http.response.pathsend and http.response.zerocopysend -----------------------------


def test_pathsend(server, big_file):
    with h2c_client() as c:
        r = c.get(f"{server.url}/file-path?{big_file}")
        head = c.head(f"{server.url}/file-path?{big_file}")
    assert r.http_version == "HTTP/2" and r.content == FILE
    assert r.headers["content-length"] == str(len(FILE))
    assert head.content == b"" and head.headers["content-length"] == str(len(FILE))


def test_pathsend_follows_the_client_windows(server, big_file):
    """A client whose stream window is 1000 bytes gets 1000 bytes of the file, then the rest
    as it opens its window: the file is sent as flow control allows (RFC 9113 §6.9)."""
    with RawH2(server.port, preface=False) as h:
        h.send(PREFACE + SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1000}).serialize())
        h.send(h.headers(1, f"/file-path?{big_file}"))
        frames, _ = h.read_until(lambda f: isinstance(f, DataFrame))
        got = frames[-1].data
        while len(got) < 1000:
            frames, _ = h.read_until(lambda f: isinstance(f, DataFrame))
            got += frames[-1].data
        h.send(PingFrame(0, opaque_data=b"window00"))
        frames, _ = h.read_until(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
        assert not [f for f in frames if isinstance(f, DataFrame)] and got == FILE[:1000]
        rest = len(FILE) - 1000
        h.send(WindowUpdateFrame(1, window_increment=rest), WindowUpdateFrame(0, window_increment=rest))
        frames, _ = stream_frames(h, 1)
    body = got + b"".join(f.data for f in frames if isinstance(f, DataFrame))
    assert body == FILE and "END_STREAM" in frames[-1].flags


def test_pathsend_errors(server, big_file, tmp_path):
    ERRORS.clear()
    with h2c_client() as c:
        missing = c.get(f"{server.url}/file-path?{tmp_path / 'nope'}")
        mismatch = c.get(f"{server.url}/file-path-cl?{big_file}")
        after = c.get(f"{server.url}/file-after-body?{big_file}")
    assert missing.status_code == 500 and mismatch.status_code == 500  # nothing was sent before
    errors = [message for kind, message in ERRORS if kind == "file-error"]
    assert "cannot open" in errors[0] and f"is not the size of {str(big_file)!r}" in errors[1]
    assert after.text == "body;ASGI message 'http.response.pathsend' cannot follow 'http.response.body'."


def test_zerocopysend(server, big_file):
    ERRORS.clear()
    with h2c_client() as c:
        r = c.get(f"{server.url}/file-zerocopy?{big_file}")
        with pytest.raises(httpx.RemoteProtocolError):  # cut at the content-length, the stream reset
            c.get(f"{server.url}/file-zerocopy-long?{big_file}")
    assert r.content == FILE[10:110] + FILE[:50] + b"|50"
    assert "content-length" not in r.headers
    assert [m for kind, m in ERRORS if kind == "zerocopy-long"] == [
        (
            "Response content longer than Content-Length (100 > 20 bytes); the excess was not sent and the stream "
            "was reset."
        )
    ]


# -- --timeout-request-body, per stream ---------------------------------------------------------


def test_stalled_body_times_out_its_stream_only(impl):
    with run_server(basic.app, impl, http2=True, timeout_request_body=0.5) as srv, RawH2(srv.port) as h:
        # stream 1: a POST whose body stops after 3 bytes (the app reads them and waits)
        h.send(h.headers(1, "/echo", end_stream=False, method="POST"), DataFrame(1, data=b"abc"))
        # stream 3, meanwhile, is served
        h.send(h.headers(3, "/"))
        assert h.response(3)[:2] == (200, b"Hello, world!")
        frames, closed = stream_frames(h, 1)
        assert not closed
        head = next(f for f in frames if isinstance(f, HeadersFrame))
        assert headers_of(head)[b":status"] == b"408"
        assert b"".join(f.data for f in frames if isinstance(f, DataFrame)) == b"Request Timeout"
        # the rest of the request is not wanted (RFC 9113 §8.1)
        more, _ = h.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1)
        assert more[-1].error_code in (NO_ERROR, CANCEL)
        # and the connection goes on
        h.send(h.headers(5, "/"))
        assert h.response(5)[:2] == (200, b"Hello, world!")
