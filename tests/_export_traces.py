"""Traces written by the real recorder, shared by the export and report tests.

One run holds every shape the exporters must draw: nested steps, two children of one step
running at once (asyncio tasks), two top-level steps overlapping on threads, a failure with a
cause, a step still in flight, and a runner-level error.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson

from tracekit import NodeEvent, TraceContext, TraceRecorder


class FetchError(RuntimeError):
    hints = ("Check that the upstream bucket exists.",)


def _overlapping_threads(recorder: TraceRecorder) -> None:
    # Each step waits inside itself for the other, so both are open at the same time.
    barrier = threading.Barrier(2, timeout=10)

    def worker(name: str) -> None:
        with recorder.step(name, payload={"worker": name}):
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(f"thread_{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


async def _concurrent_children(recorder: TraceRecorder) -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    async def child(name: str) -> None:
        async with recorder.step(name):  # the parent comes from the context the task inherits
            started.append(name)
            if len(started) == 2:
                both_started.set()
            await both_started.wait()

    async with recorder.step("fan_out"):
        await asyncio.gather(child("shard_a"), child("shard_b"))


def write_sample_trace(directory: Path, node_id: str = "load", capture: bool = False) -> dict[str, Any]:
    """Run a small failing pipeline with the real recorder; return the trace it wrote."""
    out = directory / "trace.json"
    recorder = TraceRecorder.from_env(
        TraceContext(pack_ref="etl@1.4.0", flow_id="nightly", flow_version="3"), out=str(out),
        capture_inputs=capture,
    )
    try:
        with recorder.run():
            with recorder.step(node_id, payload={"day": "2026-11-23"}) as load:
                with recorder.step("read"), recorder.step("parse"):
                    pass
                with recorder.step("check"):
                    pass
                load.set_output({"rows": 3})
            asyncio.run(_concurrent_children(recorder))
            _overlapping_threads(recorder)
            recorder.on_node_start(NodeEvent("publish", "sink", "write", {"to": "s3"}))  # never ends
            recorder.emit_error("scheduler", message="worker lost heartbeat", tags={"worker": "w1"})
            with recorder.step("transform", payload={"bucket": "raw", "api_token": "hunter2"}):
                try:
                    raise KeyError("bucket")
                except KeyError as exc:
                    raise FetchError("could not fetch <input>") from exc
    except FetchError:
        pass
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    return doc


def by_node(envelope: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in envelope["steps"]}
