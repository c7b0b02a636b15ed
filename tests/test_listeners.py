"""Several listeners (``--bind``, repeatable): syntax, conflicts, and real servers on two or three at once.

The servers are real ``python -m fastasgi`` processes; every request is a real
connection to one listener, and the app answers the scope it got, so each
listener's ``scope["server"]`` and ``scope["client"]`` are checked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator

import pytest

from fastasgi.config import Config
from fastasgi.errors import ConfigError
from tests.apps.sup_helpers import NotifySocket, ServerProcess, fastasgi_cmd, wait_for
from tests.conftest import IMPL_HTTP, read_response

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="UNIX sockets and POSIX signals")

APP = "tests.apps.deploy_app:app"
TCP_LINE = re.compile(r"running on https?://(\[[^\]]+\]|[^ :\[]+):(\d+) ")
UNIX_LINE = re.compile(r"running on unix socket (\S+) ")


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = _has_ipv6()


def request(address: tuple[str, int] | str, keep: socket.socket | None = None) -> dict:
    """GET /where on a fresh connection (or on ``keep``) to a TCP (host, port) or a UNIX socket path."""
    if keep is not None:
        sock = keep
    elif isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(address)
    else:
        sock = socket.create_connection(address, timeout=10)
    try:
        sock.sendall(b"GET /where HTTP/1.1\r\nhost: test\r\n\r\n")
        status, _, body = read_response(sock)
    finally:
        if keep is None:
            sock.close()
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def listeners(server: ServerProcess, tcp: int, unix: int) -> tuple[list[tuple[str, int]], list[str]] | None:
    if server.proc.poll() is not None:
        raise AssertionError(f"server exited ({server.proc.returncode}):\n{server.output}")
    found_tcp = [(m.group(1).strip("[]"), int(m.group(2))) for m in server.find(TCP_LINE.pattern)]
    found_unix = [m.group(1) for m in server.find(UNIX_LINE.pattern)]
    if len(found_tcp) >= tcp and len(found_unix) >= unix:
        return found_tcp, found_unix
    return None


def bind_args(*binds: str) -> list[str]:
    return [arg for bind in binds for arg in ("--bind", bind)]


# -- syntax and conflicts (Config: no server needed) ------------------------------------


@pytest.mark.parametrize(
    "bind, message",
    [
        ("localhost", "no port"),
        ("::1:8000", "put an IPv6 address in brackets"),
        ("[::1]", "must be followed by :PORT"),
        ("[example.com]:80", "is not an IPv6 address"),
        ("127.0.0.1:99999", "the port must be a number from 0 to 65535"),
        ("127.0.0.1:http", "the port must be a number"),
        (":8000", "no host"),
        ("unix:", "no socket path"),
        ("fd://three", "must be a number"),
    ],
)
def test_invalid_bind_is_a_config_error(bind: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config(APP, bind=[bind], log_config=None)
    assert message in str(info.value)
    assert f"Invalid --bind {bind!r}" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bind": ["127.0.0.1:0"], "uds": "/tmp/x.sock"}, "--bind cannot be combined with --uds or --fd"),
        ({"bind": ["127.0.0.1:0"], "fd": 3}, "--bind cannot be combined with --uds or --fd"),
        ({"bind": ["127.0.0.1:0"], "host": "0.0.0.0"}, "--bind cannot be combined with --host/--port"),
        ({"bind": ["127.0.0.1:0"], "port": 9000}, "--bind cannot be combined with --host/--port"),
        ({"bind": ["127.0.0.1:8001", "127.0.0.1:8001"]}, "--bind 127.0.0.1:8001 is given twice"),
        ({"bind": ["unix:/tmp/a.sock", "unix:/tmp/a.sock"]}, "--bind unix:/tmp/a.sock is given twice"),
        ({"bind": ["[::1]:8001", "[0:0::1]:8001"]}, None),  # two spellings: the bind itself reports it
        ({"bind": ["127.0.0.1:0"], "reuse_port": True}, "--reuse-port works with --host/--port only"),
        ({"bind": ["127.0.0.1:8001"], "metrics_port": 8001}, "--metrics-port 8001 is the port of a --bind address"),
    ],
)
def test_bind_conflicts_are_config_errors(kwargs: dict, message: str | None) -> None:
    if message is None:
        Config(APP, log_config=None, **kwargs)
        return
    with pytest.raises(ConfigError) as info:
        Config(APP, log_config=None, **kwargs)
    assert message in str(info.value)


def test_bind_accepts_every_form_and_keeps_uvicorns_options() -> None:
    config = Config(APP, bind="127.0.0.1:0", log_config=None)  # one string is one address
    assert [str(a) for a in config.bind_addresses] == ["127.0.0.1:0"]
    config = Config(
        APP,
        bind=["0.0.0.0:8000", "[::]:8000", "unix:/run/app.sock", "fd://3", "127.0.0.1:0", "127.0.0.1:0"],
        log_config=None,
    )
    assert [str(a) for a in config.bind_addresses] == [
        "0.0.0.0:8000",
        "[::]:8000",
        "unix:/run/app.sock",
        "fd://3",
        "127.0.0.1:0",
        "127.0.0.1:0",
    ]
    # --port equal to its default is not a conflict; the metrics port may be --port's when --bind replaces it
    Config(APP, bind=["127.0.0.1:9001"], port=8000, metrics_port=None, log_config=None)
    assert Config(APP, log_config=None).bind is None


def test_bind_failure_is_one_line_exit_3() -> None:
    """An address in use, seen by a single server (after its lifespan startup) and by the
    --workers supervisor (before any worker starts): one line each, exit 3.  (A conflict
    is a ConfigError from Config, which the CLI reports the same way: tests/test_cli.py.)"""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        binds = bind_args("127.0.0.1:0", f"127.0.0.1:{port}")
        servers = [  # at once: each is a Python start-up, the slow part
            ServerProcess(fastasgi_cmd(APP, *binds)),
            ServerProcess(fastasgi_cmd(APP, "--workers", "2", *binds)),
        ]
        try:
            assert [server.wait(30) for server in servers] == [3, 3]
        finally:
            for server in servers:
                server.stop()
    for server in servers:
        errors = server.find(r"ERROR:.*")
        assert len(errors) == 1, server.output
        assert f"Could not bind to 127.0.0.1:{port}: Address already in use" in errors[0].group(0)
        assert "Traceback" not in server.output


# -- real servers -----------------------------------------------------------------------


def test_several_binds_in_one_process(impl: str, tmp_path) -> None:
    path = str(tmp_path / "app.sock")
    binds = ["127.0.0.1:0", f"unix:{path}"] + (["[::1]:0"] if HAS_IPV6 else [])
    notify = NotifySocket(tmp_path / "notify")  # systemd's, as a Type=notify service has it
    server = ServerProcess(
        fastasgi_cmd(APP, "--http", IMPL_HTTP[impl], *bind_args(*binds)), env={"NOTIFY_SOCKET": notify.path}
    )
    try:
        # READY=1 names every listener, with the port picked for :0 (so they were bound before it)
        status = notify.wait("READY")["STATUS"]
        tcp = [(host.strip("[]"), int(port)) for host, port in re.findall(r"http://(\[[^\]]+\]|[\d.]+):(\d+)", status)]
        assert f"unix socket {path}" in status
        assert [host for host, _ in tcp] == ["127.0.0.1"] + (["::1"] if HAS_IPV6 else [])
        # and the log has one line per listener
        logged = wait_for(lambda: listeners(server, len(binds) - 1, 1), 30, "every listener in the log")
        assert logged == (tcp, [path])
        pids = set()
        for host, port in tcp:
            info = request((host, port))
            # each listener's own address in scope["server"], the peer of that connection in scope["client"]
            assert info["server"] == [host, port]
            assert info["client"][0] == host
            assert info["scheme"] == "http"
            pids.add(info["pid"])
        info = request(path)
        assert info["server"][0] == path
        assert info["client"] is None
        pids.add(info["pid"])
        assert pids == {server.pid}  # one process serves them all
        # the access log names each connection's own client
        wait_for(lambda: len(server.find(r'"GET /where HTTP/1.1" 200')) == len(binds), 10, "the access log lines")
        assert server.find(r'127\.0\.0\.1:\d+ - "GET /where HTTP/1\.1" 200')
        server.signal(signal.SIGTERM)
        assert notify.wait("STOPPING")["STOPPING"] == "1"
        assert server.wait(30) == -signal.SIGTERM  # the signal re-raised after a graceful shutdown
    finally:
        server.stop()
        notify.close()
    assert not os.path.exists(path)  # the UNIX socket is removed on exit, as with --uds


@pytest.fixture(scope="module", autouse=True)
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, int]]:
    """The --workers server of test_three_binds_with_workers, started with the module: it
    boots (a parent and two spawned workers) while the tests before it run."""
    path = str(tmp_path_factory.mktemp("binds") / "app.sock")
    inherited = socket.socket()
    inherited.bind(("127.0.0.1", 0))
    inherited.listen(16)
    inherited.set_inheritable(True)
    fd_port = inherited.getsockname()[1]
    binds = bind_args("127.0.0.1:0", f"unix:{path}", f"fd://{inherited.fileno()}")
    server = ServerProcess(fastasgi_cmd(APP, "--workers", "2", *binds), pass_fds=[inherited.fileno()])
    inherited.close()  # the server has its own copy
    try:
        yield server, path, fd_port
    finally:
        server.stop()


def test_three_binds_with_workers(workers_server: tuple[ServerProcess, str, int]) -> None:
    """TCP, a UNIX socket and an inherited socket (fd://N), served by both workers."""
    server, path, fd_port = workers_server
    tcp, unix = wait_for(lambda: listeners(server, 2, 1), 30, "every listener in the log")
    assert unix == [path] and tcp[1] == ("127.0.0.1", fd_port)
    workers = set(wait_for(lambda: len(server.ready_pids()) >= 2 and server.ready_pids(), 60, "2 ready workers"))
    assert len(workers) == 2
    # a keep-alive connection on each listener at once, requests alternating between them
    addresses: list[tuple[str, int] | str] = [*tcp, path]
    connections = []
    for address in addresses:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(10)
            sock.connect(address)
        else:
            sock = socket.create_connection(address, timeout=10)
        connections.append(sock)
    try:
        for _ in range(3):
            for address, sock in zip(addresses, connections):
                info = request(address, keep=sock)
                assert info["pid"] in workers
                assert info["server"][0] == (address if isinstance(address, str) else address[0])
                if not isinstance(address, str):
                    assert info["server"][1] == address[1]
    finally:
        for sock in connections:
            sock.close()
    # fresh connections: every answer from one of the two workers, on each listener
    answered = {request(address)["pid"] for address in addresses for _ in range(5)}
    assert answered <= workers
    server.signal(signal.SIGTERM)
    assert server.wait(30) == -signal.SIGTERM
    assert server.output.count("Application shutdown complete.") == 2
    assert not os.path.exists(path)  # removed by the supervisor, which bound it
