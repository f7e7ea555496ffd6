"""Export a trace to the Chrome Trace Event Format (JSON object form).

The result opens in Perfetto (ui.perfetto.dev) and chrome://tracing. Each step is a complete
event (``"ph": "X"``) on a lane (``tid``): a child sits on its parent's lane inside the parent's
span, so the viewers draw it nested; steps that overlap without nesting (concurrent siblings)
get lanes of their own, because both viewers need the events of one lane to nest strictly.
Failures are coloured (``cname``) and marked with an instant event where they happened.

Threading contract: :func:`to_chrome_trace` is a pure function of its argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from tracekit.export._timeline import (
    StepSpan,
    Timeline,
    error_of,
    parse_time_ns,
    read_timeline,
    section,
)

__all__ = ["DISPLAY_TIME_UNIT", "STATUS_COLOURS", "to_chrome_trace"]

DISPLAY_TIME_UNIT: Final = "ms"
#: Reserved colour names of the trace viewers, by step status (completed steps keep the default).
STATUS_COLOURS: Final[Mapping[str, str]] = {
    "failed": "terrible",
    "cancelled": "grey",
    "in_flight": "yellow",
}
_RUN_LANE: Final = 0  # process-wide instant events (runner-level errors) and the run's name


def _us(ns: int) -> float:
    # Microseconds, keeping nanosecond precision (the format allows fractional timestamps).
    return round(ns / 1000, 3)


def _hash_text(value: Any) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get("value"), str):
        return f"{value.get('algorithm', 'blake3')}:{value['value']}"
    return None


def _args(span: StepSpan) -> dict[str, Any]:
    step = span.step
    args: dict[str, Any] = {
        "step_id": span.step_id,
        "parent_step_id": span.parent_step_id,
        "node_id": span.node_id,
        "component_id": step.get("component_id"),
        "operation": step.get("operation"),
        "attempt": step.get("attempt", 1),
        "status": span.status,
        "duration_ns": span.duration_ns,
    }
    for key in ("input_hash", "output_hash", "state_delta_hash"):
        text = _hash_text(step.get(key))
        if text is not None:
            args[key] = text
    if span.estimated:
        args["timing"] = "estimated: the trace records no start time for this step"
    issues = step.get("validation_issues")
    if isinstance(issues, list) and issues:
        args["validation_issues"] = issues
    error = error_of(step)
    if error is not None:
        args["error_code"] = error.get("code")
        args["error_message"] = error.get("message")
    return args


class _Lanes:
    """Lanes of strictly nested intervals: each lane is a stack of the intervals still open."""

    def __init__(self) -> None:
        self._stacks: list[list[StepSpan]] = []
        self.lane_of: dict[int, int] = {}

    def _top(self, lane: int, at_ns: int) -> StepSpan | None:
        stack = self._stacks[lane]
        while stack and stack[-1].end_ns <= at_ns:
            stack.pop()
        return stack[-1] if stack else None

    def place(self, span: StepSpan, spans: tuple[StepSpan, ...]) -> int:
        lane = self._parent_lane(span, spans)
        if lane is None:
            lane = next((i for i in range(len(self._stacks)) if self._top(i, span.start_ns) is None), None)
        if lane is None:
            lane = len(self._stacks)
            self._stacks.append([])
        self._stacks[lane].append(span)
        self.lane_of[span.index] = lane
        return lane

    def _parent_lane(self, span: StepSpan, spans: tuple[StepSpan, ...]) -> int | None:
        if span.parent is None or span.parent not in self.lane_of:
            return None
        parent = spans[span.parent]
        lane = self.lane_of[span.parent]
        fits = parent.start_ns <= span.start_ns and span.end_ns <= parent.end_ns
        return lane if fits and self._top(lane, span.start_ns) is parent else None

    def __len__(self) -> int:
        return len(self._stacks)


def _assign_lanes(timeline: Timeline) -> _Lanes:
    lanes = _Lanes()
    # Longer (enclosing) intervals first at equal starts, parents before children at ties.
    for span in sorted(timeline.spans, key=lambda s: (s.start_ns, -s.end_ns, s.depth, s.index)):
        lanes.place(span, timeline.spans)
    return lanes


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _metadata(envelope: Mapping[str, Any], pid: int, lanes: int) -> list[dict[str, Any]]:
    flow, run, pack = (section(envelope, k) for k in ("flow", "run", "pack"))
    title = f"flow {_str(flow.get('id'), '?')} v{_str(flow.get('version'), '?')}"
    if run.get("id"):
        title += f" · run {_str(run.get('id'))}"
    labels = [x for x in (_str(pack.get("pack_ref")), _str(run.get("outcome"))) if x]
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": _RUN_LANE, "args": {"name": title}},
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": _RUN_LANE, "args": {"name": "run"}},
        {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": _RUN_LANE, "args": {"sort_index": 0}},
    ]
    if labels:
        events.append(
            {"ph": "M", "name": "process_labels", "pid": pid, "tid": _RUN_LANE,
             "args": {"labels": ", ".join(labels)}}
        )
    for lane in range(1, lanes + 1):
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": lane,
                       "args": {"name": f"lane {lane}"}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": lane,
                       "args": {"sort_index": lane}})
    return events


def _step_events(span: StepSpan, tid: int, pid: int, origin: int) -> list[dict[str, Any]]:
    event: dict[str, Any] = {
        "name": span.node_id,
        "cat": _str(span.step.get("operation"), "step") or "step",
        "ph": "X",
        "ts": _us(span.start_ns - origin),
        "dur": _us(span.duration_ns),
        "pid": pid,
        "tid": tid,
        "args": _args(span),
    }
    colour = STATUS_COLOURS.get(span.status)
    if colour is not None:
        event["cname"] = colour
    events = [event]
    error = error_of(span.step)
    if error is not None:
        details = section(error, "details")
        events.append({
            "name": f"{span.status}: {_str(error.get('code'), 'error')}",
            "cat": "error",
            "ph": "i",
            "s": "t",
            "ts": _us(span.end_ns - origin),
            "pid": pid,
            "tid": tid,
            "cname": STATUS_COLOURS.get(span.status, "terrible"),
            "args": {
                "step_id": span.step_id,
                "node_id": span.node_id,
                "type": details.get("type"),
                "message": error.get("message"),
                "hints": details.get("hints", []),
            },
        })
    return events


def _runner_errors(envelope: Mapping[str, Any], pid: int, origin: int) -> list[dict[str, Any]]:
    raw = envelope.get("errors")
    events: list[dict[str, Any]] = []
    if not isinstance(raw, list):
        return events
    for i, err in enumerate(raw):
        if not isinstance(err, Mapping):
            continue
        at = parse_time_ns(err.get("time"), f"/errors/{i}/time")
        events.append({
            "name": f"{_str(err.get('scope'), 'runner')} error: {_str(err.get('code'), 'error')}",
            "cat": "error",
            "ph": "i",
            "s": "p",  # process-wide: it belongs to no step
            "ts": _us(max(0, at - origin)),
            "pid": pid,
            "tid": _RUN_LANE,
            "cname": "terrible",
            "args": {k: err.get(k) for k in ("scope", "code", "message", "node_id", "step_id", "tags")},
        })
    return events


def to_chrome_trace(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The trace as a Chrome Trace Event Format object: ``{"traceEvents": [...], ...}``.

    Times are microseconds from the earliest instant of the trace (the run's start, or an
    earlier step kept from a worker's history); ``otherData.origin`` says when that was.
    Raises :class:`~tracekit.export.ExportError` naming the field when the envelope is malformed.
    """
    timeline = read_timeline(envelope)
    run = section(envelope, "run")
    pid = run.get("pid")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else 1
    origin = timeline.origin_ns
    lanes = _assign_lanes(timeline)
    events = _metadata(envelope, pid, len(lanes))
    for span in sorted(timeline.spans, key=lambda s: (s.start_ns, s.depth, s.index)):
        events.extend(_step_events(span, lanes.lane_of[span.index] + 1, pid, origin))
    events.extend(_runner_errors(envelope, pid, origin))
    other: dict[str, Any] = {"exporter": "tracekit", "origin_unix_ns": str(origin)}
    other.update({k: str(run[k]) for k in ("id", "outcome", "started_at", "host") if k in run})
    return {"traceEvents": events, "displayTimeUnit": DISPLAY_TIME_UNIT, "otherData": other}

