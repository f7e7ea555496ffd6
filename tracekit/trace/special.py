"""Where a write lands when the target is not a plain file: devices, FIFOs, symlinks.

The atomic replace (temp file, rename over the target) is for regular files and missing paths
only; renaming over anything else would swap a ``/dev`` entry, a named pipe or a symlink for a
regular file (as root, ``TRACEKIT_TRACE_OUT=/dev/null`` would replace the real ``/dev/null``).

- a **symlink** stays a symlink: the file it resolves to is replaced atomically (a dangling
  link gets that file made); a link to a device or FIFO is written through, as below;
- a **character or block device** is written into directly (opened write-only, never created,
  never renamed; its mode is left alone);
- a **FIFO** is opened without blocking: with no reader the open fails at once with ``ENXIO``
  (a logged write failure, never a hang); with a reader the trace is written and the FIFO closed,
  and a reader that takes nothing for :data:`FIFO_STALL_SECONDS` fails the write (``ETIMEDOUT``);
- a directory is refused (``EISDIR``), and so is anything else (a socket: ``EINVAL``).

Threading contract: pure functions of the file system, safe from any thread.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from pathlib import Path
from typing import Final, Literal

__all__ = ["FIFO_STALL_SECONDS", "Kind", "resolve_target", "write_special"]

#: Seconds a FIFO's reader may take nothing before the write gives up (the runner is waiting).
FIFO_STALL_SECONDS: Final = 5.0

#: How a target is written: replaced atomically, or written into.
Kind = Literal["replace", "device", "fifo"]

_OPEN_FLAGS: Final = (
    os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)


def resolve_target(target: Path) -> tuple[Kind, Path]:
    """How to write ``target``, and the path to write (a symlink's resolved file when replaced)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return "replace", target
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return "replace", Path(os.path.realpath(target))  # dangling: make the file it names
        if stat.S_ISREG(st.st_mode):
            return "replace", Path(os.path.realpath(target))
        # A link to a device or FIFO is opened through the link itself: /dev/stdout ->
        # /proc/self/fd/1 -> "pipe:[123]" names no path that could be opened.
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return "replace", target
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "trace target is a directory", str(target))
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device", target
    if stat.S_ISFIFO(mode):
        return "fifo", target
    raise OSError(errno.EINVAL, "trace target is not a regular file, a device or a FIFO", str(target))


def write_special(target: Path, data: bytes, kind: Kind) -> None:
    """Write ``data`` into the device or FIFO at ``target`` (see the module docstring)."""
    # Opened non-blocking whatever it is, so a FIFO swapped in since resolve_target cannot hang us.
    fd = os.open(target, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if kind == "device" and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            os.set_blocking(fd, True)
            _write_all(fd, data)
            if stat.S_ISBLK(mode):
                _fsync_device(fd)
        elif kind == "fifo" and stat.S_ISFIFO(mode):
            _write_fifo(fd, data, str(target))
        else:
            raise OSError(errno.EAGAIN, "trace target changed type while being written", str(target))
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_device(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
            raise


def _write_fifo(fd: int, data: bytes, name: str) -> None:
    """Write without blocking; wait for the reader at most FIFO_STALL_SECONDS between progress."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            written = 0
        if written:
            view = view[written:]
            continue
        if not _writable(fd, FIFO_STALL_SECONDS):
            raise TimeoutError(
                errno.ETIMEDOUT,
                f"the FIFO's reader took nothing for {FIFO_STALL_SECONDS:g} s; trace not written",
                name,
            )


def _writable(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if poller.poll(max(1, int(left * 1000))):
                return True  # writable, or the reader left (the next write says EPIPE)
        else:  # pragma: no cover - platforms without poll have select
            if select.select([], [fd], [fd], left)[1:] != ([], []):
                return True
