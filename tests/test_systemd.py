"""systemd: socket activation and ``sd_notify``, through the real CLI.

Debian's ``systemd-socket-activate`` stands in for systemd's socket units: it listens,
waits for the first connection, then execs the server with ``LISTEN_FDS`` /
``LISTEN_PID`` (so the first request is sent before the server exists, and must be
answered).  A datagram socket in a temporary folder stands in for systemd's notify
socket (``NOTIFY_SOCKET``).  The app's lifespan startup waits on a gate file, so the
tests see what the server announces while its startup is still running: nothing.
The server runs the ``ExecStart=`` of the README's unit (``deploy/systemd/app.service``).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastasgi import systemd
from fastasgi.cli import main as cli_main
from fastasgi.errors import ConfigError
from tests.apps.sup_helpers import NotifySocket, ServerProcess, wait_for, worker_pids
from tests.conftest import read_response

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd is Linux only")

APP = "tests.apps.deploy_app:app"
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or (
    "/usr/bin/systemd-socket-activate" if os.path.exists("/usr/bin/systemd-socket-activate") else None
)
needs_socket_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed (Debian: apt-get install systemd)"
)
GET = b"GET /first HTTP/1.1\r\nhost: test\r\n\r\n"
UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections: each key with its values in order (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exec_start_args(workers: str | None) -> list[str]:
    """The fastasgi options of app.service's ExecStart= (``--workers`` set to ``workers``, or dropped)."""
    argv = shlex.split(unit("app.service")["Service"]["ExecStart"][0])
    assert argv[0].endswith("/fastasgi") and argv[1] == "app:app", argv
    args = argv[2:]
    i = args.index("--workers")
    if workers is None:
        del args[i : i + 2]
    else:
        args[i + 1] = workers
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def activated_server(tmp_path: Path, listen: list[str], env: dict[str, str], *args: str) -> ServerProcess:
    """``systemd-socket-activate -l ... -E ... python -m fastasgi APP ...`` (it passes on only what -E names)."""
    passed = [name for name in os.environ if name.startswith(("FASTASGI_", "PYTHON", "COV_", "COVERAGE"))]
    command = [SOCKET_ACTIVATE or "systemd-socket-activate"]
    for address in listen:
        command += ["-l", address]
    for name in [*passed, "PYTHONPATH", "PYTHONUNBUFFERED"]:
        command += ["-E", name]
    for name, value in env.items():
        command += ["-E", f"{name}={value}"]
    command += [sys.executable, "-m", "fastasgi", APP, "--lifespan", "on", *args]
    return ServerProcess(command)


def unix_get(path: Path) -> dict:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(GET)
        status, _, body = read_response(sock)
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


class Activated:
    """A server under systemd-socket-activate, started by a first request sent before it
    exists (``first``), with a notify socket, WATCHDOG_USEC=200000, and its lifespan
    startup held until :meth:`open_gate`."""

    def __init__(self, tmp_path: Path, listen: list[str], *args: str) -> None:
        self.notify = NotifySocket(tmp_path / "notify")
        self.gate = tmp_path / "gate"
        env = {"NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": "200000", "FASTASGI_TEST_GATE": str(self.gate)}
        self.server = activated_server(tmp_path, listen, env, *args)
        self.first: socket.socket | None = None
        try:
            wait_for(lambda: self.server.find(r"Listening on 127\.0\.0\.1:\d+ as 3"), 10, "systemd-socket-activate")
            port = int(listen[0].rsplit(":", 1)[1])
            self.first = socket.create_connection(("127.0.0.1", port), timeout=15)
            self.first.sendall(GET)  # the connection that makes systemd-socket-activate exec the server
        except BaseException:
            self.close()
            raise

    def open_gate(self, after: int = 0) -> None:
        """Once the lifespan startup runs, check nothing said READY=1 yet (since message
        ``after``), then let the startup finish."""
        wait_for(lambda: Path(f"{self.gate}.entered").exists(), 30, "the app's lifespan startup to begin")
        self.notify.pending()
        assert not [m for m in self.notify.messages[after:] if "READY" in m], self.notify.messages
        self.gate.touch()

    def first_response(self) -> dict:
        assert self.first is not None
        status, _, body = read_response(self.first)
        self.first.close()  # (an idle keep-alive connection would hold a stopping worker's drain)
        assert status == 200
        return json.loads(body)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.first is not None:
            self.first.close()
        self.server.stop()
        self.notify.close()


@pytest.fixture(scope="module", autouse=True)
def with_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Activated | None]:
    """The --workers server of test_socket_activation_and_notify_with_workers, started with the
    module: its parent and workers boot (and wait at the gate) while the test before it runs."""
    if SOCKET_ACTIVATE is None:
        yield None
        return
    activated = Activated(tmp_path_factory.mktemp("workers"), [f"127.0.0.1:{free_port()}"], *exec_start_args("2"))
    try:
        yield activated
    finally:
        activated.close()


