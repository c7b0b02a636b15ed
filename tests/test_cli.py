"""The ``fastasgi`` command: options, errors an operator can make, startup and shutdown."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket

import httpx
import pytest

from fastasgi.config import Config
from fastasgi.errors import ConfigError
from fastasgi.settings import SETTINGS
from tests.conftest import CLIServer, run_cli

UVICORN_OPTIONS = (
    "--host --port --uds --fd --reload --reload-dir --reload-include --reload-exclude --reload-delay --workers "
    "--loop --http --ws --ws-max-size --ws-max-queue --ws-ping-interval --ws-ping-timeout --ws-per-message-deflate "
    "--lifespan --interface --env-file --log-config --log-level --access-log --no-access-log --use-colors "
    "--no-use-colors --proxy-headers --no-proxy-headers --server-header --no-server-header --date-header "
    "--no-date-header --forwarded-allow-ips --root-path --limit-concurrency --backlog --limit-max-requests "
    "--limit-max-requests-jitter --timeout-keep-alive --timeout-graceful-shutdown --timeout-worker-healthcheck "
    "--ssl-keyfile --ssl-certfile --ssl-keyfile-password --ssl-version --ssl-cert-reqs --ssl-ca-certs "
    "--ssl-ciphers --header --version --app-dir --h11-max-incomplete-event-size --reset-contextvars --factory"
).split()


def test_help_lists_every_uvicorn_option():
    result = run_cli(["--help"])
    assert result.returncode == 0
    for option in UVICORN_OPTIONS:
        assert option in result.stdout, option


def test_every_setting_with_flags_is_an_option():
    result = run_cli(["--help"])
    for s in SETTINGS:
        for flag in s.flags or ():
            for part in flag.split("/"):
                assert part in result.stdout


def test_version_names_the_implementation():
    result = run_cli(["--version"])
    assert result.returncode == 0
    out = result.stdout.strip()
    assert out.startswith("fastasgi 0.")
    assert ("compiled: llhttp" in out) or ("pure-Python: h11" in out)
    assert "http2: " in out  # which HTTP/2 implementation --http2 would run
    assert "Python" in out


def test_version_pure_when_extensions_disabled():
    result = run_cli(["--version"], env={"FASTASGI_NO_EXTENSIONS": "1"})
    assert "pure-Python: h11" in result.stdout
    if importlib.util.find_spec("h2") is not None:
        assert "http2: pure-Python: h2 " in result.stdout


@pytest.mark.parametrize(
    "app, message",
    [
        ("tests.apps.nope:app", 'Could not import module "tests.apps.nope"'),
        ("tests.apps.misc:missing", 'Attribute "missing" not found in module "tests.apps.misc"'),
        ("tests.apps.broken_import:app", "module_that_does_not_exist"),
        ("tests.apps.broken_syntax:app", "syntax error"),
        ("nocolon", "must be in format"),
        ("tests.apps.misc:not_callable", "is not callable"),
    ],
)
def test_bad_app_is_one_line_exit_3(app, message):
    result = run_cli([app, "--port", "0"])
    assert result.returncode == 3
    output = result.stdout + result.stderr
    assert message in output
    assert "Traceback" not in output


def test_factory_not_callable():
    result = run_cli(["tests.apps.misc:not_callable", "--factory", "--port", "0"])
    assert result.returncode == 3
    assert "not callable" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "abc"], "Invalid value for '--port'"),
        (["--http", "nope"], "Invalid value for '--http'"),
        (["--log-level", "loud"], "Invalid value for '--log-level'"),
        (["--loop", "weird"], "Invalid value for '--loop'"),
        (["--header", "no-colon"], "Name:Value"),
    ],
)
def test_bad_option_values(args, message):
    result = run_cli(["tests.apps.misc:hello", *args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_exit_3():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        result = run_cli(["tests.apps.misc:hello", "--port", str(port)])
    assert result.returncode == 3
    assert "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_bad_tls_file_exit_3(tmp_path):
    result = run_cli(["tests.apps.misc:hello", "--port", "0", "--ssl-certfile", str(tmp_path / "missing.pem")])
    assert result.returncode == 3
    assert "missing.pem" in result.stderr
    assert "Traceback" not in result.stderr


def test_lifespan_startup_failure_exit_3():
    result = run_cli(["tests.apps.misc:lifespan_fails", "--port", "0", "--lifespan", "on"])
    assert result.returncode == 3
    assert "database is unreachable" in result.stderr
    assert "Application startup failed" in result.stderr


def test_reload_with_app_object_requires_import_string():
    from fastasgi import run

    with pytest.raises(SystemExit) as exc:
        run(lambda s, r, se: None, reload=True)
    assert exc.value.code == 3


def test_run_rejects_unknown_keyword():
    from fastasgi import run

    with pytest.raises(TypeError, match="nonsense"):
        run("tests.apps.misc:hello", nonsense=1)


def test_serve_port_0_logs_port_and_graceful_sigint():
    server = CLIServer(["tests.apps.misc:hello", "--port", "0"])
    port = server.wait_ready()
    assert port > 0
    r = httpx.get(f"http://127.0.0.1:{port}/")
    assert r.text == "hello"
    code, output = server.stop(signal.SIGINT)
    assert code == 0
    assert "Shutting down" in output
    assert "Application shutdown complete" in output
    assert "Finished server process" in output


def test_sigterm_reraised_after_graceful_shutdown():
    server = CLIServer(["tests.apps.misc:hello", "--port", "0"])
    server.wait_ready()
    code, output = server.stop(signal.SIGTERM)
    assert code == -signal.SIGTERM  # re-raised, as uvicorn 0.54 does, so a supervisor sees it
    assert "Application shutdown complete" in output


def test_access_log_line_and_no_access_log():
    server = CLIServer(["tests.apps.misc:hello", "--port", "0"])
    port = server.wait_ready()
    httpx.get(f"http://127.0.0.1:{port}/path?q=1")
    _code, output = server.stop()
    assert "127.0.0.1:" in output and '"GET /path?q=1 HTTP/1.1" 200' in output

    server = CLIServer(["tests.apps.misc:hello", "--port", "0", "--no-access-log"])
    port = server.wait_ready()
    httpx.get(f"http://127.0.0.1:{port}/path?q=1")
    _code, output = server.stop()
    assert '"GET /path?q=1' not in output


def test_env_file(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("FASTASGI_TEST_BODY=from-dotenv\n")
    server = CLIServer(["tests.apps.misc:hello", "--port", "0", "--env-file", str(env_file)])
    port = server.wait_ready()
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "from-dotenv"
    server.stop()


def test_web_concurrency_env_is_read():
    from fastasgi import Config

    os.environ["WEB_CONCURRENCY"] = "3"
    try:
        assert Config("tests.apps.misc:hello").workers == 3
        assert Config("tests.apps.misc:hello", workers=2).workers == 2
    finally:
        del os.environ["WEB_CONCURRENCY"]


def test_forwarded_allow_ips_env_is_read():
    from fastasgi import Config

    os.environ["FORWARDED_ALLOW_IPS"] = "10.0.0.1"
    try:
        assert Config("tests.apps.misc:hello").forwarded_allow_ips == "10.0.0.1"
    finally:
        del os.environ["FORWARDED_ALLOW_IPS"]
    assert Config("tests.apps.misc:hello").forwarded_allow_ips == "127.0.0.1,::1"


@pytest.mark.parametrize("fmt", ["json", "yaml", "ini"])
def test_log_config_formats(tmp_path, fmt):
    if fmt == "json":
        path = tmp_path / "log.json"
        path.write_text(
            '{"version": 1, "disable_existing_loggers": false,'
            ' "formatters": {"f": {"format": "CUSTOM-%(levelname)s %(message)s"}},'
            ' "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"}},'
            ' "loggers": {"uvicorn.error": {"handlers": ["h"], "level": "INFO", "propagate": false}}}'
        )
    elif fmt == "yaml":
        path = tmp_path / "log.yaml"
        path.write_text(
            "version: 1\ndisable_existing_loggers: false\n"
            "formatters:\n  f:\n    format: 'CUSTOM-%(levelname)s %(message)s'\n"
            "handlers:\n  h:\n    class: logging.StreamHandler\n    formatter: f\n    stream: ext://sys.stderr\n"
            "loggers:\n  uvicorn.error:\n    handlers: [h]\n    level: INFO\n    propagate: false\n"
        )
    else:
        path = tmp_path / "log.ini"
        path.write_text(
            "[loggers]\nkeys=root,err\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
            "[logger_root]\nlevel=WARNING\nhandlers=\n"
            "[logger_err]\nlevel=INFO\nhandlers=h\nqualname=uvicorn.error\npropagate=0\n"
            "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
            "[formatter_f]\nformat=CUSTOM-%(levelname)s %(message)s\n"
        )
    server = CLIServer(["tests.apps.misc:hello", "--port", "0", "--log-config", str(path)])
    server.wait_ready()
    _code, output = server.stop()
    assert "CUSTOM-INFO" in output


def test_bad_log_config_is_one_line(tmp_path):
    path = tmp_path / "log.json"
    path.write_text("{not json")
    result = run_cli(["tests.apps.misc:hello", "--port", "0", "--log-config", str(path)])
    assert result.returncode == 3
    assert "Invalid --log-config" in result.stderr
    assert "Traceback" not in result.stderr


def test_trace_log_level_logs_asgi_messages():
    server = CLIServer(["tests.apps.misc:hello", "--port", "0", "--log-level", "trace"])
    port = server.wait_ready()
    httpx.get(f"http://127.0.0.1:{port}/")
    _code, output = server.stop()
    assert "TRACE" in output
    assert "http.response.start" in output


def test_uds(tmp_path):
    path = str(tmp_path / "app.sock")
    import re

    server = CLIServer(["tests.apps.misc:hello", "--uds", path])
    server.wait_ready(pattern=re.compile(r"running on unix socket"))
    r = httpx.Client(transport=httpx.HTTPTransport(uds=path)).get("http://localhost/")
    assert r.text == "hello"
    server.stop()
    assert not os.path.exists(path)


def test_fd(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.Popen(
        [sys.executable, "-m", "fastasgi", "tests.apps.misc:hello", "--fd", str(fd)],
        pass_fds=(fd,),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sock.listen(16)  # connections queue on the inherited socket until the server accepts
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=20)
        assert r.text == "hello"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        sock.close()


def test_bad_recycling_limit_is_one_line_exit_3():
    result = run_cli(["tests.apps.sup_app:app", "--port", "0", "--limit-max-rss", "0"])
    assert result.returncode == 3
    output = result.stdout + result.stderr
    assert "Invalid value for limit_max_rss: 0 (must be a positive number of MiB)" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit_max_rss": -5},
        {"limit_max_rss": 1.5},
        {"limit_max_rss_jitter": -1},
        {"limit_max_lifetime": 0},
        {"limit_max_lifetime": float("nan")},
        {"limit_max_lifetime_jitter": -0.5},
    ],
)
def test_recycling_limits_are_validated(kwargs):
    (name,) = kwargs
    with pytest.raises(ConfigError, match=f"Invalid value for {name}:"):
        Config("tests.apps.sup_app:app", **kwargs)
