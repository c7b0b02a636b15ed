"""Starting an app's coroutine inside its own contextvars context.

Pure-Python twin of ``coro_c`` (a hand-written ``.pyx``: it calls CPython's C
API, which plain Python cannot).  Both have one function, :func:`start`, with
the same contract; ``http_py.py`` imports the one of its own set.
"""

from __future__ import annotations

from contextvars import Context
from types import CoroutineType
from typing import Any


def _first_step(app: Any, scope: dict, receive: Any, send: Any) -> tuple:
    coro = app(scope, receive, send)
    if type(coro) is not CoroutineType:
        coro = awaitable_iter(coro)
    try:
        return coro, coro.send(None)
    except StopIteration as stop:
        return None, stop.value


def awaitable_iter(obj: Any) -> Any:
    """What ``await obj`` iterates over (``obj`` itself for a generator-based coroutine)."""
    if hasattr(obj, "send") and hasattr(obj, "throw"):
        return obj
    get = getattr(type(obj), "__await__", None)
    if get is None:
        raise TypeError(f"ASGI app returned {type(obj).__name__!r}, which can't be used in 'await' expression")
    return get(obj)


def start(ctx: Context, app: Any, scope: dict, receive: Any, send: Any) -> tuple:
    """Call ``app(scope, receive, send)`` in ``ctx`` and run its coroutine to its first suspension.

    Returns ``(coro, yielded)`` when it suspended (``yielded``: what it passed
    up to the task, e.g. the future it waits for), or ``(None, result)`` when
    it returned.  What the app raises propagates.
    """
    return ctx.run(_first_step, app, scope, receive, send)
