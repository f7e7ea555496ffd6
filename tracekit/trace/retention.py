"""What may be deleted from a trace directory: old history files tracekit wrote, and stale temps.

Retention (``TRACEKIT_TRACE_KEEP``) deletes a file only when it is provably one of ours: a
regular file (not a symlink) named like a history file whose first top-level JSON fields (read
from a bounded prefix) say ``recorder.name == "tracekit"`` and give the run's ``started_at``. Runs
are ordered by that ``started_at``, never by name or modification time; the newest ``keep`` stay,
and so do the run being written (``protect``) and any run another process is still writing (an
``in_progress`` trace written in the last :data:`STALE_TEMP_SECONDS`).

The stale-temp sweep removes a temp file by age alone (unchanged for :data:`STALE_TEMP_SECONDS`):
a pid says nothing about a writer in another PID namespace or on another host sharing the
directory. Temp names carry the writer's :func:`writer_tag` (host, PID namespace) and pid so a
person can tell whose a leftover is.

Threading contract: pure functions of the file system; a ``cache`` passed in must not be shared
between threads without a lock (each :class:`~tracekit.trace.sink.HistorySink` writes under its
recorder's flush lock).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import socket
import stat
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Final

from tracekit.trace.envelope import RECORDER_NAME

__all__ = [
    "HISTORY_NAME",
    "OWNED_PREFIX_BYTES",
    "STALE_TEMP_SECONDS",
    "TEMP_MARKER",
    "apply_retention",
    "history_files",
    "owned_run",
    "sweep_stale_temps",
    "writer_tag",
]

TEMP_MARKER: Final = ".tracekit-tmp-"
#: ``{UTC YYYYMMDD-HHMMSS}-{flow_id}.json``, with ``-N`` before ``.json`` on collision.
HISTORY_NAME: Final = re.compile(r"^\d{8}-\d{6}-.+\.json$")
#: Any tracekit temp file: ``.{target}.tracekit-tmp-{writer_tag}.{pid}-{hex}`` (older ones lack the tag).
_TEMP_NAME: Final = re.compile(r"^\..*\.tracekit-tmp-.+$")
#: A temp file unchanged this long is stale: no write takes an hour (an interrupted one left it).
STALE_TEMP_SECONDS: Final = 3600
#: How much of a file is read to tell whether tracekit wrote it (its first fields come first).
OWNED_PREFIX_BYTES: Final = 64 * 1024
_CACHE_LIMIT: Final = 4096
_UNSAFE_TAG: Final = re.compile(r"[^A-Za-z0-9_-]+")

#: (started_at, outcome) of a trace tracekit wrote, as read from the file.
OwnedRun = tuple[_dt.datetime, str]


def writer_tag() -> str:
    """This writer's host and PID namespace, as they appear in its temp names (``host~ns``)."""
    host = _UNSAFE_TAG.sub("_", socket.gethostname())[:40] or "host"
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return host
    return f"{host}~{namespace}"


def history_files(directory: Path) -> list[Path]:
    """The history files of ``directory``, oldest first (by name, whose prefix is the time)."""
    try:
        names = [e.name for e in os.scandir(directory) if e.is_file()]
    except OSError:
        return []
    return [directory / n for n in sorted(names) if HISTORY_NAME.match(n)]


def _read_head(path: Path) -> dict[str, Any] | None:
    """The top-level fields before ``steps`` of the JSON object at ``path``, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        left = OWNED_PREFIX_BYTES
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return _leading_fields(b"".join(chunks).decode("utf-8", "replace"), {"recorder", "run"})


def _leading_fields(text: str, wanted: set[str]) -> dict[str, Any] | None:
    """Parse the first top-level members of a JSON object from a prefix of it, until ``wanted``."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    found: dict[str, Any] = {}
    try:
        i = ws.match(text, 0).end()  # type: ignore[union-attr]
        if text[i] != "{":
            return None
        i += 1
        while not wanted <= found.keys():
            i = ws.match(text, i).end()  # type: ignore[union-attr]
            key, i = decoder.raw_decode(text, i)
            i = ws.match(text, i).end()  # type: ignore[union-attr]
            if not isinstance(key, str) or key in found or text[i] != ":":
                return None  # a duplicate key could say anything: not provably ours
            value, i = decoder.raw_decode(text, ws.match(text, i + 1).end())  # type: ignore[union-attr]
            found[key] = value
            i = ws.match(text, i).end()  # type: ignore[union-attr]
            if text[i] != ",":
                break
            i += 1
    except (ValueError, IndexError, RecursionError):
        return None
    return found


def owned_run(path: Path) -> OwnedRun | None:
    """``(started_at, outcome)`` when ``path`` is a trace tracekit wrote, else None."""
    head = _read_head(path)
    if head is None:
        return None
    recorder, run = head.get("recorder"), head.get("run")
    if not (isinstance(recorder, dict) and recorder.get("name") == RECORDER_NAME and isinstance(run, dict)):
        return None
    started, outcome = run.get("started_at"), run.get("outcome")
    if not isinstance(started, str) or not isinstance(outcome, str):
        return None
    try:
        when = _dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when, outcome


def _owned(path: Path, cache: MutableMapping[Any, Any] | None) -> tuple[OwnedRun | None, float]:
    """:func:`owned_run` of ``path`` (cached by inode, size and mtime) and its mtime."""
    try:
        st = os.lstat(path)
    except OSError:
        return None, 0.0
    if not stat.S_ISREG(st.st_mode):
        return None, 0.0  # a symlink (or anything else) named like a trace is not ours to delete
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if cache is not None and key in cache:
        return cache[key], st.st_mtime
    info = owned_run(path)
    if cache is not None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = info
    return info, st.st_mtime


def apply_retention(
    directory: Path,
    keep: int,
    protect: Path | None = None,
    *,
    cache: MutableMapping[Any, Any] | None = None,
) -> list[Path]:
    """Delete tracekit's history files of ``directory`` but the newest ``keep`` by ``started_at``.

    ``protect`` (the run being written) is never deleted, nor is a run another process is still
    writing; skipping them never makes a newer run go instead. Returns what was deleted.
    """
    now = time.time()
    runs: list[tuple[_dt.datetime, str, Path]] = []
    spared: set[str] = set()
    for path in history_files(directory):
        info, mtime = _owned(path, cache)
        if info is None:
            continue
        started, outcome = info
        runs.append((started, path.name, path))
        if outcome == "in_progress" and now - mtime < STALE_TEMP_SECONDS:
            spared.add(path.name)
    if protect is not None and os.path.abspath(protect.parent) == os.path.abspath(directory):
        spared.add(protect.name)
    runs.sort()
    removed: list[Path] = []
    for _, name, path in runs[: max(0, len(runs) - keep)]:
        if name in spared:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def sweep_stale_temps(directory: Path, *, now: float | None = None) -> list[Path]:
    """Remove tracekit temp files unchanged for :data:`STALE_TEMP_SECONDS` (writers that died)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    cutoff = (time.time() if now is None else now) - STALE_TEMP_SECONDS
    for entry in entries:
        if not _TEMP_NAME.match(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
