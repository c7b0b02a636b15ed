"""The HTTP/1.1 connection protocol and its one ASGI request/response cycle.

Pure-Python twin of ``http_c``: Cython compiles this same file into
``fastasgi._speedups.http_c`` with the attribute and method types declared in
``http_c.pxd``; this file never imports ``cython`` so PyPy runs it unchanged.
Which parser and framing module it uses follows from its own module name, so
the compiled protocol always runs with the compiled parser and framing, and the
pure one with the pure ones (all modules switch together).

Per connection: bytes -> ``parser.feed()`` -> events (head tuple, body bytes,
``None`` at end of message) -> one :class:`RequestCycle` per request, whose
``receive``/``send`` are handed to the app.  Pipelined requests wait in
``pending`` until the response before them is complete.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from array import array
from contextvars import Context, copy_context
from time import perf_counter

if __name__.endswith("_c"):  # compiled: the compiled set
    from fastasgi._speedups.clock_c import monotonic_ns
    from fastasgi._speedups.coro_c import Sender, new_app_run, new_task, speed_up_task_registry
    from fastasgi._speedups.framing_c import (
        CHUNKED,
        CLOSE_DELIMITED,
        CONTENT_LENGTH,
        LAST_CHUNK,
        NO_BODY,
        ResponseHeaderError,
        encode_early_hint,
        encode_head,
        encode_trailers,
    )
    from fastasgi._speedups.parser_c import ParseError
    from fastasgi._speedups.parser_c import RequestParser as new_parser
else:
    from time import monotonic_ns

    from fastasgi._speedups.coro_py import Sender as _PySender
    from fastasgi._speedups.coro_py import new_app_run, new_task

    # (http_c.pxd declares Sender as the compiled base type, so Cython refuses a
    # plain import of that name even in this branch, which only runs uncompiled)
    globals()["Sender"] = _PySender
    from fastasgi._speedups.framing_py import (
        CHUNKED,
        CLOSE_DELIMITED,
        CONTENT_LENGTH,
        LAST_CHUNK,
        NO_BODY,
        ResponseHeaderError,
        encode_early_hint,
        encode_head,
        encode_trailers,
    )
    from fastasgi._speedups.parser_py import ParseError
    from fastasgi._speedups.parser_py import RequestParser as new_parser

from fastasgi.accesslog import AccessLog
from fastasgi.connection import (
    error_response,
    get_local_addr,
    get_remote_addr,
    h2c_scope_headers,
    h2c_settings,
    is_ssl,
    tls_extension,
    trust_key,
)
from fastasgi.filesend import SHRANK as FILE_SHRANK
from fastasgi.filesend import FileSendError, file_range, open_file, set_position, transfer
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
    PARSE_ERRORS,
    REQUESTS,
    REQUESTS_IN_FLIGHT,
    TIMEOUT_BODY,
    TIMEOUT_HEADER,
    TIMEOUT_KEEP_ALIVE,
    TIMEOUTS,
    parse_error_kind,
)
from fastasgi.proxy_trust import apply_forwarded

Task = asyncio.Task
CancelledError = asyncio.CancelledError

HIGH_WATER = 65536  # buffered request body (or pipelined bytes) above which reading pauses
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
H2C_RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
LINGER = 2.0  # s an error response waits for the client to close before the server does
INFO = logging.INFO
HTTP11 = sys.intern("1.1")  # the parsers' (interned) "1.1": compiled, equal at the identity test
_PY312 = sys.version_info >= (3, 12)
_PY311 = sys.version_info >= (3, 11)  # Task(..., context=)

if __name__.endswith("_c"):
    # CPython < 3.12: asyncio's registry of tasks (each request's Task is added to
    # it) gets C add/remove callbacks, same set, same semantics (see coro_c.pyx)
    speed_up_task_registry()

error_logger = logging.getLogger("uvicorn.error")
access_logger = logging.getLogger("uvicorn.access")

# scope["extensions"] of every HTTP request (each request gets a copy: an app may add to
# its own); a TLS connection adds "tls", a request with TE: trailers http.response.trailers
EXTENSIONS: dict = {
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
    "http.response.early_hint": {},
}

# --metrics-port: the bounds of the request-duration buckets, in ns, as an int64 buffer
# (compiled, a typed memoryview: finish() finds a request's bucket with C reads)
BUCKET_BOUNDS = memoryview(array("q", BUCKETS_NS))


def method_index(method):
    """The slot of ``method`` in ``fastasgi.metrics.METHODS`` (the last one for any other method)."""
    if method == "GET":
        return 0
    if method == "POST":
        return 2
    if method == "HEAD":
        return 1
    if method == "PUT":
        return 3
    if method == "DELETE":
        return 4
    if method == "PATCH":
        return 5
    if method == "OPTIONS":
        return 6
    return 7


def clock_is_monotonic(loop):
    """Whether ``loop.time()`` reads CLOCK_MONOTONIC in seconds (asyncio's loops, uvloop's):
    then the protocol's keep-alive clock reads it directly (see HttpProtocol.clock)."""
    time = getattr(type(loop), "time", None)
    if time is asyncio.BaseEventLoop.time:
        return True
    uvloop = sys.modules.get("uvloop.loop")
    return uvloop is not None and time is getattr(uvloop.Loop, "time", None)


def has_proxy_headers(headers):
    """Whether a request from a trusted peer carries a header ``apply_forwarded`` reads.

    The hot twin of ``proxy_trust.has_forwarded_headers`` (the WebSocket handshake,
    not hot, uses that one): it runs for every request from a trusted peer, and the
    default trust (127.0.0.1) makes that every request from a local proxy or a local
    benchmark.  Compiled, ``name`` is typed ``bytes`` and ``name[0]`` a C char, so the
    usual names cost one length test and a byte compare each, no Python call.
    """
    for pair in headers:
        name = pair[0]
        # b"f" or b"x" first: what most names fail on, in C, before any bytes compare
        if (
            len(name) >= 9
            and (name[0] == 102 or name[0] == 120)
            and (name == b"forwarded" or name[:12] == b"x-forwarded-")
        ):
            return True
    return False


