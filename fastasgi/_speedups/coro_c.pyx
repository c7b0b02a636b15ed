# cython: language_level=3
"""Starting an app's coroutine inside its own contextvars context, in C.

Compiled twin of ``coro_py.py`` (same contract, see :func:`start` there).
Against ``ctx.run(coro.send, None)`` this makes no bound method, no call
through ``Context.run`` and no ``StopIteration`` when the app returns:
``PyContext_Enter`` + ``PyIter_Send`` (CPython >= 3.10) + ``PyContext_Exit``.
"""

from cpython.ref cimport PyObject, Py_XDECREF

from fastasgi._speedups.coro_py import awaitable_iter

cdef extern from *:
    """
    /* 1: the coroutine returned, 0: it yielded, -1: it raised.  *result gets a new
       reference to the return value or the yielded value. */
    static int fastasgi_send(PyObject *coro, PyObject **result) {
    #if PY_VERSION_HEX >= 0x030A0000
        PySendResult r = PyIter_Send(coro, Py_None, result);
        if (r == PYGEN_ERROR) return -1;
        return r == PYGEN_RETURN ? 1 : 0;
    #else
        PyObject *r = PyObject_CallMethod(coro, "send", "O", Py_None);
        if (r != NULL) { *result = r; return 0; }
        if (!PyErr_ExceptionMatches(PyExc_StopIteration)) return -1;
        if (_PyGen_FetchStopIterationValue(result) < 0) return -1;
        return 1;
    #endif
    }
    """
    int fastasgi_send(object coro, PyObject **result) except -1

cdef extern from "Python.h":
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    bint PyCoro_CheckExact(object o)


cpdef tuple start(object ctx, object app, object scope, object receive, object send):
    cdef PyObject *result = NULL
    cdef int returned
    cdef object value
    PyContext_Enter(ctx)
    try:
        coro = app(scope, receive, send)
        if not PyCoro_CheckExact(coro):
            coro = awaitable_iter(coro)
        returned = fastasgi_send(coro, &result)
    finally:
        PyContext_Exit(ctx)
    value = <object>result  # takes a new reference
    Py_XDECREF(result)
    if returned:
        return None, value
    return coro, value
