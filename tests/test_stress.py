"""Concurrency stress: threads and asyncio tasks record the same nodes at once while another
thread keeps flushing.

No step is lost (the buffer is big enough to count them all), none is attributed to another
thread or task (each step's output hash and error message match its own input), and every file
the flusher wrote is a valid trace. The soak variant repeats the round
``TRACEKIT_SOAK_ITERATIONS / 5`` times (2 by default, 8 in CI).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.capture.hashing import hash_hex
from tracekit.trace.schema import validate_document

THREADS = 8
STEPS_PER_THREAD = 75  # each with a nested step of the same node: 2 steps
TASKS = 1000
FAIL_EVERY = 37  # some steps fail, with an error naming their own input
SCHEMA_CHECKED_SNAPSHOTS = 2  # the others are parsed and checked for duplicates only
DEFAULT_SOAK_ITERATIONS = 10
ITERATIONS_PER_ROUND = 5  # a round costs several crash-kill iterations: CI (40) runs 8 rounds
HOLD_EVERY = 25  # every 25th step of a thread (250th task) waits for two flushes, its step open


class Flushes:
    """Counts the flusher's flushes, so workers can hold steps open across whole flushes."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def done_one(self) -> None:
        with self.cond:
            self.count += 1
            self.cond.notify_all()

    def wait_two_more(self) -> None:
        # The second flush after now starts after now: it sees whatever is in flight now.
        with self.cond:
            target = self.count + 2
            self.cond.wait_for(lambda: self.count >= target)


@dataclass
class Expected:
    """What each input hash must come out with: its output hash, or its error message."""

    outputs: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, payload: Any, output: Any = None, error: str | None = None) -> None:
        with self.lock:
            key = hash_hex(payload)
            assert key not in self.outputs and key not in self.errors
            if error is None:
                self.outputs[key] = hash_hex(output)
            else:
                self.errors[key] = error


def _end(rec: TraceRecorder, expected: Expected, ev: NodeEvent, payload: dict[str, Any]) -> None:
    """End ``ev``'s step: every FAIL_EVERY-th fails, the others echo their payload."""
    if (payload["i"] % FAIL_EVERY) == 0:
        message = f"failed: {payload}"
        rec.on_node_error(ev, ValueError(message))
        expected.add(payload, error=message)
    else:
        out = {"echo": payload}
        rec.on_node_end(ev, out)
        expected.add(payload, out)


def _one(rec: TraceRecorder, expected: Expected, node: str, payload: dict[str, Any]) -> None:
    ev = NodeEvent(node, "comp", "call", payload=payload)
    rec.on_node_start(ev)
    _end(rec, expected, ev, payload)


def _thread_worker(
    rec: TraceRecorder, expected: Expected, who: str, start: threading.Barrier, flushes: Flushes
) -> None:
    start.wait()
    for i in range(STEPS_PER_THREAD):
        outer = {"who": who, "i": i, "level": "outer"}
        ev = NodeEvent("transform", "comp", "call", payload=outer)
        rec.on_node_start(ev)
        _one(rec, expected, "transform", {"who": who, "i": i, "level": "inner"})  # same node, nested
        if i % HOLD_EVERY == HOLD_EVERY - 1:
            flushes.wait_two_more()  # flushed while this thread's step is in flight
        out = {"echo": outer}
        rec.on_node_end(ev, out)
        expected.add(outer, out)


async def _task(rec: TraceRecorder, expected: Expected, i: int, flushes: Flushes) -> None:
    payload = {"who": "task", "i": i}
    ev = NodeEvent("transform", "comp", "call", payload=payload)  # the threads' node id too
    rec.on_node_start(ev)
    for _ in range(3):
        await asyncio.sleep(0)  # every other task runs in between
    if i % (HOLD_EVERY * 10) == 0:
        await asyncio.to_thread(flushes.wait_two_more)
    _end(rec, expected, ev, payload)


def _tasks_worker(
    rec: TraceRecorder, expected: Expected, start: threading.Barrier, flushes: Flushes
) -> None:
    async def main() -> None:
        start.wait()
        await asyncio.gather(*(_task(rec, expected, i, flushes) for i in range(TASKS)))

    asyncio.run(main())


def _round(tmp_path: Path) -> dict[str, int]:
    out = tmp_path / "stress.json"
    total = THREADS * STEPS_PER_THREAD * 2 + TASKS
    rec = TraceRecorder(
        TraceConfig.create(mode="always", out=out, buffer=total),
        TraceContext("p@1", "stress", "1"),
    )
    expected = Expected()
    start = threading.Barrier(THREADS + 2)
    snapshots: list[bytes] = []
    done = threading.Event()
    flushes = Flushes()

    def flusher() -> None:
        start.wait()
        while not done.is_set():
            if rec.flush_buffer() is not None:
                snapshots.append(out.read_bytes())
            flushes.done_one()

    workers = [
        threading.Thread(target=_thread_worker, args=(rec, expected, f"thread{k}", start, flushes))
        for k in range(THREADS)
    ]
    workers.append(threading.Thread(target=_tasks_worker, args=(rec, expected, start, flushes)))
    flush_thread = threading.Thread(target=flusher)
    for t in [*workers, flush_thread]:
        t.start()
    for t in workers:
        t.join()
    done.set()
    flush_thread.join()

    assert rec.last_flush_error is None
    assert rec.misuse == {}
    assert rec.flush_buffer() == out
    final = orjson.loads(out.read_bytes())
    assert validate_document(final) == []
    steps = final["steps"]

    # Nothing lost, nothing twice, nothing still in flight.
    assert len(steps) == total == len(expected.outputs) + len(expected.errors)
    assert final["buffer"]["dropped"] == 0
    assert len({s["step_id"] for s in steps}) == total
    # Nothing attributed to another thread or task.
    for s in steps:
        key = s["input_hash"]["value"]
        if s["status"] == "completed":
            assert s["output_hash"]["value"] == expected.outputs[key]
        else:
            assert s["status"] == "failed"
            assert s["error"]["message"] == expected.errors[key]

    # Every intermediate file was a trace: parsed, no step twice, a sample fully schema-checked.
    in_flight = 0
    for k, data in enumerate(snapshots):
        doc = orjson.loads(data)
        ids = [s["step_id"] for s in doc["steps"]]
        assert len(ids) == len(set(ids))
        in_flight += sum(s["status"] == "in_flight" for s in doc["steps"])
        if k % max(1, len(snapshots) // SCHEMA_CHECKED_SNAPSHOTS) == 0:
            assert validate_document(doc) == []
    assert len(snapshots) >= 2 * (STEPS_PER_THREAD // HOLD_EVERY)
    assert in_flight > 0  # the flushes did catch steps mid-way
    return {"steps": total, "snapshots": len(snapshots), "in_flight_seen": in_flight}


def test_threads_and_tasks_record_concurrently_while_flushing(tmp_path: Path) -> None:
    stats = _round(tmp_path)
    print(f"stress: {stats}")


@pytest.mark.soak
def test_concurrency_soak(tmp_path: Path) -> None:
    iterations = int(os.environ.get("TRACEKIT_SOAK_ITERATIONS") or DEFAULT_SOAK_ITERATIONS)
    rounds = max(1, iterations // ITERATIONS_PER_ROUND)
    steps = snapshots = 0
    for r in range(rounds):
        stats = _round(tmp_path / f"r{r}")
        steps += stats["steps"]
        snapshots += stats["snapshots"]
    print(f"stress soak: {rounds} rounds, {steps} steps, {snapshots} concurrent flushes, none lost")
