"""Rules a trace must keep that its JSON Schema cannot state.

A schema checks shapes; it cannot check that month 13 does not exist, that a run does not finish
before it starts, that a step's parent is a step of the same trace, or that two counters agree.
:func:`semantic_problems` checks those; :func:`tracekit.trace.check.check_trace` runs the version gate,
a depth bound, the schema and these rules together, which is what ``tracekit validate`` reports.

Every rule tolerates documents that already break the schema (wrong types are skipped here, the
schema reports them), so one mistake is reported once, in the schema's words.

Threading contract: pure functions of their argument; safe from any thread.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterator
from typing import Any, Final

from tracekit.trace.model import TRACE_VERSION
from tracekit.trace.schema import SchemaProblem

__all__ = [
    "HASH_LENGTHS",
    "RULES",
    "SUPPORTED_TRACE_VERSIONS",
    "parse_time",
    "semantic_problems",
]

SUPPORTED_TRACE_VERSIONS: Final = (TRACE_VERSION,)

#: Hex digits of a digest, by algorithm; other algorithms are allowed and not length-checked.
HASH_LENGTHS: Final = {
    "blake3": 64,
    "sha256": 64,
    "sha3_256": 64,
    "blake2s": 64,
    "sha1": 40,
    "md5": 32,
    "sha384": 96,
    "sha512": 128,
    "sha3_512": 128,
    "blake2b": 128,
}

_NS_PER_MS: Final = 1_000_000
#: How long after the run finished a step may seem to start. The recorder times steps on the
#: monotonic clock from the run's start but reads ``finished_at`` from the wall clock, which
#: NTP may slew (at most 500 ppm) while the run goes on: 1 s, plus 0.1% of the run's length.
RUN_END_SLACK: Final = _dt.timedelta(seconds=1)
RUN_END_SLACK_RATIO: Final = 0.001
# RFC 3339 allows a leap second (:60); datetime does not, so it is parsed as :59.
_LEAP_SECOND: Final = re.compile(r"(T\d{2}:\d{2}):60")

Problems = Iterator[SchemaProblem]
Rule = Callable[[dict[str, Any]], Problems]


def _p(pointer: str, message: str, rule: str) -> SchemaProblem:
    return SchemaProblem(pointer, message, rule)


def _steps(doc: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    steps = doc.get("steps")
    if not isinstance(steps, list):
        return []
    return [(i, s) for i, s in enumerate(steps) if isinstance(s, dict)]


def parse_time(value: Any) -> _dt.datetime | None:
    """An RFC 3339 time as an aware datetime, or None when it is not one."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    text = _LEAP_SECOND.sub(r"\1:59", value)
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _times(doc: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    run = doc.get("run")
    if isinstance(run, dict):
        for key in ("started_at", "finished_at"):
            if key in run:
                yield f"/run/{key}", run[key]
    for i, step in _steps(doc):
        if "started_at" in step:
            yield f"/steps/{i}/started_at", step["started_at"]
    errors = doc.get("errors")
    if isinstance(errors, list):
        for i, event in enumerate(errors):
            if isinstance(event, dict) and "time" in event:
                yield f"/errors/{i}/time", event["time"]


def rule_times_parse(doc: dict[str, Any]) -> Problems:
    """Every time is a real RFC 3339 time with an offset (the schema's pattern allows month 13)."""
    for pointer, value in _times(doc):
        if isinstance(value, str) and parse_time(value) is None:
            yield _p(pointer, f"{value!r} is not a valid RFC 3339 date-time with a time zone",
                     "rfc3339")


def rule_run_order(doc: dict[str, Any]) -> Problems:
    """A run cannot finish before it started."""
    run = doc.get("run")
    if not isinstance(run, dict):
        return
    started, finished = parse_time(run.get("started_at")), parse_time(run.get("finished_at"))
    if started is not None and finished is not None and finished < started:
        yield _p("/run/finished_at", f"finished_at {run['finished_at']} is before started_at "
                 f"{run['started_at']}", "time_order")


def rule_steps_within_run(doc: dict[str, Any]) -> Problems:
    """No step starts after its run finished (beyond the clocks' slack, :data:`RUN_END_SLACK`)."""
    run = doc.get("run")
    if not isinstance(run, dict):
        return
    started, finished = parse_time(run.get("started_at")), parse_time(run.get("finished_at"))
    if finished is None:
        return
    slack = RUN_END_SLACK
    if started is not None and finished > started:
        slack += (finished - started) * RUN_END_SLACK_RATIO
    for i, step in _steps(doc):
        begun = parse_time(step.get("started_at"))
        if begun is not None and begun > finished + slack:
            yield _p(f"/steps/{i}/started_at", f"the step starts at {step['started_at']}, after its run "
                     f"finished at {run['finished_at']}; allowed: a step starts before its run finishes",
                     "step_within_run")


def rule_failed_has_error(doc: dict[str, Any]) -> Problems:
    """A failed step says why; a completed one has no error."""
    for i, step in _steps(doc):
        status = step.get("status")
        if status == "failed" and "error" not in step:
            yield _p(f"/steps/{i}", "a failed step has no error; allowed: status 'failed' with an "
                     "'error' object", "failed_has_error")
        if status == "completed" and step.get("error") is not None:
            yield _p(f"/steps/{i}/error", "a completed step has an error; allowed: status 'failed', "
                     "'cancelled' or 'in_flight' for a step with an error", "completed_without_error")


def rule_durations_agree(doc: dict[str, Any]) -> Problems:
    """``duration_ms`` is ``duration_ns // 1e6`` when both are present."""
    for i, step in _steps(doc):
        ns, ms = step.get("duration_ns"), step.get("duration_ms")
        if type(ns) is int and type(ms) is int and ns >= 0 and ms != ns // _NS_PER_MS:
            yield _p(f"/steps/{i}/duration_ms", f"duration_ms is {ms} but duration_ns {ns} gives "
                     f"{ns // _NS_PER_MS} (duration_ns // 1000000)", "duration_consistent")


def rule_hash_lengths(doc: dict[str, Any]) -> Problems:
    """A digest has as many hex digits as its algorithm writes."""
    for i, step in _steps(doc):
        for key in ("input_hash", "output_hash", "state_delta_hash"):
            h = step.get(key)
            if not isinstance(h, dict):
                continue
            algorithm, value = h.get("algorithm"), h.get("value")
            if not isinstance(algorithm, str) or not isinstance(value, str):
                continue
            want = HASH_LENGTHS.get(algorithm.lower())
            if want is not None and len(value) != want:
                yield _p(f"/steps/{i}/{key}/value", f"a {algorithm} digest has {want} hex digits, "
                         f"this one has {len(value)}", "hash_length")


def rule_step_ids(doc: dict[str, Any]) -> Problems:
    """``step_id``s are unique, and no step is its own parent.

    A ``parent_step_id`` may name a step that is not in the trace: the ring buffer may have
    dropped it, or it ran in another process (a Celery parent task, a remote OTel span).
    """
    first: dict[str, int] = {}
    for i, step in _steps(doc):
        sid = step.get("step_id")
        if isinstance(sid, str):
            if sid in first:
                yield _p(f"/steps/{i}/step_id", f"step_id {sid!r} is also the step_id of "
                         f"/steps/{first[sid]}; allowed: unique step ids", "unique_step_id")
            else:
                first[sid] = i
    for i, step in _steps(doc):
        parent = step.get("parent_step_id")
        if isinstance(parent, str) and parent == step.get("step_id"):
            yield _p(f"/steps/{i}/parent_step_id", f"step {parent!r} is its own parent; allowed: "
                     "another step's id (in this trace or not), or null", "parent_not_self")


def _pinnable(doc: dict[str, Any]) -> int:
    """Finished steps that may be pinned: failed or cancelled ones and their ancestors."""
    steps = [st for _, st in _steps(doc) if st.get("status", "completed") != "in_flight"]
    parent = {st.get("step_id"): st.get("parent_step_id") for st in steps}
    pinned: set[Any] = set()
    for st in steps:
        if st.get("status") in ("failed", "cancelled"):
            sid = st.get("step_id")
            for _ in range(64):
                if sid is None or sid in pinned:
                    break
                pinned.add(sid)
                sid = parent.get(sid)
    return sum(1 for st in steps if st.get("step_id") in pinned)


def rule_buffer(doc: dict[str, Any]) -> Problems:
    """The ring buffer never holds more than its capacity, and drops only when full."""
    buf = doc.get("buffer")
    if not isinstance(buf, dict):
        return
    capacity, dropped = buf.get("capacity"), buf.get("dropped")
    if type(capacity) is not int or capacity < 1:
        return
    finished = sum(1 for _, s in _steps(doc) if s.get("status", "completed") != "in_flight")
    pinned = doc.get("pinned")
    over = finished
    if isinstance(pinned, dict):
        # Failed and cancelled steps, and the ancestors of such, may be pinned beyond the ring.
        over = finished - _pinnable(doc)
    if over > capacity:
        yield _p("/buffer/capacity", f"{over} finished steps are recorded but the buffer holds "
                 f"at most {capacity}" + (" besides pinned failures" if over != finished else ""),
                 "buffer_consistent")
    if type(dropped) is int and dropped > 0 and finished < capacity:
        yield _p("/buffer/dropped", f"{dropped} steps were dropped but the buffer holds only "
                 f"{finished} of {capacity}; a ring buffer drops only when full", "buffer_consistent")


def rule_errors_dropped(doc: dict[str, Any]) -> Problems:
    """Error events are dropped only past the cap, so some were kept."""
    dropped, errors = doc.get("errors_dropped"), doc.get("errors")
    if type(dropped) is int and dropped > 0 and isinstance(errors, list) and not errors:
        yield _p("/errors_dropped", f"{dropped} error events were dropped but none were kept; "
                 "events are dropped only past the cap", "errors_dropped_consistent")


def _error_objects(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, step in _steps(doc):
        if isinstance(step.get("error"), dict):
            yield f"/steps/{i}/error", step["error"]
    errors = doc.get("errors")
    if isinstance(errors, list):
        for i, event in enumerate(errors):
            if isinstance(event, dict) and isinstance(event.get("error"), dict):
                yield f"/errors/{i}/error", event["error"]


def rule_chain_order(doc: dict[str, Any]) -> Problems:
    """An error chain starts with the raised error; only that first link is 'raised'."""
    for pointer, error in _error_objects(doc):
        details = error.get("details")
        links = details.get("chain") if isinstance(details, dict) else None
        if not isinstance(links, list):
            continue
        for j, link in enumerate(links):
            relation = link.get("relation") if isinstance(link, dict) else None
            if j == 0 and relation not in (None, "raised"):
                yield _p(f"{pointer}/details/chain/0/relation", f"the first link of a chain is the "
                         f"raised error; allowed: 'raised', not {relation!r}", "chain_order")
            elif j > 0 and relation == "raised":
                yield _p(f"{pointer}/details/chain/{j}/relation", "only the first link of a chain "
                         "is 'raised'; allowed: 'cause' or 'context'", "chain_order")


def rule_invocation_matches(doc: dict[str, Any]) -> Problems:
    """A captured invocation belongs to its step: same component and operation."""
    for i, step in _steps(doc):
        inv = step.get("invocation_json")
        if not isinstance(inv, dict):
            continue
        for key in ("component_id", "operation"):
            if isinstance(inv.get(key), str) and isinstance(step.get(key), str) and inv[key] != step[key]:
                yield _p(f"/steps/{i}/invocation_json/{key}", f"{inv[key]!r} differs from the "
                         f"step's {key} {step[key]!r}", "invocation_matches")


#: Every rule, by the name printed with its problems.
RULES: Final[dict[str, Rule]] = {
    "rfc3339": rule_times_parse,
    "time_order": rule_run_order,
    "step_within_run": rule_steps_within_run,
    "failed_has_error": rule_failed_has_error,
    "duration_consistent": rule_durations_agree,
    "hash_length": rule_hash_lengths,
    "step_ids": rule_step_ids,
    "buffer_consistent": rule_buffer,
    "errors_dropped_consistent": rule_errors_dropped,
    "chain_order": rule_chain_order,
    "invocation_matches": rule_invocation_matches,
}


def semantic_problems(document: dict[str, Any]) -> list[SchemaProblem]:
    """Every semantic problem of ``document``, rule by rule."""
    found: list[SchemaProblem] = []
    for rule in RULES.values():
        found.extend(rule(document))
    return found
