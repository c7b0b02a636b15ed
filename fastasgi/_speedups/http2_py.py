"""The HTTP/2 connection protocol on the ``h2`` library (``--http2``), and its streams.

The pure-Python HTTP/2 implementation: it runs wherever ``h2`` imports (PyPy,
``FASTASGI_NO_EXTENSIONS=1``, and for now the compiled set too; a binding of
libnghttp2 is the compiled path to come, with the same names and behaviour).
:mod:`fastasgi.protocols.http.negotiation` hands it a connection that opened with
the HTTP/2 preface (cleartext) or negotiated ``h2`` by ALPN (TLS).

Per connection: bytes -> ``H2Connection.receive_data()`` -> events -> one
:class:`StreamCycle` per stream, whose ``receive``/``send`` are handed to the app,
exactly as an HTTP/1.1 request's are: the same scope (``http_version`` ``"2"``,
pseudo-headers removed, ``:authority`` as ``host``), the same ASGI events, one
``asyncio.Task`` per stream whose context is a fresh copy of the connection's base
context, and the same proxy trust, access log and ``--metrics-port`` counters.

Flow control follows the app: a stream's receive window is handed back to the
client as the app takes the body (``receive()``), never for a buffer of
everything; the response waits for the client's window (and the transport's
drain) before each piece is handed to ``h2``.  Hardening beyond what ``h2``
checks (RFC 9113 framing, header validity, HPACK limits, 64 CONTINUATION frames):
the header-list limit of HTTP/1.1, a cap on running apps per connection, and
budgets for resets (CVE-2023-44487, "Rapid Reset") and for frames that cost the
server work but carry no request (PING, SETTINGS, PRIORITY, empty DATA, stray
WINDOW_UPDATE, unknown types): past one, the connection ends with GOAWAY
``ENHANCE_YOUR_CALM``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextvars import Context, copy_context
from time import monotonic_ns, perf_counter
from urllib.parse import unquote

import h2
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from fastasgi._speedups.coro_py import AppRun
from fastasgi._speedups.framing_py import token_kind
from fastasgi.accesslog import AccessLog
from fastasgi.connection import get_local_addr, get_remote_addr, is_ssl, trust_key
from fastasgi.metrics import (
    BUCKETS_NS,
    BYTES_IN,
    BYTES_OUT,
    CONNECTIONS,
    CONNECTIONS_OPEN,
    DURATION_NS,
    HISTOGRAM,
    N_BUCKETS,
    N_CLASSES,
    PARSE_BODY_TOO_LARGE,
    PARSE_ERRORS,
    PARSE_MALFORMED,
    REQUESTS,
    REQUESTS_IN_FLIGHT,
    TIMEOUT_HEADER,
    TIMEOUT_KEEP_ALIVE,
    TIMEOUTS,
    parse_error_kind,
)
from fastasgi.proxy_trust import apply_forwarded, has_forwarded_headers

DESCRIPTION = f"pure-Python: h2 {h2.__version__}"

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

MAX_CONCURRENT_STREAMS = 100  # SETTINGS_MAX_CONCURRENT_STREAMS, and the cap on running apps
STREAM_WINDOW = 65535  # per-stream receive window: what one stream may buffer (HTTP/1.1's HIGH_WATER)
CONNECTION_WINDOW = 1 << 20  # the connection's receive window: a stream whose app does not read
# its body cannot stall the uploads of the others before 1 MiB is buffered
HIGH_WATER = 65536  # response bytes queued in h2 above which they are written at once
LINGER = 2.0  # s a closing connection waits for the client to close before the server does
# Rapid Reset (CVE-2023-44487): streams the client cancels; a token bucket of RESET_BURST
# refilled at RESET_RATE per second
RESET_BURST = 500
RESET_RATE = 50.0
# frames that make the server work (or answer) but carry no request: PING, SETTINGS,
# PRIORITY, empty DATA, WINDOW_UPDATE while no response is being sent, unknown types
CONTROL_BURST = 1000
CONTROL_RATE = 100.0
# connection-specific fields (RFC 9113 §8.2.2): never sent in an HTTP/2 response
CONNECTION_HEADERS = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))

INFO = logging.INFO
_PY312 = sys.version_info >= (3, 12)
_PY311 = sys.version_info >= (3, 11)

error_logger = logging.getLogger("uvicorn.error")
access_logger = logging.getLogger("uvicorn.access")

_EVENTS = h2.events


class Budget:
    """A token bucket: ``spend()`` is False once more than ``burst`` events came faster than ``rate`` per second."""

    __slots__ = ("burst", "last", "rate", "tokens")

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


class _Pending(list):
    """A setting's current value (None: none yet), then the values proposed after it, while
    some are unacknowledged: h2 keeps this stack in a deque (512 bytes) for every setting."""

    __slots__ = ()


_ABSENT = object()


class CompactSettings(h2.settings.Settings):
    """``h2.settings.Settings`` that holds a settled setting as its plain value (a connection
    has a dozen), and the stack h2 works on only while a proposed value is unacknowledged.
    Validation and everything else stay h2's."""

    def __init__(self, client=True, initial_values=None):
        super().__init__(client, initial_values)
        self._settings = {key: values[0] for key, values in self._settings.items()}

    def acknowledge(self):
        changed = {}
        settings = self._settings
        for key, values in settings.items():
            if type(values) is _Pending and len(values) > 1:
                old = values.pop(0)
                changed[key] = h2.settings.ChangedSetting(key, old, values[0])
                if len(values) == 1:
                    settings[key] = values[0]  # settled (the dict's size does not change)
        return changed

    def __getitem__(self, key):
        value = self._settings[key]
        if type(value) is _Pending:
            value = value[0]
        if value is None:  # proposed, not acknowledged yet: h2 raises KeyError too
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        settings = self._settings
        current = settings.get(key, _ABSENT)
        if type(current) is not _Pending:  # h2 appends the value to this stack
            settings[key] = _Pending((None if current is _ABSENT else current,))
        try:
            super().__setitem__(key, value)
        except h2.exceptions.InvalidSettingsValueError:
            if current is _ABSENT:
                del settings[key]
            else:
                settings[key] = current
            raise


