"""Supervisors: --reload (watchfiles) and --workers (multiprocess)."""

from __future__ import annotations

from typing import Any


def run_reloader(config: Any, server: Any) -> None:
    from fastasgi.config import ConfigError

    raise ConfigError("--reload is not available in this build yet")


def run_multiprocess(config: Any) -> None:
    from fastasgi.config import ConfigError

    raise ConfigError("--workers is not available in this build yet")
