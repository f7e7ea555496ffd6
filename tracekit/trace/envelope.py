"""The envelope's JSON form, built from a snapshot of a recorder's state.

The recorder gathers its state (under its locks) and reads the outside world (host, pid,
clock); this module only shapes the document, so what a trace looks like is decided here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from tracekit._version import __version__
from tracekit.config import TraceConfig
from tracekit.errors.events import ErrorEvent
from tracekit.trace.model import TRACE_VERSION, RunInfo, Step, TraceContext, rfc3339

__all__ = ["RECORDER_NAME", "build_envelope", "encode_envelope"]

RECORDER_NAME: Final = "tracekit"


def build_envelope(
    *,
    context: TraceContext,
    config: TraceConfig,
    run: RunInfo,
    outcome: str,
    steps: Sequence[Step],
    dropped: int,
    failures_dropped: int = 0,
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
        pinned={"capacity": config.max_failures, "dropped": failures_dropped},
        steps=_steps_json(steps, outcome, wall, perf, now_perf_ns),
        errors=[e.to_json() for e in flow_errors],
        errors_dropped=errors_dropped,
    )
    return envelope


def _steps_json(
    steps: Sequence[Step], outcome: str, wall: int, perf: int, now_perf_ns: int
) -> list[dict[str, Any]]:
    """The steps' JSON; each failed step says whether it was ``recovered``.

    Recovered: the run succeeded anyway, or a later step of the same node completed (a retry, a
    rerun, the next task of a worker). Otherwise the failure ended the run (or, in an
    ``in_progress`` trace, may yet).
    """
    last_completed: dict[str, int] = {}
    for s in steps:
        if s.status == "completed":
            last_completed[s.node_id] = s.seq
    out = []
    seen: dict[str, int] = {}
    for s in steps:
        js = s.to_json(wall, perf, now_perf_ns)
        sid = js["step_id"]
        n = seen.get(sid, 0)
        seen[sid] = n + 1
        if n:
            # A runner's id given to several attempts (a retried task's natural id): unique in
            # the trace, the runner's id kept as given.
            js["runner_step_id"] = sid
            js["step_id"] = f"{sid}#{n + 1}"
        if s.status == "failed":
            js["recovered"] = outcome == "success" or last_completed.get(s.node_id, -1) > s.seq
        out.append(js)
    return out


_DUMP_OPTIONS: Final = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def encode_envelope(envelope: dict[str, Any]) -> bytes:
    """The trace's bytes; strings that are not valid UTF-8 are kept, escaped (``\\udcff``).

    Ids from ``os.fsdecode`` of undecodable bytes hold lone surrogates, which UTF-8 cannot
    carry; one such id must not make every later flush of the run fail.
    """
    try:
        return orjson.dumps(envelope, option=_DUMP_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if "UTF-8" not in str(exc):
            raise
        return orjson.dumps(_escaped(envelope), option=_DUMP_OPTIONS)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value
