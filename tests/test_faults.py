"""Write faults: the recorder survives every failing step of the atomic write.

Faults are injected into the ``os`` functions exactly as ``tracekit/trace/sink.py`` calls them (a proxy
replaces the module's ``os``), and once on a real full file system (a tiny tmpfs). In every case
the runner sees only its own errors, no temporary file is left, an earlier good trace stays
byte-identical, ``recorder.last_flush_error`` carries the errno, and exactly one warning is logged
per run; with ``strict=True`` the flush methods raise instead.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.trace import sink as sink_module
from tracekit.trace.schema import validate_document
from tracekit.trace.sink import TEMP_MARKER

ERRNOS = (errno.ENOSPC, errno.EIO, errno.EROFS)
FILE_STEPS = ("open", "write", "fsync", "replace", "dirfsync")
HISTORY_STEPS = ("open", "write", "fsync", "link", "dirfsync")
STEPS_PER_RUN = 5


class FaultyOS(types.ModuleType):
    """The real ``os`` module, but one step of the atomic write fails with ``err``.

    Steps: ``open`` (creating the temp file), ``write``, ``fsync`` (of the temp file),
    ``replace``, ``link`` (history names) and ``dirfsync`` (fsync of the directory).
    """

    def __init__(self, step: str | None = None, err: int = errno.EIO, max_write: int | None = None) -> None:
        super().__init__("os")
        self.step = step
        self.err = err
        self.max_write = max_write
        self.dir_fds: set[int] = set()
        self.injected = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _fail(self, what: object) -> None:
        self.injected += 1
        raise OSError(self.err, os.strerror(self.err), str(what))

    def open(self, path: Any, flags: int, mode: int = 0o777) -> int:
        is_temp = TEMP_MARKER in str(path)
        if self.step == "open" and is_temp:
            self._fail(path)
        fd = os.open(path, flags, mode)
        if not is_temp:
            self.dir_fds.add(fd)
        return fd

    def write(self, fd: int, data: Any) -> int:
        if self.step == "write":
            self._fail(fd)
        if self.max_write is not None:
            data = memoryview(data)[: self.max_write]
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        is_dir = fd in self.dir_fds
        if (self.step == "fsync" and not is_dir) or (self.step == "dirfsync" and is_dir):
            self._fail(fd)
        os.fsync(fd)

    def close(self, fd: int) -> None:
        self.dir_fds.discard(fd)
        os.close(fd)

    def replace(self, src: Any, dst: Any) -> None:
        if self.step == "replace":
            self._fail(dst)
        os.replace(src, dst)

    def link(self, src: Any, dst: Any) -> None:
        if self.step == "link":
            self._fail(dst)
        os.link(src, dst)


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyOS]:
    proxy = FaultyOS()
    monkeypatch.setattr(sink_module, "os", proxy)
    yield proxy


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*") if TEMP_MARKER in p.name]


def _valid(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    return doc


def _write_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.name == "tracekit" and r.levelno == logging.WARNING and "could not write" in r.getMessage()
    ]


def _good_run(rec: TraceRecorder) -> None:
    with rec.run():
        ev = NodeEvent("load", "io.read", "call", payload={"day": 1})
        rec.on_node_start(ev)
        rec.on_node_end(ev, [1, 2, 3])


def _failing_run(rec: TraceRecorder) -> None:
    """A run whose every step flushes, and whose last node raises the runner's own error."""
    with pytest.raises(ValueError, match="the runner's own error"), rec.run():
        for i in range(STEPS_PER_RUN):
            ev = NodeEvent(f"n{i}", "comp", "call", payload={"i": i})
            rec.on_node_start(ev)
            rec.on_node_end(ev, i)
            rec.flush_buffer()
        ev = NodeEvent("boom", "comp", "call", payload={"i": "boom"})
        rec.on_node_start(ev)
        err = ValueError("the runner's own error")
        rec.on_node_error(ev, err)
        raise err


