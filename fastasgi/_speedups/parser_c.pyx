# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""HTTP/1.1 request parser for the compiled set: a Cython binding of llhttp.

Twin of ``parser_py.py`` (the h11 adapter); see its docstring for the contract
(events, errors, limits).  Both must give the same events and error statuses
for the same bytes, however they are split.

How it works: llhttp calls plain C callbacks (``cb_*`` below, registered once
in a static ``llhttp_settings_t``).  They copy the request-target and the
header fields (names lowercased while copied) into C buffers and record body
spans; no Python object is touched per header or per callback.  Three
callbacks pause llhttp (return ``HPE_PAUSED``): headers complete, chunk header
and message complete.  ``feed`` then knows the exact stream position, builds
the Python objects that are handed out (head tuple, body bytes, ``None``),
applies the checks that need the whole header block, and resumes.  Chunk
complete pauses too: each chunk line is read by ``walk_line`` just ahead of
llhttp, which keeps the BWS of chunk extensions from it (see there).

llhttp is stricter than h11 in some places and more lenient in others; each
explicit check here or in the adapter cites its RFC 9110/9112 section, and
``tests/corpus/DIFFERENCES.md`` lists what could not be aligned.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy

from fastasgi._speedups cimport _llhttp as ll

import sys

__all__ = ["ParseError", "RequestParser", "DESCRIPTION"]

DESCRIPTION = "compiled: llhttp %d.%d.%d" % (
    ll.LLHTTP_VERSION_MAJOR, ll.LLHTTP_VERSION_MINOR, ll.LLHTTP_VERSION_PATCH)


class ParseError(Exception):
    """A request the server must refuse: answer ``status`` and close."""

    def __init__(self, status, reason):
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        # Events completed by the failing feed() call before the error, in
        # order (earlier pipelined requests the server may still answer).
        self.events = []

    def __str__(self):
        return f"{self.status} {self.reason}"


cdef enum:
    PAUSE_NONE = 0
    PAUSE_HEADERS = 1
    PAUSE_CHUNK = 2
    PAUSE_MESSAGE = 3
    PAUSE_LINE = 4         # a chunk line starts: feed() walks it (walk_line)

cdef enum:
    WALK_SIZE = 0          # in the chunk-size digits
    WALK_EXT = 1           # after them: chunk-ext, outside a quoted-string
    WALK_QUOTED = 2        # inside a quoted-string chunk-ext-val
    WALK_PAIR = 3          # after a backslash inside it

cdef enum:
    MODE_RUN = 0
    MODE_STOPPED = 1       # after a request without keep-alive, or an upgrade
    MODE_DEAD = 2          # after a ParseError

cdef enum:
    MAX_CHUNK_DIGITS = 20  # hex digits of a chunk size (h11's limit)

# Status codes a callback can fail a request with (llhttp's own errors are 400).
cdef enum:
    BAD_REQUEST = 400
    CONTENT_TOO_LARGE = 413
    URI_TOO_LONG = 414
    HEADERS_TOO_LARGE = 431


# -- Python objects built once ---------------------------------------------

# Method names indexed by llhttp's method number; interned so the head tuple
# hands out the same str object every time.
cdef list _METHODS = [
    sys.intern(ll.llhttp_method_name(<ll.llhttp_method_t>i).decode("ascii")) for i in range(47)
]
cdef str _V11 = sys.intern("1.1")  # interned: the protocol compares by identity first
cdef str _V10 = "1.0"
cdef bytes _EMPTY = b""
cdef bytes _SLASH = b"/"
cdef str _SLASH_STR = "/"
cdef bytes _STAR = b"*"
cdef str _STAR_STR = "*"
cdef bytes _WEBSOCKET = b"websocket"
cdef bytes _H2C = b"h2c"

# Frequent header names: their bytes objects are reused instead of allocated.
cdef tuple _COMMON_NAMES = (
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language",
    b"connection", b"content-length", b"content-type", b"cookie", b"referer",
    b"origin", b"authorization", b"cache-control", b"upgrade", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-real-ip", b"transfer-encoding", b"pragma", b"expect",
    b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
    b"if-none-match", b"if-modified-since", b"range", b"dnt", b"priority",
    b"sec-fetch-mode", b"sec-fetch-site", b"sec-fetch-dest", b"te",
)


cdef struct KnownName:
    const char* data
    size_t length
    PyObject* obj

cdef KnownName _KNOWN[40]
cdef Py_ssize_t _NKNOWN = min(len(_COMMON_NAMES), 40)
for _i in range(_NKNOWN):
    _KNOWN[_i].data = PyBytes_AS_STRING(_COMMON_NAMES[_i])
    _KNOWN[_i].length = <size_t>PyBytes_GET_SIZE(_COMMON_NAMES[_i])
    _KNOWN[_i].obj = <PyObject*>_COMMON_NAMES[_i]  # kept alive by the tuple


# ``<object>obj`` on a borrowed PyObject* makes Cython take a new reference.
cdef object _name_bytes(const char* name, size_t n):
    cdef Py_ssize_t i
    for i in range(_NKNOWN):
        if _KNOWN[i].length == n and _KNOWN[i].data[0] == name[0] and memcmp(_KNOWN[i].data, name, n) == 0:
            return <object>_KNOWN[i].obj
    return PyBytes_FromStringAndSize(name, <Py_ssize_t>n)


