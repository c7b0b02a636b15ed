# Augmenting declarations for stream_py.py, compiled as fastasgi._speedups.stream_c:
# the HTTP/2 stream cycle of the compiled set, fed by http2_c (libnghttp2).  Typed
# attributes are C struct fields; the stream <-> protocol calls go through the
# vtable of StreamProtocol, whose subclass (http2_c.Http2Protocol) overrides the
# library-specific cpdef methods.
import cython

from fastasgi._speedups.clock_c cimport monotonic_ns
from fastasgi._speedups.coro_c cimport AppRun, Sender, new_task
from fastasgi._speedups.framing_c cimport _same_headers, token_kind

cdef Py_ssize_t DURATION_NS, HISTOGRAM, N_BUCKETS, N_CLASSES, PARSE_BODY_TOO_LARGE, PARSE_ERRORS
cdef Py_ssize_t REQUESTS, REQUESTS_IN_FLIGHT
cdef frozenset CONNECTION_HEADERS
cdef dict METHOD_NAMES
cdef dict STATUS_FIELDS
cdef dict EXTENSIONS
cdef Py_ssize_t FILE_CHUNK, TIMEOUT_BODY, TIMEOUT_RESPONSE_BODY, TIMEOUTS

cdef class StreamCycle

cdef tuple _last_head


@cython.locals(
    head=list, cacheable=bint, has_server=bint, has_date=bint, content_length=Py_ssize_t, kind=int, name=bytes,
    value=bytes,
)
cpdef tuple response_head(object status, object headers, list default_headers)


cdef Py_ssize_t WAVE
cdef list _WAVE


cdef class StreamProtocol


cdef class Wave:
    cdef readonly object loop
    cdef readonly dict task_kwargs
    cdef Py_ssize_t started
    cdef bint scheduled
    cdef object waiting

    cdef void add(self) except *
    cdef wait(self, StreamProtocol protocol)


cdef class Budget:
    cdef double burst
    cdef double rate
    cdef double tokens
    cdef double last

    @cython.locals(tokens=double)
    cpdef bint spend(self, double now)


cpdef Py_ssize_t method_index(str method)


cdef class StreamProtocol:
    cdef public object config
    cdef object app
    cdef public object loop
    cdef public object server_state
    cdef dict app_state
    cdef set connections
    cdef public set tasks
    cdef str root_path
    cdef Py_ssize_t limit_concurrency
    cdef public double timeout_keep_alive
    cdef public double timeout_request_header
    cdef object proxy_trust
    cdef bint reset_contextvars
    cdef str asgi_version
    cdef public Py_ssize_t max_headers
    cdef public Py_ssize_t max_field_size
    cdef public Py_ssize_t max_body_size
    cdef public Py_ssize_t max_header_list_size
    cdef public bint metrics_on
    cdef public object metrics

    cdef public object transport
    cdef public object client
    cdef public object server
    cdef public str scheme
    cdef public bint trusted
    cdef public bint access_log
    cdef public object access_writer
    cdef public object base_context
    cdef dict scope_template

    cdef public dict streams
    cdef public Py_ssize_t running
    cdef public Py_ssize_t requests
    cdef public bint closed
    cdef public bint shut
    cdef public bint closing
    cdef public bint write_paused
    cdef public bint read_paused
    cdef object drain_waiter
    cdef public double idle_since
    cdef public double timeout_request_body
    cdef public dict extensions
    cdef public object body_timer
    cdef public double timeout_response_body
    cdef public object response_timer
    cdef public double paused_since
    cdef dict task_kwargs
    cdef Wave wave
    cdef public bytes held
    cdef int frame_left  # (a frame is at most 2**24 - 1 bytes long)
    cdef int head_seen
    cdef int head_length
    cdef bint block_end

    cpdef bint send_headers(self, StreamCycle cycle, list headers, bint end_stream) except -1
    cpdef Py_ssize_t send_data(self, StreamCycle cycle, bytes data, bint final) except -2
    cpdef bint send_trailers(self, StreamCycle cycle, list trailers) except -1
    cpdef bint send_informational(self, StreamCycle cycle, list headers) except -1
    cpdef reset(self, int stream_id, int code)
    cpdef ack(self, int stream_id, Py_ssize_t n)
    cpdef answer_error(self, int stream_id, int status, str message, bint ended)
    cpdef bint feed(self, bytes data, Py_ssize_t start, Py_ssize_t end) except -1
    cpdef flush(self)
    cpdef schedule_flush(self)
    cpdef became_idle(self)

    cpdef StreamCycle start_stream(
        self, int stream_id, list headers, bint ended, bytes method=*, bytes path=*, bytes authority=*
    )

    @cython.locals(stream=StreamCycle)
    cpdef StreamCycle start_stream_with_scope(self, int stream_id, dict scope, bint ended)

    @cython.locals(
        fields=list, hosts=Py_ssize_t, max_field=Py_ssize_t, pair=tuple, name=bytes, value=bytes,
        c="unsigned char", raw_path=bytes, query=bytes, query_at=Py_ssize_t, escaped=bint, i=Py_ssize_t,
        method_str=str, path_str=str, root_path=str, scope=dict, template=dict,
    )
    cpdef dict build_scope(self, list headers, bytes method=*, bytes path=*, bytes authority=*)
    cpdef dict connection_extensions(self)

    # (stream typed: the cycle's C fields are read directly, they are not Python attributes)
    @cython.locals(stream=StreamCycle, held=Py_ssize_t, now=double, timeout=double, crowded=bint, arriving=bint)
    cpdef check_bodies(self)

    cpdef arm_response_timer(self)

    @cython.locals(now=double, timeout=double)
    cpdef check_responses(self)

    @cython.locals(wave=Wave, start=Py_ssize_t, size=Py_ssize_t, room=Py_ssize_t, end=Py_ssize_t)
    cpdef receive(self, bytes data)
    @cython.locals(pos=Py_ssize_t, size=Py_ssize_t, left=Py_ssize_t, seen=Py_ssize_t, c="unsigned char")
    cpdef Py_ssize_t scan(self, bytes data, Py_ssize_t start, Py_ssize_t room) except -1
    cdef hold(self, bytes data, Py_ssize_t start)
    cpdef release(self)

    @cython.locals(limit=Py_ssize_t, run=AppRun)
    cpdef start_app(self, StreamCycle cycle)
    cpdef app_ended(self, StreamCycle cycle)

    @cython.locals(streams=dict)
    cpdef stream_done(self, StreamCycle cycle)
    cpdef wake_drain(self)
    cpdef wake_senders(self)
    cpdef count(self, Py_ssize_t slot)


