"""``--reload``: run the server in a spawned child and restart it when watched files change.

The parent binds the socket once (so the port never goes away between restarts and
connections made during a restart wait in the backlog), starts one worker
(:func:`fastasgi.supervisors.worker.worker_main`, without the connection drain: a
quick restart matters more here than an idle browser connection) and watches files:

* with watchfiles (``fastasgi[standard]``): :class:`WatchFilesWatcher`;
* without it: :class:`StatWatcher`, polling mtimes every ``--reload-delay`` seconds.

Both use the same :class:`FileFilter` (``--reload-include`` / ``--reload-exclude``,
uvicorn's defaults; see :mod:`fastasgi.reload_patterns`).  A child that
fails to start (a syntax error in the code just saved) has logged why; the parent
says it waits for the next change and keeps watching.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastasgi.config import Config
from fastasgi.errors import STARTUP_FAILURE
from fastasgi.metrics import Aggregate, Listener, serve
from fastasgi.sockets import bind_sockets, remove_unix_binds
from fastasgi.supervisors.multiprocess import log_address, spawn
from fastasgi.supervisors.worker import exit_description, worker_main

logger = logging.getLogger("uvicorn.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class FileFilter:
    """Which changed paths restart the server.

    A path is watched when its name matches an include pattern and neither its name
    nor the name of a directory between the watched root and the file matches an
    exclude pattern (so ``.*`` keeps ``.venv/`` and ``.git/`` out, which uvicorn's
    name-only match does not), and it is not under an excluded directory.
    """

    def __init__(self, config: Config) -> None:
        self.includes = list(config.reload_includes)
        self.excludes = list(config.reload_excludes)
        self.exclude_dirs = [Path(d) for d in getattr(config, "reload_dirs_excludes", [])]
        self.roots = [Path(d) for d in config.reload_dirs]

    def __call__(self, path: Path | str) -> bool:
        path = Path(path)
        for excluded in self.exclude_dirs:
            if excluded == path or excluded in path.parents:
                return False
        if not any(path.match(pattern) for pattern in self.includes):
            return False
        if any(path.match(pattern) for pattern in self.excludes):
            return False
        for part in self._dir_parts(path):
            if any(fnmatch.fnmatch(part, pattern) for pattern in self.excludes):
                return False
        return True

    def _dir_parts(self, path: Path) -> tuple[str, ...]:
        for root in self.roots:
            with contextlib.suppress(ValueError):
                return path.parent.relative_to(root).parts
        return ()


class WatchFilesWatcher:
    name = "WatchFiles"

    def __init__(self, config: Config, should_exit: threading.Event) -> None:
        import watchfiles

        self.filter = FileFilter(config)
        self._iter = watchfiles.watch(
            *config.reload_dirs,
            watch_filter=lambda change, path: self.filter(path),
            stop_event=should_exit,
            yield_on_timeout=True,
            rust_timeout=500,  # wake up twice a second to check on the child
            debounce=int(max(config.reload_delay, 0.05) * 1000) + 50,
            step=50,
        )

    def __iter__(self) -> Iterator[list[Path]]:
        for changes in self._iter:
            yield sorted({Path(path) for _, path in changes})


class StatWatcher:
    """Polling fallback: compares the mtime of every watched file each ``--reload-delay``."""

    name = "StatReload"

    def __init__(self, config: Config, should_exit: threading.Event) -> None:
        self.filter = FileFilter(config)
        self.dirs = [Path(d) for d in config.reload_dirs]
        self.delay = max(float(config.reload_delay), 0.05)
        self.should_exit = should_exit
        self.mtimes = self.snapshot()

    def snapshot(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for root in self.dirs:
            for dirpath, dirnames, filenames in os.walk(root):
                base = Path(dirpath)
                # prune excluded directories before descending into them
                dirnames[:] = [
                    d
                    for d in dirnames
                    if not any(fnmatch.fnmatch(d, p) for p in self.filter.excludes)
                    and not any(base / d == e for e in self.filter.exclude_dirs)
                ]
                for name in filenames:
                    path = base / name
                    if self.filter(path):
                        with contextlib.suppress(OSError):
                            mtimes[path] = path.stat().st_mtime
        return mtimes

    def changes(self) -> list[Path]:
        current = self.snapshot()
        changed = {p for p, m in current.items() if self.mtimes.get(p) != m}
        changed |= self.mtimes.keys() - current.keys()
        self.mtimes = current
        return sorted(changed)

    def __iter__(self) -> Iterator[list[Path]]:
        while not self.should_exit.wait(self.delay):
            yield self.changes()


def make_watcher(config: Config, should_exit: threading.Event) -> WatchFilesWatcher | StatWatcher:
    try:
        return WatchFilesWatcher(config, should_exit)
    except ImportError:
        return StatWatcher(config, should_exit)


class ChangeReload:
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.should_exit = threading.Event()
        self.process: Any = None
        self.conn: Any = None
        self.failure_reported = False
        self.exit_signal: int | None = None
        # --metrics-port: served here, so that the counts survive reloads (each server
        # process records into a block of its own, folded in when it is gone)
        self.metrics = Aggregate(workers=False) if config.metrics_port is not None else None
        self.metrics_path: str | None = None

    def signal_handler(self, sig: int, frame: Any) -> None:
        if self.exit_signal is None:
            self.exit_signal = sig
        self.should_exit.set()

    def start_process(self) -> None:
        self.conn, child_conn = spawn.Pipe(duplex=True)
        if self.metrics is not None:
            self.metrics_path = self.metrics.new_block()
        self.process = spawn.Process(
            target=worker_main, args=(self.config, self.sockets, child_conn, False, self.metrics_path)
        )
        self.process.start()
        child_conn.close()
        self.failure_reported = False

    def stop_process(self) -> None:
        process = self.process
        if process is None:
            return
        if process.exitcode is None:
            process.terminate()
            graceful = self.config.timeout_graceful_shutdown
            process.join(None if graceful is None else graceful + 5)
            if process.exitcode is None:
                process.kill()
                process.join()
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process = None
        self.retire_metrics()

    def retire_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.retire(self.metrics_path)
            self.metrics_path = None

    def run(self) -> None:
        watcher = make_watcher(self.config, self.should_exit)
        logger.info("Started reloader process [%d] using %s", os.getpid(), watcher.name)
        logger.info("Will watch for changes in these directories: %s", sorted(str(d) for d in self.config.reload_dirs))
        log_address(self.config, self.sockets)
        listener: Listener | None = None
        if self.metrics is not None:
            config = self.config
            try:
                listener = serve(config.metrics_host, int(config.metrics_port or 0), self.metrics.totals)
            except OSError as exc:
                logger.error(
                    "Could not bind the metrics listener to %s:%s: %s", config.metrics_host, config.metrics_port, exc
                )
                self.metrics.close()
                for sock in self.sockets:
                    sock.close()
                raise SystemExit(STARTUP_FAILURE) from None
        original = {sig: signal.signal(sig, self.signal_handler) for sig in HANDLED_SIGNALS}
        try:
            self.start_process()
            for changes in watcher:
                if self.should_exit.is_set():
                    break
                if changes:
                    logger.warning(
                        "%s detected changes in %s. Reloading...", watcher.name, ", ".join(map(_display, changes))
                    )
                    self.stop_process()
                    self.start_process()
                self.check_process()
        finally:
            self.stop_process()
            for sig, handler in original.items():
                signal.signal(sig, handler)
            for sock in self.sockets:
                sock.close()
            remove_unix_binds(self.config)
            if listener is not None:
                listener.close()
            if self.metrics is not None:
                self.metrics.close()
            logger.info("Stopping reloader process [%d]", os.getpid())

    def check_process(self) -> None:
        process = self.process
        if process is None or process.exitcode is None or self.failure_reported:
            return
        self.failure_reported = True
        self.retire_metrics()  # its gauges go now, its counters stay
        logger.error(
            "The server process [%d] stopped (%s); waiting for a change to reload.",
            process.pid,
            exit_description(process.exitcode),
        )


def _display(path: Path) -> str:
    try:
        return f"'{path.relative_to(Path.cwd())}'"
    except ValueError:
        return f"'{path}'"


def run_reloader(config: Config, server: Any = None) -> None:
    ChangeReload(config, bind_sockets(config)).run()
