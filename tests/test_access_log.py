"""The access log: uvicorn's line byte for byte, record attributes, --access-log-format
(gunicorn's atoms), --log-format json, and escaping of what the client sent."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any, Iterator

import pytest

from fastasgi.config import LOGGING_CONFIG, Config, ConfigError
from fastasgi.logging import AccessFormatter, JsonFormatter
from tests.apps.access import app
from tests.conftest import CLIServer, raw_request, run_cli, run_server, run_uvicorn

UVICORN_FMT = LOGGING_CONFIG["formatters"]["access"]["fmt"]

# requests whose targets exercise uvicorn's quoting of the path (its CVE-2020-7694 fix)
TARGETS = [
    b"GET / HTTP/1.1",
    b"GET /path?q=1&b=%20x HTTP/1.1",
    b"GET /caf%C3%A9/a%20b HTTP/1.1",
    b"GET /x%0Ay%1B%E2%80%A8z HTTP/1.1",
    b"GET /a%22quote%5C/~user/-_. HTTP/1.1",
    b"HEAD / HTTP/1.1",
    b"GET /missing HTTP/1.0",
    b"GET /stream HTTP/1.1",
]

# what a hostile client sends: percent-encoded control characters in the path,
# obs-text bytes (0x80-0xff: NEL, U+2028 in UTF-8), quotes and backslashes in headers
HOSTILE = (
    b"GET /a%0Ab%0D%0A%1B[31mred%E2%80%A8?x=%0A\"y\\ HTTP/1.1\r\n"
    b"Host: t\r\n"
    b'User-Agent: evil\x85agent "quoted" \\back \xe2\x80\xa8end\r\n'
    b"Referer: http://r/\xff\xfe\r\n"
    b"X-Test: tab\there\r\n"
    b"Connection: close\r\n\r\n"
)


class Capture(logging.Handler):
    """Formats and keeps the records of a logger; ``wait(n)`` blocks until n arrived.

    The access record of a response is made after its bytes are written, so a test
    that has read the response waits for the record (bounded), it does not sleep.
    """

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.cond = threading.Condition()
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self.cond:
            self.records.append(record)
            self.lines.append(line)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 10) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.records) >= n, timeout), self.lines


@pytest.fixture
def capture_logger() -> Iterator[Any]:
    """attach(name, formatter) -> a Capture on logger ``name`` at INFO (restored afterwards)."""
    saved: list[tuple[logging.Logger, list[logging.Handler], int, bool]] = []

    def attach(name: str, formatter: logging.Formatter | None = None) -> Capture:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        handler = Capture(formatter)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        return handler

    yield attach
    for logger, handlers, level, propagate in reversed(saved):
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _request(port: int, line: bytes, extra: bytes = b"") -> bytes:
    return raw_request(port, line + b"\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n")


def _normalise_port(line: str) -> str:
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)


# -- uvicorn's line ---------------------------------------------------------------------


@pytest.mark.parametrize("colours", [False, True])
def test_default_line_is_uvicorns_byte_for_byte(impl, capture_logger, colours):
    uvicorn_logging = pytest.importorskip("uvicorn.logging")
    # both servers log on "uvicorn.access": one capture per run
    ours = capture_logger("uvicorn.access", AccessFormatter(UVICORN_FMT, use_colors=colours))
    with run_server(app, impl) as server:
        for target in TARGETS:
            _request(server.port, target)
        ours.wait(len(TARGETS))
    theirs = capture_logger("uvicorn.access", uvicorn_logging.AccessFormatter(UVICORN_FMT, use_colors=colours))
    with run_uvicorn(app, impl) as server:
        for target in TARGETS:
            _request(server.port, target)
        theirs.wait(len(TARGETS))
    assert [_normalise_port(x) for x in ours.lines] == [_normalise_port(x) for x in theirs.lines]
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in ours.lines]
    assert any('"GET /x%0Ay%1B%E2%80%A8z HTTP/1.1" 200 OK' in line for line in plain)
    # uvicorn's record arguments, for formatters written against uvicorn
    assert ours.records[0].args[1:] == ("GET", "/", "1.1", 200)
    assert ours.records[0].msg == '%s - "%s %s HTTP/%s" %d'


# -- LogRecord attributes ---------------------------------------------------------------


def test_record_attributes(impl, capture_logger):
    capture = capture_logger("uvicorn.access")
    with run_server(app, impl) as server:
        _request(server.port, b"GET /caf%C3%A9?a=1 HTTP/1.1", b"User-Agent: ua/1\r\nReferer: http://ref/\r\n")
        _request(server.port, b"GET /stream HTTP/1.1")
        _request(server.port, b"HEAD / HTTP/1.0")
        _request(server.port, b"GET /boom HTTP/1.1")
        capture.wait(4)
    first, stream, head, boom = capture.records
    assert first.client_host == "127.0.0.1" and isinstance(first.client_port, int)
    assert first.client_addr == f"127.0.0.1:{first.client_port}"
    assert (first.method, first.path, first.query_string, first.http_version) == ("GET", "/café", "a=1", "1.1")
    assert first.request_line == "GET /caf%C3%A9?a=1 HTTP/1.1"
    assert (first.status_code, first.response_bytes) == (200, 5)
    assert (first.user_agent, first.referer) == ("ua/1", "http://ref/")
    assert isinstance(first.duration, float) and 0 <= first.duration < 60
    assert (stream.response_bytes, stream.user_agent, stream.referer) == (15, None, None)
    assert (head.method, head.http_version, head.response_bytes) == ("HEAD", "1.0", 0)
    assert (boom.status_code, boom.response_bytes) == (500, len("Internal Server Error"))
    # a stdlib formatter can use them as they are
    line = logging.Formatter("%(client_host)s %(method)s %(path)s %(status_code)d %(response_bytes)d").format(first)
    assert line == "127.0.0.1 GET /café 200 5"


# -- --access-log-format -----------------------------------------------------------------

GUNICORN_LIKE = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" B=%(B)s m=%(m)s U=%(U)s q=%(q)s H=%(H)s '
    "i=%({x-test}i)s I=%({X-Missing}i)s o=%({x-resp}o)s e=%({ALOG_TEST_VAR}e)s p=%(p)s T=%(T)s D=%(D)s "
    "M=%(M)s L=%(L)s 100%%"
)


def test_custom_format_atoms(impl, capture_logger, monkeypatch):
    monkeypatch.setenv("ALOG_TEST_VAR", "from-env")
    capture = capture_logger("uvicorn.access", logging.Formatter("%(message)s"))
    with run_server(app, impl, access_log_format=GUNICORN_LIKE) as server:
        _request(
            server.port,
            b"GET /p%20q?x=1 HTTP/1.1",
            b"User-Agent: ua/2\r\nReferer: http://r/\r\nX-Test: hdr\r\nAuthorization: Basic dXNlcjpwdw==\r\n",
        )
        _request(server.port, b"HEAD /stream HTTP/1.1")
        capture.wait(2)
    line, head = capture.lines
    m = re.fullmatch(
        r'127\.0\.0\.1 - user \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /p%20q\?x=1 HTTP/1\.1" 200 5 '
        r'"http://r/" "ua/2" B=5 m=GET U=/p q q=x=1 H=HTTP/1\.1 i=hdr I=- o=r-value e=from-env p=<(\d+)> '
        r"T=0 D=(\d+) M=(\d+) L=0\.(\d{6}) 100%",
        line,
    )
    assert m, line
    assert int(m.group(1)) == os.getpid()
    assert int(m.group(3)) == int(m.group(2)) // 1000
    # HEAD: no body bytes, '-' for %(b)s; gunicorn's '-' for absent headers
    assert ' "HEAD /stream HTTP/1.1" 200 - "-" "-" B=0 ' in head
    assert "o=streamed" in head


@pytest.mark.parametrize(
    "fmt, reason",
    [
        ("%(h)s %(zz)s", "unknown atom '%(zz)s'"),
        ("%(h)s %s", "every '%' must name an atom"),
        ("%(b)d", "cannot be formatted"),
        ("%({x}q)s", "unknown atom"),
        ("%(h)", "cannot be formatted"),
    ],
)
def test_bad_format_is_a_config_error(fmt, reason):
    with pytest.raises(ConfigError, match=re.escape(reason)):
        Config(app, access_log_format=fmt, log_config=None)


def test_bad_format_on_the_command_line_is_one_line_exit_3():
    result = run_cli(["tests.apps.access:app", "--port", "0", "--access-log-format", '%(h)s "%(nope)s"'])
    assert result.returncode == 3
    assert "Invalid --access-log-format" in result.stderr and "%(nope)s" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_custom_format_on_the_command_line_prints_the_line_alone():
    server = CLIServer(["tests.apps.access:app", "--port", "0", "--access-log-format", "%(s)s %(m)s %(U)s %(B)s"])
    port = server.wait_ready()
    _request(port, b"GET /missing/x HTTP/1.1")
    _code, output = server.stop()
    assert "\n404 GET /missing/x 5\n" in output


# -- escaping -----------------------------------------------------------------------------


def _assert_one_clean_line(text: str) -> None:
    assert "\n" not in text and "\r" not in text
    assert text.isprintable(), repr(text)


def test_hostile_bytes_are_escaped(impl, capture_logger):
    default = capture_logger("uvicorn.access", AccessFormatter(UVICORN_FMT, use_colors=False))
    with run_server(app, impl) as server:
        answer = raw_request(server.port, HOSTILE)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        default.wait(1)
    custom = capture_logger("uvicorn.access", logging.Formatter("%(message)s"))
    fmt = '"%(r)s" "%(a)s" "%(f)s" %(U)s %(q)s %({x-test}i)s'
    with run_server(app, impl, access_log_format=fmt) as server:
        raw_request(server.port, HOSTILE)
        custom.wait(1)
    line = default.lines[0]
    _assert_one_clean_line(line)
    # uvicorn's line: the path percent-encoded as uvicorn does, the query as sent
    assert '"GET /a%0Ab%0D%0A%1B%5B31mred%E2%80%A8?x=%0A"y\\ HTTP/1.1" 200' in line
    record = default.records[0]
    for name in ("path", "query_string", "user_agent", "referer", "request_line"):
        _assert_one_clean_line(getattr(record, name))
    assert record.path == "/a\\x0ab\\x0d\\x0a\\x1b[31mred\\u2028"
    assert record.user_agent == 'evil\\x85agent "quoted" \\back \\xe2\\x80\\xa8end'
    assert record.referer == "http://r/\\xff\\xfe"
    line = custom.lines[0]
    _assert_one_clean_line(line)
    assert line == (
        '"GET /a%0Ab%0D%0A%1B[31mred%E2%80%A8?x=%0A\\"y\\ HTTP/1.1" '
        '"evil\\x85agent \\"quoted\\" \\back \\xe2\\x80\\xa8end" "http://r/\\xff\\xfe" '
        "/a\\x0ab\\x0d\\x0a\\x1b[31mred\\u2028 x=%0A\\\"y\\ tab\\x09here"
    )


# -- --log-format json ----------------------------------------------------------------------


def test_json_logs_from_the_command_line():
    server = CLIServer(["tests.apps.access:app", "--port", "0", "--log-format", "json"], env={"NO_COLOR": "1"})
    server.wait_line(re.compile(r'"message": "fastasgi running on'))
    port = int(re.search(r"running on http://127\.0\.0\.1:(\d+)", server.lines[-1]).group(1))  # type: ignore[union-attr]
    _request(port, b"GET /ok?a=b HTTP/1.1", b"User-Agent: ua/3\r\n")
    raw_request(port, HOSTILE)
    _request(port, b"GET /boom HTTP/1.1")
    code, output = server.stop()
    assert code == 0
    entries = [json.loads(line) for line in output.splitlines()]  # every line is one JSON object
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= entry.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["timestamp"])
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert [e["status_code"] for e in access] == [200, 200, 500]
    ok, hostile, boom = access
    assert ok["message"] == f'127.0.0.1:{ok["client_port"]} - "GET /ok?a=b HTTP/1.1" 200'
    assert (ok["method"], ok["path"], ok["query_string"], ok["http_version"]) == ("GET", "/ok", "a=b", "1.1")
    assert (ok["client_host"], ok["response_bytes"], ok["user_agent"], ok["referer"]) == ("127.0.0.1", 5, "ua/3", None)
    assert isinstance(ok["duration"], float) and ok["level"] == "INFO"
    assert hostile["path"] == "/a\\x0ab\\x0d\\x0a\\x1b[31mred\\u2028"
    assert hostile["user_agent"] == 'evil\\x85agent "quoted" \\back \\xe2\\x80\\xa8end'
    assert boom["response_bytes"] == len("Internal Server Error")
    errors = [e for e in entries if "exception" in e]
    assert len(errors) == 1
    error = errors[0]
    assert (error["logger"], error["level"], error["message"]) == (
        "uvicorn.error",
        "ERROR",
        "Exception in ASGI application\n",
    )
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: kaboom in the app" in error["exception"]


def test_json_formatter_escapes_what_a_record_holds():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "line1\nline2 \u2028 \x1b %s", ("arg\r\n",), None)
    out = JsonFormatter().format(record)
    _assert_one_clean_line(out)
    assert json.loads(out)["message"] == "line1\nline2 \u2028 \x1b arg\r\n"


def test_log_config_wins_over_log_format(tmp_path):
    path = tmp_path / "log.json"
    path.write_text(
        '{"version": 1, "disable_existing_loggers": false,'
        ' "formatters": {"f": {"format": "CUSTOM-%(levelname)s %(message)s"}},'
        ' "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"}},'
        ' "loggers": {"uvicorn.error": {"handlers": ["h"], "level": "INFO", "propagate": false}}}'
    )
    server = CLIServer(["tests.apps.access:app", "--port", "0", "--log-format", "json", "--log-config", str(path)])
    server.wait_ready()
    _code, output = server.stop()
    assert "CUSTOM-INFO" in output
    assert '"level"' not in output


def test_log_format_choices():
    with pytest.raises(ConfigError, match="log_format"):
        Config(app, log_format="xml", log_config=None)
    result = run_cli(["tests.apps.access:app", "--log-format", "xml"])
    assert result.returncode == 2 and "Invalid value for '--log-format'" in result.stderr


# -- uvicorn's logger names ----------------------------------------------------------------


class _SkipHealth(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "/health" not in record.getMessage()


def test_a_filter_on_uvicorns_access_logger_applies(impl, capture_logger):
    # the usual recipe for quiet health checks under uvicorn: a filter on "uvicorn.access"
    capture = capture_logger("uvicorn.access")
    skip = _SkipHealth()
    access = logging.getLogger("uvicorn.access")
    access.addFilter(skip)
    try:
        with run_server(app, impl) as server:
            _request(server.port, b"GET /health HTTP/1.1")
            _request(server.port, b"GET /seen HTTP/1.1")
            capture.wait(1)
    finally:
        access.removeFilter(skip)
    assert [r.path for r in capture.records] == ["/seen"]


def test_log_config_naming_fastasgi_01_loggers_still_applies():
    # fastasgi 0.1 named its loggers fastasgi.*: such a dict config configures uvicorn.*
    access = logging.getLogger("uvicorn.access")
    saved = (access.level, access.handlers[:], access.propagate, access.disabled)
    try:
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"fastasgi.access": {"level": "ERROR", "handlers": [], "propagate": False}},
        }
        Config(app, log_config=config).configure_logging()
        assert access.level == logging.ERROR
        # a config naming both keeps the uvicorn entry
        config["loggers"]["uvicorn.access"] = {"level": "WARNING"}
        Config(app, log_config=config).configure_logging()
        assert access.level == logging.WARNING
    finally:
        access.level, access.handlers, access.propagate, access.disabled = saved