# -- C helpers ---------------------------------------------------------------

cdef inline int64_t abs_pos(State* s, const char* p) noexcept nogil:
    return s.base + (p - s.buf)


cdef inline char lower(char c) noexcept nogil:
    if c >= c'A' and c <= c'Z':
        return c + 32
    return c


cdef bint ci_equal(const char* a, size_t n, const char* lit, size_t m) noexcept nogil:
    """a == lit, ASCII case-insensitively (lit is lowercase)."""
    cdef size_t i
    if n != m:
        return False
    for i in range(n):
        if lower(a[i]) != lit[i]:
            return False
    return True


cdef inline bint is_ows(char c) noexcept nogil:
    return c == c' ' or c == c'\t'


cdef bint has_token(const char* v, size_t n, const char* tok, size_t m) noexcept nogil:
    """RFC 9110 §5.6.1: is ``tok`` an element of the comma-separated list ``v``?"""
    cdef size_t i = 0, j, a, b
    while i <= n:
        j = i
        while j < n and v[j] != c',':
            j += 1
        a = i
        b = j
        while a < b and is_ows(v[a]):
            a += 1
        while b > a and is_ows(v[b - 1]):
            b -= 1
        if ci_equal(v + a, b - a, tok, m):
            return True
        i = j + 1
    return False


cdef bint h2c_fields(State* s) noexcept nogil:
    """RFC 7540 §3.2 / §3.2.1: Connection lists HTTP2-Settings, and exactly one
    HTTP2-Settings field (its value is the server's to decode)."""
    cdef size_t i
    cdef int settings = 0
    cdef bint listed = False
    cdef Field* f
    for i in range(s.nfields):
        f = &s.fields[i]
        if f.name_len == 14 and memcmp(s.hb + f.name_off, b"http2-settings", 14) == 0:
            settings += 1
        elif f.name_len == 10 and memcmp(s.hb + f.name_off, b"connection", 10) == 0:
            listed = listed or has_token(s.hb + f.value_off, f.value_len, b"http2-settings", 14)
    return listed and settings == 1


cdef inline int hexval(char c) noexcept nogil:
    if c >= c'0' and c <= c'9':
        return c - c'0'
    if c >= c'a' and c <= c'f':
        return c - c'a' + 10
    if c >= c'A' and c <= c'F':
        return c - c'A' + 10
    return -1


cdef object decode_path(const char* p, size_t n):
    """raw_path -> path: ASCII, then percent-decoded like urllib.parse.unquote
    (invalid escapes kept, UTF-8 with errors="replace"); work only if '%' occurs."""
    cdef char* tmp
    cdef size_t i = 0, m = 0
    cdef int hi, lo
    if n == 1 and p[0] == c'/':
        return _SLASH_STR
    if memchr(p, c'%', n) == NULL:
        return PyUnicode_DecodeASCII(p, n, NULL)
    tmp = <char*>malloc(n)
    if tmp == NULL:
        raise MemoryError()
    try:
        while i < n:
            if p[i] == c'%' and i + 2 < n:
                hi = hexval(p[i + 1])
                lo = hexval(p[i + 2])
                if hi >= 0 and lo >= 0:
                    tmp[m] = <char>(hi * 16 + lo)
                    m += 1
                    i += 3
                    continue
            tmp[m] = p[i]
            m += 1
            i += 1
        return PyUnicode_DecodeUTF8(tmp, m, "replace")
    finally:
        free(tmp)


cdef int grow(char** buf, size_t* cap, size_t need) noexcept nogil:
    cdef size_t new_cap
    cdef char* new_buf
    if need <= cap[0]:
        return 0
    new_cap = cap[0] * 2 if cap[0] else 256
    while new_cap < need:
        new_cap *= 2
    new_buf = <char*>realloc(buf[0], new_cap)
    if new_buf == NULL:
        return -1
    buf[0] = new_buf
    cap[0] = new_cap
    return 0


cdef inline int fail(State* s, int status, const char* reason) noexcept nogil:
    if s.err_status == 0:
        s.err_status = status
        s.err_reason = reason
    return -1


# -- the chunk line walker ---------------------------------------------------
#
# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# so "6 ;q = x" is a valid chunk line.  llhttp 9 refuses SP after ";" and around
# "=" whatever its flags (llhttp_set_lenient_spaces_after_chunk_size would take
# SP/HTAB after the size, but also "6 \r\n", which the grammar does not allow).
# So the binding walks each chunk line just ahead of llhttp and hands llhttp the
# line without its BWS: llhttp_execute is called on the pieces between BWS runs
# (pointers into the fed bytes, so positions stay true stream offsets).
#
# Why this cannot open a smuggling hole: the walker only ever withholds SP and
# HTAB, never any other byte, and stops at the first CR or LF of the line (after
# that, llhttp gets every byte).  So llhttp alone still finds the end of the
# chunk line, the chunk size and everything after; the line llhttp sees is the
# received one minus SP/HTAB.  A BWS run is withheld only if a ";" or "=" is
# next to it (before or after); any other run fails the request (400), so
# withholding never joins two tokens: "6 7" is refused, never read as 0x67, and
# "6 \r\n", "a=b \r\n", " 6" are refused as the grammar says.  Inside a
# quoted-string nothing is withheld.  If the walker's idea of quoting differed
# from llhttp's, the outcome would only be a different (ignored) extension
# value or a 400 from llhttp, since no CR/LF is ever withheld.
# The walker also counts the size digits (MAX_CHUNK_DIGITS) and records where
# the chunk extensions start (max_chunk_ext), BWS included, like the adapter.

