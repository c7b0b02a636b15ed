"""Listening sockets bound in this process: TCP, UNIX, an inherited fd, and SO_REUSEPORT groups.

The supervisors (``--workers``, ``--reload``) bind here, in the parent, and hand the
sockets to the worker processes they spawn; a single server binds through the event
loop instead (``Server.startup``).  Every bind failure is a :class:`ConfigError`:
one readable line for the operator.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

from fastasgi.errors import ConfigError

_ADDRESS_IN_USE = (98, 48, 10048)  # EADDRINUSE on Linux, macOS, Windows


def bind_socket(config: Any) -> socket.socket:
    """Bind the listening socket ``config`` names (``uds``, ``fd``, else ``host``/``port``), inheritable."""
    if config.uds:
        path = config.uds
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        try:
            sock.bind(path)
            os.chmod(path, 0o666)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"Could not bind to UNIX socket {path!r}: {exc.strerror or exc}") from None
        sock.listen(config.backlog)
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


def _bind_tcp(config: Any, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # type: ignore[attr-defined]
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((config.host.strip("[]"), port))
        sock.listen(config.backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Could not bind to {config.host}:{port}: {exc.strerror or exc}"
            + (" (is another server running on that port?)" if exc.errno in _ADDRESS_IN_USE else "")
        ) from None
    return sock


__all__ = ["bind_reuseport_socket", "bind_socket"]
