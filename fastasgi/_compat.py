"""The one reader of ``FASTASGI_NO_EXTENSIONS``.

Everything that needs to know whether the compiled set may be used asks
:data:`NO_EXTENSIONS` here, so the rule lives in one place: the pure-Python
fallback runs when the variable is set to a non-empty value other than "0",
or when the interpreter is not CPython (PyPy runs the fallback as it is).
"""

from __future__ import annotations

import os
import platform

IS_CPYTHON = platform.python_implementation() == "CPython"

NO_EXTENSIONS: bool = os.environ.get("FASTASGI_NO_EXTENSIONS", "") not in ("", "0") or not IS_CPYTHON
