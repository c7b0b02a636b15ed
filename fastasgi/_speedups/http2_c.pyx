# cython: language_level=3
"""The HTTP/2 connection protocol on libnghttp2 (``--http2``, the compiled set).

The compiled twin of ``http2_py`` (same class name, constructor, attributes and
behaviour), built when libnghttp2's headers are found (``pkg-config libnghttp2``);
without them the compiled set runs ``http2_py``.  Per connection: bytes ->
``nghttp2_session_mem_recv`` -> C callbacks (below) -> one ``stream_c.StreamCycle``
per stream, the cycle both implementations share; its ``send`` queues the response
here, and ``nghttp2_session_mem_send`` frames what the windows allow into one
``transport.write`` per flush.

* Requests: ``on_header`` builds the request's header list as bytes pairs, with no
  other Python call per field; nghttp2 checks each field (RFC 9113 §8.2: lowercase
  token names, no CR/LF/NUL, pseudo-header rules, content-length against the DATA)
  and resets a stream that breaks them.  The scope is built once per stream, in C
  (``stream_c.StreamProtocol.build_scope``).
* Flow control follows the app (as on the pure path): nghttp2 sends no
  WINDOW_UPDATE by itself (``no_auto_window_update``); the cycle hands bytes back
  (``nghttp2_session_consume``) as the app takes the body.
* Responses: a data provider per stream reads the one body message the cycle
  queued (:class:`Outbox`); with nothing queued it defers, and the next message
  resumes it.  The app's next ``send`` waits until the queued one is framed.
* Hardening beyond nghttp2's own checks, with the pure path's budgets: the
  header-list limit of HTTP/1.1 (HPACK bombs), header blocks bounded in bytes and
  frames (CONTINUATION floods), resets (CVE-2023-44487) and control frames
  counted in C; past a budget, GOAWAY ``ENHANCE_YOUR_CALM``.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

from fastasgi._speedups._nghttp2 cimport *
from fastasgi._speedups.stream_c cimport StreamCycle, StreamProtocol

import logging
from contextvars import Context, copy_context

from fastasgi._speedups.stream_c import (
    CONNECTION_WINDOW,
    CONTROL_BURST,
    CONTROL_RATE,
    LINGER,
    MAX_CONCURRENT_STREAMS,
    RESET_BURST,
    RESET_RATE,
    STREAM_WINDOW,
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
    TIMEOUT_RESPONSE_BODY,
    TIMEOUTS,
)

NGHTTP2_VERSION = nghttp2_version(0).version_str.decode("ascii")


# -- the session's allocator: malloc, with whole pages given back while the connection is idle --
#
# An idle nghttp2 session keeps memory it does not use until its next stream:
#
# * its outbound frame buffer (16 KiB + 10, the largest frame, never shrunk), written up
#   to the size of the largest frame sent.  Between two ``nghttp2_session_mem_send``
#   loops what it holds is dead (each frame returned is copied out, and the loop's last
#   call, which returns 0, resets the buffer).  It is told apart as the session's first
#   ``realloc(NULL, FRAMEBUF_SIZE)`` (nghttp2_bufs_init3 at session creation; its head
#   chunk is kept until the session ends);
# * blocks of a page or more that hold nothing at the moment: nghttp2 < 1.53 makes its
#   stream map a 4 KiB table at session creation (256 buckets, all zero bytes once the
#   last stream is gone, with closed streams not kept); later versions grow it from 16
#   buckets when a stream opens.
#
# So every block of a page or more is placed on whole pages of its own (at most
# FA_H2_BLOCKS of them per session, the frame buffer one, from a pool of page runs outside
# malloc's heap, where aligned blocks would leave holes; the rest come from malloc as usual),
# and when the connection has been idle a while (Http2Protocol.trim) their pages go back to
# the kernel (``madvise(MADV_DONTNEED)``): the frame buffer's whole pages, and the other
# blocks' pages that read all zeros.  The memory stays mapped and reads as zeros afterwards
# -- what those pages held -- and a page is faulted in again when written.  (nghttp2 is
# only called with the GIL held; the pool has a lock all the same.)
cdef extern from *:
    """
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>
    #if (defined(__unix__) || defined(__APPLE__)) && !defined(FA_H2_NO_PAGES)
    #include <sys/mman.h>
    #include <unistd.h>
    #ifdef MADV_DONTNEED
    #define FA_H2_PAGES 1
    #endif
    #endif
    #define FA_H2_FRAMEBUF_SIZE (9 + 1 + 16384)  /* NGHTTP2_FRAMEBUF_CHUNKLEN (nghttp2_frame.h) */
    #define FA_H2_BLOCKS 2
    #if defined(__GNUC__) || defined(__clang__)
    #define FA_H2_COLD __attribute__((noinline, cold))
    #else
    #define FA_H2_COLD
    #endif

    typedef struct {
        void *block[FA_H2_BLOCKS];  /* blocks on whole pages of their own (NULL: a free slot) */
        uint32_t block_size[FA_H2_BLOCKS];  /* their size: whole pages */
        uint32_t written;  /* bytes of the frame buffer possibly in memory since its pages were last given back */
        uint8_t framebuf;  /* 1 + the slot of the session's outbound frame buffer, or 0 */
        uint8_t framebuf_seen;  /* it was allocated (the session's first block of that size) */
    } fa_h2_mem;

    /* the page size (set by fa_h2_setup, before any session), 0 where pages are not given back;
       the smallest block put on pages of its own (SIZE_MAX: none), and the mask of a page offset
       (all ones: none) */
    static uintptr_t fa_page = 0;
    static size_t fa_big = SIZE_MAX;
    static uintptr_t fa_mask = UINTPTR_MAX;

    static void fa_h2_setup(void) {
    #ifdef FA_H2_PAGES
        long ps = sysconf(_SC_PAGESIZE);
        /* (a block's size is kept in 32 bits: a page size past that is not one to work with) */
        fa_page = ps >= 1024 && ps <= (1L << 20) && (ps & (ps - 1)) == 0 ? (uintptr_t)ps : 0;
        if (fa_page != 0) {
            fa_big = fa_page;
            fa_mask = fa_page - 1;
        }
    #endif
    }

    static inline int fa_h2_slot(fa_h2_mem *m, void *ptr) {
        int i;
        for (i = 0; i < FA_H2_BLOCKS; i++) {
            if (m->block[i] == ptr) {
                return i;
            }
        }
        return -1;
    }

    #ifdef FA_H2_PAGES
    #include <pthread.h>
    #if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
    #define MAP_ANONYMOUS MAP_ANON
    #endif
    /* The blocks' pages come from a pool of runs of 1 to FA_POOL_PAGES pages, carved from
       anonymous mappings of FA_POOL_CHUNK pages (so they leave no holes in malloc's heap); a
       freed run goes back to the kernel (madvise) and is kept, empty, for the next block of its
       size.  A run of the pool reads as zeros when handed out. */
    #define FA_POOL_PAGES 8
    #define FA_POOL_CHUNK 256
    typedef struct {
        void **runs;
        size_t n, cap;
    } fa_pool_list;
    static fa_pool_list fa_pool_free[FA_POOL_PAGES + 1];
    static unsigned char *fa_pool_next = NULL, *fa_pool_end = NULL;
    static pthread_mutex_t fa_pool_lock = PTHREAD_MUTEX_INITIALIZER;

    static void *fa_pool_get(size_t pages) {
        fa_pool_list *l = &fa_pool_free[pages];
        void *p = NULL;
        size_t bytes = pages * fa_page;
        pthread_mutex_lock(&fa_pool_lock);
        if (l->n > 0) {
            p = l->runs[--l->n];
        } else {
            if (fa_pool_next == NULL || (size_t)(fa_pool_end - fa_pool_next) < bytes) {
                /* (the rest of the last mapping, under FA_POOL_PAGES pages, is never used) */
                void *c = mmap(NULL, FA_POOL_CHUNK * fa_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (c != MAP_FAILED) {
                    fa_pool_next = (unsigned char *)c;
                    fa_pool_end = fa_pool_next + FA_POOL_CHUNK * fa_page;
                }
            }
            if (fa_pool_next != NULL && (size_t)(fa_pool_end - fa_pool_next) >= bytes) {
                p = fa_pool_next;
                fa_pool_next += bytes;
            }
        }
        pthread_mutex_unlock(&fa_pool_lock);
        return p;
    }

    static void fa_pool_put(void *p, size_t pages) {
        fa_pool_list *l = &fa_pool_free[pages];
        madvise(p, pages * fa_page, MADV_DONTNEED);  /* (zeros from now on) */
        pthread_mutex_lock(&fa_pool_lock);
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 64;
            void **runs = (void **)realloc(l->runs, cap * sizeof(void *));
            if (runs != NULL) {
                l->runs = runs;
                l->cap = cap;
            }
        }
        if (l->n < l->cap) {
            l->runs[l->n++] = p;
        }  /* (else the run is lost: address space only, its pages were given back) */
        pthread_mutex_unlock(&fa_pool_lock);
    }
    #endif

    /* A block of `size` bytes (>= a page) on whole pages of its own, all zeros, or NULL when
       none can be had (no free slot, too large for the pool, out of memory): then malloc's. */
    static FA_H2_COLD void *fa_h2_pages(fa_h2_mem *m, size_t size) {
    #ifdef FA_H2_PAGES
        void *p;
        size_t pages = (size + fa_page - 1) / fa_page;
        int i = fa_h2_slot(m, NULL);
        if (i < 0 || pages > FA_POOL_PAGES || (p = fa_pool_get(pages)) == NULL) {
            return NULL;
        }
        m->block[i] = p;
        m->block_size[i] = (uint32_t)(pages * fa_page);
        if (!m->framebuf_seen && size == FA_H2_FRAMEBUF_SIZE) {
            /* the first one of that size: the frame buffer */
            m->framebuf_seen = 1;
            m->framebuf = (uint8_t)(i + 1);
            m->written = 0;
        }
        return p;
    #else
        (void)m; (void)size;
        return NULL;
    #endif
    }

    static void *fa_h2_malloc(size_t size, void *ud) {
        if (size >= fa_big) {
            void *p = fa_h2_pages((fa_h2_mem *)ud, size);
            if (p != NULL) {
                return p;
            }
        }
        return malloc(size);
    }

    static void *fa_h2_calloc(size_t n, size_t size, void *ud) {
        if (size != 0 && n <= SIZE_MAX / size && n * size >= fa_big) {
            void *p = fa_h2_pages((fa_h2_mem *)ud, n * size);  /* (zeros) */
            if (p != NULL) {
                return p;
            }
        }
        return calloc(n, size);
    }

    /* `ptr` is the block in slot i: its slot is free again, its pages go back to the pool. */
    static FA_H2_COLD void fa_h2_drop(fa_h2_mem *m, int i) {
    #ifdef FA_H2_PAGES
        fa_pool_put(m->block[i], m->block_size[i] / fa_page);
    #endif
        m->block[i] = NULL;
        m->block_size[i] = 0;
        if (m->framebuf == i + 1) {
            m->framebuf = 0;
            m->written = 0;
        }
    }

    static void fa_h2_free(void *ptr, void *ud) {
        /* (a block starts on a page; malloc's blocks seldom do) */
        if (((uintptr_t)ptr & fa_mask) == 0 && ptr != NULL) {
            fa_h2_mem *m = (fa_h2_mem *)ud;
            int i = fa_h2_slot(m, ptr);
            if (i >= 0) {
                fa_h2_drop(m, i);
                return;
            }
        }
        free(ptr);
    }

    static void *fa_h2_realloc(void *ptr, size_t size, void *ud) {
        fa_h2_mem *m = (fa_h2_mem *)ud;
        int i, j, framebuf;
        uint32_t old;
        void *p;
        if (ptr == NULL) {
            return fa_h2_malloc(size, ud);
        }
        if (((uintptr_t)ptr & fa_mask) != 0 || (i = fa_h2_slot(m, ptr)) < 0) {
            return realloc(ptr, size);
        }
        /* a block on pages of its own: moved (to another block, or to malloc's) */
        old = m->block_size[i];
        framebuf = m->framebuf == i + 1;
        p = size >= fa_big ? fa_h2_pages(m, size) : NULL;
        if (p == NULL && (p = malloc(size)) == NULL) {
            return NULL;  /* the old block stays as it was */
        }
        memcpy(p, ptr, size < old ? size : old);
        fa_h2_drop(m, i);
        if (framebuf && (j = fa_h2_slot(m, p)) >= 0) {
            m->framebuf = (uint8_t)(j + 1);
            m->written = m->block_size[j];
        }
        return p;
    }

    /* A frame at [chunk, chunk + n) was returned by nghttp2_session_mem_send. */
    static inline void fa_h2_wrote(fa_h2_mem *m, const uint8_t *chunk, size_t n) {
        if (m->framebuf != 0) {
            uintptr_t begin = (uintptr_t)m->block[m->framebuf - 1], at = (uintptr_t)chunk;
            if (at >= begin && at - begin < FA_H2_FRAMEBUF_SIZE && at - begin + n > m->written) {
                m->written = (uint32_t)(at - begin + n);
            }
        }
    }

    static int fa_h2_zero_page(const unsigned char *page) {
        const uint64_t *w = (const uint64_t *)page, *end = (const uint64_t *)(page + fa_page);
        for (; w < end; w += 8) {
            if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) {
                return 0;
            }
        }
        return 1;
    }

    /* The connection is idle: the frame buffer's pages if a frame may have reached them, and
       the pages of the other blocks that read all zeros, go back; the number of pages. */
    static int fa_h2_release(fa_h2_mem *m) {
    #ifdef FA_H2_PAGES
        unsigned char *p;
        uint32_t at;
        int i, pages = 0;
        for (i = 0; i < FA_H2_BLOCKS; i++) {
            p = (unsigned char *)m->block[i];
            if (p == NULL) {
                continue;
            }
            if (m->framebuf == i + 1) {
                if (m->written > 0 && madvise(p, m->block_size[i], MADV_DONTNEED) == 0) {
                    pages += (int)(m->block_size[i] / fa_page);
                }
                m->written = 0;
                continue;
            }
            for (at = 0; at < m->block_size[i]; at += (uint32_t)fa_page) {
                if (fa_h2_zero_page(p + at) && madvise(p + at, fa_page, MADV_DONTNEED) == 0) {
                    pages++;
                }
            }
        }
        return pages;
    #else
        (void)m;
        return 0;
    #endif
    }
    """
    ctypedef struct fa_h2_mem:
        pass
    void fa_h2_setup() noexcept nogil
    void *fa_h2_malloc(size_t size, void *ud) noexcept nogil
    void *fa_h2_calloc(size_t n, size_t size, void *ud) noexcept nogil
    void fa_h2_free(void *ptr, void *ud) noexcept nogil
    void *fa_h2_realloc(void *ptr, size_t size, void *ud) noexcept nogil
    int fa_h2_release(fa_h2_mem *m) noexcept nogil
    void fa_h2_wrote(fa_h2_mem *m, const uint8_t *chunk, size_t n) noexcept nogil
DESCRIPTION = f"compiled: nghttp2 {NGHTTP2_VERSION}"

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# a header block (HEADERS + CONTINUATION) of more frames than this is a flood (h2 allows 64)
cdef Py_ssize_t MAX_BLOCK_FRAMES = 64
cdef int LAST_KNOWN_FRAME_TYPE = 9  # CONTINUATION; above: extensions nghttp2 ignores here

INFO = logging.INFO
error_logger = logging.getLogger("uvicorn.error")
access_logger = logging.getLogger("uvicorn.access")


@cython.freelist(16)  # one per response: its memory is reused
cdef class Outbox:
    """What a stream's data provider reads: the one body message queued, then EOF (and trailers)."""

    cdef StreamCycle cycle  # None for a response the server makes itself (answer_error)
    cdef bytes data
    cdef Py_ssize_t offset
    cdef bint eof  # the stream ends once data is framed
    cdef bint deferred  # the provider said NGHTTP2_ERR_DEFERRED: resume it on new data
    cdef bint done  # EOF was given to nghttp2
    cdef list trailers
    cdef double stalled_since  # --timeout-response-body: when seen waiting for a window (0: not)

    cdef inline drop(self):
        """The stream is closed: the box and its cycle let go of each other, so that both
        (and the stream's scope) go as soon as the app lets go of them, not at the garbage
        collector's next pass; and the cycle sends nothing more through it (send_data)."""
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None
            if cycle.outbox is self:
                cycle.outbox = None


