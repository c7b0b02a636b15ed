"""The HTTP/2 connection protocol on the ``h2`` library (``--http2``).

The pure-Python HTTP/2 implementation: it runs wherever ``h2`` imports (PyPy,
``FASTASGI_NO_EXTENSIONS=1``, and a compiled set built without libnghttp2);
``http2_c`` is the compiled one on libnghttp2, with the same names and behaviour.
:mod:`fastasgi.protocols.http.negotiation` hands it a connection that opened with
the HTTP/2 preface (cleartext) or negotiated ``h2`` by ALPN (TLS); the HTTP/1.1
protocol hands it one whose request asked for ``Upgrade: h2c`` (:meth:`Http2Protocol.upgrade`).

Per connection: bytes -> ``H2Connection.receive_data()`` -> events -> one
``stream_py.StreamCycle`` per stream (the cycle both implementations share),
whose ``receive``/``send`` are handed to the app, exactly as an HTTP/1.1
request's are: the same scope (``http_version`` ``"2"``, pseudo-headers removed,
``:authority`` as ``host``), the same ASGI events, one ``asyncio.Task`` per stream
whose context is a fresh copy of the connection's base context, and the same
proxy trust, access log and ``--metrics-port`` counters.  This class implements
the cycle's interface to its connection (``stream_py.StreamProtocol``) on ``h2``.

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
import base64
import logging
from contextvars import Context, copy_context

import h2
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from fastasgi._speedups.stream_py import (
    CONNECTION_WINDOW,
    CONTROL_BURST,
    CONTROL_RATE,
    HIGH_WATER,
    LINGER,
    MAX_CONCURRENT_STREAMS,
    RESET_BURST,
    RESET_RATE,
    STREAM_WINDOW,
    Budget,
    StreamProtocol,
    peer,
)
from fastasgi.accesslog import AccessLog
from fastasgi.connection import get_local_addr, get_remote_addr, is_ssl, trust_key
from fastasgi.metrics import (
    BYTES_IN,
    BYTES_OUT,
    CONNECTIONS,
    CONNECTIONS_OPEN,
    PARSE_ERRORS,
    PARSE_MALFORMED,
    TIMEOUT_HEADER,
    TIMEOUT_KEEP_ALIVE,
    TIMEOUTS,
)

DESCRIPTION = f"pure-Python: h2 {h2.__version__}"

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

INFO = logging.INFO

error_logger = logging.getLogger("uvicorn.error")
access_logger = logging.getLogger("uvicorn.access")

_EVENTS = h2.events


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
    HPACK tables and frame dispatch table, with the same behaviour.  These are h2's and
    hpack's own structures: an h2 release that changes them keeps its defaults (the
    connection works the same, it holds more)."""
    if not (
        isinstance(getattr(conn, "_frame_dispatch_table", None), dict)
        and type(conn.remote_settings) is h2.settings.Settings
        and isinstance(getattr(conn.remote_settings, "_settings", None), dict)
        and hasattr(conn.encoder.header_table, "dynamic_entries")
        and hasattr(conn.decoder.header_table, "dynamic_entries")
    ):
        return
    conn.remote_settings = CompactSettings(client=True)  # h2's defaults for a client's settings
    conn.encoder.header_table.dynamic_entries = _Entries()
    conn.decoder.header_table.dynamic_entries = _Entries()
    conn._frame_dispatch_table = _Dispatch(conn)


class _H2Connection(h2.connection.H2Connection):
    """h2's connection, with ALTSVC frames (RFC 7838: a server ignores them, and h2 says
    nothing) reported as an ``UnknownFrameReceived`` event: counted as every frame that
    carries no request is (``Http2Protocol.spend_control``), as nghttp2's path counts them;
    and with the client's GOAWAY leaving the streams in progress to finish."""

    def _receive_goaway_frame(self, frame):
        # h2 closes the connection on the client's GOAWAY and then sends nothing, where RFC
        # 9113 §6.8 lets the streams in progress finish: without an error code, h2's state
        # stays open (and its queued frames stay) for them; the event is h2's
        if frame.error_code != 0 or self.state_machine.state is h2.connection.ConnectionState.CLOSED:
            return super()._receive_goaway_frame(frame)
        event = _EVENTS.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def _receive_alt_svc_frame(self, frame):
        frames, events = super()._receive_alt_svc_frame(frame)
        events.append(_EVENTS.UnknownFrameReceived(frame=frame))
        return frames, events


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