class _Entries(list):
    """An HPACK dynamic table's entries: hpack's deque of them (512 bytes before the first
    entry) as a list; the table holds a few dozen entries at most (4 KiB of headers)."""

    __slots__ = ()

    def appendleft(self, entry):
        self.insert(0, entry)


class _Dispatch:
    """h2's per-connection table of frame class -> bound method (a dict and a dozen bound
    methods per connection), looked up per frame instead."""

    __slots__ = ("conn",)
    names = None  # frame class -> method name, from the first connection's table

    def __init__(self, conn):
        if _Dispatch.names is None:
            _Dispatch.names = {cls: method.__name__ for cls, method in conn._frame_dispatch_table.items()}
        self.conn = conn

    def __getitem__(self, frame_class):
        return getattr(self.conn, self.names[frame_class])

    def get(self, frame_class, default=None):
        try:
            return self[frame_class]
        except KeyError:
            return default


def _compact(conn):
    """Trims what an h2 connection holds while idle (bench/idle_memory.py): its settings,
    HPACK tables and frame dispatch table, with the same behaviour."""
    conn.remote_settings = CompactSettings(client=True)  # h2's defaults for a client's settings
    conn.encoder.header_table.dynamic_entries = _Entries()
    conn.decoder.header_table.dynamic_entries = _Entries()
    conn._frame_dispatch_table = _Dispatch(conn)


_H2_CONFIG = None  # one h2.config.H2Configuration for all connections (h2 only reads it)


def _h2_config():
    global _H2_CONFIG
    if _H2_CONFIG is None:
        _H2_CONFIG = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            # the response head is checked and normalized once, by start_response (lowercase
            # tokens, values without CR/LF/NUL and surrounding blanks, no connection-specific
            # field): h2's second pass over it cost 5% of a request (callgrind, bench/h2_inproc.py)
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    return _H2_CONFIG


