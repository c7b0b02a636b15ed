"""Turning --reload-dir / --reload-include / --reload-exclude into what the reloader watches.

Defaults as uvicorn's: include ``*.py``; exclude ``.*``, ``.py[cod]``, ``.sw.*``, ``~*``.
A pattern that names an existing directory is watched (include) or skipped (exclude)
as a directory rather than used as a glob.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_INCLUDES = ["*.py"]
DEFAULT_EXCLUDES = [".*", ".py[cod]", ".sw.*", "~*"]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value]


def resolve_reload_config(
    dirs: Any, includes: Any, excludes: Any
) -> tuple[list[Path], list[str], list[str], list[Path]]:
    cwd = Path.cwd()
    reload_dirs = [Path(d).resolve() for d in _as_list(dirs) if Path(d).is_dir()]
    include_patterns: list[str] = list(DEFAULT_INCLUDES)
    exclude_patterns: list[str] = list(DEFAULT_EXCLUDES)
    exclude_dirs: list[Path] = []
    for pattern in _as_list(includes):
        if (cwd / pattern).is_dir():
            reload_dirs.append((cwd / pattern).resolve())
        elif pattern not in include_patterns:
            include_patterns.append(pattern)
    for pattern in _as_list(excludes):
        if (cwd / pattern).is_dir():
            exclude_dirs.append((cwd / pattern).resolve())
        elif pattern not in exclude_patterns:
            exclude_patterns.append(pattern)
    # an explicit include wins over a default exclude of the same pattern, and vice versa
    for pattern in _as_list(includes):
        if pattern in exclude_patterns and pattern not in DEFAULT_INCLUDES:
            exclude_patterns.remove(pattern)
    for pattern in _as_list(excludes):
        if pattern in include_patterns:
            include_patterns.remove(pattern)
    reload_dirs = [d for d in reload_dirs if not any(d == e or e in d.parents for e in exclude_dirs)]
    if not reload_dirs:
        reload_dirs = [cwd]
    # drop directories nested in another watched one
    unique: list[Path] = []
    for d in sorted(set(reload_dirs)):
        if not any(p in d.parents for p in unique):
            unique.append(d)
    return unique, include_patterns, exclude_patterns, exclude_dirs
