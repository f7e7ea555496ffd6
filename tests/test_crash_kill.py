"""Crash safety: kill -9 a process while it rewrites a large trace, again and again.

After every kill the target is absent (nothing written yet) or a complete, schema-valid trace,
never a partial one; the temp files the killed writers left behind are swept, once they are
older than ``STALE_TEMP_SECONDS``, by the next flush to that directory. Bounded by
``TRACEKIT_SOAK_ITERATIONS`` (default 10; CI sets 40).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.trace import sink as sink_module
from tracekit.trace.schema import validate_document
from tracekit.trace.sink import STALE_TEMP_SECONDS, TEMP_MARKER

CHILD = Path(__file__).with_name("_crash_child.py")
STEPS = 5000  # ring buffer of the child: every flush writes all of them
PAYLOAD_BYTES = 1000  # captured with every step: the trace is ~6 MB
DEFAULT_KILLS = 10


def _kills() -> int:
    return int(os.environ.get("TRACEKIT_SOAK_ITERATIONS") or DEFAULT_KILLS)


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if TEMP_MARKER in p.name]


def _check_complete(target: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(target.read_bytes())
    assert validate_document(doc) == []
    assert doc["run"]["outcome"] == "in_progress"
    return doc


@pytest.mark.soak
def test_kill_9_mid_write_never_leaves_a_partial_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "trace.json"
    rng = random.Random(1234)
    swept: list[Path] = []
    real_sweep = sink_module.sweep_stale_temps

    def spy(directory: Path) -> list[Path]:
        removed = real_sweep(directory)
        swept.extend(removed)
        return removed

    monkeypatch.setattr(sink_module, "sweep_stale_temps", spy)
    stats = {"kills": 0, "complete_after_kill": 0, "absent_after_kill": 0, "stale_temps_swept": 0}
    for i in range(_kills()):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(target), str(STEPS), str(PAYLOAD_BYTES)],
            stdout=subprocess.PIPE, text=True,
        )
        assert child.stdout is not None
        # Kill some children while they build the ring buffer, most while they flush.
        if i % 5 != 0:
            assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()  # reaped: its pid is gone, so its temp files are stale
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        stats["kills"] += 1

        if target.exists():
            stats["complete_after_kill"] += 1
            _check_complete(target)
        else:
            stats["absent_after_kill"] += 1
        left = set(_temps(tmp_path))
        # Temps are swept by age only (a pid means nothing to another host or PID namespace):
        # an hour later, the next flush to this directory sweeps what the killed writer left.
        old = time.time() - STALE_TEMP_SECONDS - 1
        for temp in left:
            os.utime(temp, (old, old))

        swept.clear()
        rec = TraceRecorder(TraceConfig.create(mode="always", out=target), TraceContext("p", "crash", "1"))
        ev = NodeEvent("after", "comp", "call", payload=i)
        rec.on_node_start(ev)
        rec.on_node_end(ev, i)
        assert rec.flush_buffer() == target
        assert set(swept) == left
        assert _temps(tmp_path) == []
        stats["stale_temps_swept"] += len(left)
        assert _check_complete(target)["steps"][0]["node_id"] == "after"
        if i % 2:
            target.unlink()  # some children start from nothing, others replace a good trace

    print(f"crash-kill: {stats}")
    assert stats["kills"] == _kills()
    assert stats["complete_after_kill"] > 0  # the kills did land after writes had happened
