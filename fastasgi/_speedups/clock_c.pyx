# cython: language_level=3
"""CPython's monotonic clock in nanoseconds, as a C call (``http_c`` cimports it).

The compiled twin of ``time.monotonic_ns`` (which ``http_py`` uses when it runs as
plain Python): ``PyTime_MonotonicRaw`` reads the same clock without a Python call
or an int object, so timing a request for --metrics-port costs two clock reads.
"""

from cpython.time cimport PyTime_MonotonicRaw


cpdef long long monotonic_ns() noexcept:
    return PyTime_MonotonicRaw()
