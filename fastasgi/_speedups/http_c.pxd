# Augmenting declarations for http_py.py, compiled as fastasgi._speedups.http_c.
# Typed attributes turn per-request state into C struct fields and the
# protocol <-> cycle calls into direct C calls; the .py file stays plain Python.
import cython

from fastasgi._speedups.clock_c cimport monotonic_ns
from fastasgi._speedups.coro_c cimport AppRun, Sender, new_app_run, new_task
from fastasgi._speedups.framing_c cimport encode_head
from fastasgi._speedups.parser_c cimport RequestParser

# --metrics-port: slot numbers of fastasgi.metrics (C globals, set when the module is
# imported) and the duration-bucket bounds as a typed memoryview (C reads)
cdef Py_ssize_t BYTES_IN, BYTES_OUT, CONNECTIONS, CONNECTIONS_OPEN, DURATION_NS, HISTOGRAM
cdef Py_ssize_t N_BUCKETS, N_CLASSES, PARSE_ERRORS, REQUESTS, REQUESTS_IN_FLIGHT
cdef Py_ssize_t TIMEOUT_BODY, TIMEOUT_HEADER, TIMEOUT_KEEP_ALIVE, TIMEOUTS
cdef long long[::1] BUCKET_BOUNDS

# scope["extensions"] of every request: a C-typed global, so the per-request copy is one PyDict_Copy
cdef dict EXTENSIONS
cdef str HTTP11

cpdef Py_ssize_t method_index(str method)

cdef class RequestCycle

# name[0] on a typed bytes is a C char: the per-request scan makes no Python call
# (cpdef: start_request calls it in C, tests call it from Python)
@cython.locals(pair=tuple, name=bytes)
cpdef bint has_proxy_headers(list headers) except -1

cdef class HttpProtocol:
    cdef public object config
    cdef object app
    cdef public object loop
    cdef bint monotonic_clock
    cdef public object server_state
    cdef dict app_state
    cdef set connections
    cdef set tasks
    cdef str root_path
    cdef Py_ssize_t limit_concurrency
    cdef double timeout_keep_alive
    cdef object ws_protocol_class
    cdef object proxy_trust
    cdef bint reset_contextvars
    cdef str asgi_version
    cdef dict asgi
    cdef public RequestParser parser

    cdef public object transport
    cdef public object client
    cdef public object server
    cdef public str scheme
    cdef dict scope_template
    cdef dict extensions
    cdef bint trusted
    cdef public bint access_log
    cdef object access_writer

    cdef public RequestCycle active
    cdef RequestCycle receiving
    cdef list pending
    cdef Py_ssize_t pending_size
    cdef bint read_paused
    cdef bint write_paused
    cdef object drain_waiter
    cdef public bint closing
    cdef bint parse_failed
    cdef bint lingering
    cdef public bint close_after_response
    cdef public bint closed
    cdef double idle_since
    cdef object keepalive_handle
    cdef public bint head_partial
    cdef object base_context
    cdef dict task_kwargs
    cdef double timeout_request_header
    cdef double timeout_request_body
    cdef object body_mark
    cdef double body_mark_time
    # --metrics-port: this process's counter block (a typed memoryview: inline C additions)
    cdef bint metrics_on
    cdef long long[::1] metrics

    @cython.locals(cycle=RequestCycle, pending=list, active=RequestCycle, starting=RequestCycle)
    cpdef handle_events(self, list events)

    @cython.locals(
        cycle=RequestCycle, keep_alive=bint, expect_continue=bint, trailers=bint, root_path=str, scope=dict,
        extensions=dict, method=str, http_version=str,
    )
    cpdef RequestCycle start_request(self, tuple head)

    @cython.locals(limit=Py_ssize_t, run=AppRun)
    cpdef start_app(self, RequestCycle cycle)

    cpdef became_idle(self)

    @cython.locals(pending=list)
    cpdef on_response_complete(self, RequestCycle cycle)

    cpdef double clock(self) except? -1.0
    cpdef _arm_keepalive(self)
    cpdef count(self, Py_ssize_t slot)
    cpdef resume_reading_if_drained(self, RequestCycle cycle)


cdef class RequestCycle(Sender):
    # (scope and disconnected are Sender's)
    cdef HttpProtocol protocol
    cdef object transport
    cdef public bint keep_alive
    cdef bint expect_continue
    cdef bint is_head
    cdef bint http11

    cdef list body_chunks
    cdef public Py_ssize_t body_size
    cdef bint more_body
    cdef bint delivered
    cdef public bint discard_body
    cdef object body_waiter

    cdef public bint response_started
    cdef public bint response_complete
    cdef object task
    cdef object status
    cdef object headers
    cdef int mode
    cdef Py_ssize_t expected_length
    cdef Py_ssize_t sent_length
    cdef object response_headers
    cdef double start_time
    cdef list out
    cdef Py_ssize_t out_size
    cdef bint flush_scheduled
    cdef bint in_flight
    cdef Py_ssize_t method_index
    cdef long long started
    cdef bint file_busy
    cdef bint trailers_ok
    cdef bint trailers
    cdef bint trailers_pending

    cpdef setup(
        self, HttpProtocol protocol, dict scope, bint keep_alive, bint expect_continue, bint trailers_ok, bint is_head,
        bint http11,
    )
    cpdef app_returned(self, object result)
    cpdef bint app_raised(self, object exc)
    cpdef on_body(self, bytes data)
    cpdef on_body_end(self)
    cpdef on_disconnect(self)
    cpdef wake_receiver(self)
    cpdef fail(self, int status, str message)
    cpdef abort(self)
    cpdef forget_task(self)

    @cython.locals(more_body=bint, final=bint, mode=int, size=Py_ssize_t)
    cpdef object send_message(self, dict message)
    cpdef complete_response(self)

    # http.response.pathsend / zerocopysend (send_file, a coroutine, is a plain async def)
    @cython.locals(protocol=HttpProtocol, pathsend=bint, more_body=bint, final=bint, mode=int)
    cpdef object send_file_message(self, dict message, str mtype)
    # ASGI extensions (off the plain request's path)
    cpdef object send_other(self, dict message, object mtype)
    cpdef object announce_trailers(self, object headers)

    @cython.locals(protocol=HttpProtocol)
    cpdef object send_early_hint(self, dict message)

    @cython.locals(protocol=HttpProtocol, data=bytes)
    cpdef object send_body_before_trailers(self, bytes body, bint more_body)

    @cython.locals(protocol=HttpProtocol, data=bytes)
    cpdef object send_trailers(self, dict message)

    cpdef emit(self, bytes data, bint final)
    cpdef flush(self)
    cpdef too_long(self, Py_ssize_t size)

    @cython.locals(protocol=HttpProtocol, code=Py_ssize_t, cls=Py_ssize_t, i=Py_ssize_t, elapsed="long long")
    cpdef finish(self, object status)

    @cython.locals(protocol=HttpProtocol)
    cpdef log_access(self, object status)

