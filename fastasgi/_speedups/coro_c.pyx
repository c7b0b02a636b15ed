# cython: language_level=3
"""What a request's Task drives, in C.

Compiled twin of ``coro_py.py`` (same contract: see :class:`AppRun` there).
Against the pure twin this makes no bound method and no ``StopIteration``
object when the app steps or returns: the Task's C step reaches ``AppRun``
through ``tp_iternext`` (``PyIter_Send`` with ``None``), which steps the app's
coroutine with ``PyIter_Send`` (CPython >= 3.10) and, when it has returned,
ends without an exception.
"""

from collections.abc import Coroutine

from cpython.ref cimport PyObject, Py_XDECREF

from fastasgi._speedups.coro_py import awaitable_iter

cdef extern from *:
    """
    /* 1: the coroutine returned, 0: it yielded, -1: it raised.  *result gets a new
       reference to the return value or the yielded value. */
    static int fastasgi_send(PyObject *coro, PyObject *value, PyObject **result) {
    #if PY_VERSION_HEX >= 0x030A0000
        PySendResult r = PyIter_Send(coro, value, result);
        if (r == PYGEN_ERROR) return -1;
        return r == PYGEN_RETURN ? 1 : 0;
    #else
        PyObject *r = PyObject_CallMethod(coro, "send", "O", value);
        if (r != NULL) { *result = r; return 0; }
        if (!PyErr_ExceptionMatches(PyExc_StopIteration)) return -1;
        if (_PyGen_FetchStopIterationValue(result) < 0) return -1;
        return 1;
    #endif
    }
    """
    int fastasgi_send(object coro, object value, PyObject **result) except -1

cdef extern from *:
    """
    /* AppRun's tp_iternext: how the Task's C step (PyIter_Send with None) steps it.
       It returns NULL *without* an exception when the app has finished, which
       PyIter_Send reads as a return of None: no StopIteration object, no
       traceback entry.  A Cython __next__ cannot do that, so this slot replaces
       the one Cython generates; the step itself is Cython code (_iter_step). */
    typedef PyObject *(*fastasgi_step_t)(PyObject *, int *);
    static fastasgi_step_t fastasgi_apprun_step = NULL;
    static PyObject *fastasgi_apprun_iternext(PyObject *self) {
        int finished = 0;
        PyObject *r = fastasgi_apprun_step(self, &finished);
        if (r != NULL && finished) {
            Py_DECREF(r);
            return NULL;
        }
        return r;
    }
    static void fastasgi_install_iternext(PyTypeObject *t, fastasgi_step_t step) {
        fastasgi_apprun_step = step;
        t->tp_iternext = fastasgi_apprun_iternext;
        PyType_Modified(t);
    }
    """
    ctypedef PyObject *(*fastasgi_step_t)(PyObject *, int *)
    void fastasgi_install_iternext(PyTypeObject *t, fastasgi_step_t step)

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        pass
    bint PyCoro_CheckExact(object o)


cdef inline object _take(PyObject *result):
    value = <object>result  # takes a new reference
    Py_XDECREF(result)
    return value


cdef class AppRun:
    """See coro_py.AppRun: the same contract, compiled (attributes in coro_c.pxd)."""

    def __cinit__(self, object cycle, object app):
        self.cycle = cycle
        self.app = app

    cdef object _step(self, object value, int *finished):
        # One step; finished[0] = 1 (and None returned) when the Task must end with None.
        cdef PyObject *result = NULL
        cdef int returned
        coro = self.coro
        cycle = self.cycle
        if coro is None:
            # the Task's first step: the app starts here
            app = self.app
            if app is None:
                finished[0] = 1
                return None
            self.app = None
            try:
                coro = app(cycle.scope, cycle.receive, cycle.send)
                if not PyCoro_CheckExact(coro):
                    coro = awaitable_iter(coro)
            except BaseException as exc:
                self._raised(exc)
                finished[0] = 1
                return None
            self.coro = coro
        try:
            returned = fastasgi_send(coro, value, &result)
        except BaseException as exc:
            self._raised(exc)
            finished[0] = 1
            return None
        value = _take(result)
        if not returned:
            return value
        self.coro = None
        cycle.app_returned(value)
        finished[0] = 1
        return None

    cdef _raised(self, exc):
        self.coro = None
        if self.cycle.app_raised(exc):
            raise exc

    def send(self, value):
        cdef int finished = 0
        result = self._step(value, &finished)
        if finished:
            raise StopIteration
        return result

    def __next__(self):  # replaced by fastasgi_apprun_iternext (below); kept for the type's iterator protocol
        return self.send(None)

    def throw(self, exc, *args):
        if isinstance(exc, type):  # the old throw(type[, value[, traceback]]) form
            exc = args[0] if args and isinstance(args[0], exc) else exc(*args[:1])
        coro = self.coro
        if coro is None:
            # thrown before the first step (the Task was cancelled before it ran):
            # the app never starts; the Task leaves the server's set as it ends
            self.app = None
            self.cycle.forget_task()
            raise exc
        try:
            return coro.throw(exc)
        except StopIteration as stop:
            self.coro = None
            self.cycle.app_returned(stop.value)
        except BaseException as err:
            self._raised(err)
        raise StopIteration

    def close(self):
        coro = self.coro
        if coro is not None:
            self.coro = None
            coro.close()

    def __await__(self):
        return self

    def __iter__(self):
        return self


# asyncio.Task accepts what is a Coroutine (asyncio.iscoroutine)
Coroutine.register(AppRun)


cdef object _iter_step(object self, int *finished):
    return (<AppRun>self)._step(None, finished)


fastasgi_install_iternext(<PyTypeObject *>AppRun, <fastasgi_step_t>_iter_step)
