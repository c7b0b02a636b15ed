# The C entry point of coro_c.pyx, cimported by http_c.pxd: a direct C call per request.
cpdef tuple start(object ctx, object app, object scope, object receive, object send)
