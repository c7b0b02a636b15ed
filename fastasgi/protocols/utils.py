"""uvicorn's ``protocols.utils`` names; the connection helpers live in :mod:`fastasgi.connection`."""

from __future__ import annotations

from fastasgi.connection import get_local_addr, get_remote_addr, is_ssl

__all__ = ["get_local_addr", "get_remote_addr", "is_ssl"]
