"""uvicorn's ``protocols.utils`` name for the connection helpers, which live in :mod:`fastasgi.connection`."""

from __future__ import annotations

from fastasgi.connection import (
    error_response,
    format_client,
    get_local_addr,
    get_remote_addr,
    is_ssl,
    trust_key,
)

__all__ = ["error_response", "format_client", "get_local_addr", "get_remote_addr", "is_ssl", "trust_key"]
