"""Reading an envelope's steps as a timeline: absolute times, parent links, tree order.

Shared by every exporter and the HTML report, so they all agree on where a step starts, which
step is its parent and how a malformed trace is reported. Pure functions over the JSON dict:
safe to call from any thread.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CLOCK_SLACK_NS",
    "ExportError",
    "StepSpan",
    "Timeline",
    "error_of",
    "parse_time_ns",
    "read_timeline",
    "section",
]

#: Step times are written with microsecond precision, so a child may appear to start up to a
#: rounding step before its parent (or end just after it); within this slack it is clamped.
CLOCK_SLACK_NS: Final = 2_000

_TIME: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)
_TIME_EXAMPLE: Final = "an RFC 3339 time such as 2026-11-23T12:00:00.000000Z"
_STATUSES: Final = ("completed", "failed", "cancelled", "in_flight")


class ExportError(ValueError):
    """The envelope cannot be read: ``pointer`` (a JSON Pointer) says where, the text what."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer
        self.message = message


def parse_time_ns(text: Any, pointer: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time, exactly (no float rounding)."""
    m = _TIME.match(text) if isinstance(text, str) else None
    if m is None:
        raise ExportError(pointer, f"{text!r} is not {_TIME_EXAMPLE}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    offset = _dt.timedelta(0)
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        offset = sign * _dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        moment = _dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            tzinfo=_dt.timezone(offset),
        )
    except ValueError as exc:
        raise ExportError(pointer, f"{text!r} is not {_TIME_EXAMPLE} ({exc})") from None
    whole = int(moment.timestamp())
    return whole * 1_000_000_000 + int((frac or "").ljust(9, "0"))


@dataclass(slots=True)
class StepSpan:
    """One step placed in time. ``parent`` indexes :attr:`Timeline.spans` (None: a root)."""

    index: int
    step: Mapping[str, Any]
    step_id: str
    parent_step_id: str | None
    node_id: str
    status: str
    start_ns: int
    duration_ns: int
    estimated: bool  # the trace has no start time for it: laid out after the previous step
    parent: int | None = None
    depth: int = 0

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def pointer(self) -> str:
        return f"/steps/{self.index}"


@dataclass(frozen=True, slots=True)
class Timeline:
    """The steps of one trace on one clock; ``origin_ns`` is the earliest instant shown."""

    run_id: str
    run_start_ns: int | None
    run_end_ns: int | None
    origin_ns: int
    end_ns: int
    spans: tuple[StepSpan, ...]

    def children(self) -> dict[int | None, list[StepSpan]]:
        """Spans by parent index (``None`` holds the roots), each list ordered by start."""
        out: dict[int | None, list[StepSpan]] = {}
        for span in self.spans:
            out.setdefault(span.parent, []).append(span)
        for group in out.values():
            group.sort(key=lambda s: (s.start_ns, s.index))
        return out

    def tree_order(self) -> list[StepSpan]:
        """Depth first: every parent right before its children, siblings by start time."""
        kids = self.children()
        order: list[StepSpan] = []
        stack = list(reversed(kids.get(None, [])))
        while stack:
            span = stack.pop()
            order.append(span)
            stack.extend(reversed(kids.get(span.index, [])))
        return order


def _obj(value: Any, pointer: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ExportError(pointer, f"expected a JSON object, got {type(value).__name__}")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, pointer: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ExportError(f"{pointer}/{key}", f"expected a string, got {type(value).__name__}")
    return value


def _opt_int(obj: Mapping[str, Any], key: str, pointer: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ExportError(f"{pointer}/{key}", f"expected an integer >= 0, got {value!r}")
    return value


def section(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``obj[key]`` when it is an object, else an empty one (optional parts of a trace)."""
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def error_of(step: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The step's ``error`` object, if it has one."""
    error = step.get("error")
    return error if isinstance(error, Mapping) else None


def _read_step(index: int, raw: Any, cursor_ns: int) -> StepSpan:
    pointer = f"/steps/{index}"
    step = _obj(raw, pointer)
    node_id = _opt_str(step, "node_id", pointer) or "?"
    step_id = _opt_str(step, "step_id", pointer) or f"#{index}"
    status = _opt_str(step, "status", pointer) or ("failed" if error_of(step) else "completed")
    if status not in _STATUSES:
        raise ExportError(f"{pointer}/status", f"{status!r} is not one of {', '.join(_STATUSES)}")
    duration = _opt_int(step, "duration_ns", pointer)
    if duration is None:
        duration = (_opt_int(step, "duration_ms", pointer) or 0) * 1_000_000
    started = step.get("started_at")
    estimated = started is None
    start = cursor_ns if estimated else parse_time_ns(started, f"{pointer}/started_at")
    return StepSpan(
        index=index,
        step=step,
        step_id=step_id,
        parent_step_id=_opt_str(step, "parent_step_id", pointer),
        node_id=node_id,
        status=status,
        start_ns=start,
        duration_ns=duration,
        estimated=estimated,
    )


def _link_parents(spans: Sequence[StepSpan]) -> None:
    by_id: dict[str, int] = {}
    for span in spans:
        by_id.setdefault(span.step_id, span.index)
    for span in spans:
        if span.parent_step_id is not None:
            parent = by_id.get(span.parent_step_id)
            if parent is not None and parent != span.index:
                span.parent = parent
    # A hostile trace may loop (a -> b -> a): cut the loop where it is found.
    for span in spans:
        seen = {span.index}
        cur = span.parent
        depth = 0
        while cur is not None:
            if cur in seen:
                span.parent = None
                depth = 0
                break
            seen.add(cur)
            depth += 1
            cur = spans[cur].parent
        span.depth = depth


def _clamp_rounding(spans: Sequence[StepSpan]) -> None:
    # Parents before children, so each child is clamped into its parent's final interval.
    for span in sorted(spans, key=lambda s: s.depth):
        if span.parent is None:
            continue
        parent = spans[span.parent]
        if 0 < parent.start_ns - span.start_ns <= CLOCK_SLACK_NS:
            span.duration_ns = max(0, span.end_ns - parent.start_ns)
            span.start_ns = parent.start_ns
        overshoot = span.end_ns - parent.end_ns
        if 0 < overshoot <= CLOCK_SLACK_NS:
            span.duration_ns = max(0, span.duration_ns - overshoot)


def read_timeline(envelope: Any) -> Timeline:
    """Every step of ``envelope`` on one clock, with parents resolved; raises :class:`ExportError`.

    Traces in the seed format (no ``run``, no step times) still read: steps without
    ``started_at`` are laid end to end in envelope order and flagged ``estimated``.
    """
    env = _obj(envelope, "")
    run = env.get("run")
    run_obj = _obj(run, "/run") if run is not None else {}
    run_start = None
    if run_obj.get("started_at") is not None:
        run_start = parse_time_ns(run_obj["started_at"], "/run/started_at")
    run_end = None
    if run_obj.get("finished_at") is not None:
        run_end = parse_time_ns(run_obj["finished_at"], "/run/finished_at")
    raw_steps = env.get("steps", [])
    if not isinstance(raw_steps, list):
        raise ExportError("/steps", f"expected a JSON array, got {type(raw_steps).__name__}")
    spans: list[StepSpan] = []
    cursor = run_start or 0
    for index, raw in enumerate(raw_steps):
        span = _read_step(index, raw, cursor)
        spans.append(span)
        cursor = max(cursor, span.end_ns) if span.estimated else cursor
    _link_parents(spans)
    _clamp_rounding(spans)
    starts = [s.start_ns for s in spans]
    ends = [s.end_ns for s in spans]
    origin = min([*starts, *([run_start] if run_start is not None else [])], default=0)
    end = max([*ends, *([run_end] if run_end is not None else []), origin])
    run_id = _opt_str(run_obj, "id", "/run") or ""
    return Timeline(run_id, run_start, run_end, origin, end, tuple(spans))
