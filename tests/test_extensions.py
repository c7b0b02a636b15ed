"""ASGI extensions over HTTP/1.1: trailers, 103 Early Hints, and the TLS information.

Every case runs through the real server on both implementations (the ``impl``
fixture), with raw sockets where the exact bytes matter and httpx where a real
client's reading matters.  One server per implementation for the plain cases,
one for the TLS cases (``--ssl-cert-reqs 1``: client certificate optional), so
that the module stays cheap.
"""

from __future__ import annotations

import json
import socket
import ssl

import httpx
import pytest

from fastasgi.connection import rfc4514_name
from tests.conftest import raw_request, run_server

TRAILER_HEAD = [(b"trailer", b"x-checksum, x-count")]


def extensions_view(scope: dict) -> dict:
    ext = scope.get("extensions", {})
    return {"keys": sorted(ext), "tls": ext.get("tls")}


async def read_all(receive) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)


async def app(scope, receive, send):  # one app, one branch per scenario
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(extensions_view(scope))})
        await send({"type": "websocket.close"})
        return
    path = scope["path"]
    await read_all(receive)

    async def error_response(exc: BaseException) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(exc).encode()})

    if path == "/ext":
        body = json.dumps(extensions_view(scope)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif path in ("/trailers", "/trailers-one", "/trailers-gen"):
        # (headers may be any iterable: a generator is read once)
        headers = (pair for pair in TRAILER_HEAD) if path == "/trailers-gen" else TRAILER_HEAD
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
        if path == "/trailers":
            await send({"type": "http.response.body", "body": b"hello", "more_body": True})
            await send({"type": "http.response.body", "body": b" world"})
        else:
            await send({"type": "http.response.body", "body": b"hello world"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")], "more_trailers": True})
        # a framing field in trailers is dropped (RFC 9110 §6.5.1)
        await send({"type": "http.response.trailers", "headers": [(b"X-Count", b"2"), (b"content-length", b"99")]})
    elif path == "/trailers-cl":
        try:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")], "trailers": True}
            )
        except RuntimeError as exc:
            await error_response(exc)
    elif path in ("/trailers-body-after", "/trailers-bad-field"):
        await send({"type": "http.response.start", "status": 200, "headers": TRAILER_HEAD, "trailers": True})
        await send({"type": "http.response.body", "body": b"ok"})
        try:
            if path == "/trailers-body-after":
                await send({"type": "http.response.body", "body": b"more"})
            else:
                await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"a\r\nx-evil: 1")]})
        except RuntimeError as exc:
            error = str(exc).replace("\r", "").replace("\n", "").encode()
            await send({"type": "http.response.trailers", "headers": [(b"x-error", error)]})
    elif path == "/trailers-never":
        await send({"type": "http.response.start", "status": 200, "headers": TRAILER_HEAD, "trailers": True})
        await send({"type": "http.response.body", "body": b"ok"})
        # returns without its trailers: the response is incomplete, the connection is closed
    elif path == "/hints":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        # after http.response.start, as the extension's spec words it: the head is not out yet
        await send(
            {
                "type": "http.response.early_hint",
                "links": [b"</app.js>; rel=preload; as=script", b"</f.woff2>; rel=preload; as=font"],
            }
        )
        await send({"type": "http.response.body", "body": b"hinted"})
    elif path == "/hints-bad":
        errors = []
        for links in ([b"</a.css>\r\nx-evil: 1"], "</a.css>", [b"ok", "</a.css>"]):
            try:
                await send({"type": "http.response.early_hint", "links": links})
            except RuntimeError as exc:
                errors.append(str(exc))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": "\n".join(errors).encode()})
    elif path == "/hints-late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"head out;", "more_body": True})
        try:
            await send({"type": "http.response.early_hint", "links": [b"</late.css>; rel=preload"]})
        except RuntimeError as exc:
            await send({"type": "http.response.body", "body": str(exc).encode()})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def server(impl):
    with run_server(app, impl, server_header=False, date_header=False) as srv:
        yield srv


def get(path: str, extra: bytes = b"", version: bytes = b"1.1", close: bool = False) -> bytes:
    return (
        b"GET " + path.encode() + b" HTTP/" + version + b"\r\nHost: t\r\n" + extra
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n"
    )  # fmt: skip


