"""One HTTP/2 stream's request/response cycle, shared by both HTTP/2 implementations.

Pure-Python twin of ``stream_c`` (this same file compiled by Cython with the
augmenting ``stream_c.pxd``): ``http2_py`` (on ``h2``) uses this module,
``http2_c`` (on libnghttp2) the compiled one.  Neither the cycle nor the base
protocol knows which HTTP/2 library frames the connection:

* :class:`StreamProtocol` -- the base of both ``Http2Protocol`` classes: the
  per-connection settings and state a stream needs, the scope (RFC 9113 §8.3.1),
  the app's Task, and the small interface each protocol implements on its library:
  ``send_headers``, ``send_data`` (as much as the client's windows take now),
  ``send_trailers``, ``reset``, ``ack`` (hand consumed request bytes back to the
  client's window), ``answer_error``, ``flush``/``schedule_flush`` and
  ``became_idle``;
* :class:`StreamCycle` -- one stream: its body buffer (fed by the protocol) and the
  ``receive``/``send`` pair an app sees, exactly as an HTTP/1.1 request's (the
  cycle is the app's ``send``, as ``http_py.RequestCycle`` is: see ``coro_py.Sender``).

Flow control follows the app: a stream's receive window is handed back as the app
takes the body (``receive()``), never for a buffer of everything; the response
waits for the client's window and the transport's drain: back-pressure reaches
the app's ``send``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import deque
from time import perf_counter
from urllib.parse import unquote

if __name__.endswith("_c"):  # compiled: the compiled set
    from fastasgi._speedups.clock_c import monotonic_ns
    from fastasgi._speedups.coro_c import AppRun as new_app_run
    from fastasgi._speedups.coro_c import Sender, new_task
    from fastasgi._speedups.framing_c import (
        ResponseHeaderError,
        _same_headers,
        early_hint_fields,
        token_kind,
        trailer_fields,
    )
else:
    from time import monotonic_ns

    from fastasgi._speedups.coro_py import AppRun as new_app_run
    from fastasgi._speedups.coro_py import Sender as _PySender
    from fastasgi._speedups.coro_py import new_task

    # (stream_c.pxd declares Sender as the compiled base type, so Cython refuses a
    # plain import of that name even in this branch, which only runs uncompiled)
    globals()["Sender"] = _PySender
    from fastasgi._speedups.framing_py import (
        ResponseHeaderError,
        _same_headers,
        early_hint_fields,
        token_kind,
        trailer_fields,
    )

from fastasgi.connection import tls_extension
from fastasgi.filesend import FileSendError, file_range, open_file, pread, set_position
from fastasgi.metrics import (
    BUCKETS_NS,
    DURATION_NS,
    HISTOGRAM,
    N_BUCKETS,
    N_CLASSES,
    PARSE_BODY_TOO_LARGE,
    PARSE_ERRORS,
    REQUESTS,
    REQUESTS_IN_FLIGHT,
    TIMEOUT_BODY,
    TIMEOUT_RESPONSE_BODY,
    TIMEOUTS,
    parse_error_kind,
)
from fastasgi.proxy_trust import apply_forwarded, has_forwarded_headers

MAX_CONCURRENT_STREAMS = 100  # SETTINGS_MAX_CONCURRENT_STREAMS, and the cap on running apps
STREAM_WINDOW = 65535  # per-stream receive window: what one stream may buffer (HTTP/1.1's HIGH_WATER)
CONNECTION_WINDOW = 1 << 20  # the connection's receive window: a stream whose app does not read
# its body cannot stall the uploads of the others before 1 MiB is buffered
HIGH_WATER = 65536  # response bytes queued above which they are written at once
LINGER = 2.0  # s a closing connection waits for the client to close before the server does
# Rapid Reset (CVE-2023-44487): streams the client cancels; a token bucket of RESET_BURST
# refilled at RESET_RATE per second
RESET_BURST = 500
RESET_RATE = 50.0
# frames that make the server work (or answer) but carry no request: PING, SETTINGS,
# PRIORITY, empty DATA, WINDOW_UPDATE while no response is being sent, unknown types
CONTROL_BURST = 1000
CONTROL_RATE = 100.0
# Streams whose app may start per pass of the event loop, over all its HTTP/2 connections
# (see Wave).  About ten objects the garbage collector tracks live from a stream's start
# to its app's first step (cycle, scope, headers, Task, context, ...): 64 streams keep
# the rise between two passes near the collector's first threshold (700 allocations).
WAVE = 64
# connection-specific fields (RFC 9113 §8.2.2): never sent in an HTTP/2 response
CONNECTION_HEADERS = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
# scope["extensions"] of every stream (each gets a copy; a TLS connection adds "tls"): those
# HTTP/1.1 offers, trailers always (HTTP/2 frames them natively, RFC 9113 §8.1)
EXTENSIONS: dict = {
    "http.response.trailers": {},
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
    "http.response.early_hint": {},
}
FILE_CHUNK = 65536  # bytes of a file (pathsend, zerocopysend) read and handed on at a time
# error codes (RFC 9113 §7)
NO_ERROR = 0
PROTOCOL_ERROR = 1
INTERNAL_ERROR = 2
REFUSED_STREAM = 7
CANCEL = 8
ENHANCE_YOUR_CALM = 11

# the common methods' str, and the :status field of every status, made once
METHOD_NAMES = {m.encode("ascii"): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
STATUS_FIELDS = {code: (b":status", b"%d" % code) for code in range(200, 600)}

_PY311 = sys.version_info >= (3, 11)
_PY312 = sys.version_info >= (3, 12)
# the Wave of the last loop a connection was made on (StreamProtocol.__init__)
_WAVE: list = [None]

error_logger = logging.getLogger("uvicorn.error")


class Budget:
    """A token bucket: ``spend()`` is False once more than ``burst`` events came faster than ``rate`` per second."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.tokens = float(burst)
        self.last = now

    def spend(self, now: float) -> bool:
        tokens = self.tokens + (now - self.last) * self.rate
        self.last = now
        tokens = min(tokens, self.burst) - 1.0
        self.tokens = tokens
        return tokens >= 0.0