class Http2Protocol(asyncio.Protocol):
    """asyncio protocol for one HTTP/2 connection (``transport`` -> h2 -> stream cycles)."""

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

        self.conn = None
        self.transport = None
        self.client = None
        self.server = None
        self.scheme = "http"
        self.trusted = False
        self.access_log = False
        self.access_writer = None
        self.base_context = None

        self.streams = {}  # stream id -> StreamCycle, while its request or response is open
        self.running = 0  # apps of this connection still running
        self.requests = 0  # streams ever started on this connection
        self.closed = False  # connection_lost
        self.shut = False  # transport.close() called: nothing more is written
        self.closing = False  # GOAWAY sent (shutdown, timeout, error): no new stream starts
        self.goaway_last_id = -1  # graceful shutdown: streams above this id are refused
        self.in_receive = False  # inside data_received: flushed once at its end
        self.flush_handle = None
        self.write_paused = False
        self.read_paused = False
        self.drain_waiter = None
        self.idle_since = 0.0
        self.timer = None
        self.linger_handle = None
        self.reset_budget = None
        self.control_budget = None

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport):
        self.connections.add(self)
        self.transport = transport
        self.client = get_remote_addr(transport)
        self.server = get_local_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self.access_log = bool(self.config.access_log) and access_logger.isEnabledFor(INFO)
        if self.access_log:
            self.access_writer = getattr(self.config, "access_log_writer", None) or AccessLog()
        self.base_context = Context() if self.reset_contextvars else copy_context()
        if self.proxy_trust is not None:
            self.trusted = trust_key(transport, self.client) in self.proxy_trust
        now = self.loop.time()
        self.reset_budget = Budget(RESET_BURST, RESET_RATE, now)
        self.control_budget = Budget(CONTROL_BURST, CONTROL_RATE, now)
        conn = h2.connection.H2Connection(_h2_config())
        # in force at once (h2 applies initial values before the client acknowledges them)
        conn.local_settings = CompactSettings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.max_header_list_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        _compact(conn)
        # HPACK bombs: the decoded size of a header block is bounded while decoding
        conn.decoder.max_header_list_size = self.max_header_list_size
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.conn = conn
        if self.metrics_on:
            self.metrics[CONNECTIONS] += 1
            self.metrics[CONNECTIONS_OPEN] += 1
        self.flush()
        self.idle_since = now
        self.arm_timer()

    def connection_lost(self, exc):
        self.closed = True
        self.connections.discard(self)
        if self.metrics_on:
            self.metrics[CONNECTIONS_OPEN] -= 1
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.on_disconnect()
        self.wake_drain()
        for handle in (self.timer, self.flush_handle, self.linger_handle):
            if handle is not None:
                handle.cancel()
        self.timer = None
        self.flush_handle = None

    def eof_received(self):
        pass

    def pause_writing(self):
        # The client does not read what we send: stop reading what it sends too, so that
        # frames we must answer (PING, SETTINGS) cannot pile up answers in our buffers.
        self.write_paused = True
        if not self.read_paused and not self.shut:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.read_paused and not self.shut:
            self.read_paused = False
            self.transport.resume_reading()
        self.wake_drain()

    def data_received(self, data):
        if self.metrics_on:
            self.metrics[BYTES_IN] += len(data)
        if self.shut:
            return
        conn = self.conn
        self.in_receive = True
        try:
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                # h2 queued a GOAWAY with the error code (RFC 9113 §5.4.1)
                error_logger.warning("Invalid HTTP/2 data received: %s", exc)
                self.count(PARSE_ERRORS + PARSE_MALFORMED)
                self.close_now()
                return
            if events:
                self.handle_events(events)
            if not self.shut:
                self.check_header_block()
        finally:
            self.in_receive = False
        self.flush()

    # -- h2 events ----------------------------------------------------------------------

    def handle_events(self, events):
        # A stream's app starts once the events of this batch are handled: an app
        # started eagerly then finds the body that came with its headers.
        starting = None
        conn = self.conn
        for event in events:
            if self.shut:
                return
            etype = type(event)
            if etype is _EVENTS.DataReceived:
                stream = self.streams.get(event.stream_id)
                data = event.data
                if stream is not None:
                    stream.on_data(data, event.flow_controlled_length)
                else:  # a stream already answered or refused: hand the window back
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if not data and not event.stream_ended and not self.spend_control():
                    return
            elif etype is _EVENTS.RequestReceived:
                stream = self.start_stream(event.stream_id, event.headers, event.stream_ended)
                if stream is not None:
                    if starting is None:
                        starting = [stream]
                    else:
                        starting.append(stream)
            elif etype is _EVENTS.StreamEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.on_body_end()
            elif etype is _EVENTS.StreamReset:
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.on_disconnect()
                    if not stream.response_complete and not self.reset_budget.spend(self.loop.time()):
                        self.calm_down("too many streams reset by the client (Rapid Reset)")
                        return
                    self.became_idle()
            elif etype is _EVENTS.WindowUpdated:
                if event.stream_id:
                    stream = self.streams.get(event.stream_id)
                    if stream is not None:
                        stream.wake_sender()
                else:
                    self.wake_senders()
                if not self.response_in_progress() and not self.spend_control():
                    return
            elif etype is _EVENTS.RemoteSettingsChanged:
                self.wake_senders()  # INITIAL_WINDOW_SIZE may have grown every stream's window
                if not self.spend_control():
                    return
            elif etype is _EVENTS.ConnectionTerminated:
                # The client's GOAWAY: h2 sends nothing after it, so nothing more can be
                # answered on this connection (its streams see http.disconnect).
                self.close_now()
                return
            elif etype is _EVENTS.TrailersReceived:
                pass  # request trailers are not passed to the app (StreamEnded follows)
            elif (
                etype is _EVENTS.PingReceived
                or etype is _EVENTS.PriorityUpdated
                or etype is _EVENTS.UnknownFrameReceived
            ) and not self.spend_control():
                return
        if starting is not None:
            for stream in starting:
                if not stream.disconnected and not self.shut:
                    self.start_app(stream)

    def response_in_progress(self):
        """Whether some response waits for or uses the client's windows (what a WINDOW_UPDATE is for)."""
        for stream in self.streams.values():
            if stream.response_started and not stream.response_complete:
                return True
        return False

    def spend_control(self):
        if self.control_budget.spend(self.loop.time()):
            return True
        self.calm_down("too many control frames (PING, SETTINGS, PRIORITY, empty DATA, WINDOW_UPDATE)")
        return False

    def calm_down(self, why):
        """A flood: GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §5.4.1, §7) and close the connection."""
        error_logger.warning("HTTP/2 client %s: %s; closing the connection.", _peer(self.client), why)
        self.count(PARSE_ERRORS + PARSE_MALFORMED)
        if not self.closed:
            try:
                self.conn.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM)
            except h2.exceptions.ProtocolError:
                pass
        self.close_now()

    def check_header_block(self):
        """CONTINUATION floods: h2 buffers up to 64 frames of one header block before it
        decodes it; a block larger than the header-list limit is refused before that."""
        buffered = getattr(self.conn.incoming_buffer, "_headers_buffer", None)
        if buffered:
            size = 0
            for frame in buffered:
                size += len(frame.data)
            # an HPACK-encoded field is never larger than its size in the list
            # (name + value + 32), so a longer block is over the limit
            if size > self.max_header_list_size:
                self.calm_down("header block larger than the header list limit (CONTINUATION flood)")

    # -- streams --------------------------------------------------------------------------

    def start_stream(self, stream_id, headers, ended):
        """Build the scope and the cycle of a new stream (its app starts in start_app), or refuse it."""
        if self.closing:
            # after our GOAWAY (streams above its last id): the client may retry it (RFC 9113 §6.8)
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        if self.running >= MAX_CONCURRENT_STREAMS:
            # reset streams leave h2's count at once, their apps do not end at once
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return None
        self.idle_since = -1.0
        try:
            scope = self.build_scope(headers)
        except RequestError as exc:
            error_logger.warning("Invalid HTTP request received: %s", exc.reason)
            self.count(PARSE_ERRORS + parse_error_kind(exc.status))
            self.answer_error(
                stream_id, exc.status, "Invalid HTTP request received." if exc.status == 400 else exc.reason, ended
            )
            self.became_idle()
            return None
        stream = StreamCycle(self, stream_id, scope, ended)
        self.streams[stream_id] = stream
        self.requests += 1
        self.server_state.total_requests += 1
        if self.metrics_on:
            self.metrics[REQUESTS_IN_FLIGHT] += 1
            stream.in_flight = True
            stream.method_index = method_index(scope["method"])
            stream.started = monotonic_ns()
        return stream

    def build_scope(self, headers):
        """RFC 9113 §8.3.1: the pseudo-header fields give the request line; ``:authority``
        becomes ``host`` (ASGI: first in the list, replacing a ``host`` field)."""
        method = path = authority = None
        fields = []
        hosts = 0
        max_field = self.max_field_size
        for pair in headers:
            name = pair[0]
            value = pair[1]
            if name[:1] == b":":
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
            fields.append((name, value))
        if len(fields) > self.max_headers:
            raise RequestError(431, "Too many request header fields")
        # a second Host (or one that differs from :authority) is how requests get
        # routed by one hop and served by another (RFC 9113 §8.3.1, RFC 9110 §7.2)
        if hosts > 1:
            raise RequestError(400, "Duplicate Host header")
        if authority is not None:
            if hosts:
                for name, value in fields:
                    if name == b"host" and value != authority:
                        raise RequestError(400, "Host header differs from :authority")
                fields = [pair for pair in fields if pair[0] != b"host"]
            fields.insert(0, (b"host", authority))
        if method is None or token_kind(method) == 0:
            raise RequestError(400, "Invalid method")
        method_str = method.decode("ascii")
        if path is None:
            raise RequestError(400, "Invalid request target")  # CONNECT (RFC 8441 is not offered)
        # RFC 9113 §8.3.1: origin-form, or "*" for OPTIONS; RFC 9112 §3.2: no fragment,
        # visible ASCII only (as HTTP/1.1's parsers require)
        for c in path:
            if c < 0x21 or c > 0x7E or c == 0x23:
                raise RequestError(400, "Invalid request target")
        if path == b"*":
            if method_str != "OPTIONS":
                raise RequestError(400, "Asterisk-form target outside OPTIONS")
            raw_path, query = b"*", b""
        elif path[:1] != b"/":
            raise RequestError(400, "Invalid request target")
        else:
            raw_path, _sep, query = path.partition(b"?")
        path_str = raw_path.decode("ascii")
        if "%" in path_str:
            path_str = unquote(path_str)
        root_path = self.root_path
        scope = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "2",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method_str,
            "root_path": root_path,
            "path": root_path + path_str if root_path else path_str,
            "raw_path": root_path.encode("ascii") + raw_path if root_path else raw_path,
            "query_string": query,
            "headers": fields,
            "state": self.app_state.copy(),
        }
        if self.trusted and has_forwarded_headers(fields):
            apply_forwarded(scope, self.proxy_trust)
        return scope

    def answer_error(self, stream_id, status, message, ended):
        """Answer a request refused before its app ran (400, 413, 431) on its stream."""
        body = message.encode("utf-8")
        conn = self.conn
        try:
            conn.send_headers(
                stream_id,
                [
                    (b":status", b"%d" % status),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(body)),
                ],
            )
            if conn.local_flow_control_window(stream_id) >= len(body):
                conn.send_data(stream_id, body, end_stream=True)
            else:  # the client gave no window for even this: the head must do
                conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
                self.schedule_flush()
                return
            if not ended:
                # RFC 9113 §8.1: the answer is complete, the rest of the request is not wanted
                conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            pass
        self.schedule_flush()

    def reset(self, stream_id, code):
        try:
            self.conn.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass
        self.schedule_flush()

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
        ctx = self.base_context.copy()
        run = AppRun(cycle, app)
        self.running += 1
        cycle.running = True
        if loop.get_task_factory() is not None:
            task = ctx.run(loop.create_task, run_in_task(run))
        elif _PY312:
            task = Task(run, loop=loop, context=ctx, eager_start=True)
        elif _PY311:
            task = Task(run, loop=loop, context=ctx)
        else:
            task = ctx.run(Task, run, loop=loop)
        if not task.done():
            cycle.task = task
            self.tasks.add(task)

    def app_ended(self, cycle):
        if cycle.running:
            cycle.running = False
            self.running -= 1

    def stream_done(self, cycle):
        """The stream's response is complete or it was reset: h2 forgets it, so do we."""
        if self.streams.get(cycle.stream_id) is cycle:
            del self.streams[cycle.stream_id]
        self.became_idle()

    def became_idle(self):
        if self.streams or self.closed:
            return
        if self.closing:
            self.close_gracefully()
            return
        self.idle_since = self.loop.time()
        self.arm_timer()

    # -- writing ------------------------------------------------------------------------

    def flush(self):
        handle = self.flush_handle
        if handle is not None:
            self.flush_handle = None
            handle.cancel()
        if self.shut:
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)
            if self.metrics_on:
                self.metrics[BYTES_OUT] += len(data)

    def schedule_flush(self):
        """Write what h2 queued at the end of this loop iteration (or of data_received):
        the frames of several streams answered together take one write."""
        if self.in_receive or self.flush_handle is not None or self.shut:
            return
        self.flush_handle = self.loop.call_soon(self.flush)

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

    # -- closing ------------------------------------------------------------------------

    def close_now(self):
        """Write what is queued (a GOAWAY, usually) and close, without a reset.

        As ``http_py.HttpProtocol.send_error_and_close`` does: closing a socket with
        unread bytes makes the kernel answer with RST, which can destroy the GOAWAY
        before the client reads it.  So our FIN follows it (``write_eof``), what still
        arrives is read and dropped, and the connection closes when the client
        closes its side, or after ``LINGER`` seconds.
        """
        if self.shut:
            return
        self.closing = True
        self.flush()
        self.shut = True
        transport = self.transport
        try:
            transport.write_eof()  # TCP: FIN after the GOAWAY (asyncio's TLS has no half-close)
        except (NotImplementedError, RuntimeError, OSError):
            transport.close()
            return
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.linger_handle = self.loop.call_later(LINGER, transport.close)

    def close_gracefully(self):
        """GOAWAY (no error) with the last stream processed, then close."""
        if self.shut:
            return
        try:
            self.conn.close_connection()
        except h2.exceptions.ProtocolError:
            pass
        self.close_now()

    def shutdown(self):
        """Graceful shutdown: GOAWAY now, so the client opens no more streams here; the
        streams already open finish (within --timeout-graceful-shutdown), then close."""
        if self.shut or self.closing:
            return
        self.closing = True
        if not self.streams:
            self.close_gracefully()
            return
        # h2 moves to its closed state when told to send GOAWAY and would then refuse
        # the responses still in progress: this GOAWAY is written around it
        # (RFC 9113 §6.8), h2's own one follows when the last stream is done.
        self.goaway_last_id = self.conn.highest_inbound_stream_id
        self.flush()
        frame = GoAwayFrame(0, last_stream_id=self.goaway_last_id, error_code=0).serialize()
        self.transport.write(frame)
        if self.metrics_on:
            self.metrics[BYTES_OUT] += len(frame)

    # -- the connection's timer --------------------------------------------------------

    def arm_timer(self):
        if self.timer is None and not self.closed:
            self.timer = self.loop.call_later(self.timeout_keep_alive, self.on_timer)

    def on_timer(self):
        """Keep-alive (no stream open) and header-read timeouts, one lazy timer as HTTP/1.1 has.

        A connection with no open stream is closed (GOAWAY) ``--timeout-keep-alive``
        seconds after its last stream ended, or after the preface when none came;
        while a header block is incomplete, ``--timeout-request-header`` (at least
        the keep-alive timeout) applies instead.  An app's own time is not limited.
        """
        self.timer = None
        if self.closed or self.idle_since < 0 or self.streams:
            return
        now = self.loop.time()
        partial = bool(getattr(self.conn.incoming_buffer, "_headers_buffer", None))
        if partial and self.timeout_request_header > 0:
            deadline = self.idle_since + max(self.timeout_request_header, self.timeout_keep_alive)
            kind = TIMEOUT_HEADER
        else:
            deadline = self.idle_since + self.timeout_keep_alive
            kind = TIMEOUT_KEEP_ALIVE
        if deadline - now <= 0.001:
            if kind == TIMEOUT_HEADER:
                error_logger.warning("Request timed out: %s", "no complete header block")
            self.count(TIMEOUTS + kind)
            self.closing = True
            self.close_gracefully()
            return
        self.timer = self.loop.call_later(deadline - now, self.on_timer)

    def count(self, slot):
        if self.metrics_on:
            self.metrics[slot] += 1