def dechunk(data: bytes) -> bytes:
    """A chunked body (without trailers) -> its content."""
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert data == b"\r\n"
            return out
        out += data[:size]
        assert data[size : size + 2] == b"\r\n"
        data = data[size + 2 :]


def ext_keys(server, extra: bytes = b"", version: bytes = b"1.1") -> list:
    data = raw_request(server.port, get("/ext", extra, version, close=True))
    return json.loads(data.partition(b"\r\n\r\n")[2])["keys"]


# -- which extensions a request is offered -------------------------------------------


ALWAYS = ["http.response.early_hint", "http.response.pathsend", "http.response.zerocopysend"]
WITH_TRAILERS = sorted([*ALWAYS, "http.response.trailers"])


def test_extensions_offered(server):
    assert ext_keys(server) == ALWAYS
    assert ext_keys(server, b"TE: trailers\r\n") == WITH_TRAILERS
    assert ext_keys(server, b"TE: gzip, Trailers\r\n") == WITH_TRAILERS
    # HTTP/1.0 has no chunked framing, hence no trailer section
    assert ext_keys(server, b"TE: trailers\r\n", b"1.0") == ALWAYS
    # no "tls" on a connection without TLS (the TLS extension's spec forbids it)
    assert json.loads(raw_request(server.port, get("/ext", close=True)).partition(b"\r\n\r\n")[2])["tls"] is None


# -- http.response.trailers ----------------------------------------------------------

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntrailer: x-checksum, x-count\r\ntransfer-encoding: chunked\r\n\r\n"
TRAILER_SECTION = b"0\r\nx-checksum: abc\r\nx-count: 2\r\n\r\n"


def test_trailers_follow_the_last_chunk(server):
    # two pipelined requests: the second answer starts right after the trailer section
    data = raw_request(server.port, get("/trailers", b"TE: trailers\r\n") + get("/ext", close=True))
    first = CHUNKED_HEAD + b"5\r\nhello\r\n6\r\n world\r\n" + TRAILER_SECTION
    assert data.startswith(first), data
    assert data[len(first) :].startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("path", ["/trailers-one", "/trailers-gen"])
def test_trailers_make_a_complete_body_chunked(server, path):
    # one body message would get a Content-Length; with trailers the response is chunked
    data = raw_request(server.port, get(path, b"TE: trailers\r\n", close=True))
    head = CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n")
    assert data == head + b"b\r\nhello world\r\n" + TRAILER_SECTION


def test_trailers_not_sent_without_te(server):
    # the client did not say TE: trailers: the app's trailers are dropped (as the
    # extension's spec says), and the response is framed as if it had none
    data = raw_request(server.port, get("/trailers") + get("/trailers-one", close=True))
    first = b"HTTP/1.1 200 OK\r\ntrailer: x-checksum, x-count\r\ntransfer-encoding: chunked\r\n\r\n"
    first += b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    second = b"HTTP/1.1 200 OK\r\ntrailer: x-checksum, x-count\r\ncontent-length: 11\r\nconnection: close\r\n\r\n"
    assert data == first + second + b"hello world"


def test_trailers_not_sent_to_http10(server):
    data = raw_request(server.port, get("/trailers", b"TE: trailers\r\n", b"1.0"))
    assert data == b"HTTP/1.0 200 OK\r\ntrailer: x-checksum, x-count\r\nconnection: close\r\n\r\nhello world"


def test_trailers_head_request(server):
    request = get("/trailers", b"TE: trailers\r\n").replace(b"GET", b"HEAD", 1)
    data = raw_request(server.port, request + get("/ext", close=True))
    # no body, so no framing header and no trailer section
    head = b"HTTP/1.1 200 OK\r\ntrailer: x-checksum, x-count\r\n\r\n"
    assert data.startswith(head + b"HTTP/1.1 200 OK\r\n"), data


def test_trailers_through_httpx(server):
    # a real client reads the chunked body and its trailer section (h11 parses it)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        for _ in range(2):  # the same connection twice: the framing ended where it should
            r = client.get("/trailers", headers={"TE": "trailers"})
            assert r.status_code == 200 and r.text == "hello world"
            assert r.headers["transfer-encoding"] == "chunked"


def test_trailers_with_content_length_refused(server):
    data = raw_request(server.port, get("/trailers-cl", b"TE: trailers\r\n", close=True))
    assert data.startswith(b"HTTP/1.1 500 ")
    assert data.endswith(
        b"Response with 'trailers': True cannot have a Content-Length: HTTP/1.1 sends trailers after a "
        b"chunked body only."
    )


