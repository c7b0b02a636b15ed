# The compiled AppRun of coro_c.pyx, cimported by http_c.pxd (typed, C attribute access).
cdef class AppRun:
    cdef object cycle
    cdef object app
    cdef object coro

    cdef object _step(self, object value, int *finished)
    cdef _raised(self, exc)


cpdef AppRun new_app_run(object cycle, object app)
cpdef object new_task(object task_type, object run, dict kwargs, object base_context)


# Base of http_c's RequestCycle (see coro_c.pyx): the fields send needs, and send_message.
cdef class Sender:
    cdef public bint disconnected
    cdef public dict scope
    cdef void *_vectorcall  # the vectorcallfunc of send(message) (set by __cinit__)

    cpdef object send_message(self, dict message)
    cpdef app_returned(self, object result)


cdef class SendOp:
    cdef Sender sender
    cdef object message
    cdef object waiter
    cdef bint started

    cdef object _step(self, object value, int *finished)
