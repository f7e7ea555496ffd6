"""The sink's building blocks: atomic replace, history names, retention, stale temp sweeping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracekit.trace.sink import (
    apply_retention,
    atomic_write,
    claim_history_file,
    history_files,
    history_stem,
    sweep_stale_temps,
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


def test_retention_keeps_newest_and_ignores_other_files(tmp_path: Path) -> None:
    for stamp in ("20260101-000000", "20260102-000000", "20260103-000000", "20260104-000000"):
        (tmp_path / f"{stamp}-f.json").write_text("{}")
    (tmp_path / "notes.json").write_text("{}")
    removed = apply_retention(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["20260101-000000-f.json", "20260102-000000-f.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20260103-000000-f.json",
        "20260104-000000-f.json",
        "notes.json",
    ]


def test_sweep_removes_temps_of_dead_writers_only(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".t.json.tracekit-tmp-{dead_pid}-abcdef"
    mine = tmp_path / f".t.json.tracekit-tmp-{os.getpid()}-abcdef"
    stale.write_text("partial")
    mine.write_text("in progress")
    assert sweep_stale_temps(tmp_path) == [stale]
    assert mine.exists() and not stale.exists()