@pytest.mark.parametrize(
    "path, error",
    [
        ("/trailers-body-after", b"Expected ASGI message 'http.response.trailers', but got 'http.response.body'."),
        ("/trailers-bad-field", b"Invalid response trailer value b'a\\r\\nx-evil: 1' for b'x-checksum'"),
    ],
)
def test_trailers_misuse_refused(server, path, error):
    data = raw_request(server.port, get(path, b"TE: trailers\r\n", close=True))
    head = CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n")
    assert data == head + b"2\r\nok\r\n0\r\nx-error: " + error + b"\r\n\r\n"


def test_trailers_never_sent_closes_the_connection(server):
    data = raw_request(server.port, get("/trailers-never", b"TE: trailers\r\n") + get("/ext"))
    # the last chunk, then the connection closes: the message is incomplete, not ended
    # as if there were no trailers, and the pipelined request is not answered
    assert data == CHUNKED_HEAD + b"2\r\nok\r\n0\r\n"


# -- http.response.early_hint --------------------------------------------------------

HINTS = (
    b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nlink: </app.js>; rel=preload; as=script\r\nlink: </f.woff2>; rel=preload; as=font"
    b"\r\n\r\n"
)


def test_early_hints(server):
    data = raw_request(server.port, get("/hints", close=True))
    final = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhinted"
    assert data == HINTS + final


def test_early_hints_never_to_http10(server):
    data = raw_request(server.port, get("/hints", version=b"1.0"))
    assert data == (
        b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhinted"
    )


