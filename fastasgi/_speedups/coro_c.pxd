# The C entry points of coro_c.pyx, cimported by http_c.pxd: direct C calls per request.
cpdef tuple start(object ctx, object app, object scope, object receive, object send)

cdef class AppRun:
    cdef object cycle
    cdef object app
    cdef object coro
    cdef object yielded
    cdef object exc
    cdef bint primed

    cpdef bint prime(self, object ctx) except -1
    cdef object _step(self, object value, int *finished)
    cdef _raised(self, exc)
