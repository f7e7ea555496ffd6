"""Export a trace as OTLP/JSON: the JSON form of an ``ExportTraceServiceRequest``.

The output follows the OTLP JSON encoding (opentelemetry-proto ``docs/specification.md``):
lowerCamelCase field names, trace and span ids as lowercase hex (not base64), 64-bit integers as
decimal strings and enums as integers. It can be POSTed to a collector's ``/v1/traces`` or
loaded by any tool that reads OTLP files.

The run becomes a root span named after the flow; each step a child span named after its node.
Ids are derived, not random, so exporting the same trace twice gives the same ids: the trace id
is the run id when that is already 32 hex digits (a UUID), else a blake3 hash of it; a span id
is the step id when that is already 16 hex digits (steps recorded from OpenTelemetry spans),
else a blake3 hash of (run id, step id).

Threading contract: :func:`to_otlp_json` is a pure function of its argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import blake3

from tracekit.export._timeline import (
    StepSpan,
    Timeline,
    error_of,
    parse_time_ns,
    read_timeline,
    section,
)

__all__ = [
    "SCOPE_NAME",
    "SPAN_KIND_INTERNAL",
    "STATUS_CODE_ERROR",
    "STATUS_CODE_UNSET",
    "span_id_for",
    "to_otlp_json",
    "trace_id_for",
]

SCOPE_NAME: Final = "tracekit"
# Enum values as the OTLP JSON encoding requires (integers, not names).
SPAN_KIND_INTERNAL: Final = 1
STATUS_CODE_UNSET: Final = 0
STATUS_CODE_ERROR: Final = 2
_HEX32: Final = re.compile(r"^[0-9a-f]{32}$")
_HEX16: Final = re.compile(r"^[0-9a-f]{16}$")
_ROOT: Final = "\x00run"  # the run's own span: no step id can be this


def _derive(*parts: str, size: int) -> str:
    h = blake3.blake3("\x00".join(parts).encode("utf-8", "surrogatepass")).digest(size)
    if not any(h):  # an all-zero id means "no id" in OTLP
        h = h[:-1] + b"\x01"
    return h.hex()


def trace_id_for(run_id: str) -> str:
    """The OTLP trace id (32 hex) of a run: the run id itself when it is a UUID in hex."""
    if _HEX32.match(run_id) and run_id.strip("0"):
        return run_id
    return _derive("tracekit-trace", run_id, size=16)


def span_id_for(run_id: str, step_id: str) -> str:
    """The OTLP span id (16 hex) of a step: the step id itself when it already is one."""
    if _HEX16.match(step_id) and step_id.strip("0"):
        return step_id  # recorded from OpenTelemetry spans (the otel adapter): keep the link
    return _derive("tracekit-span", run_id, step_id, size=8)


def _value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue``."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": value if isinstance(value, str) else str(value)}


def _attrs(pairs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in pairs.items() if v is not None]


def _hash_text(value: Any) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get("value"), str):
        return f"{value.get('algorithm', 'blake3')}:{value['value']}"
    return None


def _exception_event(error: Mapping[str, Any], at_ns: int) -> dict[str, Any]:
    details = section(error, "details")
    raw_chain = details.get("chain")
    chain: list[Any] = raw_chain if isinstance(raw_chain, list) else []
    root = chain[-1] if chain and isinstance(chain[-1], Mapping) else None
    first = chain[0] if chain and isinstance(chain[0], Mapping) else {}
    hints = details.get("hints")
    return {
        "timeUnixNano": str(at_ns),
        "name": "exception",
        "attributes": _attrs({
            "exception.type": details.get("type") or first.get("type") or "Error",
            "exception.message": error.get("message", ""),
            "exception.stacktrace": details.get("traceback") or None,
            "tracekit.error.code": error.get("code"),
            "tracekit.error.phase": details.get("phase"),
            "tracekit.error.root_cause": (
                f"{root.get('type')}: {root.get('message')}" if root is not None and len(chain) > 1 else None
            ),
            "tracekit.error.hints": [str(h) for h in hints] if isinstance(hints, list) and hints else None,
        }),
    }


def _step_span(span: StepSpan, timeline: Timeline, trace_id: str, ids: dict[int, str]) -> dict[str, Any]:
    step = span.step
    parent_id = ids[span.parent] if span.parent is not None else ids[-1]
    attributes = {
        "tracekit.step_id": span.step_id,
        # Kept when that parent is not in the trace (dropped from the ring buffer).
        "tracekit.parent_step_id": span.parent_step_id if span.parent is None else None,
        "tracekit.component_id": step.get("component_id"),
        "tracekit.operation": step.get("operation"),
        "tracekit.attempt": step.get("attempt", 1),
        "tracekit.status": span.status,
        "tracekit.input_hash": _hash_text(step.get("input_hash")),
        "tracekit.output_hash": _hash_text(step.get("output_hash")),
        "tracekit.state_delta_hash": _hash_text(step.get("state_delta_hash")),
        "tracekit.timing": "estimated" if span.estimated else None,
    }
    out: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": ids[span.index],
        "parentSpanId": parent_id,
        "name": span.node_id,
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": _attrs(attributes),
        "status": {"code": STATUS_CODE_UNSET},
    }
    events = []
    issues = step.get("validation_issues")
    for issue in issues if isinstance(issues, list) else []:
        if isinstance(issue, Mapping):
            events.append({
                "timeUnixNano": str(span.end_ns),
                "name": "tracekit.validation_issue",
                "attributes": _attrs({f"tracekit.issue.{k}": issue.get(k)
                                      for k in ("code", "message", "path", "severity")}),
            })
    error = error_of(step)
    if error is not None:
        events.append(_exception_event(error, span.end_ns))
        if span.status == "failed":
            out["status"] = {"code": STATUS_CODE_ERROR, "message": str(error.get("message", ""))}
    if events:
        out["events"] = events
    return out


def _run_span(envelope: Mapping[str, Any], timeline: Timeline, trace_id: str, span_id: str) -> dict[str, Any]:
    run, flow = section(envelope, "run"), section(envelope, "flow")
    start = timeline.run_start_ns if timeline.run_start_ns is not None else timeline.origin_ns
    end = timeline.run_end_ns if timeline.run_end_ns is not None else timeline.end_ns
    out: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": str(flow.get("id", "run")),
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(min(start, timeline.origin_ns)),
        "endTimeUnixNano": str(max(end, start)),
        "attributes": _attrs({"tracekit.run.id": run.get("id"), "tracekit.run.outcome": run.get("outcome")}),
        "status": {"code": STATUS_CODE_UNSET},
    }
    events = []
    raw = envelope.get("errors")
    for i, err in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(err, Mapping):
            at = parse_time_ns(err.get("time"), f"/errors/{i}/time")
            record = section(err, "error") or err
            event = _exception_event(record, at)
            event["attributes"] += _attrs({"tracekit.error.scope": err.get("scope"),
                                           "tracekit.node_id": err.get("node_id")})
            events.append(event)
    if events:
        out["events"] = events
    if run.get("outcome") == "failure":
        failed = [s for s in timeline.spans if s.status == "failed"]
        first = min(failed, key=lambda s: (s.end_ns, s.index)) if failed else None
        if first is not None:
            message = f"{first.node_id}: {section(first.step, 'error').get('message', '')}"
        elif isinstance(raw, list) and raw and isinstance(raw[0], Mapping):
            message = str(raw[0].get("message", "the run failed"))
        else:
            message = "the run failed"
        out["status"] = {"code": STATUS_CODE_ERROR, "message": message}
    return out


def _resource(envelope: Mapping[str, Any]) -> dict[str, Any]:
    run, flow, pack = section(envelope, "run"), section(envelope, "flow"), section(envelope, "pack")
    return {"attributes": _attrs({
        "service.name": flow.get("id"),
        "service.version": flow.get("version"),
        "host.name": run.get("host"),
        "process.pid": run.get("pid"),
        "tracekit.pack_ref": pack.get("pack_ref"),
        "tracekit.pack.resolved_digest": pack.get("resolved_digest"),
        "tracekit.runner_version": envelope.get("runner_version"),
        "tracekit.git_sha": envelope.get("git_sha"),
        "tracekit.trace_version": envelope.get("trace_version"),
        "tracekit.buffer.dropped": section(envelope, "buffer").get("dropped"),
    })}


def to_otlp_json(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The trace as an OTLP/JSON ``ExportTraceServiceRequest`` (a dict ready for JSON).

    Raises :class:`~tracekit.export.ExportError` naming the field when the envelope is malformed.
    """
    timeline = read_timeline(envelope)
    run_id = timeline.run_id or _derive("tracekit-anonymous-run", repr(envelope.get("steps")), size=16)
    trace_id = trace_id_for(run_id)
    ids: dict[int, str] = {-1: span_id_for(run_id, _ROOT)}
    seen: dict[str, int] = {}
    for span in timeline.spans:
        # A repeated step id (a runner bug) still gets a span of its own.
        n = seen.get(span.step_id, 0)
        seen[span.step_id] = n + 1
        ids[span.index] = span_id_for(run_id, span.step_id if n == 0 else f"{span.step_id}\x00{n}")
    spans = [_run_span(envelope, timeline, trace_id, ids[-1])]
    spans.extend(_step_span(s, timeline, trace_id, ids) for s in timeline.spans)
    recorder = section(envelope, "recorder")
    scope = {"name": SCOPE_NAME, "version": str(recorder.get("version", ""))}
    return {"resourceSpans": [{
        "resource": _resource(envelope),
        "scopeSpans": [{"scope": scope, "spans": spans}],
    }]}
