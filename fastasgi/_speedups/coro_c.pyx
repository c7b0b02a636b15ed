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

cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

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
    /* The tp_iternext of AppRun and SendOp: how a Task's C step, or a native
       coroutine's await (PyIter_Send with None), steps them.  It returns NULL
       *without* an exception when the object has finished, which PyIter_Send
       reads as a return of None: no StopIteration object, no traceback entry.
       A Cython __next__ cannot do that, so this slot replaces the one Cython
       generates; the step itself is Cython code (_apprun_step, _sendop_step). */
    typedef PyObject *(*fastasgi_step_t)(PyObject *, int *);
    static fastasgi_step_t fastasgi_apprun_step = NULL;
    static fastasgi_step_t fastasgi_sendop_step = NULL;
    static PyObject *fastasgi_apprun_iternext(PyObject *self) {
        int finished = 0;
        PyObject *r = fastasgi_apprun_step(self, &finished);
        if (r != NULL && finished) {
            Py_DECREF(r);
            return NULL;
        }
        return r;
    }
    static PyObject *fastasgi_sendop_iternext(PyObject *self) {
        int finished = 0;
        PyObject *r = fastasgi_sendop_step(self, &finished);
        if (r != NULL && finished) {
            Py_DECREF(r);
            return NULL;
        }
        return r;
    }
    static void fastasgi_install_iternext(PyTypeObject *t, fastasgi_step_t step, int which) {
        if (which == 0) {
            fastasgi_apprun_step = step;
            t->tp_iternext = fastasgi_apprun_iternext;
        } else {
            fastasgi_sendop_step = step;
            t->tp_iternext = fastasgi_sendop_iternext;
        }
        PyType_Modified(t);
    }
    """
    ctypedef PyObject *(*fastasgi_step_t)(PyObject *, int *)
    void fastasgi_install_iternext(PyTypeObject *t, fastasgi_step_t step, int which)

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        pass
    bint PyCoro_CheckExact(object o)


cdef inline object _take(PyObject *result):
    value = <object>result  # takes a new reference
    Py_XDECREF(result)
    return value


@cython.freelist(128)  # one per request: its memory is reused (HTTP/2: up to 100 per connection at once)
cdef class AppRun:
    """See coro_py.AppRun: the same contract, compiled (attributes in coro_c.pxd)."""

    def __init__(self, object cycle, object app):  # (new_app_run makes them without the call)
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
                coro = app((<Sender>cycle).scope, cycle.receive, cycle)  # the cycle is `send` (see Sender)
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
        if isinstance(cycle, Sender):
            (<Sender>cycle).app_returned(value)  # a C call (http_c's RequestCycle)
        else:
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


cdef object _apprun_step(object self, int *finished):
    return (<AppRun>self)._step(None, finished)


fastasgi_install_iternext(<PyTypeObject *>AppRun, <fastasgi_step_t>_apprun_step, 0)


cpdef AppRun new_app_run(object cycle, object app):
    """``AppRun(cycle, app)`` without the type call (no argument tuple to parse)."""
    cdef AppRun run = AppRun.__new__(AppRun)
    run.cycle = cycle
    run.app = app
    return run


# -- a request's Task ----------------------------------------------------------------------

cdef extern from *:
    """
    /* type(*args, **kwargs) as type_call makes it (tp_new, then tp_init on an instance
       of the type), with kwargs a dict the caller keeps between calls: a vectorcall of
       a type without vectorcall (asyncio's C Task on 3.11) builds one dict per call. */
    static PyObject *fastasgi_construct(PyObject *type, PyObject *args, PyObject *kwargs) {
        PyTypeObject *t = (PyTypeObject *)type;
        PyObject *obj;
        if (t->tp_new == NULL) {
            PyErr_Format(PyExc_TypeError, "cannot create '%s' instances", t->tp_name);
            return NULL;
        }
        obj = t->tp_new(t, args, kwargs);
        if (obj == NULL || !PyObject_TypeCheck(obj, t)) return obj;
        if (Py_TYPE(obj)->tp_init != NULL && Py_TYPE(obj)->tp_init(obj, args, kwargs) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
        return obj;
    }
    """
    object fastasgi_construct(object type, object args, object kwargs)

cdef extern from "Python.h":
    object PyContext_Copy(object ctx)


cpdef object new_task(object task_type, object run, dict kwargs, object base_context):
    """``task_type(run, context=base_context.copy(), **kwargs)``: a request's Task.

    ``kwargs`` (``loop``, and ``eager_start`` on 3.12+) is the caller's own dict, kept
    from one request to the next; its ``context`` is set for the call and cleared
    after it, so no request's context stays reachable from it.
    """
    kwargs["context"] = PyContext_Copy(base_context)
    try:
        return fastasgi_construct(task_type, (run,), kwargs)
    finally:
        kwargs["context"] = None


# -- send -------------------------------------------------------------------------------


async def _send_signature(message):
    """(What ``inspect`` reads of ``send``: a coroutine function of one message.)"""


cdef extern from *:
    """
    /* send(message) by vectorcall: one message, no argument tuple.  Any other call
       goes to the type's tp_call (Sender.__call__), which raises its TypeError. */
    static PyObject *(*fastasgi_make_sendop)(PyObject *, PyObject *) = NULL;
    static PyObject *fastasgi_sender_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                                PyObject *kwnames) {
        Py_ssize_t n = PyVectorcall_NARGS(nargsf), nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, i;
        PyObject *tuple, *kwargs = NULL, *r;
        if (n == 1 && nk == 0) return fastasgi_make_sendop(self, args[0]);
        tuple = PyTuple_New(n);
        if (tuple == NULL) return NULL;
        for (i = 0; i < n; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(tuple, i, args[i]);
        }
        if (nk) {
            kwargs = PyDict_New();
            for (i = 0; kwargs != NULL && i < nk; i++) {
                if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0) Py_CLEAR(kwargs);
            }
            if (kwargs == NULL) {
                Py_DECREF(tuple);
                return NULL;
            }
        }
        r = Py_TYPE(self)->tp_call(self, tuple, kwargs);
        Py_DECREF(tuple);
        Py_XDECREF(kwargs);
        return r;
    }
    static void *fastasgi_sender_vectorcall_ptr(void) { return (void *)fastasgi_sender_vectorcall; }
    static void fastasgi_enable_vectorcall(PyTypeObject *t, Py_ssize_t offset,
                                           PyObject *(*make)(PyObject *, PyObject *)) {
    #if defined(Py_TPFLAGS_HAVE_VECTORCALL) && !defined(PYPY_VERSION)
        fastasgi_make_sendop = make;
        t->tp_vectorcall_offset = offset;
        t->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
        PyType_Modified(t);
    #endif
    }
    """
    void *fastasgi_sender_vectorcall_ptr()
    void fastasgi_enable_vectorcall(PyTypeObject *t, Py_ssize_t offset, PyObject *(*make)(PyObject *, PyObject *) except NULL)


cdef class Sender:
    """Base of http_c's RequestCycle: the ``send`` an app is given is the cycle itself.

    ``send(message)`` returns a :class:`SendOp`, an awaitable coroutine object
    that calls ``send_message`` when it is first stepped (as a native coroutine
    runs its body only once awaited).  Compiled, that is one small object per
    message where an ``async def`` made a coroutine, its closure and an
    ``__await__`` wrapper.  To ``inspect`` and ``asyncio`` the cycle is a
    coroutine function, as ``send`` is under uvicorn (the class attributes
    below: a code object with CO_COROUTINE and the coroutine markers).
    """

    __name__ = "send"
    __code__ = _send_signature.__code__
    __defaults__ = None
    __kwdefaults__ = None
    __annotations__ = {}
    _is_coroutine = getattr(__import__("asyncio").coroutines, "_is_coroutine", None)
    _is_coroutine_marker = getattr(__import__("inspect"), "_is_coroutine_mark", None)

    cpdef object send_message(self, dict message):
        """Handle ``message``; None when done, else an awaitable to wait on (drain)."""
        raise NotImplementedError

    cpdef app_returned(self, object result):
        """The app returned ``result`` (AppRun calls it; see coro_py.AppRun)."""
        raise NotImplementedError

    def __cinit__(self, *args, **kwargs):
        # a call of the cycle (``send(message)``) is a vectorcall (see _make_sendop);
        # (any arguments: a subclass's constructor arguments reach this __cinit__ too)
        self._vectorcall = fastasgi_sender_vectorcall_ptr()

    def __call__(self, message):
        cdef SendOp op = SendOp.__new__(SendOp)
        op.sender = self
        op.message = message
        return op

    def send(self, message):
        cdef SendOp op = SendOp.__new__(SendOp)
        op.sender = self
        op.message = message
        return op


@cython.freelist(16)  # one per send()
cdef class SendOp:
    """What ``send(message)`` returns: a coroutine-like object, done in one step
    unless the transport asked the server to stop writing (then it waits for the
    drain).  ``await``, ``asyncio.create_task``/``wait_for``/``gather`` and a
    generator-based coroutine's ``yield from`` all take it."""

    cdef object _step(self, object value, int *finished):
        cdef PyObject *result = NULL
        cdef int returned
        waiter = self.waiter
        if waiter is None:
            if self.started:
                finished[0] = 1
                return None
            self.started = True
            sender = self.sender
            message = self.message
            self.message = None
            if sender.disconnected:
                finished[0] = 1
                return None
            waiter = sender.send_message(message if type(message) is dict else dict(message))
            if waiter is None:
                finished[0] = 1
                return None
            if not PyCoro_CheckExact(waiter):
                waiter = awaitable_iter(waiter)
            self.waiter = waiter
            value = None
        returned = fastasgi_send(waiter, value, &result)  # (an exception propagates: the op is over)
        value = _take(result)
        if not returned:
            return value
        self.waiter = None
        finished[0] = 1
        return None

    def send(self, value):
        cdef int finished = 0
        result = self._step(value, &finished)
        if finished:
            raise StopIteration
        return result

    def __next__(self):  # replaced by fastasgi_sendop_iternext (below)
        return self.send(None)

    def throw(self, exc, *args):
        if isinstance(exc, type):  # the old throw(type[, value[, traceback]]) form
            exc = args[0] if args and isinstance(args[0], exc) else exc(*args[:1])
        waiter = self.waiter
        if waiter is None:
            # not started (or finished): the message is not sent, as with a
            # coroutine thrown into before it began
            self.started = True
            self.message = None
            raise exc
        try:
            return waiter.throw(exc)
        except StopIteration:
            self.waiter = None
        raise StopIteration

    def close(self):
        self.started = True
        self.message = None
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.close()

    def __await__(self):
        return self

    def __iter__(self):
        return self