def _assert_failed_once(rec: TraceRecorder, caplog: pytest.LogCaptureFixture, err: int) -> None:
    assert isinstance(rec.last_flush_error, OSError)
    assert rec.last_flush_error.errno == err
    warnings = _write_warnings(caplog)
    assert len(warnings) == 1, [(r.name, r.levelno, r.getMessage()[:150]) for r in caplog.records]
    assert f"[Errno {err}]" in warnings[0].getMessage()
    assert rec.misuse.get("internal_error", 0) == 0


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("step", FILE_STEPS)
def test_single_file_write_fault(
    step: str, err: int, faulty: FaultyOS, context: TraceContext, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = tmp_path / "out" / "trace.json"
    rec = TraceRecorder(TraceConfig.create(mode="always", out=target), context)
    _good_run(rec)
    before = target.read_bytes()
    caplog.clear()

    faulty.step, faulty.err = step, err
    _failing_run(rec)

    assert faulty.injected == STEPS_PER_RUN + 2  # every flush of the run hit the fault
    assert _temps(tmp_path) == []
    _assert_failed_once(rec, caplog, err)
    if step == "dirfsync":
        # The rename already happened: the new trace is complete, only its durability is unknown.
        assert _valid(target)["run"]["outcome"] == "failure"
    else:
        assert target.read_bytes() == before


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("step", HISTORY_STEPS)
def test_history_write_fault(
    step: str, err: int, faulty: FaultyOS, context: TraceContext, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    history = tmp_path / "history"
    rec = TraceRecorder(TraceConfig.create(mode="always", dir=history), context)
    _good_run(rec)
    (earlier,) = history.glob("*.json")
    before = earlier.read_bytes()
    caplog.clear()

    faulty.step, faulty.err = step, err
    _failing_run(rec)

    assert faulty.injected >= 1
    assert _temps(tmp_path) == []
    _assert_failed_once(rec, caplog, err)
    assert earlier.read_bytes() == before
    others = sorted(set(history.glob("*.json")) - {earlier})
    if step == "dirfsync":
        assert len(others) == 1 and _valid(others[0])["run"]["outcome"] == "failure"
    else:
        assert others == []


def test_file_systems_without_hard_links_fall_back_to_rename(
    faulty: FaultyOS, context: TraceContext, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    faulty.step, faulty.err = "link", errno.EPERM
    rec = TraceRecorder(TraceConfig.create(mode="always", dir=tmp_path / "h"), context)
    _good_run(rec)
    (only,) = (tmp_path / "h").glob("*.json")
    assert _valid(only)["run"]["outcome"] == "success"
    assert rec.last_flush_error is None and _temps(tmp_path) == [] and _write_warnings(caplog) == []


def test_short_writes_are_completed(faulty: FaultyOS, context: TraceContext, tmp_path: Path) -> None:
    faulty.max_write = 7  # os.write may write less than asked (signals, pipes, quotas)
    rec = TraceRecorder(TraceConfig.create(mode="always", out=tmp_path / "t.json"), context)
    _good_run(rec)
    assert _valid(tmp_path / "t.json")["steps"][0]["node_id"] == "load"


@pytest.mark.parametrize("step", FILE_STEPS[:4])
def test_strict_flushes_raise_the_write_error(
    step: str, faulty: FaultyOS, context: TraceContext, tmp_path: Path,
) -> None:
    rec = TraceRecorder(TraceConfig.create(mode="always", out=tmp_path / "t.json", strict=True), context)
    faulty.step, faulty.err = step, errno.ENOSPC
    ev = NodeEvent("n", "c", "call", payload=1)
    rec.on_node_start(ev)  # callbacks never raise, even when strict
    rec.on_node_error(ev, KeyError("k"))
    for flush in (rec.flush_buffer, rec.flush_success, lambda: rec.flush_error(RuntimeError("x"))):
        with pytest.raises(OSError) as info:
            flush()
        assert info.value.errno == errno.ENOSPC
    assert _temps(tmp_path) == []


def test_parent_is_a_file(context: TraceContext, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not-a-dir").write_text("I am a file")
    rec = TraceRecorder(TraceConfig.create(mode="always", out=tmp_path / "not-a-dir" / "trace.json"), context)
    _failing_run(rec)
    _assert_failed_once(rec, caplog, errno.ENOTDIR)
    assert "not-a-dir" in str(rec.last_flush_error)
    assert (tmp_path / "not-a-dir").read_text() == "I am a file"
    strict = TraceRecorder(
        TraceConfig.create(mode="always", out=tmp_path / "not-a-dir" / "deeper" / "t.json", strict=True),
        context,
    )
    with pytest.raises(NotADirectoryError):
        strict.flush_buffer()


def test_target_is_a_directory(
    context: TraceContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "trace.json"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    rec = TraceRecorder(TraceConfig.create(mode="always", out=target), context)
    _failing_run(rec)
    _assert_failed_once(rec, caplog, errno.EISDIR)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert _temps(tmp_path) == []


def test_missing_parent_directories_are_created(context: TraceContext, tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c" / "trace.json"
    rec = TraceRecorder(TraceConfig.create(mode="on", out=target), context)
    _failing_run(rec)
    assert rec.last_flush_error is None
    assert _valid(target)["run"]["outcome"] == "failure"


def test_each_run_logs_its_own_single_warning(
    faulty: FaultyOS, context: TraceContext, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    faulty.step, faulty.err = "write", errno.EIO
    rec = TraceRecorder(TraceConfig.create(mode="always", out=tmp_path / "t.json"), context)
    for _ in range(3):
        _failing_run(rec)
    assert len(_write_warnings(caplog)) == 3


# --- a real full file system ------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
            capture_output=True, text=True, check=False,
        )
    except OSError as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_file_system(
    tiny_fs: Path, context: TraceContext, caplog: pytest.LogCaptureFixture,
) -> None:
    target = tiny_fs / "trace.json"
    rec = TraceRecorder(TraceConfig.create(mode="always", out=target, capture_inputs=True), context)
    _good_run(rec)
    before = target.read_bytes()
    # Fill what is left, then ask for a trace far bigger than 64 KiB.
    fd = os.open(tiny_fs / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as full:
            while True:
                os.write(fd, b"\0" * 1024)
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    caplog.clear()
    with pytest.raises(ValueError, match="own error"), rec.run():
        for i in range(50):
            ev = NodeEvent(f"n{i}", "c", "call", payload={"blob": "x" * 30_000, "i": i})
            rec.on_node_start(ev)
            rec.on_node_end(ev, i)
        raise ValueError("the runner's own error")
    _assert_failed_once(rec, caplog, errno.ENOSPC)
    assert target.read_bytes() == before
    assert _temps(tiny_fs) == []
