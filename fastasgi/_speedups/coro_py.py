"""What a request's Task drives: the app's coroutine, and the cycle told how it ended.

Pure-Python twin of ``coro_c`` (a hand-written ``.pyx``: it calls CPython's C
API, which plain Python cannot).  Both define :class:`AppRun` and
:func:`start` with the same contract; ``http_py.py`` imports the ones of its
own set.

Each request's app runs in an ``asyncio.Task`` of its own (as under uvicorn:
``current_task()``, cancellation, done callbacks and the context are that
request's).  The Task drives an :class:`AppRun` rather than a wrapping ``async
def``: no second coroutine frame per request, and, on interpreters without
``eager_start`` (before 3.12), the app's first step can run before the Task's
own first step (:meth:`AppRun.prime`), with the Task already current.
"""

from __future__ import annotations

from collections.abc import Coroutine
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


class AppRun:
    """The coroutine-like object a request's Task runs: ``app(scope, receive, send)``.

    ``send``/``throw`` step the app's coroutine; when it returns or raises, the
    cycle hears of it (``cycle.app_returned(value)`` / ``cycle.app_raised(exc)``,
    which answers 500 or closes) and the Task ends with ``None``, or with the
    exception when ``app_raised`` says it must propagate (cancellation of a
    closed connection, ``KeyboardInterrupt``...).

    :meth:`prime` runs the first step before the Task's first ``send``: used
    where the Task cannot start eagerly itself.  The Task's first ``send`` then
    hands up what the app yielded (or ends the Task if the app already returned).
    """

    __slots__ = ("app", "coro", "cycle", "exc", "primed", "yielded")

    def __init__(self, cycle: Any, app: Any) -> None:
        self.cycle = cycle
        self.app = app
        self.coro: Any = None
        self.yielded: Any = None
        self.exc: BaseException | None = None
        self.primed = False

    def prime(self, ctx: Context) -> bool:
        """Run the app's first step now, in ``ctx`` (the Task's context, the Task
        marked as current by the caller).  True when the app finished in it."""
        cycle = self.cycle
        app = self.app
        self.app = None
        self.primed = True
        try:
            coro, value = start(ctx, app, cycle.scope, cycle.receive, cycle.send)
        except BaseException as exc:
            if ctx.run(cycle.app_raised, exc):
                self.exc = exc  # the Task's first step raises it
            return True
        if coro is None:
            # the usual case (None returned, response complete) has nothing left to do
            if value is not None or not cycle.response_complete:
                ctx.run(cycle.app_returned, value)
            return True
        self.coro = coro
        self.yielded = value
        return False

    def send(self, value: Any) -> Any:
        coro = self.coro
        if self.primed:
            # the Task's first step after prime(): hand up what the app yielded then
            self.primed = False
            if coro is None:
                exc = self.exc
                if exc is not None:
                    self.exc = None
                    raise exc
                raise StopIteration
            yielded = self.yielded
            self.yielded = None
            return yielded
        if coro is None:
            # the Task's first step: the app starts here
            app = self.app
            if app is None:
                raise StopIteration
            self.app = None
            cycle = self.cycle
            try:
                coro = app(cycle.scope, cycle.receive, cycle.send)
                if type(coro) is not CoroutineType:
                    coro = awaitable_iter(coro)
            except BaseException as exc:
                self._raised(exc)
                raise StopIteration from None
            self.coro = coro
        try:
            return coro.send(value)
        except StopIteration as stop:
            self.coro = None
            self.cycle.app_returned(stop.value)
        except BaseException as exc:
            self._raised(exc)
        raise StopIteration

    def throw(self, exc: Any, *args: Any) -> Any:
        if isinstance(exc, type):  # the old throw(type[, value[, traceback]]) form
            exc = args[0] if args and isinstance(args[0], exc) else exc(*args[:1])
        coro = self.coro
        if self.primed:
            # thrown before the Task stepped (the app cancelled its own Task in its
            # first step): as asyncio would, cancel what the app waits for, then throw
            self.primed = False
            yielded = self.yielded
            self.yielded = None
            if coro is not None and yielded is not None and hasattr(yielded, "cancel"):
                yielded.cancel()
        if coro is None:
            self.app = None
            raise exc
        try:
            return coro.throw(exc)
        except StopIteration as stop:
            self.coro = None
            self.cycle.app_returned(stop.value)
        except BaseException as err:
            self._raised(err)
        raise StopIteration

    def _raised(self, exc: BaseException) -> None:
        self.coro = None
        if self.cycle.app_raised(exc):
            raise exc

    def close(self) -> None:
        coro = self.coro
        if coro is not None:
            self.coro = None
            coro.close()

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)


# asyncio.Task accepts what is a Coroutine (asyncio.iscoroutine)
Coroutine.register(AppRun)