def test_early_hints_through_httpx(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        for _ in range(2):  # keep-alive after the 103s
            r = client.get("/hints")
            assert (r.status_code, r.text, r.headers["content-type"]) == (200, "hinted", "text/plain")


def test_early_hint_misuse_refused(server):
    data = raw_request(server.port, get("/hints-bad", close=True))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")  # nothing was sent for the bad hints
    assert data.partition(b"\r\n\r\n")[2].decode().split("\n") == [
        "Invalid early hint link value b'</a.css>\\r\\nx-evil: 1' for b'link'",
        "'links' of http.response.early_hint must be an iterable of byte strings",
        "Early hint link values must be bytes, got str",
    ]
    # once the response head is out, a 103 cannot come any more
    head, _, body = raw_request(server.port, get("/hints-late", close=True)).partition(b"\r\n\r\n")
    assert b"103" not in head
    assert dechunk(body) == b"head out;Expected ASGI message 'http.response.body', but got 'http.response.early_hint'."


# -- the TLS extension ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    intermediate = ca.create_child_ca()
    # RFC 4514 special characters in the subject
    client = intermediate.issue_cert(
        "client@example.com", common_name=' #client, "one" + <two>; \\ ', organization_name="Acme Ltd."
    )
    d = tmp_path_factory.mktemp("tls-ext")
    paths = {f"{name}_path": str(d / f"{name}.pem") for name in ("cert", "key", "ca")}
    server_cert.cert_chain_pems[0].write_to_path(paths["cert_path"])
    server_cert.private_key_pem.write_to_path(paths["key_path"])
    ca.cert_pem.write_to_path(paths["ca_path"])
    return {"ca": ca, "intermediate": intermediate, "server": server_cert, "client": client, **paths}


@pytest.fixture(scope="module")
def tls_server(impl, pki):
    with run_server(
        app,
        impl,
        ssl_certfile=pki["cert_path"],
        ssl_keyfile=pki["key_path"],
        ssl_ca_certs=pki["ca_path"],
        ssl_cert_reqs=int(ssl.CERT_OPTIONAL),
    ) as srv:
        yield srv


def client_context(pki, with_cert: bool, tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki["ca"].configure_trust(ctx)
    if with_cert:
        pki["client"].configure_cert(ctx)  # the client certificate and its intermediate
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    return ctx


def der(pem: str | bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem if isinstance(pem, str) else pem.decode())


def test_tls_with_client_certificate(tls_server, pki):
    from cryptography import x509

    with httpx.Client(verify=client_context(pki, with_cert=True)) as client:
        tls = client.get(tls_server.url + "/ext").json()["tls"]
    assert der(tls["server_cert"]) == der(pki["server"].cert_chain_pems[0].bytes())
    leaf = pki["client"].cert_chain_pems[0].bytes()
    issuer = pki["intermediate"].cert_pem.bytes()
    root = pki["ca"].cert_pem.bytes()
    if hasattr(ssl.SSLObject, "get_verified_chain"):  # 3.13+: the chain the server verified
        assert [der(pem) for pem in tls["client_cert_chain"]] == [der(leaf), der(issuer), der(root)]
    else:  # the client certificate alone
        assert [der(pem) for pem in tls["client_cert_chain"]] == [der(leaf)]
    assert all(pem.startswith("-----BEGIN CERTIFICATE-----\n") for pem in tls["client_cert_chain"])
    # RFC 4514, as the cryptography package writes it (escapes included)
    expected_name = x509.load_pem_x509_certificate(leaf).subject.rfc4514_string()
    assert tls["client_cert_name"] == expected_name
    assert tls["client_cert_name"].startswith('CN=\\ #client\\, \\"one\\" \\+ \\<two\\>\\; \\\\\\ ,OU=')
    assert tls["client_cert_error"] is None
    # TLS 1.3 (RFC 8446 §B.4 suites)
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)


def test_tls_version_and_cipher_suite_tls12(tls_server, pki):
    ctx = client_context(pki, with_cert=False, tls12=True)
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            name = sock.cipher()[0]
            sock.sendall(get("/ext", close=True))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    tls = json.loads(data.partition(b"\r\n\r\n")[2])["tls"]
    assert tls["tls_version"] == 0x0303
    # RFC 8422 §6 / RFC 5289: TLS_ECDHE_{ECDSA,RSA}_WITH_AES_128_GCM_SHA256
    assert tls["cipher_suite"] == {"ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B, "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F}[name]


def test_tls_without_client_certificate(tls_server, pki):
    with httpx.Client(verify=client_context(pki, with_cert=False)) as client:
        body = client.get(tls_server.url + "/ext").json()
    assert body["keys"] == [*ALWAYS, "tls"]
    tls = body["tls"]
    assert (tls["client_cert_chain"], tls["client_cert_name"], tls["client_cert_error"]) == ([], None, None)
    assert der(tls["server_cert"]) == der(pki["server"].cert_chain_pems[0].bytes())


def test_tls_in_websocket_scope(tls_server, pki):
    from websockets.sync.client import connect

    url = tls_server.url.replace("https", "wss") + "/ws"
    with connect(url, ssl=client_context(pki, with_cert=True), open_timeout=10) as ws:
        view = json.loads(ws.recv(timeout=10))
    assert view["keys"] == ["tls", "websocket.http.response"]
    assert view["tls"]["client_cert_name"].endswith(",O=Acme Ltd.")
    assert view["tls"]["tls_version"] == 0x0304


def test_tls_client_certificate_required(impl, pki):
    # --ssl-cert-reqs 2 --ssl-ca-certs: a client without a certificate is refused in
    # the handshake; one with a certificate the CA issued reaches the app
    with run_server(
        app,
        impl,
        ssl_certfile=pki["cert_path"],
        ssl_keyfile=pki["key_path"],
        ssl_ca_certs=pki["ca_path"],
        ssl_cert_reqs=int(ssl.CERT_REQUIRED),
    ) as srv:
        with pytest.raises(httpx.HTTPError):
            with httpx.Client(verify=client_context(pki, with_cert=False)) as client:
                client.get(srv.url + "/ext")
        with httpx.Client(verify=client_context(pki, with_cert=True)) as client:
            tls = client.get(srv.url + "/ext").json()["tls"]
    assert tls["client_cert_name"].endswith(",O=Acme Ltd.")


def test_rfc4514_name():
    # getpeercert()'s subject: RDNs most significant first; RFC 4514 reverses them,
    # joins a multi-valued RDN with "+", and writes types without a short name by OID
    subject = (
        (("domainComponent", "org"),),
        (("countryName", "FR"),),
        (("organizationalUnitName", "R&D"), ("userId", "u1")),
        (("emailAddress", "a@b.c"),),
        (("1.2.3.4.5", "x"),),
        (("commonName", "#1 = \x00 "),),
    )
    assert rfc4514_name(subject) == (
        "CN=\\#1 = \\00\\ ,1.2.3.4.5=x,1.2.840.113549.1.9.1=a@b.c,OU=R&D+UID=u1,C=FR,DC=org"
    )