class Http2Protocol(StreamProtocol, asyncio.Protocol):
    """asyncio protocol for one HTTP/2 connection (``transport`` -> h2 -> stream cycles)."""

    def __init__(self, config, server_state, app_state, _loop=None):
        StreamProtocol.__init__(self, config, server_state, app_state, _loop)
        self.conn = None
        self.goaway_last_id = -1  # graceful shutdown: streams above this id are refused
        self.in_receive = False  # inside data_received: flushed once at its end
        self.flush_handle = None
        self.timer = None
        self.linger_handle = None
        self.reset_budget = None
        self.control_budget = None
        self.unflushed = 0  # DATA bytes h2 framed since the last flush
        self.stalled = None  # --timeout-response-body: stream id -> when it was seen waiting for a window

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
        conn = _H2Connection(_h2_config())
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

    def upgrade(self, settings_payload, scope):
        """The connection was upgraded from HTTP/1.1 (``Upgrade: h2c``, RFC 7540 §3.2):
        called right after ``connection_made`` (which sent our SETTINGS, the server's
        preface) with the decoded HTTP2-Settings payload and the scope the HTTP/1.1
        protocol built for the request, which becomes stream 1 (half-closed: it had no
        body) and is answered here.  The client's preface follows as data."""
        conn = self.conn
        try:
            # (h2 takes the field as it came: base64url)
            conn.initiate_upgrade_connection(base64.urlsafe_b64encode(settings_payload))
        except h2.exceptions.ProtocolError as exc:  # (the HTTP/1.1 side checked the values)
            error_logger.warning("Invalid HTTP2-Settings header: %s", exc)
            self.close_now()
            return
        # initiate_upgrade_connection queued our SETTINGS again: connection_made sent them
        conn.clear_outbound_data_buffer()
        self.start_upgraded_stream(scope)
        self.flush()

    def connection_lost(self, exc):
        self.closed = True
        self.shut = True  # (nothing more can be written: an app's late send goes nowhere)
        self.connections.discard(self)
        if self.metrics_on:
            self.metrics[CONNECTIONS_OPEN] -= 1
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.on_disconnect()
        self.wake_drain()
        for handle in (self.timer, self.flush_handle, self.linger_handle, self.response_timer):
            if handle is not None:
                handle.cancel()
        self.timer = None
        self.flush_handle = None
        self.response_timer = None

    def eof_received(self):
        pass

    def data_received(self, data):
        if self.metrics_on:
            self.metrics[BYTES_IN] += len(data)
        if self.shut:
            return
        self.receive(data)

    def feed(self, data, start, end):
        conn = self.conn
        self.in_receive = True
        try:
            try:
                events = conn.receive_data(data if start == 0 and end == len(data) else data[start:end])
            except h2.exceptions.ProtocolError as exc:
                # h2 queued a GOAWAY with the error code (RFC 9113 §5.4.1)
                error_logger.warning("Invalid HTTP/2 data received: %s", exc)
                self.count(PARSE_ERRORS + PARSE_MALFORMED)
                self.close_now()
                return True
            if events:
                self.handle_events(events)
            if not self.shut:
                self.check_header_block()
        finally:
            self.in_receive = False
        return self.shut

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
                # The client's GOAWAY (RFC 9113 §6.8): no stream starts after it; those in
                # progress finish (_H2Connection keeps h2 open for them), then GOAWAY and
                # close (became_idle).  With an error code, the connection ends now.
                self.closing = True
                if event.error_code != ErrorCodes.NO_ERROR or not self.streams:
                    self.close_now()
                    return
            elif etype is _EVENTS.TrailersReceived:
                pass  # request trailers are not passed to the app (StreamEnded follows)
            elif (
                etype is _EVENTS.PingReceived
                or etype is _EVENTS.PriorityUpdated
                or etype is _EVENTS.UnknownFrameReceived
                # (the server sends no PING, and one SETTINGS: their ACKs count too)
                or etype is _EVENTS.PingAckReceived
                or etype is _EVENTS.SettingsAcknowledged
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
        error_logger.warning("HTTP/2 client %s: %s; closing the connection.", peer(self.client), why)
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

    # -- StreamProtocol: what a stream asks of h2 -------------------------------------

    def send_headers(self, cycle, headers, end_stream):
        try:
            self.conn.send_headers(cycle.stream_id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError:
            return False
        if end_stream:
            self.schedule_flush()
        return True

    def send_data(self, cycle, data, final):
        if self.shut:
            return -1
        conn = self.conn
        stream_id = cycle.stream_id
        size = len(data)
        if not size:
            if final:
                try:
                    conn.end_stream(stream_id)
                except h2.exceptions.ProtocolError:
                    return -1
                self.schedule_flush()
            return 0
        sent = 0
        while sent < size:
            try:
                window = conn.local_flow_control_window(stream_id)
            except h2.exceptions.ProtocolError:  # the stream is gone
                return -1
            if window <= 0:
                if self.response_timer is None:
                    self.arm_response_timer()  # (it waits for the client: --timeout-response-body)
                self.flush()
                return sent
            if not sent and self.stalled:
                self.stalled.pop(stream_id, None)  # the response goes on: not stalled
            n = min(size - sent, window, conn.max_outbound_frame_size)
            piece = data if n == size else data[sent : sent + n]
            sent += n
            try:
                conn.send_data(stream_id, piece, end_stream=final and sent == size)
            except h2.exceptions.ProtocolError:
                return -1
            # (an app whose sends return at once never yields to the loop: above HIGH_WATER
            # queued bytes they go to the transport now, whose pause_writing makes it wait)
            self.unflushed += n
            if self.unflushed >= HIGH_WATER or self.write_paused:
                self.flush()
            else:
                self.schedule_flush()
        return sent

    def send_trailers(self, cycle, trailers):
        try:
            self.conn.send_headers(cycle.stream_id, trailers, end_stream=True)
        except h2.exceptions.ProtocolError:
            return False
        self.schedule_flush()
        return True

    def send_informational(self, cycle, headers):
        try:
            self.conn.send_headers(cycle.stream_id, headers)  # (h2: a 1xx block leaves the stream open)
        except h2.exceptions.ProtocolError:
            return False
        self.schedule_flush()
        return True

    def ack(self, stream_id, n):
        try:
            self.conn.acknowledge_received_data(n, stream_id)
        except h2.exceptions.ProtocolError:
            return
        self.schedule_flush()

    def check_stalled_responses(self, now, timeout):
        """--timeout-response-body (``StreamProtocol.check_responses``): a response waits for
        the client's windows while its cycle waits for ``wake_sender``; ``send_data`` forgets
        a stream once a byte of it goes out."""
        stalled = self.stalled
        seen = None
        in_progress = False
        for stream in list(self.streams.values()):
            if not stream.response_started or stream.response_complete or stream.disconnected:
                continue
            in_progress = True
            if self.write_paused or stream.send_waiter is None:
                continue
            stream_id = stream.stream_id
            since = stalled.get(stream_id) if stalled else None
            if since is None:
                since = now
            elif now - since >= timeout - 0.001:
                stream.response_timed_out()
                continue
            if seen is None:
                seen = {}
            seen[stream_id] = since
        self.stalled = seen
        return in_progress

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
        self.unflushed = 0
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
        if self.held is not None:  # (bytes wait for the next wave, a pass away: not idle)
            self.arm_timer()
            return
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
