"""The sink's building blocks: atomic replace, history names, retention, stale temp sweeping."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tracekit.trace import retention
from tracekit.trace import sink as sink_module
from tracekit.trace.sink import (
    STALE_TEMP_SECONDS,
    TEMP_MARKER,
    apply_retention,
    atomic_write,
    claim_history_file,
    history_files,
    history_stem,
    sweep_stale_temps,
    writer_tag,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t.json"
    atomic_write(target, b"good")

    def no_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("tracekit.trace.sink.os.fsync", no_fsync)
    with pytest.raises(OSError):
        atomic_write(target, b"bad")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_atomic_write_refuses_a_directory_target(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "d", b"x")


def test_history_stem_is_utc_timestamp_first() -> None:
    ns = 1_795_435_200 * 10**9  # 2026-11-23T12:00:00Z
    assert history_stem(ns, "nightly") == "20261123-120000-nightly"
    assert history_stem(ns, "a/b c") == "20261123-120000-a_b_c"


def test_claim_never_overwrites(tmp_path: Path) -> None:
    paths = [claim_history_file(tmp_path, "20261123-072000-f", str(i).encode()) for i in range(3)]
    assert [p.name for p in paths] == [
        "20261123-072000-f.json",
        "20261123-072000-f-1.json",
        "20261123-072000-f-2.json",
    ]
    assert [p.read_bytes() for p in paths] == [b"0", b"1", b"2"]
    assert len(history_files(tmp_path)) == 3
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def _trace(path: Path, started_at: str, *, outcome: str = "failure", recorder: str = "tracekit") -> Path:
    """A file as tracekit writes it (the envelope's first fields; retention reads no further)."""
    doc = {
        "trace_version": 1,
        "recorder": {"name": recorder, "version": "0"},
        "pack": {"pack_ref": "p"},
        "flow": {"id": "f", "version": "1"},
        "run": {"id": "r", "outcome": outcome, "started_at": started_at, "host": "h", "pid": 1},
        "steps": [{"node_id": "x" * 1000}] * 200,  # the prefix read stops long before these
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return path


def _day(d: int) -> str:
    return f"2026-01-{d:02d}T00:00:00.000000Z"


def test_retention_keeps_newest_and_ignores_other_files(tmp_path: Path) -> None:
    for d, stamp in enumerate(("20260101-000000", "20260102-000000", "20260103-000000", "20260104-000000")):
        _trace(tmp_path / f"{stamp}-f.json", _day(d + 1))
    (tmp_path / "notes.json").write_text("{}")
    removed = apply_retention(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["20260101-000000-f.json", "20260102-000000-f.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20260103-000000-f.json",
        "20260104-000000-f.json",
        "notes.json",
    ]


def test_retention_never_deletes_files_it_did_not_write(tmp_path: Path) -> None:
    backup = tmp_path / "20200101-000000-my-backup.json"
    backup.write_text('{"mine": "a user\'s backup, named like a history file"}')
    other = _trace(tmp_path / "20200101-000001-other.json", _day(1), recorder="another-recorder")
    broken = tmp_path / "20200101-000002-f.json"
    broken.write_bytes(b'{"trace_version": 1, "recorder": {"name": "trace')  # truncated: not provably ours
    linked = tmp_path / "20200101-000003-f.json"
    linked.symlink_to(_trace(tmp_path / "elsewhere.json", _day(2)))
    ours = [_trace(tmp_path / f"2026010{d}-000000-f.json", _day(d)) for d in (3, 4, 5)]
    removed = apply_retention(tmp_path, 1)
    assert sorted(removed) == ours[:2]
    for kept in (backup, other, broken, linked, ours[2]):
        assert kept.is_symlink() or kept.exists()


def test_retention_orders_runs_by_started_at_not_by_name(tmp_path: Path) -> None:
    # Names have one-second resolution and can be copied or renamed; the run's start is in the file.
    late = _trace(tmp_path / "20260101-000000-f.json", _day(9))
    early = _trace(tmp_path / "20260109-000000-f.json", _day(1))
    middle = _trace(tmp_path / "20260105-000000-f.json", "2026-01-05T00:00:00.000001Z")
    os.utime(late, (0, 0))  # and not by modification time either
    assert apply_retention(tmp_path, 2) == [early]
    assert late.exists() and middle.exists()


def test_skipping_the_protected_run_never_deletes_a_newer_one(tmp_path: Path) -> None:
    files = [_trace(tmp_path / f"2026010{d}-000000-f.json", _day(d)) for d in (1, 2, 3, 4)]
    # files[0] is the run this process is still writing (a long run started first).
    removed = apply_retention(tmp_path, 2, protect=files[0])
    assert removed == [files[1]]
    assert all(p.exists() for p in (files[0], files[2], files[3]))


def test_a_concurrent_run_still_in_progress_is_spared(tmp_path: Path) -> None:
    writing = _trace(tmp_path / "20260101-000000-f.json", _day(1), outcome="in_progress")
    crashed = _trace(tmp_path / "20260102-000000-f.json", _day(2), outcome="in_progress")
    old = time.time() - 2 * STALE_TEMP_SECONDS
    os.utime(crashed, (old, old))  # nobody has written it for hours: a run that died
    done = _trace(tmp_path / "20260103-000000-f.json", _day(3))
    newest = _trace(tmp_path / "20260104-000000-f.json", _day(4))
    assert sorted(apply_retention(tmp_path, 1)) == [crashed, done]
    assert writing.exists() and newest.exists()


def test_retention_rereads_a_file_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in (1, 2, 3):
        _trace(tmp_path / f"2026010{d}-000000-f.json", _day(d))
    cache: dict[object, object] = {}
    assert apply_retention(tmp_path, 5, cache=cache) == []
    reads: list[object] = []
    real = retention._read_head
    monkeypatch.setattr(retention, "_read_head", lambda p: reads.append(p) or real(p))
    assert apply_retention(tmp_path, 5, cache=cache) == []
    assert reads == []
    _trace(tmp_path / "20260101-000000-f.json", _day(7))  # rewritten: read again, now the newest
    assert apply_retention(tmp_path, 1, cache=cache) == [
        tmp_path / "20260102-000000-f.json", tmp_path / "20260103-000000-f.json"
    ]
    assert reads == [tmp_path / "20260101-000000-f.json"]


def _pid_of_a_dead_process() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_sweep_never_removes_a_fresh_temp_whatever_its_pid(tmp_path: Path) -> None:
    # A writer in another PID namespace or on another host sharing the directory: its pid means
    # nothing here, so "not alive here" would delete its live temp file.
    others = [
        tmp_path / f".t.json{TEMP_MARKER}otherhost~4026531836.{_pid_of_a_dead_process()}-abcdef",
        tmp_path / f".t.json{TEMP_MARKER}{_pid_of_a_dead_process()}-abcdef",  # the old naming
        tmp_path / f".t.json{TEMP_MARKER}{writer_tag()}.{os.getpid()}-abcdef",
    ]
    for p in others:
        p.write_text("in progress")
    assert sweep_stale_temps(tmp_path) == []
    assert all(p.exists() for p in others)


def test_sweep_removes_temps_older_than_the_stale_age(tmp_path: Path) -> None:
    stale = tmp_path / f".t.json{TEMP_MARKER}elsewhere~1.{os.getpid()}-abcdef"
    fresh = tmp_path / f".t.json{TEMP_MARKER}elsewhere~1.{os.getpid()}-123456"
    mine = tmp_path / "notes.txt"
    for p in (stale, fresh, mine):
        p.write_text("x")
    old = time.time() - STALE_TEMP_SECONDS - 60
    for p in (stale, mine):
        os.utime(p, (old, old))
    assert sweep_stale_temps(tmp_path) == [stale]
    assert fresh.exists() and mine.exists()


def test_temp_names_carry_the_writer_host_and_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(sink_module.os, "replace", spy)
    atomic_write(tmp_path / "t.json", b"{}")
    (name,) = seen
    assert name.startswith(f".t.json{TEMP_MARKER}{writer_tag()}.{os.getpid()}-")
    assert writer_tag() and "/" not in writer_tag()