class Wave:
    """The new streams of one event loop's HTTP/2 connections, started in waves.

    One read can carry a hundred requests, and the loop reads each ready connection
    before it runs a single Task: 16 clients with 100 streams each put 1,600 streams
    in flight at once, with some 16,000 objects the cyclic garbage collector tracks,
    which then survive its young collections, move to the old generations and make
    full collections frequent (on CPython 3.11 under ``h2load -c 16 -m 100``, a
    quarter of the server's time).  So at most ``WAVE`` streams start per pass of
    the loop (``started`` counts those whose app has not finished at once); a
    connection that reads more holds the rest of its bytes, at a frame boundary,
    with its reading paused (``StreamProtocol.hold``), and ``next`` (scheduled
    behind the Tasks of the wave) hands them over, connection after connection in
    the order they waited.  No request is refused or reordered within its
    connection; what changes is when the next connection's requests begin.
    """

    def __init__(self, loop):
        self.loop = loop
        # the keyword arguments of each stream's Task (3.11+; new_task sets its context,
        # and puts None back once the Task is made)
        self.task_kwargs = {"loop": loop, "eager_start": True} if _PY312 else {"loop": loop}
        self.started = 0
        self.scheduled = False  # next() is in the loop's queue
        self.waiting = deque()  # connections holding bytes, in the order they stopped

    def add(self):
        """A stream's app started (and did not end at once)."""
        self.started += 1
        if not self.scheduled and self.started >= WAVE // 2:
            # (a pass starts with a fresh budget: next() goes behind this wave's Tasks)
            self.scheduled = True
            self.loop.call_soon(self.next)

    def wait(self, protocol):
        self.waiting.append(protocol)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.next)

    def next(self):
        """The Tasks queued before it ran: a new wave."""
        self.started = 0
        waiting = self.waiting
        try:
            while waiting and self.started < WAVE:
                waiting.popleft().release()
        finally:
            if waiting or self.started >= WAVE // 2:
                self.loop.call_soon(self.next)
            else:
                self.scheduled = False


def method_index(method: str) -> int:
    """The slot of ``method`` in ``fastasgi.metrics.METHODS`` (the last one for any other method)."""
    try:
        return ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS").index(method)
    except ValueError:
        return 7


