"""fastasgi: an ASGI server, a drop-in replacement for uvicorn with a compiled hot path."""

from __future__ import annotations

__version__ = "0.1.0"

from fastasgi.config import Config
from fastasgi.server import Server

__all__ = ["Config", "Server", "__version__", "main", "run"]


def __getattr__(name: str):  # lazy: importing click is not needed to use Config/Server
    if name in ("run", "main"):
        from fastasgi import cli

        return getattr(cli, name)
    raise AttributeError(f"module 'fastasgi' has no attribute {name!r}")
