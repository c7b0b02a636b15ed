"""Lifespan handling: ``on``, ``off`` and ``auto`` (on, but tolerant of apps that do not support it)."""

from __future__ import annotations

from typing import Any

from fastasgi.lifespan.off import LifespanOff
from fastasgi.lifespan.on import LifespanOn


def resolve_lifespan(mode: str) -> Any:
    return LifespanOff if mode == "off" else LifespanOn
