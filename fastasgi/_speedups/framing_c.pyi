"""Type stub of the compiled framing module: framing_py.py compiled, so its twin's names."""

from fastasgi._speedups.framing_py import *