Coroutine.register(SendOp)


cdef PyObject *_make_sendop(PyObject *sender, PyObject *message) except NULL:
    cdef SendOp op = SendOp.__new__(SendOp)
    op.sender = <Sender>sender
    op.message = <object>message
    Py_INCREF(op)
    return <PyObject *>op


cdef Py_ssize_t _vectorcall_offset():
    cdef Sender probe = Sender.__new__(Sender)
    return <Py_ssize_t>(<char *>&probe._vectorcall - <char *><PyObject *>probe)


fastasgi_enable_vectorcall(<PyTypeObject *>Sender, _vectorcall_offset(), _make_sendop)


cdef object _sendop_step(object self, int *finished):
    return (<SendOp>self)._step(None, finished)


fastasgi_install_iternext(<PyTypeObject *>SendOp, <fastasgi_step_t>_sendop_step, 1)


# -- asyncio's task registry on CPython < 3.12 -------------------------------------------
#
# Before 3.12 every Task (each request's included) is added to asyncio's WeakSet of
# all tasks when it is made: the C Task calls the WeakSet's Python ``add``, and the
# Task's death calls the WeakSet's Python ``_remove`` through a weak reference: two
# Python frames per request.  ``speed_up_task_registry`` gives that one WeakSet an
# ``add`` with the same effect, whose weak references call back into C.  The set,
# its contents and ``asyncio.all_tasks()`` are unchanged; a removal during
# iteration is deferred exactly as WeakSet's own ``_remove`` defers it.

