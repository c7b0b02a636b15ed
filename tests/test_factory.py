"""``--factory``: the factory runs exactly once in each server process, through the real command.

Factories open connection pools and register metrics; calling one twice in a
process (once to fail fast, again to serve) leaks the first app's resources.
``tests/apps/factory_app.py`` appends its pid to a file on every call.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.apps.sup_helpers import ServerProcess, fastasgi_cmd, get, wait_for
from tests.conftest import IMPL_HTTP

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FACTORY = "tests.apps.factory_app:make"


def factory_calls(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def answer(port: int) -> int | None:
    try:
        status, body = get(port, timeout=5)
    except OSError:
        return None
    return int(body) if status == 200 else None


def test_factory_called_once_in_a_single_process(impl: str, tmp_path: Path) -> None:
    log = tmp_path / "calls"
    server = ServerProcess(
        fastasgi_cmd(FACTORY, "--factory", "--port", "0", "--http", IMPL_HTTP[impl]),
        env={"FASTASGI_TEST_FACTORY_LOG": str(log)},
    )
    try:
        port = server.port()
        assert answer(port) == server.pid  # served by the server process itself
        server.signal(signal.SIGTERM)
        assert server.wait(15) == -signal.SIGTERM
        assert factory_calls(log) == [server.pid]
    finally:
        server.stop()


def test_factory_called_once_per_worker(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    server = ServerProcess(
        fastasgi_cmd(FACTORY, "--factory", "--port", "0", "--workers", "2"),
        env={"FASTASGI_TEST_FACTORY_LOG": str(log)},
    )
    try:
        server.port()
        wait_for(lambda: len(server.ready_pids()) >= 2, 60, "2 ready workers")
        workers = server.ready_pids()
        server.signal(signal.SIGTERM)
        server.wait(30)
        calls = factory_calls(log)
        # one call in each worker, none in the supervisor
        assert sorted(calls) == sorted(workers)
        assert server.pid not in calls
    finally:
        server.stop()


def test_factory_called_once_in_the_reloaded_server(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    server = ServerProcess(
        fastasgi_cmd(FACTORY, "--factory", "--port", "0", "--reload", "--reload-dir", str(tmp_path)),
        env={"FASTASGI_TEST_FACTORY_LOG": str(log)},
    )
    try:
        port = server.port()
        child = wait_for(lambda: answer(port), 60, "a response from the reloaded server")
        server.signal(signal.SIGTERM)
        server.wait(30)
        assert factory_calls(log) == [child]  # the server process only: the reloader never loads the app
        assert child != server.pid
    finally:
        server.stop()


def test_gunicorn_worker_calls_the_factory_once(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    log = tmp_path / "calls"
    # gunicorn's own factory syntax, "module:factory()": gunicorn calls it, fastasgi must not again
    cmd = [sys.executable, "-m", "gunicorn", FACTORY + "()", "--bind", "127.0.0.1:0", "--workers", "2"]
    cmd += ["-k", "fastasgi.workers.FastASGIWorker"]
    server = ServerProcess(cmd, env={"FASTASGI_TEST_FACTORY_LOG": str(log)})
    try:
        port = server.port()
        wait_for(lambda: len(set(factory_calls(log))) >= 2, 60, "2 booted workers")
        wait_for(lambda: answer(port), 30, "a response")
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        calls = factory_calls(log)
        assert len(calls) == 2 and len(set(calls)) == 2  # once in each worker
        assert server.pid not in calls
    finally:
        server.stop()