cdef bytes EMPTY = b""
# s: an idle connection (no stream open) is trimmed after this long (Http2Protocol.trim)
cdef double IDLE_RELEASE = 1.0
cdef double D_RESET_BURST = RESET_BURST, D_RESET_RATE = RESET_RATE
cdef double D_CONTROL_BURST = CONTROL_BURST, D_CONTROL_RATE = CONTROL_RATE

# The local address of the last connection made, and the host of its peer: the next
# connection's, when equal, are these objects (the connections of one listener share them).
cdef object LAST_SERVER = None
cdef object LAST_HOST = None
# The context the connections' timer runs in (on_timer reads and sets no context variable):
# one for all, not a copy per timer armed (``call_later`` makes one by default).
cdef object TIMER_CONTEXT = Context()


ctypedef struct Bucket:
    # stream_py.Budget's token bucket, as two fields of the protocol (no object per connection)
    double tokens
    double last


cdef inline bint spend(Bucket *b, double burst, double rate, double now) noexcept:
    """False once more than ``burst`` events came faster than ``rate`` per second (``Budget.spend``)."""
    cdef double tokens = b.tokens + (now - b.last) * rate
    b.last = now
    if tokens > burst:
        tokens = burst
    tokens -= 1.0
    b.tokens = tokens
    return tokens >= 0.0


