"""Type stub of coro_c: its contract is its twin's, coro_py.py."""

from fastasgi._speedups.coro_py import AppRun as AppRun
from fastasgi._speedups.coro_py import Sender as Sender
from fastasgi._speedups.coro_py import new_app_run as new_app_run
from fastasgi._speedups.coro_py import new_task as new_task

def speed_up_task_registry() -> bool: ...
