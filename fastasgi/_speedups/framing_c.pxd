# Augmenting declarations for framing_py.py, compiled as fastasgi._speedups.framing_c.
# The .py file stays plain Python (PyPy runs it as it is); these types only
# let Cython turn the loops and flags into C.
import cython

cdef bytes _TOKEN_TABLE


# c as a C byte: the loop runs over the buffer in C
@cython.locals(c=cython.uchar, k=cython.uchar, kind=cython.int)
cpdef int token_kind(bytes name)


cdef dict _STATUS_LINES_11
cdef dict _STATUS_LINES_10


@cython.locals(lines=dict)
cpdef bytes status_line(object status, bint http11)


cdef tuple _last


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, pair=tuple)
cpdef bint _same_headers(object headers, tuple cached) except -1


@cython.locals(last=tuple)
cpdef tuple encode_head(
    object status,
    object headers,
    bytes default_headers,
    bint http11,
    bint is_head,
    Py_ssize_t body_length,
    bint keep_alive,
)


# C ints for the framing decision and flags: no Python int/bool objects per header.
@cython.locals(
    cacheable=bint,
    keep_alive_in=bint,
    content_length=Py_ssize_t,
    has_server=bint,
    has_date=bint,
    connection_close=bint,
    cl_index=Py_ssize_t,
    mode=int,
    parts=list,
    stripped=bytes,
    kind=int,
)
cpdef tuple encode_head_uncached(
    object status,
    object headers,
    bytes default_headers,
    bint http11,
    bint is_head,
    Py_ssize_t body_length,
    bint keep_alive,
)


cpdef bytes chunk(bytes data)
