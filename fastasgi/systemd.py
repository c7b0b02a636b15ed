"""systemd integration without libsystemd: socket activation and ``sd_notify``.

Both are small, stable protocols (man 3 sd_listen_fds, man 3 sd_notify):

* **Socket activation.**  systemd (or ``systemd-socket-activate``) opens the listening
  sockets and execs the service with them as file descriptors 3, 4, ...;
  ``LISTEN_FDS`` says how many, ``LISTEN_PID`` which process they are for (a child
  that inherited the variables must not take the sockets for its own), and
  ``LISTEN_FDNAMES`` optionally names them.
* **Notification.**  The service tells systemd its state with one datagram per
  change, ``KEY=value`` lines, sent to the ``AF_UNIX`` socket that ``NOTIFY_SOCKET``
  names (a leading ``@`` is Linux's abstract namespace).  ``READY=1`` ends the start
  of a ``Type=notify`` service; ``RELOADING=1``, ``STOPPING=1`` and ``STATUS=...``
  report the rest; ``WATCHDOG=1`` is the keep-alive when the unit sets
  ``WatchdogSec=`` (systemd passes it as ``WATCHDOG_USEC``).

Only the process systemd started speaks to it: a single server, or the
``--workers`` supervisor (workers would be refused under the default
``NotifyAccess=main``).  Without ``NOTIFY_SOCKET`` :meth:`Notifier.from_environ`
returns None and the callers skip every call: nothing is paid.  A leaf module: it
imports nothing from fastasgi but the errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time

from fastasgi.errors import ConfigError

logger = logging.getLogger("uvicorn.error")

SD_LISTEN_FDS_START = 3

_activated: list[tuple[int, str]] | None = None


def listen_fds() -> list[tuple[int, str]]:
    """The sockets passed to this process by socket activation, as ``(fd, name)`` pairs.

    Read once per process: the variables are then removed from ``os.environ`` (as
    ``sd_listen_fds(1)`` does), so that processes started later do not see them, and
    the descriptors are made non-inheritable.  Empty when ``LISTEN_PID`` is not this
    process.  Callers use duplicates (``os.dup``) and leave these open, so a server
    run twice in one process finds them again.
    """
    global _activated
    if _activated is None:
        _activated = _read_listen_fds()
    return list(_activated)


def _read_listen_fds() -> list[tuple[int, str]]:
    pid, count, names = (os.environ.pop(name, None) for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"))
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        n = int(count)
    except ValueError:
        raise ConfigError(
            f"Invalid socket activation variables LISTEN_PID={pid!r} LISTEN_FDS={count!r}: expected numbers"
        ) from None
    if n < 0:
        raise ConfigError(f"Invalid socket activation variable LISTEN_FDS={count!r}")
    labels = names.split(":") if names else []
    fds = []
    for i in range(n):
        fd = SD_LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
        except OSError as exc:
            raise ConfigError(f"Socket activation: LISTEN_FDS={n} but fd {fd} is not open ({exc.strerror})") from None
        fds.append((fd, labels[i] if i < len(labels) else ""))
    return fds


def _monotonic_usec() -> int:
    # RELOADING=1 carries CLOCK_MONOTONIC (systemd 253+ requires it for Type=notify-reload);
    # time.monotonic() is that clock on Linux, the one platform with systemd
    clock = getattr(time, "CLOCK_MONOTONIC", None)
    if clock is not None:
        return time.clock_gettime_ns(clock) // 1000
    return int(time.monotonic() * 1_000_000)  # pragma: no cover


class Notifier:
    """Sends ``sd_notify`` datagrams; every failure is ignored (systemd may have gone away)."""

    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        self.last_status: str | None = None
        # WATCHDOG=1 every half of WatchdogSec= (sd_watchdog_enabled's advice)
        self.watchdog_interval = watchdog_usec / 2_000_000 if watchdog_usec else None
        self.next_watchdog = time.monotonic()
        self._failed = False

    @classmethod
    def from_environ(cls) -> Notifier | None:
        """A notifier for ``NOTIFY_SOCKET``, or None when it is unset (not run by systemd)."""
        path = os.environ.get("NOTIFY_SOCKET")
        if not path:
            return None
        if path[0] == "@":
            address = "\0" + path[1:]
        elif path[0] == "/":
            address = path
        else:  # vsock:CID:PORT (a VM's host) is not supported
            logger.warning("NOTIFY_SOCKET=%r is not a UNIX socket path; not notifying systemd.", path)
            return None
        watchdog_usec = None
        value = os.environ.get("WATCHDOG_USEC")
        watchdog_pid = os.environ.get("WATCHDOG_PID")
        if value and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            try:
                watchdog_usec = int(value)
            except ValueError:
                logger.warning("WATCHDOG_USEC=%r is not a number; not sending watchdog keep-alives.", value)
            else:
                if watchdog_usec <= 0:
                    watchdog_usec = None
        return cls(address, watchdog_usec)

    def send(self, *fields: str) -> None:
        message = "\n".join(fields).encode()
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.sock.setblocking(False)  # a full queue drops the message rather than block the server
            self.sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:  # once: a missing socket would repeat on every watchdog tick
                self._failed = True
                logger.warning("Could not notify systemd (NOTIFY_SOCKET): %s", exc.strerror or exc)

    def _state(self, fields: list[str], status: str | None) -> None:
        if status is not None:
            self.last_status = status
            fields.append(f"STATUS={status}")
        self.send(*fields)

    def ready(self, status: str | None = None) -> None:
        self._state(["READY=1"], status)

    def reloading(self, status: str | None = None) -> None:
        self._state(["RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}"], status)

    def stopping(self, status: str | None = None) -> None:
        self._state(["STOPPING=1"], status)

    def status(self, status: str) -> None:
        """``STATUS=``, sent only when it changed."""
        if status != self.last_status:
            self.last_status = status
            self.send(f"STATUS={status}")

    def watchdog(self) -> float:
        """Send ``WATCHDOG=1`` when due; the seconds until the next one (a long time without a watchdog)."""
        interval = self.watchdog_interval
        if interval is None:
            return 3600.0
        now = time.monotonic()
        if now >= self.next_watchdog:
            self.send("WATCHDOG=1")
            self.next_watchdog = now + interval
        return max(0.0, self.next_watchdog - now)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


__all__ = ["Notifier", "listen_fds"]
