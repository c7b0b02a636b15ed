# The monotonic clock of clock_c.pyx, cimported by http_c.pxd (a direct C call).
cpdef long long monotonic_ns() noexcept
