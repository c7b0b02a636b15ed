"""--reload: watchfiles and the stat-polling fallback, with a real server subprocess."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from fastasgi.reload_patterns import resolve_reload_config
from fastasgi.supervisors.reload import FileFilter, StatWatcher
from tests.apps.sup_helpers import ServerProcess, get, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

APP_SOURCE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def write_app(directory: Path, version: str) -> None:
    (directory / "sup_reload_app.py").write_text(APP_SOURCE.format(version=version))


def answer(port: int) -> str | None:
    try:
        status, body = get(port, timeout=5)
    except OSError:
        return None
    return body if status == 200 else None


def reload_cmd(directory: Path, force_stat: bool) -> list[str]:
    args = ["sup_reload_app:app", "--reload", "--reload-dir", str(directory), "--app-dir", str(directory)]
    args += ["--port", "0", "--reload-delay", "0.1"]
    if force_stat:
        # hide watchfiles from the reloader: the stat-polling fallback runs
        code = "import sys; sys.modules['watchfiles'] = None; from fastasgi.cli import main; main()"
        return [sys.executable, "-c", code, *args]
    return [sys.executable, "-m", "fastasgi", *args]


@pytest.mark.parametrize("force_stat", [False, True], ids=["watchfiles", "stat"])
def test_changed_source_is_reloaded_and_syntax_errors_wait_for_a_fix(tmp_path: Path, force_stat: bool) -> None:
    write_app(tmp_path, "v1")
    server = ServerProcess(reload_cmd(tmp_path, force_stat), cwd=tmp_path)
    try:
        port = server.port()
        assert ("StatReload" if force_stat else "WatchFiles") in server.output
        wait_for(lambda: answer(port) == "v1", 30, "v1")

        write_app(tmp_path, "v2")
        wait_for(lambda: answer(port) == "v2", 30, "the reloaded v2")

        (tmp_path / "sup_reload_app.py").write_text("def broken(:\n    pass\n")
        wait_for(lambda: server.find("syntax error in"), 30, "the syntax error report")
        wait_for(lambda: server.find("waiting for a change to reload"), 30, "the reloader to wait")
        assert server.proc.poll() is None  # the reloader itself keeps running

        write_app(tmp_path, "v3")
        wait_for(lambda: answer(port) == "v3", 30, "the fixed v3")
    finally:
        server.stop()


def _config(tmp_path: Path, includes: list[str] | None = None, excludes: list[str] | None = None) -> SimpleNamespace:
    dirs, inc, exc, exc_dirs = resolve_reload_config([str(tmp_path)], includes, excludes)
    return SimpleNamespace(
        reload_dirs=dirs, reload_includes=inc, reload_excludes=exc, reload_dirs_excludes=exc_dirs, reload_delay=0.05
    )


def test_file_filter_defaults(tmp_path: Path) -> None:
    f = FileFilter(_config(tmp_path))  # type: ignore[arg-type]
    assert f(tmp_path / "app.py")
    assert f(tmp_path / "pkg" / "mod.py")
    assert not f(tmp_path / "README.md")
    assert not f(tmp_path / ".hidden.py")
    assert not f(tmp_path / ".venv" / "lib" / "site.py")  # a hidden directory is excluded too
    assert not f(tmp_path / "mod.pyc")


def test_file_filter_include_exclude(tmp_path: Path) -> None:
    f = FileFilter(_config(tmp_path, includes=["*.html"], excludes=["test_*.py"]))  # type: ignore[arg-type]
    assert f(tmp_path / "templates" / "index.html")
    assert f(tmp_path / "app.py")
    assert not f(tmp_path / "test_app.py")


def test_stat_watcher_sees_modified_new_and_deleted_files(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / "notes.txt").write_text("x")
    watcher = StatWatcher(_config(tmp_path), threading.Event())  # type: ignore[arg-type]
    assert watcher.changes() == []
    (tmp_path / "b.py").write_text("b = 1\n")
    (tmp_path / "notes.txt").write_text("y")
    assert watcher.changes() == [tmp_path / "b.py"]
    (tmp_path / "a.py").unlink()
    assert watcher.changes() == [tmp_path / "a.py"]
