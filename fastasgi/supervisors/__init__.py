"""Supervisors: ``--reload`` (:mod:`.reload`) and ``--workers`` (:mod:`.multiprocess`).

Both bind the listening socket in the parent and run the server in processes
started with the ``spawn`` method (:mod:`.worker` is the child side).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastasgi.errors import STARTUP_FAILURE, ConfigError
from fastasgi.supervisors.multiprocess import run_multiprocess as _run_multiprocess
from fastasgi.supervisors.reload import run_reloader as _run_reloader

logger = logging.getLogger("uvicorn.error")


def run_reloader(config: Any, server: Any = None) -> None:
    """``--reload``: restart the server whenever a watched file changes."""
    if config.workers > 1:
        logger.error(
            "--reload and --workers cannot be combined: --reload runs one server process and restarts it on "
            "changes (for development); drop --workers (or WEB_CONCURRENCY) to reload, or --reload to run workers."
        )
        sys.exit(STARTUP_FAILURE)
    try:
        _run_reloader(config, server)
    except ConfigError as exc:
        logger.error("%s", exc)
        sys.exit(STARTUP_FAILURE)


def run_multiprocess(config: Any, sockets: Any = None) -> None:
    """``--workers N``: supervise N worker processes."""
    _run_multiprocess(config, sockets)


__all__ = ["run_multiprocess", "run_reloader"]
