# The compiled AppRun of coro_c.pyx, cimported by http_c.pxd (typed, C attribute access).
cdef class AppRun:
    cdef object cycle
    cdef object app
    cdef object coro

    cdef object _step(self, object value, int *finished)
    cdef _raised(self, exc)
