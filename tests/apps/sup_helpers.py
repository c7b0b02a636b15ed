"""Helpers for tests that run ``python -m fastasgi`` (or gunicorn) as a real subprocess.

Nothing here sleeps to synchronize: :func:`wait_for` polls a condition until a
deadline, and the log lines of the server are collected by a reader thread.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent.parent


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)  # polling interval, not a synchronization delay


class ServerProcess:
    """A server subprocess whose stderr+stdout lines are collected in ``self.lines``."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: Path | str = ROOT,
        env: dict[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.pop("WEB_CONCURRENCY", None)
        if env:
            full_env.update(env)
        self.args = list(args)
        self.proc = subprocess.Popen(
            self.args,
            cwd=str(cwd),
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=tuple(pass_fds),
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def find(self, pattern: str) -> list[re.Match[str]]:
        with self._lock:
            lines = list(self.lines)
        return [m for m in (re.search(pattern, line) for line in lines) if m]

    def port(self, timeout: float = 30.0) -> int:
        def found() -> int | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}):\n{self.output}")
            for pattern in (r"running on https?://[^ ]*:(\d+)", r"Listening at: https?://[^ ]*:(\d+)"):
                matches = self.find(pattern)
                if matches:
                    return int(matches[0].group(1))
            return None

        return int(wait_for(found, timeout, "the listening address in the log"))

    def ready_pids(self) -> list[int]:
        return [int(m.group(1)) for m in self.find(r"Worker process \[(\d+)\] is ready")]

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # workers of a parent that died get EOF on their pipe and stop by themselves
        self._reader.join(10)


def fastasgi_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastasgi", *args]


def worker_pids(parent: int) -> set[int]:
    """Live worker processes of ``parent`` (spawned children, not the resource tracker)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == parent and state != "Z" and (b"spawn_main" in cmdline or b"gunicorn" in cmdline):
            pids.add(int(entry))
    return pids


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (exited, possibly a zombie not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def get(
    port: int, path: str = "/", timeout: float = 10.0, conn: http.client.HTTPConnection | None = None
) -> tuple[int, str]:
    """One GET; a fresh connection unless ``conn`` (keep-alive) is given."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        response = c.getresponse()
        body = response.read().decode()
        if response.getheader("connection", "").lower() == "close":
            c.close()
        return response.status, body
    finally:
        if own:
            c.close()


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket (``NOTIFY_SOCKET``):
    every message it received, in order, each as a dict of its ``KEY=value`` lines."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, BlockingIOError):
            return False
        self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n") if line))
        return True

    def pending(self) -> list[dict[str, str]]:
        """What arrived so far (without waiting)."""
        start = len(self.messages)
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(4096)
                self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n") if line))
        except BlockingIOError:
            pass
        return self.messages[start:]

    def wait(self, key: str, timeout: float = 30.0, after: int = 0, count: int = 1) -> dict[str, str]:
        """The ``count``-th message with ``key`` among those from index ``after`` on (waits for it, bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages[after:] if key in m]
            if len(found) >= count:
                return found[count - 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key} after {timeout}s; received {self.messages}")
            self._receive(remaining)

    def close(self) -> None:
        self.sock.close()
