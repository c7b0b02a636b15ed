"""The bytes of a file on a connection: ``sendfile`` where it can, bounded chunks where it cannot.

What the ASGI extensions ``http.response.pathsend`` and ``http.response.zerocopysend``
use.  The request cycle (``fastasgi._speedups.http_*``, both implementation sets)
checks the message, frames the response and awaits :func:`transfer` for the bytes of
the file; this module opens and checks files and moves their bytes.  Not on the
per-request path of other responses, so written once, in plain Python.

Plain TCP (and Unix sockets): ``os.sendfile`` from the file to the transport's socket,
so the bytes never pass through Python.  The transport is never bypassed with bytes
of its own still buffered: ``sendfile`` runs only while the transport's write buffer
is empty.  When it is not (bytes written before, or a socket that was full), the
transport's write limits are lowered to 0 for the time of the file, so that the
transport pauses the protocol while *anything* is buffered and resumes it once all of
it is in the kernel: that is the "idle" signal, the same on asyncio's and uvloop's
transports, with no file descriptor registered behind the transport's back (uvloop's
``loop.sendfile`` reads the file into memory instead).  When ``sendfile`` finds the
socket full (EAGAIN), the next few KiB of the file go through ``transport.write``,
which waits for the socket to become writable and tells the protocol when it has.

TLS, or no ``os.sendfile`` (Windows): ``os.pread`` in :data:`CHUNK` pieces, each
written to the transport, waiting for it to drain while the client is slow; the
transport's high-water mark is lowered to one chunk for the time of the file (TLS
transports buffer 512 KiB by default), so a slow client never makes the server hold
more than about two chunks of a file.

A file that ends before the bytes promised (it shrank while being sent) stops the
transfer: the cycle closes the connection, so the client never takes a short body for
a whole one.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from typing import Any

from fastasgi.connection import is_ssl

CHUNK = 65536  # bytes read per step where sendfile cannot be used (TLS)
PIECE = 16384  # bytes written through the transport when the socket is full (see module doc)
SENDFILE_MAX = 2 * 1024 * 1024  # bytes per sendfile call before other connections get a turn
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)

# sendfile errors that mean "not for this file or socket" (then chunks), not "the peer is gone"
_NO_SENDFILE = frozenset(
    getattr(errno, name) for name in ("EINVAL", "ENOSYS", "ENOTSUP", "EOPNOTSUPP", "ENOTSOCK") if hasattr(errno, name)
)

# transfer() outcomes
SENT = 0  # every byte asked for was sent
SHRANK = 1  # the file ended before: fewer bytes were sent
CLOSED = 2  # the connection closed (or failed) first


class FileSendError(Exception):
    """A file message the server cannot send (its message says why)."""


def open_file(path: Any) -> tuple[int, int]:
    """Open the file of an ``http.response.pathsend`` message: ``(fd, size)``.

    ``O_NONBLOCK`` so that a FIFO named by mistake does not block the event loop
    in ``open`` (it is refused as not a regular file); it changes nothing for
    regular files.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if type(path) is not str:
        raise FileSendError(f"'http.response.pathsend' path must be a str, got {type(path).__name__}")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise FileSendError(f"'http.response.pathsend' cannot open {path!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileSendError(f"'http.response.pathsend' path {path!r} is not a regular file")
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise FileSendError(f"'http.response.pathsend' cannot read {path!r}: {exc.strerror}") from None
        raise
    return fd, st.st_size


def file_range(file: Any, offset: Any, count: Any) -> tuple[int, int, int]:
    """The file descriptor, start and length of an ``http.response.zerocopysend`` message.

    ``offset`` None: from the file's current position (``tell()``, which counts what a
    buffered file object has read ahead); ``count`` None: up to the end of the file.
    """
    try:
        fd = file if type(file) is int else file.fileno()
        if type(fd) is not int or fd < 0:
            raise TypeError
    except Exception:
        raise FileSendError(
            f"'http.response.zerocopysend' file must be a file object with a file descriptor, got {type(file).__name__}"
        ) from None
    for name, value in (("offset", offset), ("count", count)):
        if value is not None and (type(value) is not int or value < 0):
            raise FileSendError(f"'http.response.zerocopysend' {name} must be a non-negative int, got {value!r}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileSendError("'http.response.zerocopysend' file is not a regular file")
        if offset is None:
            tell = getattr(file, "tell", None)
            offset = tell() if tell is not None else os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        raise FileSendError(f"'http.response.zerocopysend' cannot read the file: {exc.strerror}") from None
    if count is None:
        count = max(st.st_size - offset, 0)
    return fd, offset, count


def set_position(file: Any, position: int) -> None:
    """After a zerocopysend without ``offset``: the file's position moves past what was sent."""
    try:
        if type(file) is int:
            os.lseek(file, position, os.SEEK_SET)
        else:
            file.seek(position)
    except (OSError, ValueError, AttributeError):
        pass  # the app closed it meanwhile: nothing to move


def sendfile_socket(transport: Any) -> int:
    """The socket's file descriptor where ``os.sendfile`` may write the file's bytes, else -1."""
    if getattr(os, "sendfile", None) is None or is_ssl(transport):
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None:
        return -1
    try:
        return int(sock.fileno())
    except (OSError, AttributeError, ValueError):
        return -1


def write_limits(transport: Any) -> tuple[int, int] | None:
    """The transport's ``(low, high)`` write limits; None if it cannot tell (then it is not lowered)."""
    try:
        low, high = transport.get_write_buffer_limits()
        return int(low), int(high)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return None


def pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # (Windows)
    return os.read(fd, size)


async def transfer(protocol: Any, transport: Any, fd: int, offset: int, count: int) -> tuple[int, int]:
    """Send ``count`` bytes of ``fd`` from ``offset``: ``(bytes sent, SENT | SHRANK | CLOSED)``.

    ``protocol`` is the connection's HTTP protocol: its ``drain()`` waits while the
    transport has paused it, and ``closed`` says it is gone.  Anything the cycle
    wrote before must be handed to the transport already (the order on the wire is
    the order of the calls).
    """
    sock_fd = sendfile_socket(transport)
    saved = write_limits(transport)
    if sock_fd < 0 or saved is None:
        return await _transfer_chunks(protocol, transport, fd, offset, count)
    sent = 0
    limits = None  # the transport's (low, high) write limits, while lowered to 0
    try:
        while count > 0:
            if protocol.closed or transport.is_closing():
                # (checked before every sendfile: once the transport closes, its
                # socket's descriptor may be closed and reused by another connection)
                return sent, CLOSED
            if transport.get_write_buffer_size():
                if limits is None:
                    limits = saved
                    transport.set_write_buffer_limits(high=0)  # pauses the protocol while anything is buffered
                await protocol.drain()
                if transport.get_write_buffer_size() and not protocol.closed:
                    # not paused although bytes are buffered (a transport that does not
                    # pause at 0, against the asyncio contract): poll rather than spin
                    await asyncio.sleep(0.001)
                continue
            try:
                n = os.sendfile(sock_fd, fd, offset, min(count, SENDFILE_MAX))
            except BlockingIOError:
                n = -1
            except OSError as exc:
                if sent == 0 and exc.errno in _NO_SENDFILE:
                    # a file system or socket sendfile cannot read or write: chunks
                    s, status = await _transfer_chunks(protocol, transport, fd, offset, count)
                    return sent + s, status
                return sent, CLOSED  # the peer is gone (EPIPE, ECONNRESET): the cycle closes
            if n == 0:
                return sent, SHRANK
            if n > 0:
                offset += n
                count -= n
                sent += n
                if n == SENDFILE_MAX:
                    await asyncio.sleep(0)  # a fast client: other connections' turn
                continue
            # the socket is full: the next piece goes through the transport, which
            # writes it when the socket is writable again and then resumes the protocol
            piece = pread(fd, min(PIECE, count), offset)
            if not piece:
                return sent, SHRANK
            if limits is None:
                limits = saved
                transport.set_write_buffer_limits(high=0)
            transport.write(piece)
            n = len(piece)
            offset += n
            count -= n
            sent += n
        return sent, SENT
    finally:
        if limits is not None and not protocol.closed and not transport.is_closing():
            transport.set_write_buffer_limits(high=limits[1], low=limits[0])


async def _transfer_chunks(protocol: Any, transport: Any, fd: int, offset: int, count: int) -> tuple[int, int]:
    # For the time of the file the transport pauses the protocol above CHUNK bytes
    # buffered (asyncio's TLS transports wait for 512 KiB otherwise): a slow client
    # holds at most about two chunks of the file in the server's memory.
    limits = write_limits(transport)
    if limits is not None and limits[1] > CHUNK:
        transport.set_write_buffer_limits(high=CHUNK)
    else:
        limits = None
    sent = 0
    try:
        while count > 0:
            if protocol.closed or transport.is_closing():
                return sent, CLOSED
            data = pread(fd, min(CHUNK, count), offset)
            if not data:
                return sent, SHRANK
            transport.write(data)
            n = len(data)
            offset += n
            count -= n
            sent += n
            await protocol.drain()  # waits while the transport's buffer is above its high-water mark
        return sent, SENT
    finally:
        if limits is not None and not protocol.closed and not transport.is_closing():
            transport.set_write_buffer_limits(high=limits[1], low=limits[0])