cdef inline void start_walk(State* s, int64_t line_start) noexcept nogil:
    s.in_chunk_line = True
    s.chunk_line_start = line_start
    s.ext_start = -1
    s.walking = True
    s.walk_region = WALK_SIZE
    s.walk_digits = 0
    s.walk_prev = 0
    s.walk_in_ws = False


cdef const char* walk_line(State* s, const char* p, const char* end) noexcept nogil:
    """Walk the chunk line from ``p``: return the first BWS byte (llhttp must
    stop before it), or ``end``; NULL after ``fail``.  At CR or LF the walk ends."""
    cdef char c
    while p < end:
        c = p[0]
        if c == c'\r' or c == c'\n':
            s.walking = False  # llhttp judges the line end and all that follows
            return end
        if s.walk_region == WALK_QUOTED:
            # RFC 9110 §5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
            if c == c'\\':
                s.walk_region = WALK_PAIR
            elif c == c'"':
                s.walk_region = WALK_EXT
        elif s.walk_region == WALK_PAIR:
            s.walk_region = WALK_QUOTED
        else:
            if s.walk_region == WALK_SIZE:
                if hexval(c) >= 0:
                    s.walk_digits += 1
                    if s.walk_digits > MAX_CHUNK_DIGITS:
                        fail(s, BAD_REQUEST, "Chunk size too long")
                        return NULL
                    s.walk_prev = c
                    p += 1
                    continue
                s.walk_region = WALK_EXT
                s.ext_start = abs_pos(s, p)
            if c == c' ' or c == c'\t':
                return p
            if c == c'"':
                s.walk_region = WALK_QUOTED
        s.walk_prev = c
        p += 1
    return end


cdef const char* skip_bws(State* s, const char* p, const char* end) noexcept nogil:
    """Skip the BWS run at ``p``; return where llhttp goes on (``end`` if the run
    may go on in the next feed), NULL after ``fail``."""
    while p < end and (p[0] == c' ' or p[0] == c'\t'):
        p += 1
    # RFC 9112 §7.1.1: a server may limit chunk extensions (BWS counts).
    if abs_pos(s, p) - s.ext_start > s.max_chunk_ext:
        fail(s, BAD_REQUEST, "Chunk extensions too long")
        return NULL
    if p == end:
        s.walk_in_ws = True
        return end
    s.walk_in_ws = False
    # RFC 9112 §7.1.1: BWS only before or after ";" and "=" (not before the
    # size, nor between the size or a value and the CRLF, nor inside a token).
    if not (s.walk_prev == c';' or s.walk_prev == c'=' or p[0] == c';' or p[0] == c'='):
        fail(s, BAD_REQUEST, "Invalid chunk size line")
        return NULL
    return p


# -- llhttp callbacks (C only) ---------------------------------------------
#
# ``noexcept nogil``: they are called from llhttp's C code, where no Python
# exception may propagate and no Python object is needed.  A callback that
# rejects the request records status and reason in State (``fail``) and
# returns -1, which makes llhttp_execute stop with an error; feed() raises.
# ``<State*>p.data`` is the parser's own State, set once in __cinit__.