cdef class StreamCycle(Sender):
    # (scope and disconnected are Sender's)
    cdef public StreamProtocol protocol
    cdef public int stream_id
    cdef object stream_key
    cdef bint is_head
    cdef public object outbox

    cdef list body_chunks
    cdef Py_ssize_t body_size
    cdef Py_ssize_t received
    cdef Py_ssize_t unacked
    cdef public bint more_body
    cdef bint delivered
    cdef object body_waiter

    cdef public bint response_started
    cdef public bint response_complete
    cdef public object task
    cdef public bint running
    cdef public int status
    cdef list pending_headers
    cdef object response_headers
    cdef bint no_body
    cdef Py_ssize_t expected_length
    cdef Py_ssize_t sent_length
    cdef object send_waiter
    cdef double start_time
    cdef public bint in_flight
    cdef public Py_ssize_t method_index
    cdef public long long started
    cdef bint trailers
    cdef bint trailers_pending
    cdef list trailer_fields
    cdef bint file_busy
    cdef Py_ssize_t body_mark
    cdef double body_mark_time

    @cython.locals(protocol=StreamProtocol, size=Py_ssize_t, limit=Py_ssize_t, chunks=list)
    cpdef setup(self, StreamProtocol protocol, int stream_id, dict scope, bint ended)
    cpdef on_data(self, bytes data, Py_ssize_t flow_length)
    cpdef on_body_end(self)
    cpdef on_disconnect(self)

    @cython.locals(protocol=StreamProtocol)
    cpdef body_too_large(self)

    @cython.locals(protocol=StreamProtocol)
    cpdef response_timed_out(self)
    cpdef drop_body(self)

    @cython.locals(n=Py_ssize_t, protocol=StreamProtocol)
    cpdef ack(self)
    cpdef wake_receiver(self)
    cpdef wake_sender(self)

    cpdef app_returned(self, object result)
    cpdef bint app_raised(self, object exc) except -1
    cpdef forget_task(self)
    cpdef fail(self)
    cpdef abort(self)

    @cython.locals(
        more_body=bint, final=bint, protocol=StreamProtocol, head=list, end_now=bint, too_long=Py_ssize_t,
        short=bint, expected=Py_ssize_t, total=Py_ssize_t, end=bint, n=Py_ssize_t,
    )
    cpdef object send_message(self, dict message)

    cpdef body_sent(self, Py_ssize_t too_long, bint short, bint final)

    @cython.locals(head=list, content_length=Py_ssize_t, last=tuple)
    cpdef start_response(self, object status, object headers)
    cpdef complete(self)
    cpdef after_response(self)

    @cython.locals(code=Py_ssize_t, cls=Py_ssize_t, i=Py_ssize_t, elapsed="long long")
    cpdef finish(self, object status)

    @cython.locals(protocol=StreamProtocol)
    cpdef log_access(self, object status)