@needs_socket_activate
def test_socket_activation_and_notify_single_process(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "app.sock"
    activated = Activated(tmp_path, [f"127.0.0.1:{port}", str(path)], *exec_start_args(None))
    server, notify = activated.server, activated.notify
    try:
        activated.open_gate()
        ready = notify.wait("READY")
        assert ready["READY"] == "1"
        # the listeners are systemd's: one TCP, one UNIX socket, both named in STATUS=
        assert f"http://127.0.0.1:{port}" in ready["STATUS"] and f"unix socket {path}" in ready["STATUS"]
        # the request sent before the server existed waited on systemd's socket and is answered,
        # by the process systemd-socket-activate became (LISTEN_PID is its own pid)
        assert activated.first_response()["pid"] == server.pid
        assert unix_get(path)["server"][0] == str(path)
        # (the log comes through a pipe, READY=1 through the notify socket: either may be first)
        wait_for(lambda: server.find(rf"running on http://127\.0\.0\.1:{port} "), 10, "the startup line")
        # WATCHDOG_USEC=200000: a keep-alive every 0.1 s
        notify.wait("WATCHDOG", 10, count=2)
        server.signal(signal.SIGTERM)
        stopping = notify.wait("STOPPING")
        assert stopping["STOPPING"] == "1"
        assert server.wait(30) == -signal.SIGTERM
        assert "Application shutdown complete." in server.output
        assert [m for m in notify.messages if "READY" in m] == [ready]
    finally:
        activated.close()


@needs_socket_activate
def test_socket_activation_and_notify_with_workers(with_workers: Activated) -> None:
    activated = with_workers
    server, notify, gate = activated.server, activated.notify, activated.gate
    activated.open_gate()
    ready = notify.wait("READY")
    assert ready["STATUS"] == "2 of 2 workers ready"
    wait_for(lambda: len(server.find(r"Worker process \[\d+\] is ready")) == 2, 10, "2 ready workers logged")
    assert activated.first_response()["pid"] in worker_pids(server.pid)
    notify.wait("WATCHDOG", 10, count=2)  # from the supervisor's loop
    # SIGHUP: RELOADING=1 at once; READY=1 again only when the new workers are ready
    old = set(server.ready_pids())
    gate.unlink()
    Path(f"{gate}.entered").unlink()
    mark = len(notify.messages)
    server.signal(signal.SIGHUP)
    reloading = notify.wait("RELOADING", after=mark)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    activated.open_gate(after=mark)  # a replacement's startup is running: no READY=1 yet
    again = notify.wait("READY", 60, after=mark)
    assert again["STATUS"] == "2 of 2 workers ready"
    wait_for(lambda: len(set(server.ready_pids()) - old) >= 2, 10, "the log of two new ready workers")
    assert len(server.find(r"Started worker process \[\d+\] to replace")) == 2
    server.signal(signal.SIGTERM)
    stopping = notify.wait("STOPPING", after=mark)
    assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("Stopping")
    assert server.wait(30) == -signal.SIGTERM


def test_unit_files_match_what_fastasgi_does() -> None:
    service, socket_unit = unit("app.service"), unit("app.socket")
    s = service["Service"]
    assert s["Type"] == ["notify"]  # fastasgi sends READY=1 (tested above)
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP: the rolling restart
    assert s["KillMode"] == ["mixed"]  # SIGTERM to the supervisor, which stops its workers
    assert s["RestartPreventExitStatus"] == ["3"]  # fastasgi's exit status when the app cannot start
    assert "app.socket" in service["Unit"]["Requires"][0]
    assert socket_unit["Socket"]["ListenStream"]
    # the command is one the CLI accepts, and systemd waits longer than fastasgi's own stop deadline
    context = cli_main.make_context("fastasgi", ["app:app", *exec_start_args("4")])
    graceful = context.params["timeout_graceful_shutdown"]
    keep_alive = context.params["timeout_keep_alive"]
    assert graceful is not None
    assert int(s["TimeoutStopSec"][0]) > min(keep_alive, graceful) + graceful + 5
    assert int(s["WatchdogSec"][0]) >= 2  # WATCHDOG=1 every half of it


# -- the protocol pieces, in process ---------------------------------------------------------


def test_no_notify_socket_no_notifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.Notifier.from_environ() is None


def test_abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"fastasgi-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        notifier = systemd.Notifier.from_environ()
        assert notifier is not None and notifier.watchdog_interval is None
        notifier.ready("Serving")
        notifier.status("Serving")  # unchanged: not sent again
        notifier.status("1 of 2 workers ready")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=Serving"
        assert receiver.recv(4096) == b"STATUS=1 of 2 workers ready"
        notifier.close()


@pytest.mark.parametrize("watchdog_pid, expected", [(None, 0.5), ("self", 0.5), ("1", None)])
def test_watchdog_only_for_this_process(monkeypatch: pytest.MonkeyPatch, watchdog_pid, expected) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    if watchdog_pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if watchdog_pid == "self" else watchdog_pid)
    notifier = systemd.Notifier.from_environ()
    assert notifier is not None and notifier.watchdog_interval == expected


def test_unreachable_notify_socket_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    notifier = systemd.Notifier.from_environ()
    assert notifier is not None
    # caught on the logger itself: a logging configuration left by an earlier test in this
    # process (uvicorn's: "uvicorn" does not propagate; or one that disabled the logger)
    # must not hide the record
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("uvicorn.error")
    monkeypatch.setattr(log, "disabled", False)
    monkeypatch.setattr(log, "level", logging.WARNING)
    log.addHandler(handler)
    try:
        notifier.ready()
        notifier.stopping()
    finally:
        log.removeHandler(handler)
    assert len([r for r in records if "Could not notify systemd" in r.getMessage()]) == 1


def test_listen_fds_of_another_process_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systemd, "_activated", None)
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "2")
    assert systemd.listen_fds() == []
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ  # consumed, as sd_listen_fds(1)


def test_listen_fds_malformed_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systemd, "_activated", None)
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "two")
    with pytest.raises(ConfigError, match="LISTEN_FDS='two'"):
        systemd.listen_fds()
    monkeypatch.setattr(systemd, "_activated", None)