cdef int cb_message_begin(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    s.head_start = -1
    s.method_end = -1
    s.url_start = -1
    s.url_end = -1
    s.proto_start = -1
    s.proto_len = 0
    s.reqline_done = False
    s.headers_done = False
    s.url_len = 0
    s.hb_len = 0
    s.nfields = 0
    s.nseen = 0
    s.in_name = False
    s.in_value = False
    s.in_trailers = False
    s.in_chunk_line = False
    s.walking = False
    s.walk_in_ws = False
    s.ext_start = -1
    s.body_total = 0
    return 0


cdef int cb_method(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    if s.head_start < 0:
        s.head_start = abs_pos(s, at)
    s.method_end = abs_pos(s, at) + <int64_t>n
    return 0


cdef int cb_method_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    # CONNECT (RFC 9110 §9.3.6) asks for a tunnel; this server does not do that.
    if p.method == ll.HTTP_CONNECT:
        return fail(s, BAD_REQUEST, "CONNECT is not supported")
    return 0


cdef int cb_url(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    cdef int64_t start = abs_pos(s, at)
    if s.url_start < 0:
        s.url_start = start
    s.url_end = start + <int64_t>n
    # RFC 9112 §3: request-line longer than we accept -> 414.
    if s.url_end - s.head_start > s.max_request_line:
        return fail(s, URI_TOO_LONG, "Request line too long")
    if grow(&s.url, &s.url_cap, s.url_len + n) < 0:
        return fail(s, BAD_REQUEST, "Out of memory")
    memcpy(s.url + s.url_len, at, n)
    s.url_len += n
    return 0


cdef inline bint bad_authority_char(char c) noexcept nogil:
    return (c == c'/' or c == c'?' or c == c'#' or c == c'"' or c == c'<' or c == c'>'
            or c == c'\\' or c == c'^' or c == c'`' or c == c'{' or c == c'|' or c == c'}')


cdef int cb_url_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    cdef const char* u = s.url
    cdef size_t n = s.url_len, i, q
    cdef unsigned char c
    # RFC 9112 §3: method SP request-target SP version, single spaces
    # (llhttp would skip extra ones).
    if s.url_start != s.method_end + 1:
        return fail(s, BAD_REQUEST, "Invalid request line")
    if n == 0:
        return fail(s, BAD_REQUEST, "Invalid request target")
    for i in range(n):
        c = <unsigned char>u[i]
        # RFC 9112 §3.2: visible ASCII only; no fragment in a request-target.
        if c < 0x21 or c > 0x7e:
            return fail(s, BAD_REQUEST, "Invalid request target")
        if c == c'#':
            return fail(s, BAD_REQUEST, "Fragment in request target")
    s.asterisk = False
    if u[0] == c'/':
        # RFC 9112 §3.2.1 origin-form.
        s.path_start = 0
    elif n == 1 and u[0] == c'*':
        # RFC 9112 §3.2.4 asterisk-form: only for a server-wide OPTIONS.
        if p.method != ll.HTTP_OPTIONS:
            return fail(s, BAD_REQUEST, "Asterisk-form target outside OPTIONS")
        s.asterisk = True
        return 0
    else:
        # RFC 9112 §3.2.2 absolute-form: letters "://" authority path [? query]
        # (llhttp takes only letters in the scheme); RFC 9110 §4.2.1: an
        # empty host is invalid.
        i = 0
        while i < n and ((u[i] >= c'a' and u[i] <= c'z') or (u[i] >= c'A' and u[i] <= c'Z')):
            i += 1
        if i == 0 or i + 3 > n or memcmp(u + i, b"://", 3) != 0:
            return fail(s, BAD_REQUEST, "Invalid request target")
        i += 3
        q = i
        while i < n and not bad_authority_char(u[i]):
            i += 1
        if i == q or (i < n and u[i] != c'/' and u[i] != c'?'):
            return fail(s, BAD_REQUEST, "Invalid request target")
        s.path_start = i
    q = s.path_start
    while q < n and u[q] != c'?':
        q += 1
    s.path_end = q
    return 0


cdef int cb_protocol(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    if s.proto_start < 0:
        s.proto_start = abs_pos(s, at)
    if s.proto_len + n > sizeof(s.proto):
        return fail(s, BAD_REQUEST, "Invalid HTTP version")
    memcpy(s.proto + s.proto_len, at, n)
    s.proto_len += n
    return 0


cdef int cb_protocol_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    # RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, after one SP.
    if s.proto_start != s.url_end + 1 or s.proto_len != 4 or memcmp(s.proto, b"HTTP", 4) != 0:
        return fail(s, BAD_REQUEST, "Invalid HTTP version")
    return 0


cdef int cb_version(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    if abs_pos(s, at) + <int64_t>n - s.head_start > s.max_request_line:
        return fail(s, URI_TOO_LONG, "Request line too long")
    return 0


cdef int cb_version_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    s.reqline_done = True
    # RFC 9112 §2.3: we speak HTTP/1.0 and HTTP/1.1 only (llhttp also takes 0.9, 2.0).
    if p.http_major != 1 or p.http_minor > 1:
        return fail(s, BAD_REQUEST, "Unsupported HTTP version")
    return 0


cdef inline int check_field_size(State* s, const char* at, size_t n) noexcept nogil:
    cdef int64_t end = abs_pos(s, at) + <int64_t>n
    if s.in_trailers:
        if end - s.trailer_start > s.max_header_size:
            return fail(s, HEADERS_TOO_LARGE, "Trailer section too large")
    elif end - s.head_start > s.max_header_size:
        # RFC 9110 §15.5 / RFC 6585 §5: header block too large -> 431.
        return fail(s, HEADERS_TOO_LARGE, "Request header block too large")
    return 0


cdef int cb_header_field(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    cdef size_t i
    cdef char* dst
    cdef Field* f
    if check_field_size(s, at, n) < 0:
        return -1
    if s.in_trailers:
        return 0  # trailers are parsed and discarded
    if not s.in_name:
        s.in_name = True
        if s.nfields >= s.fields_cap:
            f = <Field*>realloc(s.fields, (s.fields_cap * 2 + 8) * sizeof(Field))
            if f == NULL:
                return fail(s, BAD_REQUEST, "Out of memory")
            s.fields = f
            s.fields_cap = s.fields_cap * 2 + 8
        s.fields[s.nfields].name_off = s.hb_len
    if grow(&s.hb, &s.hb_cap, s.hb_len + n) < 0:
        return fail(s, BAD_REQUEST, "Out of memory")
    dst = s.hb + s.hb_len
    for i in range(n):
        dst[i] = lower(at[i])  # names are handed out lowercased
    s.hb_len += n
    return 0


cdef int cb_header_field_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    cdef Field* f
    s.nseen += 1
    if not s.in_trailers and not s.in_name:
        return fail(s, BAD_REQUEST, "Invalid header field name")  # no name span: never from llhttp
    if s.nseen > s.max_headers:
        return fail(s, HEADERS_TOO_LARGE,
                    "Too many trailer fields" if s.in_trailers else "Too many header fields")
    if s.in_trailers:
        return 0
    s.in_name = False
    s.in_value = True
    f = &s.fields[s.nfields]
    f.name_len = s.hb_len - f.name_off
    f.value_off = s.hb_len
    return 0


cdef int cb_header_value(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    if check_field_size(s, at, n) < 0:
        return -1
    if s.in_trailers:
        return 0
    if grow(&s.hb, &s.hb_cap, s.hb_len + n) < 0:
        return fail(s, BAD_REQUEST, "Out of memory")
    memcpy(s.hb + s.hb_len, at, n)
    s.hb_len += n
    return 0


cdef int cb_header_value_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    cdef Field* f
    cdef size_t a, b
    if s.in_trailers:
        return 0
    if not s.in_value:
        return fail(s, BAD_REQUEST, "Invalid header field")  # value without name: never from llhttp
    s.in_value = False
    f = &s.fields[s.nfields]
    # RFC 9110 §5.5: OWS around a field value is not part of it.
    a = f.value_off
    b = s.hb_len
    while a < b and is_ows(s.hb[a]):
        a += 1
    while b > a and is_ows(s.hb[b - 1]):
        b -= 1
    f.value_off = a
    f.value_len = b - a
    s.nfields += 1
    return 0


cdef int cb_headers_complete(ll.llhttp_t* p) noexcept nogil:
    # Pause: feed() needs the exact end of the header block and builds the head.
    (<State*>p.data).pause = PAUSE_HEADERS
    return ll.HPE_PAUSED


cdef int cb_body(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    cdef Span* sp
    if n == 0:
        return 0  # body events are never empty
    if s.nspans >= s.spans_cap:
        sp = <Span*>realloc(s.spans, (s.spans_cap * 2 + 4) * sizeof(Span))
        if sp == NULL:
            return fail(s, BAD_REQUEST, "Out of memory")
        s.spans = sp
        s.spans_cap = s.spans_cap * 2 + 4
    s.spans[s.nspans].at = at
    s.spans[s.nspans].length = n
    s.nspans += 1
    s.last_body_end = abs_pos(s, at) + <int64_t>n
    return 0


cdef int cb_chunk_ext(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    cdef int64_t start = abs_pos(s, at)
    if s.ext_start < 0:  # never: walk_line saw the ';' first
        return fail(s, BAD_REQUEST, "Invalid chunk extension")
    # RFC 9112 §7.1.1: a server may limit chunk extensions (max_chunk_ext bytes per line).
    if start + <int64_t>n - s.ext_start > s.max_chunk_ext:
        return fail(s, BAD_REQUEST, "Chunk extensions too long")
    s.ext_piece += n
    return 0


cdef int cb_chunk_ext_value(ll.llhttp_t* p, const char* at, size_t n) noexcept nogil:
    cdef State* s = <State*>p.data
    if n:
        if s.ext_piece == 0:
            s.ext_quoted = at[0] == c'"'
        # RFC 9112 §7.1.1: chunk-ext-val = token / quoted-string, not a mix
        # (llhttp takes 'a|"b"').
        if not s.ext_quoted and memchr(at, c'"', n) != NULL:
            return fail(s, BAD_REQUEST, "Invalid chunk extension")
    return cb_chunk_ext(p, at, n)


cdef int cb_chunk_ext_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    # RFC 9112 §7.1.1: chunk-ext-name is a token and chunk-ext-val a token or
    # quoted-string, never empty; llhttp lets ";=", ";a=" and ";a;;b" through.
    if s.ext_piece == 0:
        return fail(s, BAD_REQUEST, "Invalid chunk extension")
    s.ext_piece = 0
    return 0


cdef int cb_chunk_header(ll.llhttp_t* p) noexcept nogil:
    # Pause: feed() needs the exact end of the chunk line (limits, trailers).
    (<State*>p.data).pause = PAUSE_CHUNK
    return ll.HPE_PAUSED


cdef int cb_chunk_complete(ll.llhttp_t* p) noexcept nogil:
    cdef State* s = <State*>p.data
    if not s.in_trailers:
        # chunk-data CRLF consumed: the next chunk line starts here.  Pause, so
        # that feed() walks it before llhttp reads it.
        start_walk(s, s.last_body_end + 2)
        s.pause = PAUSE_LINE
        return ll.HPE_PAUSED
    return 0


cdef int cb_message_complete(ll.llhttp_t* p) noexcept nogil:
    (<State*>p.data).pause = PAUSE_MESSAGE
    return ll.HPE_PAUSED


cdef ll.llhttp_settings_t _SETTINGS
ll.llhttp_settings_init(&_SETTINGS)
_SETTINGS.on_message_begin = cb_message_begin
_SETTINGS.on_method = cb_method
_SETTINGS.on_method_complete = cb_method_complete
_SETTINGS.on_url = cb_url
_SETTINGS.on_url_complete = cb_url_complete
_SETTINGS.on_protocol = cb_protocol
_SETTINGS.on_protocol_complete = cb_protocol_complete
_SETTINGS.on_version = cb_version
_SETTINGS.on_version_complete = cb_version_complete
_SETTINGS.on_header_field = cb_header_field
_SETTINGS.on_header_field_complete = cb_header_field_complete
_SETTINGS.on_header_value = cb_header_value
_SETTINGS.on_header_value_complete = cb_header_value_complete
_SETTINGS.on_headers_complete = cb_headers_complete
_SETTINGS.on_body = cb_body
_SETTINGS.on_chunk_extension_name = cb_chunk_ext
_SETTINGS.on_chunk_extension_value = cb_chunk_ext_value
_SETTINGS.on_chunk_extension_name_complete = cb_chunk_ext_complete
_SETTINGS.on_chunk_extension_value_complete = cb_chunk_ext_complete
_SETTINGS.on_chunk_header = cb_chunk_header
_SETTINGS.on_chunk_complete = cb_chunk_complete
_SETTINGS.on_message_complete = cb_message_complete


cdef class RequestParser:
    """Incremental HTTP/1.x request parser (see ``parser_py`` for the contract)."""

    def __cinit__(self, int max_header_size=16384, int max_request_line=8190, int max_headers=100,
                  Py_ssize_t max_field_size=8190, Py_ssize_t max_chunk_ext=4096, long long max_body_size=-1):
        cdef State* s = &self._s
        ll.llhttp_init(&self._parser, ll.HTTP_REQUEST, &_SETTINGS)
        # Persistence is decided by our own rule (RFC 9112 §9.3) and parsing
        # stops after a non-persistent request, so llhttp must not act on
        # "Connection: close" by itself.
        ll.llhttp_set_lenient_keep_alive(&self._parser, 1)
        self._parser.data = s
        s.max_header_size = max_header_size
        s.max_request_line = max_request_line
        s.max_headers = <size_t>max(max_headers, 0)
        s.max_field_size = <size_t>max(max_field_size, 0)
        s.max_chunk_ext = max_chunk_ext
        s.max_body_size = max_body_size if max_body_size >= 0 else -1
        s.body_total = 0
        s.head_start = -1
        s.ext_start = -1
        s.url = NULL
        s.hb = NULL
        s.fields = NULL
        s.spans = NULL
        self.trailing = _EMPTY
        self.h2c = False  # set by the server under --http2 in cleartext (see _make_head)
        self._mode = MODE_RUN
        self._fed = 0

    @property
    def fed(self):
        """Bytes fed so far (the server's body-read timeout watches it for progress)."""
        return self._fed

    def __dealloc__(self):
        free(self._s.url)
        free(self._s.hb)
        free(self._s.fields)
        free(self._s.spans)

    cdef int _fail(self, int status, str reason) except -1:
        self._mode = MODE_DEAD
        self._err_status = status
        self._err_reason = reason
        raise ParseError(status, reason)

    # cpdef: a compiled caller (the protocol) calls it as a C method, Python
    # callers through the generated wrapper.
    cpdef list feed(self, object data):
        """Parse ``data``; return the events it completes (a new list each call)."""
        cdef list events = []
        cdef State* s = &self._s
        cdef const char* buf
        cdef const char* cur
        cdef const char* end
        cdef const char* stop
        cdef const char* seg_end
        cdef Py_ssize_t n
        cdef size_t i
        cdef ll.llhttp_errno_t err
        cdef int64_t at, line_end, digits
        cdef object head
        cdef const char* reason

        if self._mode != MODE_RUN:
            if self._mode == MODE_DEAD:
                raise ParseError(self._err_status, self._err_reason)
            return events
        if not PyBytes_CheckExact(data):
            data = bytes(data)
        n = PyBytes_GET_SIZE(data)
        if n == 0:
            return events
        try:
            buf = PyBytes_AS_STRING(data)
            end = buf + n
            cur = buf
            s.buf = buf
            s.base = self._fed
            while True:
                s.pause = PAUSE_NONE
                s.nspans = 0
                seg_end = end
                if s.walking:
                    # A chunk line: llhttp gets it in pieces, without BWS (walk_line).
                    if s.walk_in_ws:
                        cur = skip_bws(s, cur, end)
                        if cur == NULL:
                            self._fail(s.err_status, s.err_reason.decode("ascii"))
                        if cur == end:
                            self._check_unfinished(end)
                            break
                    seg_end = walk_line(s, cur, end)
                    if seg_end == NULL:
                        self._fail(s.err_status, s.err_reason.decode("ascii"))
                err = ll.llhttp_execute(&self._parser, cur, <size_t>(seg_end - cur))
                if err != ll.HPE_OK and err != ll.HPE_PAUSED:
                    for i in range(s.nspans):  # body received before the error
                        events.append(PyBytes_FromStringAndSize(s.spans[i].at, <Py_ssize_t>s.spans[i].length))
                    if s.err_status:
                        self._fail(s.err_status, s.err_reason.decode("ascii"))
                    if err == ll.HPE_PAUSED_H2_UPGRADE:
                        self._fail(BAD_REQUEST, "HTTP/2 is not supported")
                    reason = ll.llhttp_get_error_reason(&self._parser)
                    self._fail(BAD_REQUEST, reason.decode("ascii", "replace") if reason != NULL else "Invalid request")
                for i in range(s.nspans):
                    events.append(PyBytes_FromStringAndSize(s.spans[i].at, <Py_ssize_t>s.spans[i].length))
                if err == ll.HPE_OK:
                    if seg_end != end:
                        # Stopped before a BWS byte of a chunk line: skip it, go on.
                        s.walk_in_ws = True
                        cur = seg_end
                        continue
                    self._check_unfinished(end)
                    break

                stop = ll.llhttp_get_error_pos(&self._parser)
                at = abs_pos(s, stop)
                if s.pause == PAUSE_HEADERS:
                    head = self._make_head(at)
                    events.append(head)
                    if (<tuple>head)[8] is not None:
                        # RFC 9110 §7.8: the new protocol starts right after the
                        # header block; nothing more is parsed as HTTP.
                        events.append(None)
                        self.trailing = PyBytes_FromStringAndSize(stop, end - stop)
                        self._mode = MODE_STOPPED
                        break
                elif s.pause == PAUSE_CHUNK:
                    line_end = at - 2  # before the CRLF
                    digits = s.walk_digits
                    if digits > MAX_CHUNK_DIGITS:
                        self._fail(BAD_REQUEST, "Chunk size too long")
                    if s.ext_start >= 0 and line_end - s.ext_start > s.max_chunk_ext:
                        self._fail(BAD_REQUEST, "Chunk extensions too long")
                    # RFC 9110 §15.5.14: refuse the chunk that would exceed the
                    # body limit (413) before any of its bytes are handed out.
                    if s.max_body_size >= 0 and self._parser.content_length:
                        if self._parser.content_length > <uint64_t>(s.max_body_size - s.body_total):
                            self._fail(CONTENT_TOO_LARGE, "Request body too large")
                        s.body_total += <int64_t>self._parser.content_length
                    s.in_chunk_line = False
                    s.walking = False
                    s.ext_start = -1
                    s.ext_piece = 0
                    if self._parser.content_length == 0:
                        # RFC 9112 §7.1.2: the trailer section follows the last chunk.
                        s.in_trailers = True
                        s.trailer_start = at
                        s.nseen = 0
                elif s.pause == PAUSE_LINE:
                    pass  # cb_chunk_complete started the walk of the next chunk line
                elif s.pause == PAUSE_MESSAGE:
                    if s.in_trailers and at - s.trailer_start > s.max_header_size:
                        self._fail(HEADERS_TOO_LARGE, "Trailer section too large")
                    s.head_start = -1
                    s.in_trailers = False
                    s.in_chunk_line = False
                    events.append(None)
                    if not s.keep_alive:
                        # RFC 9112 §9.6: the server closes after answering a
                        # non-persistent request; what follows is not parsed.
                        self._mode = MODE_STOPPED
                        break
                ll.llhttp_resume(&self._parser)
                # Go on even with no bytes left: llhttp may complete a message
                # without consuming any (a request without body ends right after
                # its header block).
                cur = stop
        except ParseError as exc:
            exc.events = events
            raise
        self._fed += n
        return events

    cdef int _check_unfinished(self, const char* end) except -1:
        """All bytes consumed: fail now if an unfinished element already breaks a limit."""
        cdef State* s = &self._s
        cdef int64_t last = abs_pos(s, end)
        if (end - 1)[0] == c'\r':
            last -= 1  # may be the start of a CRLF: not counted yet
        if s.head_start >= 0 and not s.headers_done:
            if not s.reqline_done and last - s.head_start > s.max_request_line:
                self._fail(URI_TOO_LONG, "Request line too long")
            if last - s.head_start > s.max_header_size:
                self._fail(HEADERS_TOO_LARGE, "Request header block too large")
        elif s.in_trailers:
            if last - s.trailer_start > s.max_header_size:
                self._fail(HEADERS_TOO_LARGE, "Trailer section too large")
        elif s.in_chunk_line:
            # (walk_line already failed a size over MAX_CHUNK_DIGITS digits.)
            if s.ext_start >= 0 and last - s.ext_start > s.max_chunk_ext:
                self._fail(BAD_REQUEST, "Chunk extensions too long")
        return 0

    cdef object _make_head(self, int64_t head_end):
        """Headers complete: apply the whole-block rules and build the head tuple."""
        cdef State* s = &self._s
        cdef ll.llhttp_t* p = &self._parser
        cdef const char* hb = s.hb
        cdef const char* name
        cdef const char* value
        cdef Field* f
        cdef size_t i, nlen, vlen
        cdef int host = 0, n_length = 0, n_te = 0
        cdef Field* te = NULL
        cdef Field* length = NULL
        cdef bint close = False, keep_alive_token = False, conn_upgrade = False
        cdef bint websocket = False, expect = False, http11, keep_alive, chunked = False
        cdef bint te_trailers = False, h2c = False
        cdef list headers
        cdef tuple pair, head
        cdef object o, raw, path, query

        s.headers_done = True
        if head_end - s.head_start > s.max_header_size:
            self._fail(HEADERS_TOO_LARGE, "Request header block too large")
        # RFC 9112 §2.3: HTTP/1.0 and HTTP/1.1 only ("GET /" alone is HTTP/0.9).
        if s.proto_start < 0 or p.http_major != 1 or p.http_minor > 1:
            self._fail(BAD_REQUEST, "Unsupported HTTP version")
        http11 = p.http_minor == 1

        headers = PyList_New(s.nfields)  # filled below with PyList_SET_ITEM (no append, no resize)
        for i in range(s.nfields):
            f = &s.fields[i]
            name = hb + f.name_off
            nlen = f.name_len
            value = hb + f.value_off
            vlen = f.value_len
            # RFC 9110 §5.4 / RFC 6585 §5: a server may refuse a too large field -> 431.
            if nlen + vlen > s.max_field_size:
                self._fail(HEADERS_TOO_LARGE, "Request header field too large")
            pair = (_name_bytes(name, nlen), PyBytes_FromStringAndSize(value, <Py_ssize_t>vlen))
            Py_INCREF(pair)  # PyList_SET_ITEM steals a reference
            PyList_SET_ITEM(headers, i, pair)
            if nlen == 4 and memcmp(name, b"host", 4) == 0:
                host += 1
            elif nlen == 14 and memcmp(name, b"content-length", 14) == 0:
                n_length += 1
                length = f
            elif nlen == 17 and memcmp(name, b"transfer-encoding", 17) == 0:
                n_te += 1
                te = f
            elif nlen == 10 and memcmp(name, b"connection", 10) == 0:
                close = close or has_token(value, vlen, b"close", 5)
                keep_alive_token = keep_alive_token or has_token(value, vlen, b"keep-alive", 10)
                conn_upgrade = conn_upgrade or has_token(value, vlen, b"upgrade", 7)
            elif nlen == 7 and memcmp(name, b"upgrade", 7) == 0:
                websocket = websocket or ci_equal(value, vlen, b"websocket", 9)
                h2c = h2c or has_token(value, vlen, b"h2c", 3)
            elif nlen == 6 and memcmp(name, b"expect", 6) == 0:
                expect = expect or ci_equal(value, vlen, b"100-continue", 12)
            elif nlen == 2 and name[0] == c't' and name[1] == c'e':
                # RFC 9110 §10.1.4: "trailers" in TE: the client accepts trailer fields
                te_trailers = te_trailers or has_token(value, vlen, b"trailers", 8)

        # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any
        # request with more than one Host field line.
        if host > 1 or (http11 and host == 0):
            self._fail(BAD_REQUEST, "Missing or duplicate Host header")
        if n_te:
            # RFC 9112 §6.1: Transfer-Encoding with Content-Length -> reject.
            if n_length:
                self._fail(BAD_REQUEST, "Both Transfer-Encoding and Content-Length")
            # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing.
            if not http11:
                self._fail(BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
            # RFC 9112 §6.3 / §7: final coding chunked, chunked only once; we
            # decode no other coding, so only "chunked" itself is accepted.
            if n_te > 1 or not ci_equal(hb + te.value_off, te.value_len, b"chunked", 7):
                self._fail(BAD_REQUEST, "Unsupported Transfer-Encoding")
            chunked = True
        elif n_length:
            # RFC 9112 §6.3 (5): llhttp rejected duplicates, non-digits and
            # values over 2**64-1; h11's 20-digit cap is applied here too.
            if n_length > 1 or length.value_len > 20:
                self._fail(BAD_REQUEST, "Invalid Content-Length")
            # RFC 9110 §15.5.14: content larger than the server accepts -> 413,
            # answered before any of it is handed out.
            if s.max_body_size >= 0 and p.content_length > <uint64_t>s.max_body_size:
                self._fail(CONTENT_TOO_LARGE, "Request body too large")

        # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
        keep_alive = (not close) if http11 else (keep_alive_token and not close)
        s.keep_alive = keep_alive
        if conn_upgrade and websocket:
            o = _WEBSOCKET
        elif (h2c and conn_upgrade and self.h2c and http11 and not n_te
              and (not n_length or p.content_length == 0) and h2c_fields(s)):
            # RFC 7540 §3.2 (--http2, cleartext): a request without body that asks
            # for HTTP/2; the protocol decodes HTTP2-Settings and answers 101
            o = _H2C
        else:
            o = None
            # Any other Upgrade (h2c, ...) is ignored: the request goes on as
            # plain HTTP, so llhttp must not switch into its upgrade state.
            p.upgrade = 0
        if chunked:
            # llhttp misses "chunked" followed by HTAB (valid OWS, RFC 9110
            # §5.6.3) and would refuse the body; the value was checked above.
            p.flags |= ll.F_CHUNKED
            start_walk(s, head_end)

        if s.asterisk:
            raw = _STAR
            path = _STAR_STR
            query = _EMPTY
        else:
            if s.path_end == s.path_start:
                raw = _SLASH  # absolute-form without a path
            else:
                raw = PyBytes_FromStringAndSize(s.url + s.path_start, <Py_ssize_t>(s.path_end - s.path_start))
            path = decode_path(PyBytes_AS_STRING(raw), <size_t>PyBytes_GET_SIZE(raw))
            if s.path_end + 1 >= s.url_len:
                query = _EMPTY
            else:
                query = PyBytes_FromStringAndSize(s.url + s.path_end + 1, <Py_ssize_t>(s.url_len - s.path_end - 1))
        # RFC 9110 §10.1.1: 100-continue only means something from an HTTP/1.1 client.
        # (TE is an HTTP/1.1 field: an HTTP/1.0 client cannot receive a chunked body)
        head = (_METHODS[p.method], path, raw, query, _V11 if http11 else _V10, headers,
                keep_alive, http11 and expect, o, http11 and te_trailers)
        return head
