"""Type stub of coro_c: its contract is its twin's, coro_py.py."""

from fastasgi._speedups.coro_py import AppRun as AppRun
from fastasgi._speedups.coro_py import Sender as Sender

def speed_up_task_registry() -> bool: ...