from cpython.weakref cimport PyWeakref_NewRef

cdef object _registry = None  # asyncio's WeakSet of tasks, once sped up
# its .data (weak references), ._pending_removals and ._iterating: WeakSet only
# ever changes these three in place, so they are held here as C-typed references
cdef set _registry_data = None
cdef list _registry_pending = None
cdef set _registry_iterating = None
cdef object _registry_remove = None  # _registry_discard as a Python callable


def _registry_add(item):
    if _registry_pending:
        _registry._commit_removals()
    _registry_data.add(PyWeakref_NewRef(item, _registry_remove))


def _registry_discard(wr):
    if _registry_iterating:
        _registry_pending.append(wr)
    else:
        _registry_data.discard(wr)


def speed_up_task_registry():
    """Install the C add/remove on asyncio's task WeakSet (CPython < 3.12; once).

    True when installed (or already); False where it does not apply: 3.12+ (eager
    tasks and a different registry), a registry that is not a plain WeakSet (some
    other code replaced it), or a WeakSet whose internals differ from the ones
    this mirrors.
    """
    global _registry, _registry_data, _registry_pending, _registry_iterating, _registry_remove
    import sys
    if sys.version_info >= (3, 12):
        return False
    if _registry is not None:
        return True
    try:
        import _asyncio
        from _weakrefset import WeakSet
    except ImportError:
        return False
    registry = getattr(_asyncio, "_all_tasks", None)
    if type(registry) is not WeakSet or "add" in vars(registry):
        return False
    data = getattr(registry, "data", None)
    if (
        type(data) is not set
        or type(getattr(registry, "_pending_removals", None)) is not list
        or type(getattr(registry, "_iterating", None)) is not set
        or not callable(getattr(registry, "_commit_removals", None))
    ):
        return False
    _registry = registry
    _registry_data = data
    _registry_pending = registry._pending_removals
    _registry_iterating = registry._iterating
    _registry_remove = _registry_discard
    registry.add = _registry_add  # an instance attribute: the C Task's add() finds it first
    return True
