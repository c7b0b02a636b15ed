"""Errors and constants every layer shares: the leaf of fastasgi's imports.

Anything that protocols, loops, middleware, the server, the supervisors and the
CLI all need lives here, so that none of them imports :mod:`fastasgi.config`
(which loads them) just for a name.  This module imports nothing from fastasgi.
"""

from __future__ import annotations

TRACE_LOG_LEVEL = 5
"""``--log-level trace``: below DEBUG; logs every ASGI message (see ``middleware/message_logger.py``)."""

STARTUP_FAILURE = 3
"""Exit status of a server that could not start (bad app, port in use, lifespan failure)."""


class ConfigError(Exception):
    """An operator mistake in the configuration: reported as one line, exit status 3 (or 2 on the CLI)."""


__all__ = ["STARTUP_FAILURE", "TRACE_LOG_LEVEL", "ConfigError"]
