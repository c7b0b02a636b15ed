"""Picks the implementation set of the per-request hot path.

Two sets exist, with the same names and the same behaviour:

* ``"c"``  -- ``parser_c`` (llhttp binding), ``http_c`` and ``framing_c``
  (compiled by Cython from ``http_py.py`` / ``framing_py.py`` with the
  augmenting ``*_c.pxd`` files);
* ``"py"`` -- ``parser_py`` (h11 adapter), ``http_py`` and ``framing_py``.

``coro_c`` (a hand-written ``.pyx``: the app's first step through CPython's C API)
and its twin ``coro_py`` are imported by the http module of their own set.

``--http2`` adds the HTTP/2 protocol of a set (:func:`load_http2`): ``http2_c``
(libnghttp2, with the compiled stream cycle ``stream_c``) beside the compiled set
where it was built, else the pure-Python one on ``h2`` (``http2_py`` with
``stream_py``).

All modules switch together, never a mix.  :func:`load` returns the modules of
one set; :data:`active` is the tag of the set that runs by default: ``"c"``
unless ``FASTASGI_NO_EXTENSIONS`` is set, the interpreter is not CPython, or
the compiled set does not import; :func:`tag_of` tells which set a protocol
class belongs to.  This module is the one place that knows the sets: code above
``_speedups`` asks it and never names a ``*_c`` / ``*_py`` module itself.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any, NamedTuple

from fastasgi._compat import NO_EXTENSIONS

if TYPE_CHECKING:  # mypy checks callers against the typed pure twins
    from fastasgi._speedups import framing_py as framing  # noqa: F401
    from fastasgi._speedups import http_py as http  # noqa: F401
    from fastasgi._speedups import parser_py as parser  # noqa: F401


class ImplementationSet(NamedTuple):
    tag: str
    parser: types.ModuleType
    http: types.ModuleType
    framing: types.ModuleType


_cache: dict[str, ImplementationSet] = {}


def load(tag: str) -> ImplementationSet:
    """Import and return the ``"c"`` or ``"py"`` set (ImportError if unavailable)."""
    if tag not in ("c", "py"):
        raise ValueError(f"unknown implementation tag {tag!r}")
    cached = _cache.get(tag)
    if cached is not None:
        return cached
    mods = [importlib.import_module(f"fastasgi._speedups.{stem}_{tag}") for stem in ("parser", "http", "framing")]
    impl = ImplementationSet(tag, *mods)
    _cache[tag] = impl
    return impl


def compiled_error() -> str | None:
    """Why the compiled set cannot be used, or None when it can."""
    if NO_EXTENSIONS:
        return "disabled (FASTASGI_NO_EXTENSIONS is set or the interpreter is not CPython)"
    try:
        load("c")
    except ImportError as exc:
        return f"not built ({exc})"
    return None


def _pick() -> str:
    return "c" if compiled_error() is None else "py"


active: str = _pick()


def tag_of(protocol_class: Any) -> str | None:
    """``"c"`` or ``"py"``: the set whose ``HttpProtocol`` is (or is a base of) ``protocol_class``; else None."""
    if not isinstance(protocol_class, type):
        return None
    for tag in ("c", "py"):
        # a set's http module is imported by load(), or by whoever imported it directly
        http = sys.modules.get(f"{__name__}.http_{tag}")
        if http is not None and issubclass(protocol_class, http.HttpProtocol):
            return tag
    return None


def describe(tag: str | None = None) -> str:
    """A short label such as ``compiled: llhttp 9.3`` or ``pure-Python: h11 0.16.0``."""
    tag = tag or active
    impl = load(tag)
    return impl.parser.DESCRIPTION


def load_http2(tag: str | None = None) -> types.ModuleType:
    """The HTTP/2 module that runs beside set ``tag`` (default: the active one).

    The compiled set runs ``http2_c`` (libnghttp2) when it was built (setup.py builds
    it where libnghttp2 is found), else the pure-Python ``http2_py``; the pure set
    always runs ``http2_py``, which needs ``h2`` (ImportError when it is missing).
    """
    if tag is not None and tag not in ("c", "py"):
        raise ValueError(f"unknown implementation tag {tag!r}")
    if (tag or active) == "c" and compiled_error() is None:
        try:
            return importlib.import_module(f"{__name__}.http2_c")
        except ImportError:
            pass  # built without libnghttp2
    return importlib.import_module(f"{__name__}.http2_py")


def describe_http2(tag: str | None = None) -> str:
    """A short label of the HTTP/2 implementation, e.g. ``compiled: nghttp2 1.52.0`` or
    ``pure-Python: h2 4.3.0``, or why there is none."""
    try:
        module = load_http2(tag)
    except ImportError:
        return "unavailable (needs the h2 package: pip install 'fastasgi[http2]')"
    return str(module.DESCRIPTION)