def _peer(client):
    return f"{client[0]}:{client[1]}" if client else "(unix socket)"


class StreamCycle:
    """One HTTP/2 stream: its request and response, the ``receive``/``send`` pair an app sees."""

    __slots__ = (
        "body_chunks",
        "body_size",
        "body_waiter",
        "conn",
        "delivered",
        "disconnected",
        "expected_length",
        "in_flight",
        "is_head",
        "method_index",
        "more_body",
        "no_body",
        "pending_headers",
        "protocol",
        "received",
        "response_complete",
        "response_headers",
        "response_started",
        "running",
        "scope",
        "send_waiter",
        "sent_length",
        "start_time",
        "started",
        "status",
        "stream_id",
        "task",
        "unacked",
    )

    def __init__(self, protocol, stream_id, scope, ended):
        self.protocol = protocol
        self.conn = protocol.conn
        self.stream_id = stream_id
        self.scope = scope
        self.is_head = scope["method"] == "HEAD"

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

    # -- fed by the protocol --------------------------------------------------------

    def on_data(self, data, flow_length):
        protocol = self.protocol
        if self.disconnected or self.response_complete:
            # nobody will read it: the window goes back to the client at once
            protocol.conn.acknowledge_received_data(flow_length, self.stream_id)
            return
        size = len(data)
        if flow_length > size:  # padding: nothing for the app, its window goes back now
            protocol.conn.acknowledge_received_data(flow_length - size, self.stream_id)
            protocol.schedule_flush()
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
        protocol = self.protocol
        protocol.count(PARSE_ERRORS + PARSE_BODY_TOO_LARGE)
        if not self.response_started:
            self.response_started = True
            self.response_complete = True
            protocol.answer_error(self.stream_id, 413, "Request body too large", False)
            if self.in_flight:
                self.finish(413)
        else:
            self.response_complete = True
            protocol.reset(self.stream_id, ErrorCodes.CANCEL)
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
                protocol.conn.acknowledge_received_data(n, self.stream_id)
                protocol.schedule_flush()

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
            self.protocol.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
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

    async def send(self, message):
        if self.disconnected:
            return
        if type(message) is not dict:
            message = dict(message)
        mtype = message["type"]
        if not self.response_started:
            if mtype != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{mtype}'.")
            self.start_response(message["status"], message.get("headers", ()))
            return
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{mtype}' sent, after response already completed.")
        if mtype != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{mtype}'.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if type(body) is not bytes:
            if isinstance(body, (bytearray, memoryview)):
                body = bytes(body)
            else:
                raise RuntimeError(f"ASGI 'http.response.body' body must be bytes, got {type(body).__name__}.")
        protocol = self.protocol
        conn = self.conn
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
            end_now = final and (self.no_body or (not body and self.expected_length <= 0))
            try:
                conn.send_headers(self.stream_id, head, end_stream=end_now)
            except h2.exceptions.ProtocolError:
                self.on_disconnect()
                return
            if end_now:
                self.complete()
                protocol.schedule_flush()
                return
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
        await self.send_data(body, final and not too_long and not short)
        if too_long:
            self.abort()
            raise RuntimeError(
                f"Response content longer than Content-Length ({too_long} > {expected} bytes); the "
                "excess was not sent and the stream was reset."
            )
        if short:
            error_logger.error(
                "Response content shorter than Content-Length (%d of %d bytes); resetting the stream.",
                self.sent_length,
                expected,
            )
            self.abort()
            return
        if final and not self.disconnected:
            self.complete()

    def start_response(self, status, headers):
        """Check the app's head (as framing_py.encode_head does for HTTP/1.1) and keep it for the first body message."""
        if type(status) is not int:
            try:
                status = int(status)  # an IntEnum such as http.HTTPStatus
            except (TypeError, ValueError):
                raise RuntimeError(f"Invalid HTTP status code {status!r} in response (must be an int)") from None
        if not 200 <= status <= 599:
            # RFC 9113 §8.1: a final status; informational responses are not an ASGI message
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response (must be 200-599 over HTTP/2)")
        head = [(b":status", b"%d" % status)]
        has_server = has_date = False
        content_length = -1
        for item in headers:
            name, value = item
            if type(name) is not bytes:
                if isinstance(name, (bytearray, memoryview)):
                    name = bytes(name)
                else:
                    raise RuntimeError(f"Response header names must be bytes, got {type(name).__name__}")
            if type(value) is not bytes:
                if isinstance(value, (bytearray, memoryview)):
                    value = bytes(value)
                else:
                    raise RuntimeError(f"Response header values must be bytes, got {type(value).__name__}")
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
            head.append((name, value))
        for name, value in self.protocol.server_state.default_headers:
            if (has_server and name == b"server") or (has_date and name == b"date"):
                continue
            head.append((name, value))
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

    async def send_data(self, data, final):
        """Hand ``data`` to h2 as the client's flow-control windows allow (RFC 9113 §6.9), waiting
        for them and for the transport to drain: back-pressure reaches the app's ``send``."""
        protocol = self.protocol
        conn = self.conn
        stream_id = self.stream_id
        while True:
            if self.disconnected:
                return
            if not data:
                if final:
                    try:
                        conn.end_stream(stream_id)
                    except h2.exceptions.ProtocolError:
                        self.on_disconnect()
                        return
                    protocol.schedule_flush()
                return
            try:
                window = conn.local_flow_control_window(stream_id)
            except h2.exceptions.ProtocolError:  # the stream is gone
                self.on_disconnect()
                return
            if window <= 0:
                protocol.flush()
                waiter = protocol.loop.create_future()
                self.send_waiter = waiter
                await waiter
                continue
            n = min(len(data), window, conn.max_outbound_frame_size)
            piece = data if n == len(data) else data[:n]
            data = data[n:] if n < len(data) else b""
            try:
                conn.send_data(stream_id, piece, end_stream=final and not data)
            except h2.exceptions.ProtocolError:
                self.on_disconnect()
                return
            if n >= HIGH_WATER or protocol.write_paused:
                protocol.flush()
            else:
                protocol.schedule_flush()
            if protocol.write_paused:
                await protocol.drain()
            if not data and final:
                return

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
            self.protocol.reset(self.stream_id, ErrorCodes.NO_ERROR)
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
