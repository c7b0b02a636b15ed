"""Connection helpers and error pages shared by the HTTP request cycle and the WebSocket protocols.

Not hot, so written once in plain Python for both implementation sets: the
compiled and pure HTTP protocols (``fastasgi._speedups.http_*``) and the
WebSocket protocols import them from here.  A leaf: it imports nothing from fastasgi.
(``fastasgi.protocols.utils``, uvicorn's name for this module, re-exports them.)
"""

from __future__ import annotations

import asyncio
import binascii
import http
import re
import socket
import ssl
from typing import Any


def get_remote_addr(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            if sock.family == socket.AF_UNIX:
                return None
            info = sock.getpeername()
            return (str(info[0]), int(info[1])) if isinstance(info, (list, tuple)) else None
        except (OSError, AttributeError, TypeError):  # pragma: no cover
            pass
    info = transport.get_extra_info("peername")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def get_local_addr(transport: asyncio.BaseTransport) -> tuple[str, int | None] | None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            info = sock.getsockname()
        except (OSError, AttributeError):  # pragma: no cover
            info = None
        if isinstance(info, (list, tuple)) and len(info) >= 2:
            return (str(info[0]), int(info[1]))
        if isinstance(info, str):  # UNIX socket: the path, no port
            return (info, None)
        return None
    info = transport.get_extra_info("sockname")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def is_ssl(transport: asyncio.BaseTransport) -> bool:
    return bool(transport.get_extra_info("sslcontext"))


# -- the ASGI TLS extension (scope["extensions"]["tls"]) --------------------------------


def server_cert_pem(certfile: Any) -> str | None:
    """The server's own certificate for ``server_cert``: the first certificate in
    ``--ssl-certfile`` (the leaf; the file may also hold the chain and the key), as PEM.

    Python's ``ssl`` has no accessor for the certificate a context serves, so it is
    read from the file the context was loaded from, once, when the config loads.
    """
    if not certfile:
        return None
    try:
        with open(certfile, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        return None
    try:
        # through DER and back: the canonical PEM text, whatever the file's line layout
        der = ssl.PEM_cert_to_DER_cert(text[begin : end + len("-----END CERTIFICATE-----")])
        return ssl.DER_cert_to_PEM_cert(der)
    except ValueError:
        return None


# RFC 4514 §3: the attribute types written by their short name; any other by its OID
_RFC4514_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_attribute_types: dict[str, str] = {}  # ssl's (OpenSSL's long) name -> RFC 4514 type


def _rfc4514_type(name: str) -> str:
    found = _attribute_types.get(name)
    if found is None:
        try:
            # ssl names the attribute by OpenSSL's long name (e.g. "commonName"), or by its
            # dotted OID when OpenSSL does not know it; _ASN1Object resolves either to the OID
            oid = ssl._ASN1Object.fromname(name).oid
        except (ValueError, AttributeError):
            oid = name
        found = _RFC4514_NAMES.get(oid, oid)
        _attribute_types[name] = found
    return found


def _rfc4514_value(value: str) -> str:
    """RFC 4514 §2.4: escape the characters special in a DN string."""
    out = []
    for ch in value:
        if ch in '"+,;<>\\':
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    if out and out[0] in ("#", " "):
        out[0] = "\\" + out[0]
    if out and out[-1] == " ":
        out[-1] = "\\ "
    return "".join(out)


def rfc4514_name(subject: Any) -> str:
    """``getpeercert()["subject"]`` (RDNs most significant first, each a tuple of
    ``(type, value)`` pairs) as an RFC 4514 string: RDNs in reverse order, joined by
    ",", the attributes of a multi-valued RDN by "+"."""
    return ",".join(
        "+".join(f"{_rfc4514_type(name)}={_rfc4514_value(value)}" for name, value in rdn) for rdn in reversed(subject)
    )


_cipher_ids: dict[str, int] = {}  # OpenSSL cipher name -> IANA TLS cipher suite number


def cipher_suite_id(ssl_object: Any, name: str) -> int | None:
    """The IANA number of the cipher suite OpenSSL calls ``name``.

    ``SSLContext.get_ciphers()`` gives each cipher's OpenSSL id, whose low 16 bits
    are the two bytes of the TLS CipherSuite (RFC 8446 §B.4, RFC 5246 §A.5); the
    negotiated cipher is one of the context's, so its table has it.
    """
    found = _cipher_ids.get(name)
    if found is None:
        try:
            for cipher in ssl_object.context.get_ciphers():
                _cipher_ids[cipher["name"]] = cipher["id"] & 0xFFFF
        except (AttributeError, KeyError, TypeError, ssl.SSLError):
            return None
        found = _cipher_ids.get(name)
    return found


def tls_version_code(version: str | None) -> int | None:
    """``SSLObject.version()`` ("TLSv1.3") -> the version number (0x0304): the values of
    ``ssl.TLSVersion`` are the protocol's version numbers (RFC 8446 §4.2.1)."""
    if not version:
        return None
    try:
        return int(ssl.TLSVersion[version.replace(".", "_")])
    except KeyError:
        return None


def tls_extension(transport: asyncio.BaseTransport, server_cert: str | None) -> dict[str, Any]:
    """The ASGI TLS extension's dict for a TLS connection (asgiref specs/tls.rst, 0.2).

    Built once per connection, after the handshake (asyncio and uvloop call
    ``connection_made`` once it is done).  ``client_cert_chain`` is the chain the
    server verified, client certificate first, on Python 3.13+
    (``SSLObject.get_verified_chain``); before, the client certificate alone.
    ``client_cert_error`` is always None: ``ssl`` fails the handshake on a
    certificate it cannot verify, so no connection has one.
    """
    info: dict[str, Any] = {
        "server_cert": server_cert,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return info
    try:
        leaf = ssl_object.getpeercert(binary_form=True)
        if leaf:
            chain = None
            get_chain = getattr(ssl_object, "get_verified_chain", None)  # 3.13+
            if get_chain is not None:
                chain = get_chain()
            if not chain or chain[0] != leaf:
                chain = [leaf]
            info["client_cert_chain"] = [ssl.DER_cert_to_PEM_cert(der) for der in chain]
            subject = ssl_object.getpeercert().get("subject")
            if subject is not None:
                info["client_cert_name"] = rfc4514_name(subject)
        info["tls_version"] = tls_version_code(ssl_object.version())
        cipher = ssl_object.cipher()
        if cipher:
            info["cipher_suite"] = cipher_suite_id(ssl_object, cipher[0])
    except (ssl.SSLError, ValueError, AttributeError):  # pragma: no cover - a transport closing meanwhile
        pass
    return info


def trust_key(transport: asyncio.BaseTransport, client: tuple[str, int] | None) -> str | None:
    """What proxy trust is decided on: the peer IP, or the socket path for UNIX sockets."""
    if client is not None:
        return client[0]
    local = get_local_addr(transport)
    return local[0] if local else None


def error_response(status: int, message: str) -> bytes:
    """A complete ``text/plain`` error response that closes the connection."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:  # pragma: no cover
        phrase = ""
    body = message.encode("utf-8")
    return (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode("latin-1") + body


# RFC 7540 §3.2.1: HTTP2-Settings = token68, the base64url of a SETTINGS payload (RFC 4648 §5)
_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*={0,2}")
# RFC 7540 §3.2 / §3.2.1: the connection-specific fields of an h2c upgrade request,
# which do not belong to the HTTP/2 request it becomes (RFC 9113 §8.2.2)
H2C_REQUEST_FIELDS = frozenset(
    (b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"proxy-connection", b"transfer-encoding")
)


def h2c_settings(value: bytes) -> bytes | None:
    """The SETTINGS payload an ``HTTP2-Settings`` field carries, or None when it is not one.

    RFC 7540 §3.2.1: base64url, padding optional; the payload is a whole number of
    6-byte settings, each with a value RFC 9113 §6.5.2 allows (a server must not
    upgrade on anything else, and the request is then served as HTTP/1.1).
    """
    value = value.strip(b" \t")
    if not _BASE64URL.fullmatch(value):
        return None
    data = value.rstrip(b"=")
    try:
        payload = binascii.a2b_base64(data.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(data) % 4))
    except binascii.Error:
        return None
    if len(payload) % 6:
        return None
    for i in range(0, len(payload), 6):
        ident = int.from_bytes(payload[i : i + 2], "big")
        setting = int.from_bytes(payload[i + 2 : i + 6], "big")
        if (
            (ident == 2 and setting > 1)  # ENABLE_PUSH
            or (ident == 4 and setting > 0x7FFFFFFF)  # INITIAL_WINDOW_SIZE
            or (ident == 5 and not 16384 <= setting <= 0xFFFFFF)  # MAX_FRAME_SIZE
        ):
            return None
    return payload


def h2c_scope_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An h2c upgrade request's fields without the connection-specific ones (and those
    its ``Connection`` names): what the request is, as HTTP/2 stream 1."""
    drop = set(H2C_REQUEST_FIELDS)
    for name, value in headers:
        if name == b"connection":
            drop.update(item.strip(b" \t").lower() for item in value.split(b","))
    return [pair for pair in headers if pair[0] not in drop]


def format_client(client: Any) -> str:
    if not client:
        return ""
    return f"{client[0]}:{client[1]:d}"
