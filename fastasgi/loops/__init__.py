"""Event-loop factories: ``auto`` (uvloop when importable on CPython), ``asyncio``, ``uvloop``, or ``module:callable``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable

from fastasgi.errors import ConfigError
from fastasgi.importer import ImportFromStringError, import_from_string


def asyncio_loop_factory() -> asyncio.AbstractEventLoop:
    if sys.platform == "win32":  # pragma: no cover
        return asyncio.ProactorEventLoop()
    return asyncio.SelectorEventLoop()


def uvloop_loop_factory() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def resolve_loop_factory(loop: Any) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Returns a zero-argument factory for the configured loop (None: leave the running loop alone)."""
    if callable(loop) and not isinstance(loop, str):
        return loop
    if loop == "none":
        return None
    if loop == "asyncio":
        return asyncio_loop_factory
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ConfigError(
                "--loop uvloop needs uvloop: pip install uvloop (not available on PyPy/Windows)"
            ) from None
        return uvloop_loop_factory
    if loop == "auto":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return asyncio_loop_factory
        return uvloop_loop_factory
    try:
        factory = import_from_string(loop)
    except ImportFromStringError as exc:
        raise ConfigError(f"Error loading custom loop setup function. {exc}") from None
    if not callable(factory):
        raise ConfigError(f"Custom loop factory {loop!r} is not callable")
    return factory  # type: ignore[no-any-return]


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    if loop is None:
        return "none"
    mod = type(loop).__module__
    return "uvloop" if mod.startswith("uvloop") else "asyncio"
