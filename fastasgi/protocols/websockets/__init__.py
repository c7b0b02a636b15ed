"""The WebSocket protocol factory: ``auto`` (websockets, else wsproto), ``websockets``, ``wsproto`` or ``none``."""

from __future__ import annotations

from typing import Any

from fastasgi.errors import ConfigError
from fastasgi.importer import ImportFromStringError, import_from_string


def resolve_ws_protocol(ws: Any) -> Any:
    if not isinstance(ws, str):
        return ws
    if ws == "none":
        return None
    if ws in ("websockets", "websockets-sansio"):
        try:
            from fastasgi.protocols.websockets.websockets_impl import WebSocketProtocol
        except ImportError as exc:
            raise ConfigError(f"--ws websockets needs the websockets package: {exc}") from None
        return WebSocketProtocol
    if ws == "wsproto":
        try:
            from fastasgi.protocols.websockets.wsproto_impl import WSProtocol
        except ImportError as exc:
            raise ConfigError(f"--ws wsproto needs the wsproto package: {exc}") from None
        return WSProtocol
    if ws == "auto":
        try:
            from fastasgi.protocols.websockets.websockets_impl import WebSocketProtocol

            return WebSocketProtocol
        except ImportError:
            pass
        try:
            from fastasgi.protocols.websockets.wsproto_impl import WSProtocol

            return WSProtocol
        except ImportError:
            return None
    try:
        return import_from_string(ws)
    except ImportFromStringError as exc:
        raise ConfigError(f"Error loading WebSocket protocol class. {exc}") from None


def ws_library_name(protocol_class: Any) -> str:
    if protocol_class is None:
        return "none"
    mod = getattr(protocol_class, "__module__", "")
    if "wsproto" in mod:
        return "wsproto"
    if "websockets" in mod:
        return "websockets"
    return mod
