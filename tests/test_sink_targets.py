"""Targets that are not regular files: devices are written into, FIFOs never hang, symlinks stay.

The atomic replace (temp file + rename) is for regular files and missing paths only. Device
nodes are made with ``os.mknod`` in the test's own directory (a copy of /dev/null's and
/dev/full's numbers), never the real /dev entries.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli_support import failing_trace, invoke

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.trace import special
from tracekit.trace.sink import TEMP_MARKER, atomic_write

NULL = os.makedev(1, 3)  # what /dev/null is on Linux: writes vanish
FULL = os.makedev(1, 7)  # /dev/full: every write fails with ENOSPC


def _device(path: Path, dev: int) -> Path:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, dev)
    except (PermissionError, AttributeError) as exc:  # not root, or no mknod on this platform
        pytest.skip(f"cannot make a device node here: {exc}")
    return path


def _is_device(path: Path, dev: int) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == dev


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if TEMP_MARKER in p.name]


def _one_failing_run(rec: TraceRecorder) -> None:
    with pytest.raises(ValueError), rec.run():
        ev = NodeEvent("n", "c", "call", payload={"i": 1})
        rec.on_node_start(ev)
        rec.on_node_error(ev, ValueError("boom"))
        raise ValueError("boom")


# --- devices ------------------------------------------------------------------------------------


def test_a_device_target_is_written_into_not_replaced(tmp_path: Path) -> None:
    null = _device(tmp_path / "null", NULL)
    atomic_write(null, b"x" * 100_000)
    assert _is_device(null, NULL)
    assert _temps(tmp_path) == []


def test_the_recorder_writes_into_a_device(tmp_path: Path, context: TraceContext) -> None:
    null = _device(tmp_path / "null", NULL)
    before = stat.S_IMODE(os.lstat(null).st_mode)
    rec = TraceRecorder(TraceConfig.create(mode="on", out=null, capture_inputs=True), context)
    _one_failing_run(rec)
    assert rec.last_flush_error is None and rec.last_trace_path == null
    assert _is_device(null, NULL)
    assert stat.S_IMODE(os.lstat(null).st_mode) == before  # a device's mode is not ours to change
    assert _temps(tmp_path) == []


def test_a_failing_device_is_a_logged_failure(
    tmp_path: Path, context: TraceContext, caplog: pytest.LogCaptureFixture
) -> None:
    full = _device(tmp_path / "full", FULL)
    rec = TraceRecorder(TraceConfig.create(mode="on", out=full), context)
    _one_failing_run(rec)
    assert isinstance(rec.last_flush_error, OSError) and rec.last_flush_error.errno == errno.ENOSPC
    assert any("could not write" in r.getMessage() for r in caplog.records)
    assert _is_device(full, FULL)


# --- FIFOs --------------------------------------------------------------------------------------


def test_a_fifo_without_a_reader_fails_at_once(tmp_path: Path, context: TraceContext) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as raised:
        atomic_write(fifo, b"{}")
    assert raised.value.errno == errno.ENXIO
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    rec = TraceRecorder(TraceConfig.create(mode="on", out=fifo), context)
    started = time.monotonic()
    _one_failing_run(rec)  # the runner is not held up: two flushes, both fail at once
    assert time.monotonic() - started < 5
    assert isinstance(rec.last_flush_error, OSError) and rec.last_flush_error.errno == errno.ENXIO
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and _temps(tmp_path) == []


def _drain(fd: int, want: int, stop: Callable[[], bool]) -> bytes:
    """Read a non-blocking FIFO end until ``want`` bytes came (or ``stop()``)."""
    got = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + 20
    while len(got) < want and time.monotonic() < deadline and not stop():
        poller.poll(50)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        got += chunk
    return bytes(got)


def test_a_fifo_with_a_reader_gets_the_whole_trace(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = os.urandom(300_000)  # several pipe buffers: the writer must wait for the reader
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            atomic_write(fifo, data)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        got = _drain(reader, len(data), lambda: bool(errors))
    finally:
        writer.join(30)
        os.close(reader)
    assert errors == [] and got == data
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_fifo_whose_reader_stalls_fails_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(special, "FIFO_STALL_SECONDS", 0.2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    try:
        started = time.monotonic()
        with pytest.raises(OSError) as raised:
            atomic_write(fifo, b"x" * 1_000_000)
        assert raised.value.errno == errno.ETIMEDOUT
        assert time.monotonic() - started < 5
    finally:
        os.close(reader)


# --- symlinks -----------------------------------------------------------------------------------


def test_a_symlink_stays_a_symlink_and_its_target_is_replaced(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "trace.json"
    real.write_bytes(b"old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    atomic_write(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new" and not real.is_symlink()
    assert _temps(tmp_path) == [] and _temps(real_dir) == []


def test_a_dangling_symlink_gets_its_file_made(tmp_path: Path) -> None:
    link = tmp_path / "trace.json"
    link.symlink_to("made-later.json")
    atomic_write(link, b"{}")
    assert link.is_symlink() and (tmp_path / "made-later.json").read_bytes() == b"{}"


def test_a_symlink_to_a_device_writes_into_the_device(tmp_path: Path, context: TraceContext) -> None:
    null = _device(tmp_path / "null", NULL)
    link = tmp_path / "stdout-like"
    link.symlink_to(null)
    rec = TraceRecorder(TraceConfig.create(mode="on", out=link), context)
    _one_failing_run(rec)
    assert rec.last_flush_error is None
    assert link.is_symlink() and _is_device(null, NULL)


def test_a_symlink_to_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "link", b"x")
    assert (tmp_path / "link").is_symlink() and list((tmp_path / "d").iterdir()) == []


# --- the CLI's outputs --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["export", "-f", "chrome"], ["report"]])
def test_dash_o_dash_is_stdout(command: list[str], tmp_path: Path) -> None:
    trace = failing_trace(tmp_path / "t.json")
    result = invoke(command[0], str(trace), *command[1:], "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("{" if command[0] == "export" else "<!")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]  # no file named "-"


@pytest.mark.parametrize("command", [["export", "-f", "otlp"], ["report"]])
def test_cli_outputs_into_a_device_and_through_a_symlink(command: list[str], tmp_path: Path) -> None:
    trace = failing_trace(tmp_path / "t.json")
    null = _device(tmp_path / "null", NULL)
    assert invoke(command[0], str(trace), *command[1:], "-o", str(null)).exit_code == 0
    assert _is_device(null, NULL)
    real = tmp_path / "real.out"
    real.write_text("old")
    (tmp_path / "link.out").symlink_to(real)
    assert invoke(command[0], str(trace), *command[1:], "-o", str(tmp_path / "link.out")).exit_code == 0
    assert (tmp_path / "link.out").is_symlink() and real.read_text() != "old"


@pytest.fixture
def umask_022() -> object:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("command", [["export", "-f", "chrome"], ["export", "-f", "otlp"], ["report"]])
@pytest.mark.parametrize("capture", [True, False])
def test_outputs_of_a_private_trace_are_private(command: list[str], capture: bool, tmp_path: Path) -> None:
    trace = failing_trace(tmp_path / "t.json", capture=capture)
    source_mode = stat.S_IMODE(trace.stat().st_mode)
    assert source_mode == (0o600 if capture else 0o644)
    out = tmp_path / "out.file"
    out.write_text("an older, public output")
    out.chmod(0o644)
    result = invoke(command[0], str(trace), *command[1:], "-o", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == source_mode