cdef class Http2Protocol(StreamProtocol):
    """asyncio protocol for one HTTP/2 connection (``transport`` -> nghttp2 -> stream cycles)."""

    cdef nghttp2_session *session
    cdef dict outboxes  # stream id -> Outbox, until nghttp2 closes the stream
    cdef set reset_after  # streams to reset (NO_ERROR) once their response's last frame is sent (or None)
    cdef list starting  # streams whose app starts once the bytes received are handled (or None)
    cdef bint in_session  # inside nghttp2 (mem_recv / mem_send): no reentry
    cdef bint in_receive
    cdef bint check_idle  # a stream closed inside nghttp2: became_idle() afterwards
    cdef bint peer_goaway
    cdef bint peer_goaway_error  # with an error code: the client ends the connection (RFC 9113 §5.4.1)
    cdef object abuse  # why the connection must end with ENHANCE_YOUR_CALM (set in a callback)
    cdef object failure  # an exception raised in a callback
    cdef list hdr_list  # the request header block being received: its regular fields
    cdef bytes hdr_method  # and the values of its pseudo-header fields (None: not in the block)
    cdef bytes hdr_path
    cdef bytes hdr_authority
    cdef Py_ssize_t hdr_size  # its size as RFC 9113 §6.5.2 counts it
    cdef Py_ssize_t block_bytes  # HEADERS + CONTINUATION bytes of the block being received
    cdef Py_ssize_t block_frames
    cdef public bint in_block  # a header block is incomplete (header-read timeout)
    cdef public int goaway_last_id
    cdef object flush_handle
    cdef object timer
    cdef object linger_handle
    cdef Bucket reset_budget  # streams the client reset (Rapid Reset)
    cdef Bucket control_budget  # control frames
    cdef fa_h2_mem mem  # the session's allocator state (its mem_user_data): see fa_h2_release
    cdef bint trimmed  # idle since trim()
    cdef bint sparse  # no response since the connection opened or was trimmed (see submit)

    def __cinit__(self):
        self.session = NULL
        memset(&self.mem, 0, sizeof(fa_h2_mem))

    def __init__(self, config, server_state, app_state, _loop=None):
        StreamProtocol.__init__(self, config, server_state, app_state, _loop)
        self.outboxes = {}
        self.goaway_last_id = -1

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport):
        cdef nghttp2_settings_entry iv[3]
        cdef nghttp2_mem mem  # nghttp2 keeps a copy; its mem_user_data is this connection's
        self.connections.add(self)
        self.transport = transport
        global LAST_SERVER, LAST_HOST
        client = get_remote_addr(transport)
        if type(client) is tuple and len(client) == 2 and type(client[0]) is str:
            if client[0] == LAST_HOST:
                client = (LAST_HOST, client[1])
            else:
                LAST_HOST = client[0]
        self.client = client
        server = get_local_addr(transport)
        if server == LAST_SERVER:
            server = LAST_SERVER
        else:
            LAST_SERVER = server
        self.server = server
        self.scheme = "https" if is_ssl(transport) else "http"
        self.access_log = bool(self.config.access_log) and access_logger.isEnabledFor(INFO)
        if self.access_log:
            self.access_writer = getattr(self.config, "access_log_writer", None) or AccessLog()
        self.base_context = Context() if self.reset_contextvars else copy_context()
        if self.proxy_trust is not None:
            self.trusted = trust_key(transport, self.client) in self.proxy_trust
        now = self.loop.time()
        self.reset_budget.tokens = D_RESET_BURST
        self.reset_budget.last = now
        self.control_budget.tokens = D_CONTROL_BURST
        self.control_budget.last = now
        mem.mem_user_data = <void *>&self.mem
        mem.malloc = fa_h2_malloc
        mem.free = fa_h2_free
        mem.calloc = fa_h2_calloc
        mem.realloc = fa_h2_realloc
        if nghttp2_session_server_new3(&self.session, CALLBACKS, <void *>self, OPTION, &mem) != 0:
            raise MemoryError("nghttp2_session_server_new3")
        iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        iv[0].value = MAX_CONCURRENT_STREAMS
        iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        iv[1].value = STREAM_WINDOW
        iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        iv[2].value = self.max_header_list_size
        nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 3)
        nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0, CONNECTION_WINDOW)
        if self.metrics_on:
            self.metrics[CONNECTIONS] += 1
            self.metrics[CONNECTIONS_OPEN] += 1
        self.flush()
        self.idle_since = now
        self.sparse = True
        self.arm_timer()

    def connection_lost(self, exc):
        self.closed = True
        self.connections.discard(self)
        if self.metrics_on:
            self.metrics[CONNECTIONS_OPEN] -= 1
        streams = list(self.streams.values())
        self.streams.clear()
        for box in self.outboxes.values():
            (<Outbox>box).drop()
        self.outboxes.clear()
        self.starting = None
        for stream in streams:
            (<StreamCycle>stream).on_disconnect()
        self.wake_drain()
        for handle in (self.timer, self.flush_handle, self.linger_handle, self.response_timer):
            if handle is not None:
                handle.cancel()
        self.timer = None
        self.flush_handle = None
        self.response_timer = None
        if self.session != NULL and not self.in_session:
            nghttp2_session_del(self.session)
            self.session = NULL

    def eof_received(self):
        pass

    def data_received(self, data):
        cdef bytes buf = data if type(data) is bytes else bytes(data)
        if self.metrics_on:
            self.metrics[BYTES_IN] += PyBytes_GET_SIZE(buf)
        if self.shut or self.session == NULL:
            return
        self.receive(buf)

    cpdef bint feed(self, bytes data, Py_ssize_t start, Py_ssize_t end) except -1:
        cdef ssize_t rv
        if self.session == NULL:
            return True
        self.in_session = True
        self.in_receive = True
        rv = nghttp2_session_mem_recv(
            self.session, <const uint8_t *>PyBytes_AS_STRING(data) + start, <size_t>(end - start)
        )
        self.in_session = False
        self.in_receive = False
        if self.after_session(rv):
            return True
        starting = self.starting
        if starting is not None:
            self.starting = None
            for stream in starting:
                if not (<StreamCycle>stream).disconnected and not self.shut:
                    self.start_app(<StreamCycle>stream)
        return self.shut

    cdef bint after_session(self, ssize_t rv) except -1:
        """What a callback left to do once nghttp2 returned; True when the connection is over."""
        failure = self.failure
        if failure is not None:
            self.failure = None
            error_logger.error("Exception in the HTTP/2 protocol\n", exc_info=failure)
            self.terminate(NGHTTP2_INTERNAL_ERROR)
            return True
        if self.abuse is not None:
            self.calm_down(self.abuse)
            return True
        if rv == NGHTTP2_ERR_FLOODED:
            # nghttp2's own bound on the answers it queues (PING and SETTINGS ACKs): a flood
            # that came in one read, before the control budget ran out
            self.calm_down("too many control frames (PING, SETTINGS, PRIORITY, empty DATA, WINDOW_UPDATE)")
            return True
        if rv < 0:
            # a connection error nghttp2 does not answer itself (a wrong preface)
            error_logger.warning("Invalid HTTP/2 data received: %s", nghttp2_strerror(<int>rv).decode())
            self.count(PARSE_ERRORS + PARSE_MALFORMED)
            self.terminate(NGHTTP2_PROTOCOL_ERROR)
            return True
        if self.peer_goaway:
            # The client's GOAWAY (RFC 9113 §6.8): no stream starts after it; those in
            # progress finish (nghttp2 goes on framing them), then GOAWAY and close
            # (became_idle).  With an error code, the connection ends now.
            self.peer_goaway = False
            if self.peer_goaway_error or not (self.streams or self.outboxes):
                self.close_now()
                return True
        if self.check_idle:
            self.check_idle = False
            self.became_idle()
        return self.shut

    # -- nghttp2's callbacks (see the C trampolines at the end) --------------------------

    cdef int on_begin_frame(self, const nghttp2_frame_hd *hd) except -1:
        cdef uint8_t kind = hd.type
        if kind == NGHTTP2_HEADERS:
            self.block_bytes = hd.length
            self.block_frames = 1
            self.in_block = not (hd.flags & NGHTTP2_FLAG_END_HEADERS)
        elif kind == NGHTTP2_CONTINUATION:
            # CONTINUATION floods: an HPACK-encoded field is never larger than its size in
            # the list (name + value + 32), so a longer block is over the limit anyway
            self.block_bytes += hd.length
            self.block_frames += 1
            self.in_block = not (hd.flags & NGHTTP2_FLAG_END_HEADERS)
            if self.block_bytes > self.max_header_list_size or self.block_frames > MAX_BLOCK_FRAMES:
                self.abuse = "header block larger than the header list limit (CONTINUATION flood)"
                return NGHTTP2_ERR_CALLBACK_FAILURE
        elif kind > LAST_KNOWN_FRAME_TYPE:
            if not self.spend_control():
                return NGHTTP2_ERR_CALLBACK_FAILURE
        return 0

    cdef int on_begin_headers(self, const nghttp2_frame *frame) except -1:
        self.hdr_size = 0
        if frame.headers.cat == NGHTTP2_HCAT_REQUEST:
            self.hdr_list = []
            self.hdr_method = self.hdr_path = self.hdr_authority = None
        else:
            self.hdr_list = None  # request trailers: not passed to the app
        return 0

    cdef int on_header(
        self, const nghttp2_frame *frame, const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen
    ) except -1:
        # HPACK bombs: the decoded size of a header block is bounded while decoding
        self.hdr_size += <Py_ssize_t>(namelen + valuelen) + 32
        if self.hdr_size > self.max_header_list_size:
            self.abuse = "header list larger than the limit (HPACK bomb)"
            return NGHTTP2_ERR_CALLBACK_FAILURE
        if self.hdr_list is None:
            return 0
        if namelen and name[0] == 58:  # ":"
            # a pseudo-header field (nghttp2 let through only the known ones, each once,
            # before the regular fields): its value kept apart, without a pair (build_scope)
            if namelen == 7 and memcmp(name, b":method", 7) == 0:
                self.hdr_method = PyBytes_FromStringAndSize(<char *>value, valuelen)
            elif namelen == 5 and memcmp(name, b":path", 5) == 0:
                self.hdr_path = PyBytes_FromStringAndSize(<char *>value, valuelen)
            elif namelen == 10 and memcmp(name, b":authority", 10) == 0:
                self.hdr_authority = PyBytes_FromStringAndSize(<char *>value, valuelen)
            return 0
        self.hdr_list.append(
            (PyBytes_FromStringAndSize(<char *>name, namelen), PyBytes_FromStringAndSize(<char *>value, valuelen))
        )
        return 0

    cdef int on_frame_recv(self, const nghttp2_frame *frame) except -1:
        cdef uint8_t kind = frame.hd.type
        cdef uint8_t flags = frame.hd.flags
        cdef int32_t stream_id = frame.hd.stream_id
        cdef StreamCycle cycle
        if kind == NGHTTP2_DATA:
            if flags & NGHTTP2_FLAG_END_STREAM:
                cycle = self.streams.get(stream_id)
                if cycle is not None:
                    cycle.on_body_end()
            elif frame.hd.length == frame.data.padlen and not self.spend_control():
                return NGHTTP2_ERR_CALLBACK_FAILURE  # (no data: empty, or padding only)
        elif kind == NGHTTP2_HEADERS:
            self.in_block = False
            if frame.headers.cat == NGHTTP2_HCAT_REQUEST:
                headers = self.hdr_list
                self.hdr_list = None
                if headers is None:
                    return 0
                method, path, authority = self.hdr_method, self.hdr_path, self.hdr_authority
                self.hdr_method = self.hdr_path = self.hdr_authority = None
                cycle = self.start_stream(
                    stream_id, headers, flags & NGHTTP2_FLAG_END_STREAM, method, path, authority
                )
                if cycle is not None:
                    if self.starting is None:
                        self.starting = [cycle]
                    else:
                        self.starting.append(cycle)
            elif flags & NGHTTP2_FLAG_END_STREAM:  # request trailers end the body
                cycle = self.streams.get(stream_id)
                if cycle is not None:
                    cycle.on_body_end()
        elif kind == NGHTTP2_RST_STREAM:
            cycle = self.streams.get(stream_id)
            if cycle is not None and not cycle.response_complete and not spend(
                &self.reset_budget, D_RESET_BURST, D_RESET_RATE, self.loop.time()
            ):
                self.abuse = "too many streams reset by the client (Rapid Reset)"
                return NGHTTP2_ERR_CALLBACK_FAILURE
        elif kind == NGHTTP2_WINDOW_UPDATE:
            if not self.response_in_progress() and not self.spend_control():
                return NGHTTP2_ERR_CALLBACK_FAILURE
        elif kind == NGHTTP2_PING or kind == NGHTTP2_SETTINGS:
            # (ACKs too: the server sends no PING, and one SETTINGS)
            if not self.spend_control():
                return NGHTTP2_ERR_CALLBACK_FAILURE
        elif kind == NGHTTP2_PRIORITY:
            if not self.spend_control():
                return NGHTTP2_ERR_CALLBACK_FAILURE
        elif kind == NGHTTP2_GOAWAY:
            self.peer_goaway = True
            self.peer_goaway_error = frame.goaway.error_code != NGHTTP2_NO_ERROR
            self.closing = True  # (a stream after it, even in this read, is refused)
        return 0

    cdef int on_invalid_frame_recv(self, const nghttp2_frame *frame, int lib_error_code) except -1:
        # nghttp2 answers it (RST_STREAM or GOAWAY); many of them are a flood all the same
        if not self.spend_control():
            return NGHTTP2_ERR_CALLBACK_FAILURE
        return 0

    cdef int on_data_chunk(self, int32_t stream_id, const uint8_t *data, size_t length) except -1:
        cdef StreamCycle cycle = self.streams.get(stream_id)
        if cycle is not None:
            cycle.on_data(PyBytes_FromStringAndSize(<char *>data, length), <Py_ssize_t>length)
        else:  # a stream already answered or refused: hand the window back
            nghttp2_session_consume(self.session, stream_id, length)
        return 0

    cdef int on_stream_close(self, int32_t stream_id, uint32_t error_code) except -1:
        cdef StreamCycle cycle
        cdef Outbox box
        key = stream_id
        box = self.outboxes.pop(key, None)
        if box is not None:
            box.drop()
        if self.reset_after:
            self.reset_after.discard(key)
        cycle = self.streams.pop(key, None)
        if cycle is not None:
            cycle.on_disconnect()
        self.check_idle = True
        return 0

    cdef int on_frame_send(self, const nghttp2_frame *frame) except -1:
        cdef int32_t stream_id
        if frame.hd.flags & NGHTTP2_FLAG_END_STREAM and self.reset_after:
            stream_id = frame.hd.stream_id
            if stream_id in self.reset_after:
                self.reset_after.discard(stream_id)
                nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR)
        return 0

    cdef ssize_t read_body(
        self, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags, Outbox box
    ) except -1:
        cdef Py_ssize_t avail = PyBytes_GET_SIZE(box.data) - box.offset
        cdef Py_ssize_t n = 0
        box.stalled_since = 0.0  # (nghttp2 asks only when the windows let something go)
        if avail > 0:
            n = avail if <size_t>avail <= length else <Py_ssize_t>length
            memcpy(buf, PyBytes_AS_STRING(box.data) + box.offset, n)
            box.offset += n
            if box.offset < PyBytes_GET_SIZE(box.data):
                return n
            box.data = EMPTY
            box.offset = 0
            if box.cycle is not None:
                box.cycle.wake_sender()  # the app may send its next message
            if not box.eof:
                return n
        elif not box.eof:
            box.deferred = True
            return NGHTTP2_ERR_DEFERRED
        data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
        box.done = True
        if box.trailers is not None:
            data_flags[0] |= NGHTTP2_DATA_FLAG_NO_END_STREAM
            self.submit(stream_id, box.trailers, None, 1)
            box.trailers = None
        return n

    # -- StreamProtocol: what a stream asks of nghttp2 -----------------------------------

    cdef int submit(self, int32_t stream_id, list headers, Outbox box, int kind) except? -1:
        """nghttp2_submit_response (kind 0), _trailer (1) or a 1xx block with _headers (2), of
        ``headers``, bytes pairs (nghttp2 copies them); 0 when submitted."""
        cdef Py_ssize_t n = len(headers)
        cdef Py_ssize_t i
        cdef nghttp2_nv stack[24]
        cdef nghttp2_nv *nva = stack
        cdef nghttp2_data_provider provider
        cdef bytes name, value
        cdef int rv
        if n > 24:
            nva = <nghttp2_nv *>malloc(n * sizeof(nghttp2_nv))
            if nva == NULL:
                raise MemoryError()
        try:
            for i in range(n):
                pair = headers[i]
                name = <bytes>pair[0]
                value = <bytes>pair[1]
                nva[i].name = <uint8_t *>PyBytes_AS_STRING(name)
                nva[i].namelen = PyBytes_GET_SIZE(name)
                nva[i].value = <uint8_t *>PyBytes_AS_STRING(value)
                nva[i].valuelen = PyBytes_GET_SIZE(value)
                nva[i].flags = NGHTTP2_NV_FLAG_NONE
            if kind == 0 and self.sparse:
                # The first response since the connection opened or was last idle: the fields
                # the server adds to every response are not indexed (HPACK, RFC 7541 §6.2.3).
                # An idle connection keeps its encoder's table as long as it stays open (some
                # 170 bytes of memory per entry), and those entries would seldom be used again:
                # date takes a new value every second (indexed, each value would stay in the
                # table, up to 4 KiB of it, and push out the fields that do repeat), server is
                # a few bytes.  A busy connection's next responses index them as usual.
                self.sparse = False
                for i in range(n):
                    if (
                        (nva[i].namelen == 4 and memcmp(nva[i].name, b"date", 4) == 0)
                        or (nva[i].namelen == 6 and memcmp(nva[i].name, b"server", 6) == 0)
                    ):
                        nva[i].flags = NGHTTP2_NV_FLAG_NO_INDEX
            if kind == 1:
                rv = nghttp2_submit_trailer(self.session, stream_id, nva, n)
            elif kind == 2:
                rv = nghttp2_submit_headers(self.session, NGHTTP2_FLAG_NONE, stream_id, NULL, nva, n, NULL)
                if rv > 0:
                    rv = 0
            elif box is None:
                rv = nghttp2_submit_response(self.session, stream_id, nva, n, NULL)
            else:
                provider.source.ptr = <void *>box  # held by self.outboxes until the stream closes
                provider.read_callback = cb_read
                rv = nghttp2_submit_response(self.session, stream_id, nva, n, &provider)
        finally:
            if nva != stack:
                free(nva)
        return rv

    cpdef bint send_headers(self, StreamCycle cycle, list headers, bint end_stream) except -1:
        cdef Outbox box = None
        cdef int32_t stream_id = cycle.stream_id
        if self.session == NULL or self.shut:
            return False
        if not end_stream:
            box = Outbox.__new__(Outbox)
            box.cycle = cycle
            box.data = EMPTY
            cycle.outbox = box
            self.outboxes[cycle.stream_key] = box
        if self.submit(stream_id, headers, box, 0) != 0:
            if box is not None:
                self.outboxes.pop(cycle.stream_key, None)
                cycle.outbox = None
            return False
        self.schedule_flush()
        return True

    cpdef Py_ssize_t send_data(self, StreamCycle cycle, bytes data, bint final) except -2:
        cdef Outbox box
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        if self.session == NULL or self.shut or cycle.outbox is None:
            return -1
        box = <Outbox>cycle.outbox  # (until the stream closes: Outbox.drop)
        if box.done:
            return -1
        if box.offset < PyBytes_GET_SIZE(box.data):
            if size:
                return 0  # the previous message is still queued: wake_sender() follows
        elif size:
            box.data = data
            box.offset = 0
        if final:
            box.eof = True
        elif not size:
            return 0
        self.resume(cycle.stream_id, box)
        return size

    cpdef bint send_informational(self, StreamCycle cycle, list headers) except -1:
        """A 1xx block (``http.response.early_hint``'s 103) before the response."""
        if self.session == NULL or self.shut:
            return False
        if self.submit(cycle.stream_id, headers, None, 2) != 0:
            return False
        self.schedule_flush()
        return True

    cpdef bint send_trailers(self, StreamCycle cycle, list trailers) except -1:
        cdef Outbox box
        if self.session == NULL or self.shut or cycle.outbox is None:
            return False
        box = <Outbox>cycle.outbox
        if box.done:
            return False
        box.trailers = trailers
        box.eof = True
        self.resume(cycle.stream_id, box)
        return True

    cdef resume(self, int32_t stream_id, Outbox box):
        if box.deferred:
            box.deferred = False
            nghttp2_session_resume_data(self.session, stream_id)
        self.schedule_flush()

    cpdef reset(self, int stream_id, int code):
        if self.session == NULL or self.shut:
            return
        if code == NGHTTP2_NO_ERROR:
            # RFC 9113 §8.1: after a complete response, the rest of the request is not
            # wanted -- but the RST_STREAM must follow the response's last frame, which
            # nghttp2 may still hold (DATA waits for windows, RST_STREAM would not)
            if nghttp2_session_get_stream_local_close(self.session, stream_id) == 0:
                if self.reset_after is None:
                    self.reset_after = set()
                self.reset_after.add(stream_id)
                return
        nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, stream_id, code)
        self.schedule_flush()

    cpdef ack(self, int stream_id, Py_ssize_t n):
        if self.session == NULL or self.shut:
            return
        nghttp2_session_consume(self.session, stream_id, n)
        self.schedule_flush()

    cpdef answer_error(self, int stream_id, int status, str message, bint ended):
        if self.session == NULL or self.shut:
            return
        body = message.encode("utf-8")
        cdef Outbox box = Outbox.__new__(Outbox)
        box.data = body
        box.eof = True
        headers = [
            (b":status", b"%d" % status),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        if self.submit(stream_id, headers, box, 0) == 0:
            self.outboxes[stream_id] = box
            if not ended:
                self.reset(stream_id, NGHTTP2_NO_ERROR)
        self.schedule_flush()

    def upgrade(self, bytes settings_payload, dict scope):
        """``Upgrade: h2c`` (RFC 7540 §3.2), right after connection_made: the client's
        HTTP2-Settings (decoded) apply, and stream 1 is the request the HTTP/1.1 side
        received, complete and without a body; its app starts now."""
        cdef int rv
        if self.session == NULL or self.shut:
            return
        rv = nghttp2_session_upgrade2(
            self.session, <const uint8_t *>PyBytes_AS_STRING(settings_payload),
            <size_t>PyBytes_GET_SIZE(settings_payload), scope["method"] == "HEAD", NULL,
        )
        if rv != 0:
            error_logger.warning("Invalid HTTP2-Settings in an h2c upgrade: %s", nghttp2_strerror(rv).decode())
            self.count(PARSE_ERRORS + PARSE_MALFORMED)
            self.terminate(NGHTTP2_PROTOCOL_ERROR)
            return
        self.start_upgraded_stream(scope)
        self.flush()

    # -- writing ------------------------------------------------------------------------

    cpdef flush(self):
        handle = self.flush_handle
        if handle is not None:
            self.flush_handle = None
            handle.cancel()
        if self.shut or self.session == NULL or self.in_session or self.write_paused:
            return  # (resume_writing flushes; inside nghttp2, its own loop sends it)
        self.send_now()

    cdef send_now(self):
        """Everything nghttp2 has to send now, framed into one ``transport.write``."""
        cdef const uint8_t *chunk = NULL
        cdef ssize_t n
        cdef char *buf = NULL
        cdef char *grown
        cdef Py_ssize_t size = 0
        cdef Py_ssize_t capacity = 0
        data = None
        self.in_session = True
        try:
            while True:
                n = nghttp2_session_mem_send(self.session, &chunk)
                if n <= 0:
                    break
                if size + n > capacity:
                    capacity = max(2 * capacity, size + n, 16384)
                    grown = <char *>realloc(buf, capacity)
                    if grown == NULL:
                        raise MemoryError()
                    buf = grown
                memcpy(buf + size, chunk, n)
                size += n
                fa_h2_wrote(&self.mem, chunk, n)
            if size:
                data = PyBytes_FromStringAndSize(buf, size)
        finally:
            self.in_session = False
            free(buf)
        if data is not None:
            self.transport.write(data)
            if self.metrics_on:
                self.metrics[BYTES_OUT] += size
        if self.after_session(n):
            return
        if not nghttp2_session_want_read(self.session) and not nghttp2_session_want_write(self.session):
            self.close_now()  # a GOAWAY that ends the session was sent
        elif self.outboxes and self.response_timer is None and self.timeout_response_body > 0.0:
            # a response not all sent (a stream closes once its last frame is): it may wait
            # for the client's windows (--timeout-response-body); one that went out at once
            # arms nothing
            self.arm_response_timer()

    cpdef schedule_flush(self):
        """Write what nghttp2 queued at the end of this loop iteration (or of data_received):
        the frames of several streams answered together take one write."""
        if self.in_session or self.flush_handle is not None or self.shut:
            return
        self.flush_handle = self.loop.call_soon(self.flush)

    # -- streams ------------------------------------------------------------------------

    cdef bint response_in_progress(self):
        """Whether some response waits for or uses the client's windows (what a WINDOW_UPDATE is for)."""
        cdef StreamCycle stream
        if self.outboxes:
            return True
        for stream in self.streams.values():
            if stream.response_started and not stream.response_complete:
                return True
        return False

    def check_stalled_responses(self, double now, double timeout):
        """--timeout-response-body (``StreamProtocol.check_responses``): a response waits for
        the client's windows while its outbox holds bytes (or its end) nghttp2 has not framed;
        ``read_body`` clears the mark whenever nghttp2 takes some.  The app may be done with
        it (its last message queued): then the stream alone is reset."""
        cdef Outbox box
        cdef StreamCycle cycle
        cdef bint paused = self.write_paused
        for stream_id, box in list(self.outboxes.items()):
            if paused or box.done or (box.offset >= PyBytes_GET_SIZE(box.data) and not box.eof):
                box.stalled_since = 0.0
            elif box.stalled_since == 0.0:
                box.stalled_since = now
            elif now - box.stalled_since >= timeout - 0.001:
                box.stalled_since = 0.0
                cycle = box.cycle
                if cycle is not None and not cycle.disconnected and self.streams.get(stream_id) is cycle:
                    cycle.response_timed_out()
                else:
                    error_logger.warning("Response timed out: %s", "the client's flow-control window stayed closed")
                    self.count(TIMEOUTS + TIMEOUT_RESPONSE_BODY)
                    self.reset(stream_id, NGHTTP2_CANCEL)
        return bool(self.outboxes)

    cdef bint spend_control(self) except -1:
        if spend(&self.control_budget, D_CONTROL_BURST, D_CONTROL_RATE, self.loop.time()):
            return True
        self.abuse = "too many control frames (PING, SETTINGS, PRIORITY, empty DATA, WINDOW_UPDATE)"
        return False

    cpdef became_idle(self):
        if self.in_session:
            self.check_idle = True
            return
        if self.streams or self.outboxes or self.closed:
            return
        if self.closing:
            self.close_gracefully()
            return
        self.idle_since = self.loop.time()
        self.trimmed = False
        self.arm_timer()

    cdef trim(self):
        """Idle for ``IDLE_RELEASE`` seconds (no stream open, nothing to send): what the
        connection can do without until its next stream goes: nghttp2's pages that hold
        nothing (the frame buffer's, an empty stream map's: see ``fa_h2_release``), the
        emptied dicts' tables, the scope template (made again by the next request)."""
        self.trimmed = True
        self.sparse = True
        if self.session != NULL and not self.in_session:
            fa_h2_release(&self.mem)
        self.streams.clear()  # (empty already: clear() also frees the table they grew)
        self.outboxes.clear()
        self.scope_template = None

    # -- closing ------------------------------------------------------------------------

    cdef calm_down(self, why):
        """A flood: GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §5.4.1, §7) and close the connection."""
        error_logger.warning("HTTP/2 client %s: %s; closing the connection.", peer(self.client), why)
        self.abuse = None
        self.count(PARSE_ERRORS + PARSE_MALFORMED)
        self.terminate(NGHTTP2_ENHANCE_YOUR_CALM)

    cdef terminate(self, uint32_t code):
        """GOAWAY with ``code`` and the last stream processed, then close."""
        self.starting = None
        if self.session != NULL and not self.shut:
            nghttp2_session_terminate_session(self.session, code)
        self.close_now()

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
        if self.session != NULL and not self.in_session:
            self.send_now_final()
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

    cdef send_now_final(self):
        """The last bytes of the session, written whatever the transport's state."""
        cdef const uint8_t *chunk = NULL
        cdef ssize_t n
        pieces = []
        self.in_session = True
        try:
            while True:
                n = nghttp2_session_mem_send(self.session, &chunk)
                if n <= 0:
                    break
                pieces.append(PyBytes_FromStringAndSize(<char *>chunk, n))
        finally:
            self.in_session = False
        self.failure = None
        self.abuse = None
        if pieces:
            data = b"".join(pieces)
            self.transport.write(data)
            if self.metrics_on:
                self.metrics[BYTES_OUT] += len(data)

    def close_gracefully(self):
        """GOAWAY (no error) with the last stream processed, then close."""
        if self.shut:
            return
        self.terminate(NGHTTP2_NO_ERROR)

    def shutdown(self):
        """Graceful shutdown: GOAWAY now, so the client opens no more streams here; the
        streams already open finish (within --timeout-graceful-shutdown), then close."""
        if self.shut or self.closing:
            return
        self.closing = True
        if not self.streams and not self.outboxes:
            self.close_gracefully()
            return
        # Told to send GOAWAY, nghttp2 would ignore the streams the client opens after
        # it: this GOAWAY is written around it (RFC 9113 §6.8), so that those are refused
        # (REFUSED_STREAM, start_stream); nghttp2's own follows when the last stream is done.
        cdef int32_t last = nghttp2_session_get_last_proc_stream_id(self.session) if self.session != NULL else 0
        self.goaway_last_id = last
        self.flush()
        frame = b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + int(last).to_bytes(4, "big") + b"\x00\x00\x00\x00"
        self.transport.write(frame)
        if self.metrics_on:
            self.metrics[BYTES_OUT] += len(frame)

    # -- the connection's timer --------------------------------------------------------

    cdef arm_timer(self):
        if self.timer is None and not self.closed:
            delay = self.timeout_keep_alive
            if not self.trimmed and delay > IDLE_RELEASE:
                delay = IDLE_RELEASE
            self.timer = self.loop.call_later(delay, self.on_timer, context=TIMER_CONTEXT)

    def on_timer(self):
        """Keep-alive (no stream open) and header-read timeouts, one lazy timer as HTTP/1.1 has
        (see ``http2_py.Http2Protocol.on_timer``); and, idle for ``IDLE_RELEASE`` seconds,
        the connection is trimmed (``trim``)."""
        self.timer = None
        if self.held is not None:  # (bytes wait for the next wave, a pass away: not idle)
            self.arm_timer()
            return
        if self.closed or self.idle_since < 0 or self.streams or self.outboxes:
            return
        now = self.loop.time()
        if not self.trimmed and now - self.idle_since >= IDLE_RELEASE - 0.001:
            self.trim()
        if self.in_block and self.timeout_request_header > 0:
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
        if not self.trimmed and self.idle_since + IDLE_RELEASE < deadline:
            deadline = self.idle_since + IDLE_RELEASE
        self.timer = self.loop.call_later(max(deadline - now, 0.0), self.on_timer, context=TIMER_CONTEXT)


# -- C trampolines: nghttp2 calls these; an exception never crosses nghttp2 ------------


cdef int cb_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_begin_frame(hd)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_begin_headers(frame)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_header(
    nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
    const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data,
) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_header(frame, name, namelen, value, valuelen)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_invalid_header(
    nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
    const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data,
) noexcept:
    # A field nghttp2 finds malformed (CR, LF or NUL in it, a connection-specific field...).
    # Without this callback nghttp2 1.52 resets the stream but 1.67 drops the field
    # and go on: the stream is reset here with PROTOCOL_ERROR (RFC 9113 §8.1.1) whichever
    # nghttp2 the extension was built with.  (No Python object is touched.)
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame.hd.stream_id, NGHTTP2_PROTOCOL_ERROR)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE


