# cython: language_level=3
"""Declarations of the llhttp request parser binding (``parser_c.pyx``).

Other compiled modules may ``cimport`` :class:`RequestParser` and call
``feed`` without going through Python.  The pure twin is ``parser_py.py``.
"""

from libc.stdint cimport int64_t

from fastasgi._speedups cimport _llhttp as ll


# A piece of body handed out after llhttp_execute returns; it points into the
# bytes object being fed, which is alive for the whole feed() call.
cdef struct Span:
    const char* at
    size_t length


# One header field: offsets into State.hb, where names are stored lowercased.
cdef struct Field:
    size_t name_off
    size_t name_len
    size_t value_off
    size_t value_len


# All state the llhttp callbacks touch.  The callbacks are plain C (noexcept
# nogil): they see only this struct (llhttp_t.data points at it), never a
# Python object.  Positions are absolute stream offsets (bytes fed since the
# parser was created), so sizes can be measured across feed() calls.
cdef struct State:
    const char* buf           # start of the bytes of the current feed() call
    int64_t base              # absolute offset of buf[0]

    int64_t max_header_size
    int64_t max_request_line
    size_t max_headers
    size_t max_field_size     # len(name) + len(value) of one header field
    int64_t max_chunk_ext     # bytes after the chunk size on one chunk line
    int64_t max_body_size     # body bytes of one request, -1: no limit
    int64_t body_total        # chunked body bytes announced so far in this request

    int pause                 # why llhttp_execute returned HPE_PAUSED
    int err_status            # set by a callback that failed the request
    const char* err_reason

    # request line
    int64_t head_start        # first method byte, -1 between requests
    int64_t method_end
    int64_t url_start
    int64_t url_end
    int64_t proto_start
    char proto[8]
    size_t proto_len
    bint reqline_done
    bint headers_done

    # request-target, copied because it may span several feed() calls
    char* url
    size_t url_len
    size_t url_cap
    size_t path_start         # raw_path = url[path_start:path_end] ("/" if empty)
    size_t path_end
    bint asterisk

    # header fields
    char* hb
    size_t hb_len
    size_t hb_cap
    Field* fields
    size_t nfields            # completed fields (head)
    size_t fields_cap
    size_t nseen              # field names seen in the current section (head or trailers)
    bint in_name              # a field name is being read (its Field is allocated)
    bint in_value             # its value is being read

    # body framing
    bint keep_alive
    bint in_trailers
    int64_t trailer_start
    bint in_chunk_line
    int64_t chunk_line_start
    int64_t ext_start         # first byte after the chunk size (BWS or ';'), -1 if none yet
    size_t ext_piece          # bytes of the chunk-ext name or value being read
    bint ext_quoted           # that value is a quoted-string
    int64_t last_body_end
    # The chunk line walker (walk_line/skip_bws in parser_c.pyx): it reads each
    # chunk line just ahead of llhttp and keeps BWS bytes from it.
    bint walking              # the current chunk line is walked (until its CR or LF)
    int walk_region           # WALK_SIZE / WALK_EXT / WALK_QUOTED / WALK_PAIR
    int walk_digits           # hex digits of the chunk size so far
    char walk_prev            # last byte handed to llhttp on this line (0: none)
    bint walk_in_ws           # a run of BWS is being skipped (may span feed() calls)

    Span* spans
    size_t nspans
    size_t spans_cap


cdef class RequestParser:
    cdef ll.llhttp_t _parser
    cdef State _s
    cdef public bytes trailing
    cdef public bint h2c          # --http2 in cleartext: flag Upgrade: h2c requests (parser_py.py)
    cdef int _mode
    cdef int _err_status
    cdef str _err_reason
    cdef int64_t _fed

    cpdef list feed(self, object data)
    cdef int _fail(self, int status, str reason) except -1
    cdef object _make_head(self, int64_t head_end)
    cdef int _check_unfinished(self, const char* end) except -1