class HttpProtocol:
    """asyncio protocol for one HTTP/1.1 connection (``transport`` -> parser -> cycles)."""

    def __init__(self, config, server_state, app_state, _loop=None):
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.monotonic_clock = clock_is_monotonic(self.loop)
        self.server_state = server_state
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.root_path = config.root_path
        self.limit_concurrency = config.limit_concurrency if config.limit_concurrency is not None else -1
        self.timeout_keep_alive = float(config.timeout_keep_alive)
        self.ws_protocol_class = config.ws_protocol_class
        self.proxy_trust = server_state.proxy_trust
        self.reset_contextvars = bool(config.reset_contextvars)
        self.asgi_version = config.asgi_version
        self.asgi = {"version": self.asgi_version, "spec_version": "2.4"}  # scope["asgi"] (copied per request)
        self.parser = new_parser(**config.parser_limits())  # (http_c.pxd types it: C calls to feed())
        # slow-client timeouts (checked by the one lazy per-connection timer, on_keepalive_timer)
        self.timeout_request_header = float(config.timeout_request_header)
        self.timeout_request_body = float(config.timeout_request_body)
        self.body_mark = -1  # parser.fed when the body-read timer last saw progress
        self.body_mark_time = 0.0
        # --metrics-port: this process's counter block (fastasgi.metrics), added to inline
        metrics = getattr(server_state, "metrics", None)
        self.metrics_on = metrics is not None
        if metrics is not None:
            self.metrics = metrics

        self.transport = None
        self.client = None
        self.server = None
        self.scheme = "http"
        self.scope_template = None
        self.extensions = None  # scope["extensions"] of this connection's requests (copied per request)
        self.trusted = False
        self.access_log = False
        self.access_writer = None  # the config's AccessLog, when access_log is on

        self.active = None  # cycle whose response is being produced
        self.receiving = None  # cycle whose request body is being received
        self.pending = None  # events of pipelined requests waiting for `active`
        self.pending_size = 0
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter = None
        self.closing = False  # no more requests are read; close when the response is done
        self.parse_failed = False  # bad bytes arrived: their error waits for the responses before it
        self.lingering = False  # an error response was sent and half-closed (send_error_and_close)
        self.close_after_response = False  # graceful shutdown: answer what arrives with connection: close
        self.closed = False
        self.idle_since = 0.0
        self.keepalive_handle = None
        self.head_partial = False
        # what each request's context is a fresh copy of (set in connection_made)
        self.base_context = None
        # the keyword arguments of each request's Task (3.11+; new_task sets its context)
        self.task_kwargs = {"loop": self.loop, "eager_start": True} if _PY312 else {"loop": self.loop}

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport):
        self.connections.add(self)
        self.transport = transport
        self.client = get_remote_addr(transport)
        self.server = get_local_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        # What every request's scope on this connection shares; start_request copies
        # it and fills in the rest (compiled, a dict copy plus a few replacements
        # costs less than building a 13-key dict).  Key order is the scope's.
        self.scope_template = {
            "type": "http",
            "asgi": None,
            "http_version": None,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": None,
            "root_path": self.root_path,
            "path": None,
            "raw_path": None,
            "query_string": None,
            "headers": None,
            "state": None,
            "extensions": None,
        }
        # The ASGI extensions of this connection's requests (start_request copies the
        # dict): on TLS, with the TLS information, read once per connection.
        extensions = EXTENSIONS
        if self.scheme == "https":
            extensions = extensions.copy()
            extensions["tls"] = tls_extension(transport, getattr(self.config, "tls_server_cert", None))
        self.extensions = extensions
        self.access_log = bool(self.config.access_log) and access_logger.isEnabledFor(INFO)
        if self.access_log:
            # (a config that was never load()ed, as some tests build, logs uvicorn's line)
            self.access_writer = getattr(self.config, "access_log_writer", None) or AccessLog()
        # The server's context as the connection sees it: every request's Task gets a
        # fresh copy of it.  Not copy_context() at the time a request starts: a
        # pipelined request starts from inside the previous request's send(), whose
        # context holds that request's ContextVar values.
        self.base_context = Context() if self.reset_contextvars else copy_context()
        if self.proxy_trust is not None:
            self.trusted = trust_key(transport, self.client) in self.proxy_trust
        self.idle_since = self.clock()
        self._arm_keepalive()
        if self.metrics_on:
            self.metrics[CONNECTIONS] += 1
            self.metrics[CONNECTIONS_OPEN] += 1
        if self.scheme == "http" and getattr(self.config, "http2_protocol_class", None) is not None:
            # --http2 in cleartext: the parser flags Upgrade: h2c requests (RFC 7540 §3.2;
            # over TLS, h2 is ALPN's, and the field is ignored as without --http2)
            self.parser.h2c = True

    def connection_lost(self, exc):
        self.closed = True
        self.connections.discard(self)
        if self.metrics_on:
            self.metrics[CONNECTIONS_OPEN] -= 1
        cycle = self.active
        if cycle is not None:
            cycle.on_disconnect()
        cycle = self.receiving
        if cycle is not None and cycle is not self.active:
            cycle.on_disconnect()
        self.active = None
        self.receiving = None
        self.pending = None
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        handle = self.keepalive_handle
        if handle is not None:
            self.keepalive_handle = None
            handle.cancel()

    def eof_received(self):
        pass

    def pause_writing(self):
        self.write_paused = True

    def resume_writing(self):
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def data_received(self, data):
        if self.metrics_on:
            self.metrics[BYTES_IN] += len(data)
        if self.closing or self.parse_failed:
            return
        try:
            events = self.parser.feed(data)
        except ParseError as exc:
            # The error takes its turn after the requests before it: those completed
            # in this read, and any response still in progress, are answered first
            # (see the ParseFailure branch of handle_events).  What follows the last
            # end of message belongs to the request the error is in: dropped, so that
            # request's app never starts.
            events = exc.events or []
            n = len(events)
            while n and events[n - 1] is not None:
                n -= 1
            events = events[:n]
            events.append(ParseFailure(exc.status, exc.reason))
            self.handle_events(events)
            return
        if events:
            self.handle_events(events)
        # bytes of a request head are buffered in the parser (no complete head yet)
        self.head_partial = not events and self.receiving is None and self.pending is None
        if self.pending is not None:
            self.pending_size += len(data)
            if self.pending_size > HIGH_WATER and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()

    # -- events ---------------------------------------------------------------------

    def handle_events(self, events):
        # A request's app starts once the body events that came with its head in this
        # batch are consumed (at its end of message, the next head, or the end of the
        # batch): an app started eagerly then finds its body there instead of
        # suspending for it.
        starting = None
        for ev in events:
            pending = self.pending
            if pending is not None:
                pending.append(ev)
                if type(ev) is ParseFailure:
                    self.parse_failed = True  # nothing after the bad bytes is read
            elif type(ev) is tuple:
                if starting is not None:
                    self.start_app(starting)
                    starting = None
                if self.closing:
                    # the connection is closing (`connection: close`, an error, an app
                    # failure, HTTP/1.0, shutdown): no later request may run, since its
                    # client never sees a response and would retry it (RFC 9112 §9.6)
                    return
                active = self.active
                if active is not None and not active.response_complete:
                    self.pending = [ev]
                else:
                    starting = self.start_request(ev)
                    if self.closed or (self.closing and self.active is None):
                        return
            elif ev is None:
                cycle = self.receiving
                if cycle is not None:
                    self.receiving = None
                    cycle.on_body_end()
                if starting is not None:
                    self.start_app(starting)
                    starting = None
                elif cycle is not None and cycle.response_complete:
                    self.became_idle()  # answered before its body had fully arrived
            elif type(ev) is bytes:
                cycle = self.receiving
                if cycle is not None:
                    cycle.on_body(ev)
                    if cycle.body_size > HIGH_WATER and not self.read_paused:
                        self.read_paused = True
                        self.transport.pause_reading()
            else:  # a ParseFailure: what followed the events before it was bad
                if starting is not None:
                    self.start_app(starting)
                    starting = None
                active = self.active
                if active is not None and not active.response_complete and self.receiving is None:
                    # answered once the response in progress is complete; nothing
                    # more is read meanwhile
                    self.parse_failed = True
                    self.pending = [ev]
                else:
                    self.on_parse_error(ev.status, ev.reason)
                return
        if starting is not None:
            self.start_app(starting)

    def start_request(self, head):
        """Build the scope and the cycle of a request (the app starts in start_app)."""
        (
            method,
            path,
            raw_path,
            query_string,
            http_version,
            headers,
            keep_alive,
            expect_continue,
            upgrade,
            trailers,  # TE: trailers (http.response.trailers is offered)
        ) = head
        self.idle_since = -1.0
        h2c = False
        if upgrade is not None:
            h2c = upgrade == b"h2c"  # (only flagged under --http2, in cleartext)
            if not h2c:
                if self.ws_protocol_class is not None:
                    self.upgrade_to_websocket(head)
                    return None
                error_logger.warning("Unsupported upgrade request.")
            keep_alive = False  # the parser stopped after the upgrade request
        root_path = self.root_path
        scope = self.scope_template.copy()
        scope["asgi"] = self.asgi.copy()
        scope["http_version"] = http_version
        scope["method"] = method
        scope["path"] = root_path + path if root_path else path
        scope["raw_path"] = root_path.encode("ascii") + raw_path if root_path else raw_path
        scope["query_string"] = query_string
        scope["headers"] = headers
        scope["state"] = self.app_state.copy()
        extensions = self.extensions.copy()
        if trailers:
            extensions["http.response.trailers"] = {}  # the client sent TE: trailers
        scope["extensions"] = extensions
        if self.trusted and has_proxy_headers(headers):
            apply_forwarded(scope, self.proxy_trust)
        if self.close_after_response:
            keep_alive = False
        if h2c and self.upgrade_to_http2(scope):
            return None
        cycle = RequestCycle.__new__(RequestCycle)
        cycle.setup(
            self,
            scope,
            keep_alive,
            expect_continue,
            trailers,
            len(method) == 4 and method == "HEAD",  # (compiled: most methods fail at the length)
            http_version == HTTP11,
        )
        self.active = cycle
        self.receiving = cycle
        self.server_state.total_requests += 1
        if self.metrics_on:
            self.metrics[REQUESTS_IN_FLIGHT] += 1
            cycle.in_flight = True
            cycle.method_index = method_index(method)
            cycle.started = monotonic_ns()
        return cycle

    def start_app(self, cycle):
        """Run the app of a request in an ``asyncio.Task`` of its own, at once where possible.

        As under uvicorn, every request's app is a distinct Task, done when the app
        returns (``current_task()``, its cancellation, done callbacks and
        ``cancelling()`` belong to that request alone), whose context is a fresh
        copy of the connection's base context.  On 3.12+ the Task starts eagerly
        (``eager_start``): an app that answers without suspending has written its
        response before this returns.  Before 3.12 the Task's first step runs in
        this loop iteration's callbacks, as under uvicorn.  (Running the first
        step here with the Task marked current was measured on 3.11: no faster,
        and its Task would end one iteration after the app.)
        """
        limit = self.limit_concurrency
        if limit >= 0 and (len(self.connections) > limit or len(self.tasks) >= limit):
            app = service_unavailable
            error_logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app
        loop = self.loop
        run = new_app_run(cycle, app)
        # Tasks keep asyncio's default "Task-N" names, as under uvicorn.
        if loop.get_task_factory() is not None:
            # the user's task factory decides how the Task is made and started
            task = self.base_context.copy().run(loop.create_task, run_in_task(run))
        elif _PY311:
            # Task(run, loop=loop, context=<a copy of base_context>), eager on 3.12+
            task = new_task(Task, run, self.task_kwargs, self.base_context)
            if not _PY312:
                # (not started yet: its first step runs from the loop's queue)
                cycle.task = task
                self.tasks.add(task)
                return
        else:
            # 3.9/3.10 (and PyPy): Task copies the current context, so create it in ctx
            task = self.base_context.copy().run(Task, run, loop=loop)
        if not task.done():
            # AppRun tells the cycle when the app ends, which removes the task from
            # the server's set (no done-callback: one loop callback less per request)
            cycle.task = task
            self.tasks.add(task)

    def upgrade_to_websocket(self, head):
        method = head[0]
        raw_path, query_string, http_version, headers = head[2:6]
        target = raw_path + (b"?" + query_string if query_string else b"")
        lines = [method.encode("ascii") + b" " + target + b" HTTP/" + http_version.encode("ascii")]
        for name, value in headers:
            lines.append(name + b": " + value)
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + self.parser.trailing
        protocol = self.ws_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )
        self.connections.discard(self)
        handle = self.keepalive_handle
        if handle is not None:
            self.keepalive_handle = None
            handle.cancel()
        self.closing = True
        if self.metrics_on:
            self.metrics[CONNECTIONS_OPEN] -= 1  # the WebSocket protocol counts it from here on
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        # the head again, rebuilt: bytes this protocol has counted already (--metrics-port)
        getattr(protocol, "handle_bytes", protocol.data_received)(raw)

    def upgrade_to_http2(self, scope):
        """``Upgrade: h2c`` (RFC 7540 §3.2; only flagged under --http2, in cleartext, for a
        request without body): answer 101 and hand the connection to the HTTP/2 protocol,
        whose stream 1 is this request.  False when the upgrade is not taken (an invalid
        HTTP2-Settings field, a shutdown under way): the request is served as HTTP/1.1,
        and the connection closes after it (the parser stopped)."""
        settings = None
        for name, value in scope["headers"]:
            if name == b"http2-settings":
                settings = h2c_settings(value)
        if settings is None or self.close_after_response:
            if settings is None:
                error_logger.warning("Invalid HTTP2-Settings header: the h2c upgrade is not taken.")
            return False
        transport = self.transport
        self.connections.discard(self)
        handle = self.keepalive_handle
        if handle is not None:
            self.keepalive_handle = None
            handle.cancel()
        self.closing = True
        rest = self.parser.trailing
        transport.write(H2C_RESPONSE)
        if self.metrics_on:
            # the HTTP/2 protocol counts the connection from here on, and the bytes after this request
            self.metrics[BYTES_OUT] += len(H2C_RESPONSE)
            self.metrics[CONNECTIONS] -= 1
            self.metrics[CONNECTIONS_OPEN] -= 1
            self.metrics[BYTES_IN] -= len(rest)
        if self.read_paused:  # (a pipelined upgrade after a large pending batch)
            self.read_paused = False
            transport.resume_reading()
        scope["headers"] = h2c_scope_headers(scope["headers"])
        config = self.config
        protocol = config.http2_protocol_class(
            config=config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        protocol.upgrade(settings, scope)  # sets http_version "2" and its extensions
        if rest:
            protocol.data_received(rest)
        return True

    def on_parse_error(self, status, reason):
        if status == 400:
            message = "Invalid HTTP request received."
        else:
            message = reason
        error_logger.warning("Invalid HTTP request received: %s", reason)
        self.count(PARSE_ERRORS + parse_error_kind(status))
        if self.receiving is not None:
            # the error is in the body of the request being received (bad chunk,
            # body over --limit-request-body): its app must not wait for more
            self.close_request(status, message)
            return
        # (a response in progress was finished first: handle_events defers the error)
        self.send_error_and_close(error_response(status, message))

    def send_error_and_close(self, data):
        """Write an error response and close the connection, without a reset.

        The client may still be sending the request we refused, and closing a
        socket with unread bytes makes the kernel answer them with RST, which can
        destroy the response before the client reads it.  So the response is
        followed by our FIN (``write_eof``), what still arrives is read and
        dropped, and the connection closes when the client closes its side, or
        after ``LINGER`` seconds.
        """
        transport = self.transport
        self.closing = True  # data_received drops everything from now on
        transport.write(data)
        if self.metrics_on:
            self.metrics[BYTES_OUT] += len(data)
        try:
            transport.write_eof()  # TCP: FIN after the response (asyncio's TLS has no half-close)
        except (NotImplementedError, RuntimeError, OSError):
            transport.close()
            return
        self.lingering = True  # became_idle must not close early
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.loop.call_later(LINGER, transport.close)

    # -- after a response -----------------------------------------------------------

    def on_response_complete(self, cycle):
        if self.closed:
            return
        if not cycle.keep_alive:
            self.closing = True
            self.transport.close()
            return
        if self.receiving is cycle:
            cycle.discard_body = True  # the rest of an unread body is parsed and dropped
        self.active = None
        pending = self.pending
        if pending is not None:
            self.pending = None
            self.pending_size = 0
            self.handle_events(pending)
            if self.receiving is not None:
                self._arm_keepalive()  # a pipelined body: the body-read timeout needs the timer
        if (
            self.read_paused
            and self.pending is None
            and (self.receiving is None or self.receiving.body_size <= HIGH_WATER)
        ):
            self.read_paused = False
            self.transport.resume_reading()
        self.became_idle()

    def became_idle(self):
        """No request in progress any more: start the keep-alive clock (or close)."""
        if self.active is None and self.receiving is None and not self.closed:
            self.idle_since = self.clock()
            if self.closing:
                if not self.lingering:
                    self.transport.close()
            else:
                self._arm_keepalive()

    def clock(self):
        """``loop.time()``, read without calling it where that is the monotonic clock
        (the keep-alive clock starts at the end of every response)."""
        if self.monotonic_clock:
            return monotonic_ns() * 1e-9
        return self.loop.time()

    def _arm_keepalive(self):
        if self.keepalive_handle is None:
            self.keepalive_handle = self.loop.call_later(self.timeout_keep_alive, self.on_keepalive_timer)

    def on_keepalive_timer(self):
        """The one timer of a connection: keep-alive, header-read and body-read timeouts.

        Armed when the connection becomes idle, never per request; when it fires it
        works out which timeout applies now and re-arms itself if needed.
        """
        self.keepalive_handle = None
        if self.closed:
            return
        now = self.clock()
        if self.idle_since < 0:
            # busy: only a request body being received needs watching (the app's own
            # time is not limited); re-armed when the connection becomes idle again
            timeout = self.timeout_request_body
            if self.receiving is None or timeout <= 0:
                return
            fed = self.parser.fed
            if fed != self.body_mark or self.read_paused or self.receiving.expect_continue:
                # progress, or we are not reading (backpressure, 100-continue not sent yet)
                self.body_mark = fed
                self.body_mark_time = now
            elif now - self.body_mark_time >= timeout - 0.001:
                self.close_request(408, "Request Timeout")
                return
            # checked twice per timeout: a stall is noticed 1x to 1.5x the timeout after the last byte
            self.keepalive_handle = self.loop.call_later(timeout / 2, self.on_keepalive_timer)
            return
        if self.head_partial and self.timeout_request_header > 0:
            # some bytes of a request head arrived: the header-read timeout applies,
            # counted from when the server started waiting (slowloris)
            deadline = self.idle_since + max(self.timeout_request_header, self.timeout_keep_alive)
            if deadline - now <= 0.001:
                self.close_request(408, "Request Timeout")
                return
        else:
            deadline = self.idle_since + self.timeout_keep_alive
            if deadline - now <= 0.001:
                self.count(TIMEOUTS + TIMEOUT_KEEP_ALIVE)
                self.closing = True
                self.transport.close()
                return
        self.keepalive_handle = self.loop.call_later(deadline - now, self.on_keepalive_timer)

    def close_request(self, status, message):
        """Refuse the request being read (timeout, bad or too large body): answer
        ``status`` unless a response has started, close, and tell its app."""
        if status == 408:
            error_logger.warning(
                "Request timed out: %s",
                "no complete header block" if self.receiving is None else "request body stalled",
            )
            self.count(TIMEOUTS + (TIMEOUT_HEADER if self.receiving is None else TIMEOUT_BODY))
        self.closing = True
        cycle = self.receiving
        self.receiving = None
        self.pending = None
        if cycle is None or not cycle.response_started:
            self.send_error_and_close(error_response(status, message))
        else:
            self.transport.close()
        if cycle is not None:
            cycle.on_disconnect()  # receive() returns http.disconnect, send() is a no-op

    def count(self, slot):
        """--metrics-port: one more of ``slot`` (events off the per-request path)."""
        if self.metrics_on:
            self.metrics[slot] += 1

    def resume_reading_if_drained(self, cycle):
        if self.read_paused and self.pending is None and cycle.body_size <= HIGH_WATER:
            self.read_paused = False
            self.transport.resume_reading()

    async def drain(self):
        if self.write_paused and not self.closed:
            waiter = self.drain_waiter
            if waiter is None:
                waiter = self.loop.create_future()
                self.drain_waiter = waiter
            await waiter

    # -- server control -------------------------------------------------------------

    def shutdown(self):
        """Graceful shutdown: finish the response in progress (or the request whose
        bytes are arriving) and answer it with ``connection: close``; close idle
        connections now."""
        self.close_after_response = True
        active = self.active
        if active is not None and not active.response_complete:
            active.keep_alive = False
            return
        receiving = self.receiving
        if receiving is not None and receiving.response_complete:
            # The app answered without reading its whole body (a WSGI app that ignores
            # a body, an early 401/413) and the rest is only being dropped: waiting for
            # it held the shutdown for --timeout-request-body, or forever when that is
            # 0, where uvicorn closes at once.  Half-close and linger at most LINGER s,
            # so the answer already sent is not destroyed by a reset.
            self.send_error_and_close(b"")
            return
        if self.head_partial or receiving is not None:
            return
        self.closing = True
        if self.transport is not None and not self.closed:
            self.transport.close()


class RequestCycle(Sender):
    """One request and its response: the ``receive``/``send`` pair an app sees
    (``send`` comes from :class:`Sender`, and calls ``send_message``)."""

    def setup(self, protocol, scope, keep_alive, expect_continue, trailers_ok, is_head, http11):
        # Called on RequestCycle.__new__(RequestCycle): compiled, that is a direct
        # tp_new plus a C call, with no argument parsing of a Python __init__.
        self.protocol = protocol
        self.transport = protocol.transport
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.is_head = is_head
        self.http11 = http11

        self.body_chunks = None  # a list once body bytes arrive
        self.body_size = 0
        self.more_body = True
        self.delivered = False  # the last body message (more_body=False) was handed to the app
        self.discard_body = False
        self.body_waiter = None
        self.disconnected = False

        self.response_started = False
        self.response_complete = False
        self.task = None
        self.status = 0
        self.headers = None
        self.mode = NO_BODY
        self.expected_length = -1
        self.sent_length = 0  # response body bytes sent (the access log's; CONTENT_LENGTH's check)
        self.response_headers = None  # the app's, for the access log's {name}o
        # duration of the request for the access log: from its head to its response's end
        self.start_time = perf_counter() if protocol.access_log else 0.0
        self.out = None  # response bytes waiting to be written together (see emit)
        self.out_size = 0
        self.flush_scheduled = False
        self.in_flight = False  # counted in requests_in_flight (--metrics-port; start_request sets it)
        self.file_busy = False  # a pathsend/zerocopysend is being sent: no other message until it is done
        # http.response.trailers: offered (the request has TE: trailers), announced by the
        # app's http.response.start (the body is then chunked), the last body sent
        self.trailers_ok = trailers_ok
        self.trailers = False
        self.trailers_pending = False

    # -- fed by the protocol --------------------------------------------------------

    def on_body(self, data):
        if self.discard_body or self.disconnected:
            return
        chunks = self.body_chunks
        if chunks is None:
            self.body_chunks = [data]
        else:
            chunks.append(data)
        self.body_size += len(data)
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_body_end(self):
        self.more_body = False
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_disconnect(self):
        self.disconnected = True
        if self.in_flight:
            # counted under its status if its head was sent (encoded: headers is None again)
            self.finish(self.status if self.response_started and self.headers is None else 0)
        self.wake_receiver()

    def wake_receiver(self):
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
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
            self.fail(500, "Internal Server Error")
        elif not self.response_complete:
            if not self.disconnected:
                error_logger.error("ASGI callable returned without completing response.")
            self.abort()

    def app_raised(self, exc):
        """The app raised ``exc``: answer 500 (or close).  True when ``exc`` must propagate."""
        self.forget_task()
        if isinstance(exc, asyncio.CancelledError) and self.protocol.closed:
            return True
        error_logger.error("Exception in ASGI application\n", exc_info=exc)
        self.fail(500, "Internal Server Error")
        return not isinstance(exc, Exception)

    def forget_task(self):
        # AppRun's end removes the request's task from the server's set (instead of a done-callback)
        task = self.task
        if task is not None:
            self.task = None
            self.protocol.tasks.discard(task)

    def fail(self, status, message):
        """The app failed: answer 500 if nothing was sent yet, else close the connection."""
        if self.response_complete or self.disconnected:
            return
        if self.response_started:
            self.abort()
            return
        self.response_started = True
        self.response_complete = True
        self.keep_alive = False
        data = error_response(status, message)
        self.transport.write(data)
        self.sent_length = len(message)  # error pages are ASCII
        if self.protocol.metrics_on:
            self.protocol.metrics[BYTES_OUT] += len(data)
        if self.in_flight:
            self.finish(status)
        self.log_access(status)
        self.protocol.on_response_complete(self)

    def abort(self):
        self.response_complete = True
        self.keep_alive = False
        protocol = self.protocol
        protocol.closing = True  # nothing pipelined behind this response may start
        self.flush()
        if self.in_flight:
            # counted under its status once its head was sent (encoded: headers is None)
            self.finish(self.status if self.headers is None else 0)
        if not protocol.closed:
            self.transport.close()

    async def receive(self):
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if not self.body_chunks and (self.more_body or self.delivered):
            # nothing to hand out: wait for body bytes, the end of the body, or the
            # disconnect (once the whole body was delivered, only a disconnect or
            # the end of the response comes next)
            protocol = self.protocol
            if self.expect_continue and not self.delivered:
                self.expect_continue = False
                self.transport.write(CONTINUE_RESPONSE)
                if protocol.metrics_on:
                    protocol.metrics[BYTES_OUT] += len(CONTINUE_RESPONSE)
            if protocol.read_paused:
                protocol.resume_reading_if_drained(self)
            waiter = protocol.loop.create_future()
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
        protocol = self.protocol
        if protocol.read_paused:
            protocol.resume_reading_if_drained(self)
        if not self.more_body:
            self.delivered = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def send_message(self, message):
        """ASGI ``send`` (through Sender): None when done, else the wait for the
        transport to drain.  Compiled, it takes a dict: its lookups are direct C calls."""
        mtype = message["type"]
        if not self.response_started:
            if mtype != "http.response.start":
                if mtype == "http.response.early_hint":
                    return self.send_early_hint(message)
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{mtype}'.")
            status = message["status"]
            headers = message.get("headers", ())
            if self.trailers_ok and message.get("trailers", False):
                headers = self.announce_trailers(headers)
            self.response_started = True
            self.status = status
            self.headers = headers
            self.response_headers = headers
            if self.expect_continue:
                # the app answers without reading the body: the client may or may not send it
                self.expect_continue = False
                self.keep_alive = False
            return None
        if self.response_complete:
            if mtype == "http.response.trailers" and not self.trailers_ok:
                return None  # trailers the client did not ask for (no TE: trailers): not sent
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
        if self.trailers:
            return self.send_body_before_trailers(body, more_body)
        headers = self.headers
        if headers is not None:
            # first body message: head and (when complete) body in one write
            self.headers = None
            protocol = self.protocol
            try:
                head, mode, length, keep_alive = encode_head(
                    self.status,
                    headers,
                    protocol.server_state.default_headers_bytes,
                    self.http11,
                    self.is_head,
                    -1 if more_body else len(body),
                    self.keep_alive,
                )
            except ResponseHeaderError as exc:
                self.response_started = False
                raise RuntimeError(str(exc)) from None
            self.mode = mode
            self.expected_length = length
            self.keep_alive = keep_alive
            final = not more_body
            if mode == CONTENT_LENGTH:
                if len(body) > length:
                    self.emit(head + body[:length], False)
                    self.sent_length = length
                    self.too_long(len(body))
                self.sent_length = len(body)
                self.emit(head + body if body else head, final)
            elif mode == CHUNKED:
                self.sent_length = len(body)
                if body:
                    self.emit(b"%b%x\r\n%b\r\n" % (head, len(body), body), False)
                else:
                    self.emit(head, False)
                self.emit(LAST_CHUNK if final else b"", final)
            elif mode == CLOSE_DELIMITED:
                self.sent_length = len(body)
                self.emit(head + body if body else head, final)
            else:
                self.emit(head, final)
        else:
            final = not more_body
            mode = self.mode
            if mode == CONTENT_LENGTH:
                if self.sent_length + len(body) > self.expected_length:
                    self.emit(body[: self.expected_length - self.sent_length], False)
                    size = self.sent_length + len(body)
                    self.sent_length = self.expected_length
                    self.too_long(size)
                self.sent_length += len(body)
                self.emit(body, final)
            elif mode == CHUNKED:
                self.sent_length += len(body)
                if body:
                    self.emit(b"%x\r\n%b\r\n%b" % (len(body), body, LAST_CHUNK if final else b""), final)
                else:
                    self.emit(LAST_CHUNK if final else b"", final)
            elif mode == CLOSE_DELIMITED:
                self.sent_length += len(body)
                self.emit(body, final)
            else:
                self.emit(b"", final)

        if not more_body:
            self.complete_response()
        protocol = self.protocol
        if protocol.write_paused:
            return protocol.drain()
        return None

    # -- ASGI extensions: early hints and trailers (see README, "ASGI extensions") ------

    def send_other(self, message, mtype):
        """A message other than the expected http.response.body, once the response started."""
        if self.trailers_pending:
            if mtype == "http.response.trailers":
                return self.send_trailers(message)
            raise RuntimeError(f"Expected ASGI message 'http.response.trailers', but got '{mtype}'.")
        if mtype == "http.response.early_hint" and self.headers is not None:
            # after http.response.start (as the extension's spec words it), before the
            # head is written: it is still in time
            return self.send_early_hint(message)
        raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{mtype}'.")

    def send_early_hint(self, message):
        """http.response.early_hint: a 103 response with the app's links (RFC 8297).

        Never to an HTTP/1.0 client (RFC 9110 §15.2: no 1xx response to HTTP/1.0):
        the message is accepted and dropped.  Several may precede the response.
        """
        if not self.http11:
            return None
        try:
            data = encode_early_hint(message.get("links", ()))
        except ResponseHeaderError as exc:
            raise RuntimeError(str(exc)) from None
        protocol = self.protocol
        if data and not protocol.closed:
            self.transport.write(data)
            if protocol.metrics_on:
                protocol.metrics[BYTES_OUT] += len(data)
        if protocol.write_paused:
            return protocol.drain()
        return None

    def announce_trailers(self, headers):
        """http.response.start with ``trailers: True`` from an app whose client accepts
        trailers: the body will be chunked, since only chunked framing has a trailer
        section (RFC 9112 §7.1.2).  A Content-Length cannot be kept: refused.  Returns
        the headers (as a list if they were another iterable: they are read twice)."""
        if type(headers) is not list and type(headers) is not tuple:
            headers = list(headers)
        for item in headers:
            try:
                name = item[0]
            except (TypeError, IndexError, KeyError):
                continue  # (encode_head refuses it)
            if isinstance(name, (bytes, bytearray, memoryview)) and bytes(name).lower() == b"content-length":
                raise RuntimeError(
                    "Response with 'trailers': True cannot have a Content-Length: HTTP/1.1 sends "
                    "trailers after a chunked body only."
                )
        self.trailers = True
        return headers

    def send_body_before_trailers(self, body, more_body):
        """http.response.body of a response with trailers: chunked, and the last chunk is
        not followed by the end of the trailer section (send_trailers writes it)."""
        headers = self.headers
        if headers is not None:
            self.headers = None
            protocol = self.protocol
            try:
                head, mode, length, keep_alive = encode_head(
                    self.status,
                    headers,
                    protocol.server_state.default_headers_bytes,
                    self.http11,
                    self.is_head,
                    -1,  # streamed: chunked (or no body at all: HEAD, 1xx, 204, 304)
                    self.keep_alive,
                )
            except ResponseHeaderError as exc:
                self.response_started = False
                raise RuntimeError(str(exc)) from None
            self.mode = mode
            self.expected_length = length
            self.keep_alive = keep_alive
            data = head
        else:
            data = b""
        if self.mode == CHUNKED:
            if body:
                self.sent_length += len(body)
                data += b"%x\r\n%b\r\n" % (len(body), body)
            if not more_body:
                data += b"0\r\n"  # the last chunk; the trailer section follows (RFC 9112 §7.1)
        if not more_body:
            self.trailers_pending = True
        self.emit(data, False)
        protocol = self.protocol
        if protocol.write_paused:
            return protocol.drain()
        return None

    def send_trailers(self, message):
        """http.response.trailers after the last body: field lines of the trailer section,
        which ends (and the response with it) once ``more_trailers`` is false."""
        more = message.get("more_trailers", False)
        try:
            data = encode_trailers(message.get("headers", ())) if self.mode == CHUNKED else b""
        except ResponseHeaderError as exc:
            raise RuntimeError(str(exc)) from None
        if more:
            self.emit(data, False)
        else:
            self.trailers_pending = False
            self.emit(data + b"\r\n" if self.mode == CHUNKED else data, True)
            self.complete_response()
        protocol = self.protocol
        if protocol.write_paused:
            return protocol.drain()
        return None

    def emit(self, data, final):
        """Write response bytes; streamed pieces are coalesced.

        Pieces of a response that is not finished yet are buffered and written
        together at the end of the current loop iteration (or once 64 KiB are
        buffered, or when the response ends): an app streaming many small chunks
        without waiting in between costs one write system call, not one each.
        """
        out = self.out
        if final and out is None:
            if data:
                self.transport.write(data)
                if self.protocol.metrics_on:
                    self.protocol.metrics[BYTES_OUT] += len(data)
            return
        if data:
            if out is None:
                self.out = [data]
                self.out_size = len(data)
            else:
                out.append(data)
                self.out_size += len(data)
        if final or self.out_size >= HIGH_WATER:
            self.flush()
        elif self.out is not None and not self.flush_scheduled:
            self.flush_scheduled = True
            self.protocol.loop.call_soon(self.scheduled_flush)

    def scheduled_flush(self):
        self.flush_scheduled = False
        self.flush()

    def flush(self):
        out = self.out
        if out is not None:
            self.out = None
            self.out_size = 0
            if not self.protocol.closed:
                data = out[0] if len(out) == 1 else b"".join(out)
                self.transport.write(data)
                if self.protocol.metrics_on:
                    self.protocol.metrics[BYTES_OUT] += len(data)

    def too_long(self, size):
        """The app sent more than its Content-Length: the excess is cut and the connection closed."""
        self.response_complete = True
        self.keep_alive = False
        self.protocol.closing = True  # nothing pipelined behind this response may start
        if self.in_flight:
            self.finish(self.status)
        self.log_access(self.status)
        self.flush()
        self.transport.close()
        raise RuntimeError(
            f"Response content longer than Content-Length ({size} > {self.expected_length} bytes); the excess was "
            "not sent and the connection was closed."
        )

    # -- files: http.response.pathsend and http.response.zerocopysend -------------------

    def send_file_message(self, message, mtype):
        """``http.response.pathsend`` / ``http.response.zerocopysend`` (ASGI extensions, both in
        ``scope["extensions"]``): the head if it is not sent yet, then the file's bytes, sent by
        :meth:`send_file` (the awaitable returned to ``send``), or None when there are none.

        An error found before any byte is written (no such file, not a regular file,
        permission denied, a ``content-length`` that is not the file's size, a bad
        ``file``/``offset``/``count``) is raised in the app with nothing sent, so the
        client gets the usual 500.  ``pathsend`` is the whole body: it cannot follow
        ``http.response.body``, and nothing may follow it.
        """
        headers = self.headers
        pathsend = mtype == "http.response.pathsend"
        file = None
        position = -1  # zerocopysend without offset: where the file's position moves after the send
        if pathsend:
            if headers is None:
                raise RuntimeError("ASGI message 'http.response.pathsend' cannot follow 'http.response.body'.")
            more_body = False
            status = self.status
            if isinstance(status, int) and (status < 200 or status == 204 or status == 304):
                fd = -1  # a response without content: the file is not needed
                offset = 0
                count = 0
            else:
                try:
                    fd, count = open_file(message.get("path"))
                except FileSendError as exc:
                    self.response_started = False
                    raise RuntimeError(str(exc)) from None
                offset = 0
        else:
            more_body = message.get("more_body", False)
            file = message.get("file")
            try:
                fd, offset, count = file_range(file, message.get("offset"), message.get("count"))
            except FileSendError as exc:
                if headers is not None:
                    self.response_started = False
                raise RuntimeError(str(exc)) from None
            if message.get("offset") is None:
                position = offset
        final = not more_body
        if headers is not None:
            # first body message: the head (content-length from the file's size if the app gave none)
            self.headers = None
            protocol = self.protocol
            try:
                head, mode, length, keep_alive = encode_head(
                    self.status,
                    headers,
                    protocol.server_state.default_headers_bytes,
                    self.http11,
                    self.is_head,
                    -1 if more_body else count,
                    self.keep_alive,
                )
                if pathsend and mode == CONTENT_LENGTH and length != count:
                    raise ResponseHeaderError(
                        f"'http.response.pathsend': the response's content-length ({length}) is not the size of "
                        f"{message.get('path')!r} ({count} bytes)"
                    )
            except ResponseHeaderError as exc:
                if pathsend and fd >= 0:
                    os.close(fd)
                self.response_started = False
                raise RuntimeError(str(exc)) from None
            self.mode = mode
            self.expected_length = length
            self.keep_alive = keep_alive
            self.emit(head, final and (mode == NO_BODY or count == 0))
        mode = self.mode
        excess = -1
        if mode == NO_BODY:
            count = 0
        elif mode == CONTENT_LENGTH and self.sent_length + count > self.expected_length:
            excess = self.sent_length + count  # sent up to the content-length, then too_long()
            count = self.expected_length - self.sent_length
        if count == 0 and excess < 0:
            # no bytes of the file to send (HEAD, 304, an empty file or range)
            if pathsend and fd >= 0:
                os.close(fd)
            if final:
                self.emit(LAST_CHUNK if mode == CHUNKED else b"", True)
                self.complete_response()
            protocol = self.protocol
            if protocol.write_paused:
                return protocol.drain()
            return None
        self.file_busy = True
        return self.send_file(fd, offset, count, final, pathsend, file, position, excess)

    async def send_file(self, fd, offset, count, final, owned, file, position, excess):
        """The bytes of a file message, framed (a chunk when chunked), through ``transfer``
        (``sendfile`` on plain TCP, chunks over TLS).  ``owned``: the server opened ``fd``
        (pathsend) and closes it; a zerocopysend's file is the app's to close."""
        protocol = self.protocol
        sent = 0
        result = 0
        try:
            if count:
                if self.mode == CHUNKED:
                    self.emit(b"%x\r\n" % count, False)
                self.flush()  # the head and anything before: in the transport before the file
                sent, result = await transfer(protocol, self.transport, fd, offset, count)
        except BaseException:
            # cancelled (shutdown, the app's own timeout) or failed in the middle of a
            # body: only closing the connection ends the response without a wrong length
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
        if protocol.metrics_on:
            protocol.metrics[BYTES_OUT] += sent
        if result != 0:
            if result == FILE_SHRANK:
                error_logger.error(
                    "File ended while being sent (%d of %d bytes sent); closing the connection.", sent, count
                )
            if not self.response_complete:
                self.abort()
            return
        if excess >= 0:
            self.too_long(excess)  # raises
        if self.mode == CHUNKED:
            self.emit(b"\r\n0\r\n\r\n" if final else b"\r\n", final)
        if final:
            self.complete_response()
        if protocol.write_paused:
            await protocol.drain()

    def complete_response(self):
        """The response's last bytes were sent (a final body message, or a file's)."""
        self.response_complete = True
        self.wake_receiver()
        if self.mode == CONTENT_LENGTH and self.sent_length < self.expected_length:
            error_logger.error(
                "Response content shorter than Content-Length (%d of %d bytes); closing the connection.",
                self.sent_length,
                self.expected_length,
            )
            self.keep_alive = False
        if self.in_flight:
            self.finish(self.status)
        self.log_access(self.status)
        self.protocol.on_response_complete(self)

    def finish(self, status):
        """--metrics-port: this request is over.  Counted in requests_total and the duration
        histogram under ``status`` (a status that was sent), or only leaves requests_in_flight
        when ``status`` is 0 (the client left, or the app failed, before a response head was sent)."""
        self.in_flight = False
        protocol = self.protocol  # (compiled: protocol.metrics[i] is a C read-modify-write)
        protocol.metrics[REQUESTS_IN_FLIGHT] -= 1
        if type(status) is int:
            code = status
        else:
            code = int(status)  # an IntEnum such as http.HTTPStatus (encode_head accepted it)
        if code == 0:
            return
        cls = code // 100 - 1
        if cls < 0:
            cls = 0
        elif cls >= N_CLASSES:
            cls = N_CLASSES - 1
        protocol.metrics[REQUESTS + self.method_index * N_CLASSES + cls] += 1
        elapsed = monotonic_ns() - self.started
        protocol.metrics[DURATION_NS] += elapsed
        i = 0
        while i < N_BUCKETS and elapsed > BUCKET_BOUNDS[i]:
            i += 1
        protocol.metrics[HISTOGRAM + i] += 1

    def log_access(self, status):
        protocol = self.protocol
        if protocol.access_log:
            protocol.access_writer.log(
                self.scope, status, self.sent_length, perf_counter() - self.start_time, self.response_headers
            )


class ParseFailure:
    """The last event of a batch whose bytes turned bad: answered in its turn (see data_received)."""

    __slots__ = ("reason", "status")

    def __init__(self, status, reason):
        self.status = status
        self.reason = reason


async def run_in_task(run):
    """A coroutine around an AppRun, for a user's task factory (which may want a real coroutine)."""
    await run


async def service_unavailable(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})