cdef int cb_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_frame_recv(frame)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_invalid_frame_recv(
    nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code, void *user_data
) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_invalid_frame_recv(frame, lib_error_code)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_data_chunk(
    nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t length, void *user_data
) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_data_chunk(stream_id, data, length)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_stream_close(stream_id, error_code)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.on_frame_send(frame)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef ssize_t cb_read(
    nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
    nghttp2_data_source *source, void *user_data,
) noexcept:
    cdef Http2Protocol self = <Http2Protocol>user_data
    try:
        return self.read_body(stream_id, buf, length, data_flags, <Outbox>source.ptr)
    except BaseException as exc:
        self.failure = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int cb_unpack_extension(
    nghttp2_session *session, void **payload, const nghttp2_frame_hd *hd, void *user_data
) noexcept:
    # an unknown frame type, counted by on_begin_frame: dropped (RFC 9113 §5.5)
    return NGHTTP2_ERR_CANCEL


# One set of callbacks and options for every session (nghttp2 copies them into each).
cdef nghttp2_session_callbacks *CALLBACKS = NULL
cdef nghttp2_option *OPTION = NULL


cdef int _setup() except -1:
    global CALLBACKS, OPTION
    fa_h2_setup()
    if nghttp2_session_callbacks_new(&CALLBACKS) != 0 or nghttp2_option_new(&OPTION) != 0:
        raise MemoryError("nghttp2")
    nghttp2_session_callbacks_set_on_begin_frame_callback(CALLBACKS, cb_begin_frame)
    nghttp2_session_callbacks_set_on_begin_headers_callback(CALLBACKS, cb_begin_headers)
    nghttp2_session_callbacks_set_on_header_callback(CALLBACKS, cb_header)
    nghttp2_session_callbacks_set_on_invalid_header_callback(CALLBACKS, cb_invalid_header)
    nghttp2_session_callbacks_set_on_frame_recv_callback(CALLBACKS, cb_frame_recv)
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(CALLBACKS, cb_invalid_frame_recv)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(CALLBACKS, cb_data_chunk)
    nghttp2_session_callbacks_set_on_stream_close_callback(CALLBACKS, cb_stream_close)
    nghttp2_session_callbacks_set_on_frame_send_callback(CALLBACKS, cb_frame_send)
    # Unknown frame types: nghttp2 skips them without a callback, unless they are the
    # application's extension types; so all are (10-255), for on_begin_frame to count
    # them against the control budget, and cb_unpack_extension drops each.
    nghttp2_session_callbacks_set_unpack_extension_callback(CALLBACKS, cb_unpack_extension)
    cdef int kind
    for kind in range(LAST_KNOWN_FRAME_TYPE + 1, 256):
        nghttp2_option_set_user_recv_extension_type(OPTION, <uint8_t>kind)
    # the app's reading hands the windows back (nghttp2_session_consume), as on the pure path
    nghttp2_option_set_no_auto_window_update(OPTION, 1)
    # a closed stream is forgotten at once (nghttp2 < 1.65 keeps up to 100 of them on a server,
    # as nodes of the RFC 7540 priority tree that RFC 9113 deprecates: 240 bytes each, and an
    # idle connection's stream map would never be empty)
    nghttp2_option_set_no_closed_streams(OPTION, 1)
    return 0


_setup()
