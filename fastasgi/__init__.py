"""fastasgi: an ASGI server, a drop-in replacement for uvicorn with a compiled hot path."""

from __future__ import annotations

from fastasgi._version import __version__
from fastasgi.config import Config
from fastasgi.server import Server

__all__ = ["Config", "Server", "__version__", "main", "run"]


def __getattr__(name: str):  # lazy: Config/Server users need not build the click command or load the supervisors
    if name in ("run", "main"):
        from fastasgi import cli

        return getattr(cli, name)
    raise AttributeError(f"module 'fastasgi' has no attribute {name!r}")
