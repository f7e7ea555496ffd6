"""Writing traces: the sinks, atomic replace, history naming; retention lives in ``retention``.

Every write of a regular file (or a missing path) goes to a uniquely named temporary file
created exclusively in the target's directory, is written, fsynced, then renamed over the
target (or hard-linked to a fresh history name, which never overwrites), and the directory is
fsynced. A reader sees the old file or the new one, never a partial one, and no temporary file
outlives the write, even when it fails. Devices, FIFOs and symlinks are never replaced: see
:mod:`tracekit.trace.special`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

from tracekit.trace.retention import (
    HISTORY_NAME,
    STALE_TEMP_SECONDS,
    TEMP_MARKER,
    apply_retention,
    history_files,
    sweep_stale_temps,
    writer_tag,
)
from tracekit.trace.special import resolve_target, write_special

__all__ = [
    "HISTORY_NAME",
    "STALE_TEMP_SECONDS",
    "TEMP_MARKER",
    "FileSink",
    "HistorySink",
    "RunTarget",
    "Sink",
    "apply_retention",
    "atomic_write",
    "claim_history_file",
    "history_files",
    "history_stem",
    "sweep_stale_temps",
    "writer_tag",
]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_COLLISIONS: Final = 10_000


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def _temp_file(target: Path, data: bytes, mode: int) -> Iterator[Path]:
    """A fully written and fsynced temp file beside ``target``, removed whatever happens."""
    directory = target.parent
    tmp = directory / f".{target.name}{TEMP_MARKER}{writer_tag()}.{os.getpid()}-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _ensure_dir(directory: Path) -> None:
    if not directory.is_dir():
        # A file where the directory should be: say so (mkdir alone would say "File exists").
        for part in (directory, *directory.parents):
            if part.exists() and not part.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "trace directory is not a directory", str(part))
        directory.mkdir(parents=True, exist_ok=True)


def atomic_write(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` as ``target``: a regular file or missing path is replaced atomically
    (the parent directory is created if missing, the file gets ``mode``); a symlink's resolved
    file is replaced and the link kept; a device or FIFO is written into (see ``special``)."""
    _write_target(target, data, mode, sweep=False)


def _write_target(target: Path, data: bytes, mode: int, *, sweep: bool) -> Path:
    _ensure_dir(target.parent)
    kind, where = resolve_target(target)
    if kind != "replace":
        write_special(where, data, kind)
        return target
    if where != target:
        _ensure_dir(where.parent)  # where a dangling symlink points
    if sweep:
        sweep_stale_temps(where.parent)
    with _temp_file(where, data, mode) as tmp:
        os.replace(tmp, where)
    _fsync_dir(where.parent)
    return target


def history_stem(started_ns: int, flow_id: str) -> str:
    """``YYYYMMDD-HHMMSS-{flow_id}`` in UTC; the flow id is made safe for file names."""
    when = _dt.datetime.fromtimestamp(started_ns / 1e9, tz=_dt.UTC).strftime("%Y%m%d-%H%M%S")
    safe = _UNSAFE.sub("_", flow_id).strip("._") or "flow"
    return f"{when}-{safe[:100]}"


def claim_history_file(
    directory: Path,
    stem: str,
    data: bytes,
    *,
    mode: int = 0o644,
    on_claim: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``data`` to a new history file ``stem.json`` (or ``stem-N.json``), never overwriting.

    The name is claimed with a hard link from the fsynced temp file: ``link`` fails if the name
    exists, so two processes starting in the same second never share a file. ``on_claim`` hears
    the name as soon as it is taken, so a caller whose directory fsync then fails still knows
    which file is its own (and rewrites it rather than claiming another).
    """
    _ensure_dir(directory)
    with _temp_file(directory / f"{stem}.json", data, mode) as tmp:
        for n in range(_MAX_COLLISIONS):
            candidate = directory / (f"{stem}.json" if n == 0 else f"{stem}-{n}.json")
            try:
                os.link(tmp, candidate)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                # No hard links here (some FUSE or network file systems): check, then rename.
                if candidate.exists():
                    continue
                os.replace(tmp, candidate)
            if on_claim is not None:
                on_claim(candidate)
            _fsync_dir(directory)
            return candidate
    raise FileExistsError(errno.EEXIST, "no free history name", str(directory / stem))


# --- sinks: where a recorder's traces land ----------------------------------------------------


class Sink(Protocol):
    """Where and how a trace's bytes land; the recorder decides what and when (OTel's
    ``SpanProcessor`` / ``SpanExporter`` split).

    Threading contract: a recorder calls :meth:`write` under its flush lock, so one write at a
    time per recorder; a sink shared by recorders must serialize itself. ``write`` raises
    ``OSError`` (or any exception) on failure; the recorder logs it and keeps it, never passing
    it to the runner.
    """

    def write(self, data: bytes, run: RunTarget, *, private: bool) -> Path:
        """Write ``data`` (a whole trace) as ``run``'s file; return where it went.

        ``private`` asks for mode 0600 (the trace holds captured inputs).
        """
        ...


class RunTarget(Protocol):
    """What a sink knows of the run it writes: when it began, its flow, and its file once chosen."""

    wall_anchor_ns: int
    target: str | None


class FileSink:
    """One file, replaced atomically by each write (``TRACEKIT_TRACE_OUT``); a device or FIFO
    there is written into, a symlink's file is replaced (see :func:`atomic_write`)."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, data: bytes, run: RunTarget, *, private: bool) -> Path:
        return _write_target(self.path, data, _mode(private), sweep=True)

    def for_child(self, pid: int) -> FileSink:
        """A forked child's sink: ``trace.<pid>.json`` beside ``trace.json``, never the parent's."""
        return FileSink(self.path.with_name(f"{self.path.stem}.{pid}{self.path.suffix}"))


class HistorySink:
    """A new file per run in ``directory``, never overwritten; later writes of a run replace its
    own file; the newest ``keep`` are kept (``TRACEKIT_TRACE_DIR`` / ``TRACEKIT_TRACE_KEEP``)."""

    __slots__ = ("_owned", "directory", "flow_id", "keep")

    def __init__(self, directory: Path, flow_id: str, keep: int | None = None) -> None:
        self.directory = directory
        self.flow_id = flow_id
        self.keep = keep
        self._owned: dict[Any, Any] = {}  # what retention read of each file, until it changes

    def write(self, data: bytes, run: RunTarget, *, private: bool) -> Path:
        sweep_stale_temps(self.directory)
        mode = _mode(private)
        if run.target is None:
            def claimed(path: Path) -> None:
                run.target = str(path)  # known even if the directory fsync then fails

            path = claim_history_file(
                self.directory, history_stem(run.wall_anchor_ns, self.flow_id), data,
                mode=mode, on_claim=claimed,
            )
            run.target = str(path)
        else:
            path = Path(run.target)
            atomic_write(path, data, mode=mode)
        if self.keep is not None:
            apply_retention(self.directory, self.keep, protect=path, cache=self._owned)
        return path


def _mode(private: bool) -> int:
    return 0o600 if private else 0o644
