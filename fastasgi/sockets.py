"""Listening sockets bound in this process: TCP, UNIX, an inherited fd, and SO_REUSEPORT groups.

The supervisors (``--workers``, ``--reload``) bind here, in the parent, and hand the
sockets to the worker processes they spawn; a single server binds uvicorn's one
listener (``--host/--port``, ``--uds``, ``--fd``) through the event loop instead
(``Server.startup``), and several listeners here.  Several listeners come from a
repeated ``--bind`` (:func:`parse_bind`) or from systemd's socket activation
(:func:`fastasgi.systemd.listen_fds`); :func:`listener_plan` says which apply.
Every bind failure is a :class:`ConfigError`: one readable line for the operator.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from fastasgi.errors import ConfigError
from fastasgi.systemd import listen_fds

_ADDRESS_IN_USE = (98, 48, 10048)  # EADDRINUSE on Linux, macOS, Windows


@dataclass(frozen=True)
class BindAddress:
    """One ``--bind`` address (or one socket passed by systemd): ``kind`` is tcp, unix or fd."""

    kind: str
    host: str = ""  # tcp: the address without brackets
    port: int = 0
    path: str = ""
    fd: int = -1
    name: str = ""  # fd from systemd: its LISTEN_FDNAMES entry

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


BIND_FORMS = "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"


def parse_bind(text: str) -> BindAddress:
    """``--bind`` syntax (gunicorn's, with the port required): 127.0.0.1:8000, [::1]:8000,
    unix:/run/app.sock, fd://3."""

    def invalid(why: str) -> ConfigError:
        return ConfigError(f"Invalid --bind {text!r}: {why} (expected {BIND_FORMS})")

    if not isinstance(text, str) or not text:
        raise invalid("empty")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise invalid("no socket path after 'unix:'")
        return BindAddress("unix", path=path)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not number.isdigit():
            raise invalid("the file descriptor must be a number")
        return BindAddress("fd", fd=int(number))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise invalid("an IPv6 address in brackets must be followed by :PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise invalid("no port")
        if ":" in host:
            raise invalid("put an IPv6 address in brackets, e.g. [::1]:8000")
        if not host:
            raise invalid("no host (0.0.0.0:PORT listens on every IPv4 address, [::]:PORT on every IPv6 one)")
    if not port.isdigit() or int(port) > 65535:
        raise invalid(f"the port must be a number from 0 to 65535, not {port!r}")
    return BindAddress("tcp", host=host, port=int(port))


def check_binds(addresses: list[BindAddress]) -> None:
    """The same listener twice is an operator mistake (port 0 picks a new port each time: not a duplicate)."""
    seen: set[BindAddress] = set()
    for address in addresses:
        if address.kind == "tcp" and address.port == 0:
            continue
        if address in seen:
            raise ConfigError(f"--bind {address} is given twice")
        seen.add(address)


def listener_plan(config: Any) -> list[BindAddress] | None:
    """The listeners when they are not uvicorn's single one.

    ``--bind`` addresses; else, without ``--uds``/``--fd``, the sockets systemd passed
    to this process (socket activation, in place of ``--host``/``--port``); else None:
    ``--host``/``--port``, ``--uds`` or ``--fd``, bound as uvicorn binds them.
    """
    addresses = getattr(config, "bind_addresses", None)
    if addresses:
        return list(addresses)
    if config.uds or config.fd is not None:
        return None
    activated = listen_fds()
    if activated:
        return [BindAddress("fd", fd=fd, name=name) for fd, name in activated]
    return None


def bind_sockets(config: Any) -> list[socket.socket]:
    """Every listening socket ``config`` names (see :func:`listener_plan`), inheritable."""
    plan = listener_plan(config)
    if plan is None:
        return [bind_socket(config)]
    sockets: list[socket.socket] = []
    try:
        for address in plan:
            sockets.append(bind_address(config, address))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def remove_unix_binds(config: Any) -> None:
    """Remove the socket files of ``--bind unix:PATH`` (by the process that bound them, once
    it closed them: a server that stops on a signal ends by re-raising it, so the CLI's own
    clean-up never runs then)."""
    for address in getattr(config, "bind_addresses", ()):
        if address.kind == "unix":
            with contextlib.suppress(OSError):
                os.remove(address.path)


def bind_address(config: Any, address: BindAddress) -> socket.socket:
    if address.kind == "unix":
        sock = _bind_unix(address.path, config.backlog)
    elif address.kind == "fd":
        sock = _from_fd(address, config.backlog)
    else:
        sock = _bind_tcp(config, address.port, reuse_port=False, host=address.host)
    sock.set_inheritable(True)
    return sock


def _from_fd(address: BindAddress, backlog: int) -> socket.socket:
    label = f"fd {address.fd}" + (f" ({address.name})" if address.name else "")
    try:
        sock = socket.socket(fileno=os.dup(address.fd))
    except OSError as exc:
        raise ConfigError(f"Could not use {label} as a listening socket: {exc.strerror or exc}") from None
    try:
        if sock.type != socket.SOCK_STREAM:
            raise ConfigError(f"Could not use {label}: not a stream socket")
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Could not listen on {label}: {exc.strerror or exc}") from None
    except ConfigError:
        sock.close()
        raise
    return sock


def describe_listener(sock: socket.socket, ssl: bool) -> str:
    """``http://127.0.0.1:8000``, ``https://[::1]:8443`` or ``unix socket /run/app.sock``."""
    name = sock.getsockname()
    if sock.family == getattr(socket, "AF_UNIX", None):
        return f"unix socket {name}"
    scheme = "https" if ssl else "http"
    host, port = name[0], name[1]
    return f"{scheme}://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{scheme}://{host}:{port}"


def bind_socket(config: Any) -> socket.socket:
    """Bind the listening socket ``config`` names (``uds``, ``fd``, else ``host``/``port``), inheritable."""
    if config.uds:
        sock = _bind_unix(config.uds, config.backlog)
    elif config.fd is not None:
        sock = socket.socket(fileno=os.dup(config.fd))
        sock.listen(config.backlog)
    else:
        sock = _bind_tcp(config, config.port, reuse_port=False)
    sock.set_inheritable(True)
    return sock


def bind_reuseport_socket(config: Any, port: int) -> socket.socket:
    """One listening socket of a SO_REUSEPORT group (``--reuse-port``), inheritable."""
    sock = _bind_tcp(config, port, reuse_port=True)
    sock.set_inheritable(True)
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Could not bind to UNIX socket {path!r}: {exc.strerror or exc}") from None
    sock.listen(backlog)
    return sock


def _bind_tcp(config: Any, port: int, reuse_port: bool, host: str | None = None) -> socket.socket:
    # --host as given (uvicorn's error line); a --bind IPv6 address in its brackets
    where = config.host if host is None else (f"[{host}]" if ":" in host else host)
    if host is None:
        host = config.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # type: ignore[attr-defined]
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(config.backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Could not bind to {where}:{port}: {exc.strerror or exc}"
            + (" (is another server running on that port?)" if exc.errno in _ADDRESS_IN_USE else "")
        ) from None
    return sock


__all__ = [
    "BindAddress",
    "bind_address",
    "bind_reuseport_socket",
    "bind_socket",
    "bind_sockets",
    "check_binds",
    "describe_listener",
    "listener_plan",
    "parse_bind",
    "remove_unix_binds",
]
