"""The envelope's JSON form, built from a snapshot of a recorder's state.

The recorder gathers its state (under its locks) and reads the outside world (host, pid,
clock); this module only shapes the document, so what a trace looks like is decided here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from tracekit._version import __version__
from tracekit.config import TraceConfig
from tracekit.errors.events import ErrorEvent
from tracekit.trace.model import TRACE_VERSION, RunInfo, Step, TraceContext, rfc3339

__all__ = ["RECORDER_NAME", "build_envelope"]

RECORDER_NAME: Final = "tracekit"


def build_envelope(
    *,
    context: TraceContext,
    config: TraceConfig,
    run: RunInfo,
    outcome: str,
    steps: Sequence[Step],
    dropped: int,
    flow_errors: Sequence[ErrorEvent],
    errors_dropped: int,
    host: str,
    pid: int,
    now_perf_ns: int,
) -> dict[str, Any]:
    """The ``trace_version`` 1 document; ``steps`` are the kept ones, then those in flight."""
    envelope: dict[str, Any] = {
        "trace_version": TRACE_VERSION,
        "recorder": {"name": RECORDER_NAME, "version": __version__},
    }
    if context.runner_version is not None:
        envelope["runner_version"] = context.runner_version
    if config.git_sha:
        envelope["git_sha"] = config.git_sha
    pack: dict[str, Any] = {"pack_ref": context.pack_ref}
    if context.resolved_digest is not None:
        pack["resolved_digest"] = context.resolved_digest
    wall, perf = run.wall_anchor_ns, run.perf_anchor_ns
    run_json: dict[str, Any] = {"id": run.id, "outcome": outcome, "started_at": rfc3339(wall)}
    if outcome != "in_progress" and run.finished_ns is not None:
        run_json["finished_at"] = rfc3339(run.finished_ns)
    run_json["host"] = host
    run_json["pid"] = pid
    envelope.update(
        pack=pack,
        flow={"id": context.flow_id, "version": context.flow_version},
        run=run_json,
        buffer={"capacity": config.buffer, "dropped": dropped},
        steps=[s.to_json(wall, perf, now_perf_ns) for s in steps],
        errors=[e.to_json() for e in flow_errors],
        errors_dropped=errors_dropped,
    )
    return envelope