class RequestError(Exception):
    """A request this server refuses before its app runs: answered ``status`` on its stream."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def peer(client):
    return f"{client[0]}:{client[1]}" if client else "(unix socket)"


class StreamProtocol:
    """Base of both ``Http2Protocol`` classes: what a stream needs of its connection.

    A subclass drives one HTTP/2 library and implements the methods below that
    raise ``NotImplementedError``; the rest (scope, the app's Task, bookkeeping of
    streams) is shared.
    """

    def __init__(self, config, server_state, app_state, _loop=None):
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.root_path = config.root_path
        self.limit_concurrency = config.limit_concurrency if config.limit_concurrency is not None else -1
        self.timeout_keep_alive = float(config.timeout_keep_alive)
        self.timeout_request_header = float(config.timeout_request_header)
        self.timeout_request_body = float(config.timeout_request_body)
        self.timeout_response_body = float(config.timeout_response_body)
        self.proxy_trust = server_state.proxy_trust
        self.reset_contextvars = bool(config.reset_contextvars)
        self.asgi_version = config.asgi_version
        limits = config.parser_limits()
        self.max_headers = limits["max_headers"]
        self.max_field_size = limits["max_field_size"]
        self.max_body_size = limits["max_body_size"]
        # RFC 9113 §6.5.2 / RFC 7541 §4.1 count 32 bytes more per field than the
        # field's name and value: HTTP/1.1's header-block limit plus that
        self.max_header_list_size = limits["max_header_size"] + 32 * limits["max_headers"]
        metrics = getattr(server_state, "metrics", None)
        self.metrics_on = metrics is not None
        self.metrics = metrics

        self.transport = None
        self.client = None
        self.server = None
        self.scheme = "http"
        self.trusted = False
        self.access_log = False
        self.access_writer = None
        self.base_context = None
        self.scope_template = None  # build_scope's, made at this connection's first request

        self.streams = {}  # stream id -> StreamCycle, while its request or response is open
        self.running = 0  # apps of this connection still running
        self.requests = 0  # streams ever started on this connection
        self.closed = False  # connection_lost
        self.shut = False  # transport.close() called: nothing more is written
        self.closing = False  # GOAWAY sent (shutdown, timeout, error): no new stream starts
        self.write_paused = False
        self.read_paused = False
        self.drain_waiter = None
        self.idle_since = 0.0
        self.extensions = None  # scope["extensions"] of this connection's streams (copied per stream)
        self.body_timer = None  # --timeout-request-body: checks streams whose body is arriving
        self.response_timer = None  # --timeout-response-body: checks responses in progress
        self.paused_since = 0.0  # when pause_writing came (the client stopped reading)
        # what the connections of a loop share: its wave of new streams, and the keyword
        # arguments of each stream's Task
        wave = _WAVE[0]
        if wave is None or wave.loop is not self.loop:
            wave = Wave(self.loop)
            _WAVE[0] = wave
        self.wave = wave
        self.task_kwargs = wave.task_kwargs
        self.held = None  # bytes received and not handed to the library yet (see Wave)
        # where the bytes read so far end in the client's frames (scan): bytes of the
        # current frame still to come (first, the 24 of the client's preface), bytes of the
        # next frame header seen, and that header's length so far and end-of-block flag
        self.frame_left = 24
        self.head_seen = 0
        self.head_length = 0
        self.block_end = False

    # -- what each protocol implements on its HTTP/2 library ---------------------------

    def send_headers(self, cycle, headers, end_stream):
        """Queue the response head of ``cycle`` (a list of ``(name, value)`` bytes pairs,
        ``:status`` first); False when the stream is gone."""
        raise NotImplementedError

    def send_data(self, cycle, data, final):
        """Queue as much of ``data`` as the client's windows take now (all of it, with
        END_STREAM when ``final``, once they allow): the number of bytes taken, or -1 when
        the stream is gone.  When it took less, ``cycle.wake_sender()`` follows once
        more may go.  Empty ``data`` is always taken (and ends the stream when ``final``)."""
        raise NotImplementedError

    def send_trailers(self, cycle, trailers):
        """End the response of ``cycle`` with a trailer block (after its DATA); False when the stream is gone."""
        raise NotImplementedError

    def send_informational(self, cycle, headers):
        """Queue an informational (1xx) HEADERS frame on ``cycle``'s stream before its response
        (103 Early Hints, RFC 8297: ``:status`` first, then ``link`` fields); False when the
        stream is gone."""
        raise NotImplementedError

    def reset(self, stream_id, code):
        """RST_STREAM ``stream_id`` with error ``code`` (RFC 9113 §7)."""
        raise NotImplementedError

    def ack(self, stream_id, n):
        """``n`` request bytes of ``stream_id`` were consumed: the client may send as many again (RFC 9113 §5.2)."""
        raise NotImplementedError

    def answer_error(self, stream_id, status, message, ended):
        """Answer a request refused before its app ran (400, 413, 431, 500) on its stream."""
        raise NotImplementedError

    def feed(self, data, start, end):
        """Hand ``data[start:end]`` to the library and start the apps of the streams it
        opens; True when the connection is over."""
        raise NotImplementedError

    def flush(self):
        raise NotImplementedError

    def schedule_flush(self):
        raise NotImplementedError

    def became_idle(self):
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------

    def receive(self, data):
        """The bytes read (``data_received``), fed to the library as far as this pass's wave
        of new streams goes (see :class:`Wave`); the rest is held for the next."""
        if self.held is not None:  # (read before reading paused) after the bytes held
            self.held += data
            return
        wave = self.wave
        start = 0
        size = len(data)
        while start < size:
            room = WAVE - wave.started
            if room <= 0:
                self.hold(data, start)
                break
            end = self.scan(data, start, room)
            if self.feed(data, start, end):
                return
            start = end
        self.flush()

    def scan(self, data, start, room):
        """Where in ``data`` (from ``start``) the ``room``-th header block ends, or its end.

        A header block (HEADERS and its CONTINUATIONs) opens at most one stream; the
        frames are only counted here (the library parses and checks them): a client
        whose bytes are not frames gets its error from the library all the same."""
        pos = start
        size = len(data)
        while pos < size:
            left = self.frame_left
            if left:  # in a frame's payload (or the preface)
                if left > size - pos:
                    self.frame_left = left - (size - pos)
                    return size
                pos += left
                self.frame_left = 0
            else:  # a frame header: length (3 bytes), type, flags, stream id (4)
                seen = self.head_seen
                while seen < 9 and pos < size:
                    c = data[pos]
                    if seen < 3:
                        self.head_length = (self.head_length << 8) | c
                    elif seen == 3:
                        self.block_end = c == 1 or c == 9  # HEADERS, CONTINUATION
                    elif seen == 4:
                        self.block_end = self.block_end and (c & 4) != 0  # END_HEADERS
                    seen += 1
                    pos += 1
                if seen < 9:
                    self.head_seen = seen
                    return size
                self.head_seen = 0
                self.frame_left = self.head_length
                self.head_length = 0
                if self.frame_left:
                    continue
            # a frame ends here
            if self.block_end:
                self.block_end = False
                room -= 1
                if room <= 0:
                    return pos
        return pos

    def hold(self, data, start):
        """Keep ``data[start:]`` for the next wave, reading paused until then."""
        self.held = data[start:] if start else data
        if not self.read_paused and not self.shut:
            self.read_paused = True
            self.transport.pause_reading()
        self.wave.wait(self)

    def release(self):
        """A new wave (``Wave.next``): the bytes held are handed on."""
        held = self.held
        if held is None:
            return
        self.held = None
        if self.shut or self.closed:
            return
        self.receive(held)
        if self.held is None and self.read_paused and not self.write_paused and not self.shut:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self):
        # The client does not read what we send: stop reading what it sends too, so that
        # frames we must answer (PING, SETTINGS) cannot pile up answers in our buffers.
        self.write_paused = True
        self.paused_since = self.loop.time()
        self.arm_response_timer()  # (--timeout-response-body: a client that reads nothing)
        if not self.read_paused and not self.shut:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.read_paused and self.held is None and not self.shut:
            self.read_paused = False
            self.transport.resume_reading()
        self.wake_drain()
        self.flush()  # what waited for the transport's buffer to drain

    def start_stream(self, stream_id, headers, ended, method=None, path=None, authority=None):
        """Build the scope and the cycle of a new stream (its app starts in start_app), or refuse it.
        (``method``, ``path``, ``authority``: see ``build_scope``.)"""
        if self.closing:
            # after our GOAWAY (streams above its last id): the client may retry it (RFC 9113 §6.8)
            self.reset(stream_id, REFUSED_STREAM)
            return None
        if self.running >= MAX_CONCURRENT_STREAMS:
            # reset streams leave the library's count at once, their apps do not end at once
            self.reset(stream_id, REFUSED_STREAM)
            return None
        self.idle_since = -1.0
        try:
            scope = self.build_scope(headers, method, path, authority)
        except RequestError as exc:
            error_logger.warning("Invalid HTTP request received: %s", exc.reason)
            self.count(PARSE_ERRORS + parse_error_kind(exc.status))
            self.answer_error(
                stream_id, exc.status, "Invalid HTTP request received." if exc.status == 400 else exc.reason, ended
            )
            self.became_idle()
            return None
        return self.start_stream_with_scope(stream_id, scope, ended)

    def start_stream_with_scope(self, stream_id, scope, ended):
        """The cycle of a new stream whose scope is made (by start_stream, or by the HTTP/1.1
        side for ``Upgrade: h2c``'s stream 1); its app starts in start_app."""
        stream = StreamCycle.__new__(StreamCycle)
        stream.setup(self, stream_id, scope, ended)
        self.idle_since = -1.0
        self.streams[stream.stream_key] = stream
        if not ended and self.timeout_request_body > 0:
            stream.body_mark_time = self.loop.time()
            if self.body_timer is None:
                self.body_timer = self.loop.call_later(self.timeout_request_body / 2, self.check_bodies)
        self.requests += 1
        self.server_state.total_requests += 1
        if self.metrics_on:
            self.metrics[REQUESTS_IN_FLIGHT] += 1
            stream.in_flight = True
            stream.method_index = method_index(scope["method"])
            stream.started = monotonic_ns()
        return stream

    def start_upgraded_stream(self, scope):
        """``Upgrade: h2c`` (RFC 7540 §3.2): the HTTP/1.1 request whose ``scope`` the HTTP/1.1
        protocol built is stream 1, half-closed (it had no body); its app starts now.  Each
        protocol's ``upgrade(settings_payload, scope)`` calls this once its library has
        applied the client's HTTP2-Settings and opened stream 1."""
        scope["http_version"] = "2"
        scope["extensions"] = self.connection_extensions().copy()  # (the HTTP/1.1 side's were HTTP/1.1's)
        self.idle_since = -1.0
        self.start_app(self.start_stream_with_scope(1, scope, True))

    def build_scope(self, headers, method=None, path=None, authority=None):
        """RFC 9113 §8.3.1: the pseudo-header fields give the request line; ``:authority``
        becomes ``host`` (ASGI: first in the list, replacing a ``host`` field).  They are
        in ``headers``, or, taken out of it by the protocol, the values of ``:method``,
        ``:path`` and ``:authority`` are given apart (None: not in the block)."""
        fields = []
        hosts = 0
        max_field = self.max_field_size
        for pair in headers:
            name = pair[0]
            value = pair[1]
            if name and name[0] == 58:  # ":", a pseudo-header field
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue
            if len(name) + len(value) > max_field:
                raise RequestError(431, "Request header field too large")
            if name == b"host":
                hosts += 1
            elif (
                name == b"content-length"
                and 0 <= self.max_body_size
                and value.isdigit()
                and int(value) > self.max_body_size
            ):
                raise RequestError(413, "Request body too large")  # before the app runs, as HTTP/1.1 does
            # (a plain (bytes, bytes) tuple goes in as it is; another pair's kind becomes one)
            fields.append(pair if type(pair) is tuple else (name, value))
        if len(fields) > self.max_headers:
            raise RequestError(431, "Too many request header fields")
        # a second Host (or one that differs from :authority) is how requests get
        # routed by one hop and served by another (RFC 9113 §8.3.1, RFC 9110 §7.2)
        if hosts > 1:
            raise RequestError(400, "Duplicate Host header")
        if authority is not None:
            if hosts:
                for pair in fields:
                    if pair[0] == b"host" and pair[1] != authority:
                        raise RequestError(400, "Host header differs from :authority")
                fields = [pair for pair in fields if pair[0] != b"host"]
            fields.insert(0, (b"host", authority))
        if method is None or token_kind(method) == 0:
            raise RequestError(400, "Invalid method")
        method_str = METHOD_NAMES.get(method)
        if method_str is None:
            method_str = method.decode("ascii")
        if path is None:
            raise RequestError(400, "Invalid request target")  # CONNECT (RFC 8441 is not offered)
        # RFC 9113 §8.3.1: origin-form, or "*" for OPTIONS; RFC 9112 §3.2: no fragment,
        # visible ASCII only (as HTTP/1.1's parsers require); where the query starts, and
        # whether the path has a percent-escape, seen on the way
        query_at = -1
        escaped = False
        for i, c in enumerate(path):
            if c < 0x21 or c > 0x7E or c == 0x23:
                raise RequestError(400, "Invalid request target")
            if c == 0x3F:  # "?"
                if query_at < 0:
                    query_at = i
            elif c == 0x25 and query_at < 0:  # "%" in the path
                escaped = True
        if path == b"*":
            if method_str != "OPTIONS":
                raise RequestError(400, "Asterisk-form target outside OPTIONS")
            raw_path = b"*"
            query = b""
        elif not path or path[0] != 47:  # "/"
            raise RequestError(400, "Invalid request target")
        elif query_at < 0:
            raw_path = path
            query = b""
        else:
            raw_path = path[:query_at]
            query = path[query_at + 1 :]
        path_str = raw_path.decode("ascii")
        if escaped:
            path_str = unquote(path_str)
        root_path = self.root_path
        template = self.scope_template
        if template is None:
            # what every request of this connection shares, in the scope's key order
            template = {
                "type": "http",
                "asgi": {"version": self.asgi_version, "spec_version": "2.4"},  # (each scope: a copy)
                "http_version": "2",
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,
                "method": None,
                "root_path": root_path,
                "path": None,
                "raw_path": None,
                "query_string": None,
                "headers": None,
                "state": None,
                "extensions": None,
            }
            self.scope_template = template
        scope = template.copy()
        scope["asgi"] = template["asgi"].copy()
        scope["method"] = method_str
        scope["path"] = root_path + path_str if root_path else path_str
        scope["raw_path"] = root_path.encode("ascii") + raw_path if root_path else raw_path
        scope["query_string"] = query
        scope["headers"] = fields
        scope["state"] = self.app_state.copy()
        scope["extensions"] = self.connection_extensions().copy()
        if self.trusted and has_forwarded_headers(fields):
            apply_forwarded(scope, self.proxy_trust)
        return scope

    def connection_extensions(self):
        """The ASGI extensions of this connection's streams (each stream's scope gets a copy),
        made at the first call and kept: on TLS, with its information."""
        extensions = self.extensions
        if extensions is not None:
            return extensions
        extensions = EXTENSIONS
        if self.scheme == "https":
            extensions = extensions.copy()
            extensions["tls"] = tls_extension(self.transport, getattr(self.config, "tls_server_cert", None))
        self.extensions = extensions
        return extensions

    def check_bodies(self):
        """--timeout-request-body, per stream (as HTTP/1.1 applies it per request): a stream
        whose request body made no progress for that long gets 408 (or, once its response
        started, RST_STREAM) and its app ``http.disconnect``; the other streams go on.

        No progress means no byte arrived for it while the client could send: every byte
        that came was taken by the app (an app that does not read holds the window, as
        HTTP/1.1's paused reading does), and the streams of the connection do not hold
        half of its window.  Checked twice per timeout, by one timer per connection that
        runs only while some body is arriving."""
        self.body_timer = None
        if self.closed or self.shut:
            return
        now = self.loop.time()
        timeout = self.timeout_request_body
        held = 0
        for stream in self.streams.values():
            held += stream.unacked
        crowded = held >= CONNECTION_WINDOW // 2
        arriving = False
        for stream in list(self.streams.values()):
            if not stream.more_body or stream.disconnected or stream.response_complete:
                continue
            if stream.received != stream.body_mark or stream.unacked or crowded:
                stream.body_mark = stream.received
                stream.body_mark_time = now
            elif now - stream.body_mark_time >= timeout - 0.001:
                stream.body_timed_out()
                continue
            arriving = True
        if arriving and not self.closed:
            self.body_timer = self.loop.call_later(timeout / 2, self.check_bodies)

    def arm_response_timer(self):
        """A response may wait for the client from now on: --timeout-response-body watches it."""
        if self.response_timer is None and self.timeout_response_body > 0 and not self.closed:
            self.response_timer = self.loop.call_later(self.timeout_response_body / 2, self.check_responses)

    def check_responses(self):
        """--timeout-response-body: a response must make progress while it waits for the client.

        A stream whose response waited for the client's flow-control windows (its own or the
        connection's, RFC 9113 §6.9) for that long, without a byte going out, is reset
        (``response_timed_out``); a connection whose client read nothing for that long (the
        transport stayed paused) is closed, and what it buffered goes with it.  Time the
        app takes between its messages does not count.  Checked twice per timeout, by one
        timer per connection that runs only while some response is in progress."""
        self.response_timer = None
        if self.closed or self.shut:
            return
        now = self.loop.time()
        timeout = self.timeout_response_body
        if self.write_paused and now - self.paused_since >= timeout - 0.001:
            error_logger.warning("Response timed out: %s", "the client reads nothing")
            self.count(TIMEOUTS + TIMEOUT_RESPONSE_BODY)
            self.close_gracefully()  # GOAWAY, behind what the client does not read ...
            self.transport.abort()  # ... so the connection and its buffer go now
            return
        # (the streams' waits are measured by each protocol: what waits for a window is its library's)
        in_progress = self.check_stalled_responses(now, timeout)
        if (in_progress or self.write_paused) and not self.closed and not self.shut:
            self.response_timer = self.loop.call_later(timeout / 2, self.check_responses)

    def check_stalled_responses(self, now, timeout):
        """Reset the streams whose response waited for the client's windows ``timeout`` seconds
        (while the transport is paused, nothing counts); True while some response is in progress."""
        raise NotImplementedError

    def start_app(self, cycle):
        """Run the app of a stream in an ``asyncio.Task`` of its own (as HTTP/1.1 does: see
        ``http_py.HttpProtocol.start_app``), at once where possible."""
        limit = self.limit_concurrency
        if limit >= 0 and (len(self.connections) > limit or len(self.tasks) >= limit):
            app = service_unavailable
            error_logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app
        loop = self.loop
        run = new_app_run(cycle, app)
        self.running += 1
        cycle.running = True
        if loop.get_task_factory() is not None:
            task = self.base_context.copy().run(loop.create_task, run_in_task(run))
        elif _PY311:
            # Task(run, loop=loop, context=<a copy of base_context>), eager on 3.12+
            task = new_task(Task, run, self.task_kwargs, self.base_context)
            if not _PY312:
                # (not started yet: its first step runs from the loop's queue)
                cycle.task = task
                self.tasks.add(task)
                self.wave.add()
                return
        else:
            task = self.base_context.copy().run(Task, run, loop=loop)
        if not task.done():
            cycle.task = task
            self.tasks.add(task)
            self.wave.add()

    def app_ended(self, cycle):
        if cycle.running:
            cycle.running = False
            self.running -= 1

    def stream_done(self, cycle):
        """The stream's response is complete or it was reset: forget it."""
        streams = self.streams
        key = cycle.stream_key
        if streams.get(key) is cycle:
            del streams[key]
        self.became_idle()

    async def drain(self):
        if self.write_paused and not self.closed:
            waiter = self.drain_waiter
            if waiter is None:
                waiter = self.loop.create_future()
                self.drain_waiter = waiter
            await waiter

    def wake_drain(self):
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake_senders(self):
        for stream in list(self.streams.values()):
            stream.wake_sender()

    def count(self, slot):
        if self.metrics_on:
            self.metrics[slot] += 1


class StreamCycle(Sender):
    """One HTTP/2 stream: its request and response, the ``receive``/``send`` pair an app sees."""

    def setup(self, protocol, stream_id, scope, ended):
        # Called on StreamCycle.__new__(StreamCycle): compiled, that is a direct tp_new
        # plus a C call, with no argument parsing of a Python __init__.
        self.protocol = protocol
        self.stream_id = stream_id
        self.stream_key = stream_id  # (compiled: the id as a Python int, made once for the dicts of streams)
        self.scope = scope
        self.is_head = scope["method"] == "HEAD"
        self.outbox = None  # the protocol's own per-stream sending state, if it keeps one

        self.body_chunks = None
        self.body_size = 0
        self.received = 0  # request body bytes received (--limit-request-body)
        self.unacked = 0  # flow-controlled bytes received and not yet handed back to the client
        self.more_body = not ended
        self.delivered = False
        self.body_waiter = None
        self.disconnected = False

        self.response_started = False
        self.response_complete = False
        self.task = None
        self.running = False
        self.status = 0
        self.pending_headers = None  # the response head, sent with the first body message
        self.response_headers = None  # the app's, for the access log
        self.no_body = False
        self.expected_length = -1
        self.sent_length = 0
        self.send_waiter = None
        self.start_time = perf_counter() if protocol.access_log else 0.0
        self.in_flight = False
        self.method_index = 7
        self.started = 0
        self.trailers = False  # http.response.start said trailers: True
        self.trailers_pending = False  # the body is sent; http.response.trailers end the response
        self.trailer_fields = None
        self.file_busy = False  # a file of the response is being sent (pathsend, zerocopysend)
        self.body_mark = 0  # --timeout-request-body: bytes received when progress was last seen
        self.body_mark_time = 0.0

    # -- fed by the protocol --------------------------------------------------------

    def on_data(self, data, flow_length):
        protocol = self.protocol
        if self.disconnected or self.response_complete:
            # nobody will read it: the window goes back to the client at once
            protocol.ack(self.stream_id, flow_length)
            return
        size = len(data)
        if flow_length > size:  # padding: nothing for the app, its window goes back now
            protocol.ack(self.stream_id, flow_length - size)
        self.unacked += size
        self.received += size
        limit = protocol.max_body_size
        if 0 <= limit < self.received:
            self.body_too_large()
            return
        if size:
            chunks = self.body_chunks
            if chunks is None:
                self.body_chunks = [data]
            else:
                chunks.append(data)
            self.body_size += size
            self.wake_receiver()

    def on_body_end(self):
        self.more_body = False
        self.wake_receiver()

    def on_disconnect(self):
        if self.disconnected:
            return
        self.disconnected = True
        self.drop_body()
        if self.in_flight:
            self.finish(self.status if self.response_started and self.pending_headers is None else 0)
        self.wake_receiver()
        self.wake_sender()

    def body_too_large(self):
        """More body than --limit-request-body: 413 if no response has started, else a reset."""
        error_logger.warning("Invalid HTTP request received: %s", "Request body too large")
        self.protocol.count(PARSE_ERRORS + PARSE_BODY_TOO_LARGE)
        self.refuse_body(413, "Request body too large")

    def body_timed_out(self):
        """--timeout-request-body: the body stalled (see ``StreamProtocol.check_bodies``)."""
        error_logger.warning("Request timed out: %s", "request body stalled")
        self.protocol.count(TIMEOUTS + TIMEOUT_BODY)
        self.refuse_body(408, "Request Timeout")

    def response_timed_out(self):
        """--timeout-response-body: the client kept its window closed (see
        ``StreamProtocol.check_responses``): RST_STREAM CANCEL, and the app sees what a
        client's reset shows it (``send`` returns, ``receive()`` gives http.disconnect)."""
        error_logger.warning("Response timed out: %s", "the client's flow-control window stayed closed")
        protocol = self.protocol
        protocol.count(TIMEOUTS + TIMEOUT_RESPONSE_BODY)
        protocol.reset(self.stream_id, CANCEL)
        self.on_disconnect()
        protocol.stream_done(self)

    def refuse_body(self, status, message):
        """Refuse the request body being received: ``status`` if no response has started
        (as HTTP/1.1 answers it), else RST_STREAM; its app sees ``http.disconnect``."""
        protocol = self.protocol
        if not self.response_started:
            self.response_started = True
            self.response_complete = True
            protocol.answer_error(self.stream_id, status, message, False)
            if self.in_flight:
                self.finish(status)
        else:
            self.response_complete = True
            if self.in_flight:
                self.finish(self.status if self.pending_headers is None else 0)
            protocol.reset(self.stream_id, CANCEL)
        self.disconnected = True
        self.drop_body()
        self.wake_receiver()
        self.wake_sender()
        protocol.stream_done(self)

    def drop_body(self):
        self.body_chunks = None
        self.body_size = 0
        self.ack()

    def ack(self):
        n = self.unacked
        if n:
            self.unacked = 0
            protocol = self.protocol
            if not protocol.closed:
                protocol.ack(self.stream_id, n)

    def wake_receiver(self):
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake_sender(self):
        waiter = self.send_waiter
        if waiter is not None:
            self.send_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the app ----------------------------------------------------------------------

    def app_returned(self, result):
        self.forget_task()
        if result is not None:
            error_logger.error("ASGI callable should return None, but returned '%s'.", result)
        if not self.response_started:
            if not self.disconnected:
                error_logger.error("ASGI callable returned without starting response.")
            self.fail()
        elif not self.response_complete:
            if not self.disconnected:
                error_logger.error("ASGI callable returned without completing response.")
            self.abort()

    def app_raised(self, exc):
        """The app raised ``exc``: answer 500 (or reset the stream).  True when ``exc`` must propagate."""
        self.forget_task()
        if isinstance(exc, asyncio.CancelledError) and self.protocol.closed:
            return True
        error_logger.error("Exception in ASGI application\n", exc_info=exc)
        self.fail()
        return not isinstance(exc, Exception)

    def forget_task(self):
        task = self.task
        if task is not None:
            self.task = None
            self.protocol.tasks.discard(task)
        self.protocol.app_ended(self)

    def fail(self):
        """The app failed: 500 if nothing was sent yet, else reset the stream."""
        if self.response_complete or self.disconnected:
            return
        if self.response_started and self.pending_headers is None:
            self.abort()
            return
        self.response_started = True
        self.response_complete = True
        self.sent_length = len("Internal Server Error")
        self.protocol.answer_error(self.stream_id, 500, "Internal Server Error", not self.more_body)
        if self.in_flight:
            self.finish(500)
        self.log_access(500)
        self.after_response()

    def abort(self):
        """A response that cannot be completed: RST_STREAM (INTERNAL_ERROR), where HTTP/1.1 closes."""
        self.response_complete = True
        if self.in_flight:
            self.finish(self.status if self.pending_headers is None else 0)
        if not self.disconnected:
            self.disconnected = True
            self.protocol.reset(self.stream_id, INTERNAL_ERROR)
            self.drop_body()
        self.protocol.stream_done(self)

    async def receive(self):
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if not self.body_chunks and (self.more_body or self.delivered):
            waiter = self.protocol.loop.create_future()
            self.body_waiter = waiter
            await waiter
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
        chunks = self.body_chunks
        if chunks is None:
            body = b""
        elif len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        self.body_chunks = None
        self.body_size = 0
        # the app took it: the client may send as much again (RFC 9113 §5.2)
        self.ack()
        if not self.more_body:
            self.delivered = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def send_message(self, message):
        """Handle one message of the app's ``send``: None when done, else an awaitable (a
        response waiting for the client's window or the transport's drain)."""
        mtype = message["type"]
        if not self.response_started:
            if mtype != "http.response.start":
                if mtype == "http.response.early_hint":
                    return self.send_early_hint(message)
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{mtype}'.")
            self.start_response(message["status"], message.get("headers", ()))
            if message.get("trailers", False):
                self.trailers = True  # (HTTP/2 frames them after any body, content-length or not)
            return None
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{mtype}' sent, after response already completed.")
        if self.file_busy:
            raise RuntimeError(f"Unexpected ASGI message '{mtype}' sent, while a file of the response is being sent.")
        if mtype != "http.response.body" or self.trailers_pending:
            if (mtype == "http.response.pathsend" or mtype == "http.response.zerocopysend") and not self.trailers:
                return self.send_file_message(message, mtype)
            return self.send_other(message, mtype)
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if type(body) is not bytes:
            if isinstance(body, (bytearray, memoryview)):
                body = bytes(body)
            else:
                raise RuntimeError(f"ASGI 'http.response.body' body must be bytes, got {type(body).__name__}.")
        protocol = self.protocol
        final = not more_body
        head = self.pending_headers
        if head is not None:
            self.pending_headers = None
            if self.no_body:
                body = b""
            elif self.expected_length < 0 and final:
                # the whole body is known: its length goes in the head, as HTTP/1.1 does
                head.append((b"content-length", b"%d" % len(body)))
                self.expected_length = len(body)
            end_now = final and not self.trailers and (self.no_body or (not body and self.expected_length <= 0))
            if not protocol.send_headers(self, head, end_now):
                self.on_disconnect()
                return None
            if end_now:
                self.complete()
                return None
        elif self.no_body:
            body = b""
        too_long = 0
        short = False
        expected = self.expected_length
        if expected >= 0 and not self.no_body:
            total = self.sent_length + len(body)
            if total > expected:
                too_long = total
                body = body[: expected - self.sent_length]
            elif final and total < expected:
                short = True
        self.sent_length += len(body)
        end = final and not too_long and not short and not self.trailers
        n = protocol.send_data(self, body, end)
        if n < 0:
            self.on_disconnect()
            return None
        if n < len(body):
            return self.send_rest(body[n:], end, too_long, short, final)
        if protocol.write_paused:
            return self.send_rest(b"", False, too_long, short, final)
        self.body_sent(too_long, short, final)
        return None

    async def send_rest(self, data, end, too_long, short, final):
        """The slow end of ``send_message``: wait for the client's windows (RFC 9113 §6.9) to
        take the rest of ``data``, then for the transport to drain."""
        protocol = self.protocol
        while data:
            waiter = protocol.loop.create_future()
            self.send_waiter = waiter
            await waiter
            if self.disconnected:
                break
            n = protocol.send_data(self, data, end)
            if n < 0:
                self.on_disconnect()
                break
            data = data[n:]
        if protocol.write_paused and not self.disconnected:
            await protocol.drain()
        self.body_sent(too_long, short, final)

    def body_sent(self, too_long, short, final):
        if too_long:
            self.abort()
            raise RuntimeError(
                f"Response content longer than Content-Length ({too_long} > {self.expected_length} bytes); "
                "the excess was not sent and the stream was reset."
            )
        if short:
            error_logger.error(
                "Response content shorter than Content-Length (%d of %d bytes); resetting the stream.",
                self.sent_length,
                self.expected_length,
            )
            self.abort()
            return
        if final and not self.disconnected:
            if self.trailers:
                self.trailers_pending = True
            else:
                self.complete()

    # -- ASGI extensions: early hints, trailers, files (see README, "ASGI extensions") --

    def send_other(self, message, mtype):
        """A message other than the expected http.response.body, once the response started."""
        if self.trailers_pending:
            if mtype == "http.response.trailers":
                return self.send_trailers(message)
            raise RuntimeError(f"Expected ASGI message 'http.response.trailers', but got '{mtype}'.")
        if mtype == "http.response.early_hint" and self.pending_headers is not None:
            # after http.response.start, before the head is sent: still in time
            return self.send_early_hint(message)
        raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{mtype}'.")

    def send_early_hint(self, message):
        """http.response.early_hint: a 103 HEADERS frame with the app's links (RFC 8297, RFC 9113 §8.1)."""
        try:
            fields = early_hint_fields(message.get("links", ()))
        except ResponseHeaderError as exc:
            raise RuntimeError(str(exc)) from None
        if not fields:
            return None
        protocol = self.protocol
        if not protocol.send_informational(self, fields):
            self.on_disconnect()
            return None
        if protocol.write_paused:
            return protocol.drain()
        return None

    def send_trailers(self, message):
        """http.response.trailers after the last body: gathered until ``more_trailers`` is
        false, then one HEADERS frame with END_STREAM (RFC 9113 §8.1) ends the response."""
        try:
            fields = trailer_fields(message.get("headers", ()))
        except ResponseHeaderError as exc:
            raise RuntimeError(str(exc)) from None
        if self.trailer_fields is None:
            self.trailer_fields = fields
        else:
            self.trailer_fields.extend(fields)
        if message.get("more_trailers", False):
            return None
        fields = self.trailer_fields
        self.trailer_fields = None
        self.trailers_pending = False
        protocol = self.protocol
        if fields and not self.no_body:
            ok = protocol.send_trailers(self, fields)
        else:  # (a response without content, HEAD, 204, 304, gets no trailers: as over HTTP/1.1)
            ok = protocol.send_data(self, b"", True) >= 0
        if not ok:
            self.on_disconnect()
            return None
        self.complete()
        if protocol.write_paused:
            return protocol.drain()
        return None

    def send_file_message(self, message, mtype):
        """``http.response.pathsend`` / ``http.response.zerocopysend``: the head if it is not sent
        yet (content-length from the file's size when the app gave none and the file is the
        whole body), then the file's bytes, read in FILE_CHUNK pieces as the client's windows
        take them (:meth:`send_file`, the awaitable returned to ``send``).  Errors found before
        anything is sent are raised in the app, as over HTTP/1.1 (``http_py``'s
        ``send_file_message`` says which); there is no sendfile on HTTP/2 (bytes are framed)."""
        head = self.pending_headers
        pathsend = mtype == "http.response.pathsend"
        file = None
        position = -1  # zerocopysend without offset: where the file's position moves after the send
        fd = -1
        offset = 0
        count = 0
        status = self.status
        if pathsend:
            if head is None:
                raise RuntimeError("ASGI message 'http.response.pathsend' cannot follow 'http.response.body'.")
            more_body = False
            if status != 204 and status != 304:  # (a response without content: no file needed)
                try:
                    fd, count = open_file(message.get("path"))
                except FileSendError as exc:
                    raise RuntimeError(str(exc)) from None
        else:
            more_body = message.get("more_body", False)
            file = message.get("file")
            try:
                fd, offset, count = file_range(file, message.get("offset"), message.get("count"))
            except FileSendError as exc:
                raise RuntimeError(str(exc)) from None
            if message.get("offset") is None:
                position = offset
        owned = pathsend and fd >= 0
        final = not more_body
        if head is not None and status != 204 and status != 304:
            if self.expected_length < 0:
                if final:
                    head.append((b"content-length", b"%d" % count))
                    self.expected_length = count
            elif pathsend and not self.no_body and self.expected_length != count:
                if owned:
                    os.close(fd)
                raise RuntimeError(
                    f"'http.response.pathsend': the response's content-length ({self.expected_length}) is not the "
                    f"size of {message.get('path')!r} ({count} bytes)"
                )
        if self.no_body:
            count = 0
        too_long = 0
        short = False
        expected = self.expected_length
        if expected >= 0 and not self.no_body:
            total = self.sent_length + count
            if total > expected:
                too_long = total
                count = expected - self.sent_length
            elif final and total < expected:
                short = True
        end = final and not too_long and not short
        protocol = self.protocol
        if head is not None:
            self.pending_headers = None
            end_now = end and count == 0
            if not protocol.send_headers(self, head, end_now):
                if owned:
                    os.close(fd)
                self.on_disconnect()
                return None
            if end_now:
                if owned:
                    os.close(fd)
                self.complete()
                return None
        if count == 0:
            if owned:
                os.close(fd)
            if end and protocol.send_data(self, b"", True) < 0:
                self.on_disconnect()
                return None
            self.body_sent(too_long, short, final)
            if protocol.write_paused:
                return protocol.drain()
            return None
        self.file_busy = True
        return self.send_file(fd, offset, count, end, owned, file, position, too_long, short, final)

    async def send_file(self, fd, offset, count, end, owned, file, position, too_long, short, final):
        """The bytes of a file message: FILE_CHUNK pieces with ``os.pread``, each handed to the
        protocol as the client's windows allow and the transport drains (RFC 9113 §6.9); a
        slow client holds about one piece and a window of the file in memory.  ``owned``:
        the server opened ``fd`` (pathsend) and closes it; a zerocopysend's is the app's."""
        protocol = self.protocol
        asked = count
        sent = 0
        shrank = False
        try:
            while count > 0 and not self.disconnected:
                piece = pread(fd, min(FILE_CHUNK, count), offset)
                if not piece:
                    shrank = True
                    break
                size = len(piece)
                offset += size
                count -= size
                last = end and count == 0
                n = protocol.send_data(self, piece, last)
                while 0 <= n < len(piece):
                    piece = piece[n:]
                    waiter = protocol.loop.create_future()
                    self.send_waiter = waiter
                    await waiter
                    if self.disconnected:
                        break
                    n = protocol.send_data(self, piece, last)
                if n < 0:
                    self.on_disconnect()
                if self.disconnected:
                    break
                sent += size
                if protocol.write_paused:
                    await protocol.drain()
        except BaseException:
            # cancelled (shutdown, the app's own timeout) or failed in the middle of a
            # body: only a reset ends the stream without a wrong length
            self.file_busy = False
            if owned:
                os.close(fd)
            if not self.response_complete:
                self.abort()
            raise
        self.file_busy = False
        if owned:
            os.close(fd)
        elif position >= 0:
            set_position(file, position + sent)
        self.sent_length += sent
        if self.disconnected:
            return
        if shrank:
            error_logger.error("File ended while being sent (%d of %d bytes sent); resetting the stream.", sent, asked)
            self.abort()
            return
        self.body_sent(too_long, short, final)

    def start_response(self, status, headers):
        """Check the app's head (as framing_py.encode_head does for HTTP/1.1) and keep it for the first body message."""
        default_headers = self.protocol.server_state.default_headers
        last = _last_head
        if (
            type(status) is int
            and status == last[0]
            and default_headers is last[1]
            and (type(headers) is list or type(headers) is tuple)
            and _same_headers(headers, last[2])
        ):
            # the same head as the last response's (most apps answer with a few fixed
            # heads): its checked pairs again, without checking each field again
            head = list(last[3])
            content_length = last[4]
        else:
            if type(status) is not int:
                try:
                    status = int(status)  # an IntEnum such as http.HTTPStatus
                except (TypeError, ValueError):
                    raise RuntimeError(f"Invalid HTTP status code {status!r} in response (must be an int)") from None
            head, content_length = response_head(status, headers, default_headers)
        self.status = status
        self.response_started = True
        self.response_headers = headers
        self.pending_headers = head
        # RFC 9110 §6.4.1: no content in a 204 or 304 response, nor in one to HEAD
        self.no_body = self.is_head or status == 204 or status == 304
        if status == 204:
            content_length = -1
            self.pending_headers = [pair for pair in head if pair[0] != b"content-length"]
        self.expected_length = content_length

    def complete(self):
        self.response_complete = True
        if self.in_flight:
            self.finish(self.status)
        self.log_access(self.status)
        self.after_response()

    def after_response(self):
        """The response is sent: a request still arriving is not wanted any more (RFC 9113 §8.1)."""
        self.wake_receiver()
        if self.more_body and not self.disconnected:
            self.protocol.reset(self.stream_id, NO_ERROR)
        self.drop_body()
        self.protocol.stream_done(self)

    def finish(self, status):
        """--metrics-port: this request is over (see ``http_py.RequestCycle.finish``)."""
        self.in_flight = False
        metrics = self.protocol.metrics
        metrics[REQUESTS_IN_FLIGHT] -= 1
        code = int(status)
        if code == 0:
            return
        cls = min(max(code // 100 - 1, 0), N_CLASSES - 1)
        metrics[REQUESTS + self.method_index * N_CLASSES + cls] += 1
        elapsed = monotonic_ns() - self.started
        metrics[DURATION_NS] += elapsed
        i = 0
        while i < N_BUCKETS and elapsed > BUCKETS_NS[i]:
            i += 1
        metrics[HISTOGRAM + i] += 1

    def log_access(self, status):
        protocol = self.protocol
        if protocol.access_log:
            protocol.access_writer.log(
                self.scope, status, self.sent_length, perf_counter() - self.start_time, self.response_headers
            )


# The last head response_head checked: (status, default_headers, the app's pairs, the
# head's pairs, content-length or -1); start_response reuses it for the same status, pairs
# and default headers (as framing_py.encode_head reuses HTTP/1.1's last head).
_last_head: tuple = (0, None, (), (), -1)


def response_head(status, headers, default_headers):
    """The response head of the app's ``status`` and ``headers`` as HTTP/2 sends it: a list of
    ``(name, value)`` bytes pairs, ``:status`` first, checked and normalised (names lowercased,
    no connection-specific fields, values stripped, one content-length), then the server's
    ``default_headers`` the app did not give; and the content-length given, or -1."""
    global _last_head
    if not 200 <= status <= 599:
        # RFC 9113 §8.1: a final status; informational responses are not an ASGI message
        raise RuntimeError(f"Invalid HTTP status code {status!r} in response (must be 200-599 over HTTP/2)")
    head = [STATUS_FIELDS[status]]
    # reusable for the same pairs when they are all tuples of bytes
    cacheable = type(headers) is list or type(headers) is tuple
    has_server = has_date = False
    content_length = -1
    for item in headers:
        if type(item) is not tuple:
            cacheable = False
        raw_name, raw_value = item
        # (compiled, name and value are C-typed bytes: the checks below are C loops)
        if type(raw_name) is bytes:
            name = raw_name
        elif isinstance(raw_name, (bytearray, memoryview)):
            name = bytes(raw_name)
            cacheable = False
        else:
            raise RuntimeError(f"Response header names must be bytes, got {type(raw_name).__name__}")
        if type(raw_value) is bytes:
            value = raw_value
        elif isinstance(raw_value, (bytearray, memoryview)):
            value = bytes(raw_value)
            cacheable = False
        else:
            raise RuntimeError(f"Response header values must be bytes, got {type(raw_value).__name__}")
        # RFC 9110 §5.1 / RFC 9113 §8.2.1: tokens, sent lowercased
        kind = token_kind(name)
        if kind == 0:
            raise RuntimeError(f"Invalid response header name {name!r}")
        if 13 in value or 10 in value or 0 in value:  # RFC 9110 §5.5
            raise RuntimeError(f"Invalid response header value {value!r} for {name!r}")
        if kind == 2:
            name = name.lower()
        if name in CONNECTION_HEADERS:
            continue  # RFC 9113 §8.2.2: connection-specific, meaningless here
        if value and (value[0] == 32 or value[0] == 9 or value[-1] == 32 or value[-1] == 9):
            value = value.strip(b" \t")
        if name == b"content-length":
            if not value.isdigit() or (content_length != -1 and int(value) != content_length):
                raise RuntimeError(f"Invalid content-length {value!r} in response")
            if content_length != -1:
                continue
            content_length = int(value)
        elif name == b"server":
            has_server = True
        elif name == b"date":
            has_date = True
        head.append(item if type(item) is tuple and name is raw_name and value is raw_value else (name, value))
    for pair in default_headers:
        name = pair[0]
        if (has_server and name == b"server") or (has_date and name == b"date"):
            continue
        head.append(pair)
    if cacheable:
        _last_head = (status, default_headers, tuple(headers), tuple(head), content_length)
    return head, content_length


Task = asyncio.Task


async def run_in_task(run):
    """A coroutine around an AppRun, for a user's task factory (which may want a real coroutine)."""
    await run


async def service_unavailable(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})
