"""What a replay would do, decided from the trace alone: which step, which callable, which input.

Nothing from the trace is executed: the trace names a callable (imported later from the user's
own code) and holds data (JSON, or ``.npy``/``.arrow`` side-store files read without pickle).
Every reason a step cannot be replayed becomes a :class:`Problem` with the fix, never a guess:
a ``[REDACTED]`` placeholder is never passed to the code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from tracekit.capture.redact import REDACTED
from tracekit.trace import store

__all__ = ["CAPTURE_ENV", "Plan", "Problem", "ReplayError", "apply_sets", "make_plan", "pick_step"]

CAPTURE_ENV: Final = "TRACEKIT_TRACE_CAPTURE_INPUTS"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the step cannot be replayed (exit 2): a code, what is wrong, how to fix it."""

    code: str
    message: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "fix": self.fix}


class ReplayError(Exception):
    """The replay cannot even be planned (no such step, a bad ``--set``): exit 2, no traceback."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(slots=True)
class Plan:
    step: dict[str, Any]
    index: int
    callable: str | None = None
    source_file: str | None = None
    args_kind: str | None = None
    payload: Any = None
    problems: list[Problem] = field(default_factory=list)
    set_paths: list[str] = field(default_factory=list)


def _label(step: dict[str, Any]) -> str:
    return f"{step.get('node_id')!s} (step {step.get('step_id')!s})"


def pick_step(doc: dict[str, Any], wanted: str | None) -> tuple[int, dict[str, Any]]:
    """The step to replay: ``wanted`` (a step id, else the last step of that node), or by default
    the failure that ended the run: the innermost failed step not recovered, the last one of those."""
    steps = doc.get("steps")
    items = [(i, s) for i, s in enumerate(steps) if isinstance(s, dict)] if isinstance(steps, list) else []
    if wanted is not None:
        for i, s in items:
            if s.get("step_id") == wanted:
                return i, s
        by_node = [(i, s) for i, s in items if s.get("node_id") == wanted]
        failed = [(i, s) for i, s in by_node if s.get("status") == "failed"]
        if failed or by_node:
            return (failed or by_node)[-1]
        known = ", ".join(sorted({str(s.get("node_id")) for _, s in items})) or "none"
        raise ReplayError(Problem("no_such_step", f"no step or node named {wanted!r} in the trace",
                                  f"name a step id or one of the nodes: {known}"))
    failed = [(i, s) for i, s in items if s.get("status") == "failed"]
    if not failed:
        raise ReplayError(Problem("no_failed_step", "the trace has no failed step to replay",
                                  "name the step to replay: tracekit replay TRACE STEP"))
    # Innermost: a failed step none of whose children failed (a parent only passed the error on).
    parents = {s.get("parent_step_id") for _, s in failed}
    inner = [(i, s) for i, s in failed if s.get("step_id") not in parents]
    # The one that ended the run, not one a retry recovered from (recovered: false, or unsaid).
    final = [(i, s) for i, s in (inner or failed) if s.get("recovered") is not True]
    return (final or inner or failed)[-1]


def _parse_set(item: str) -> tuple[list[str], Any]:
    path, sep, raw = item.partition("=")
    if not sep or not path:
        raise ReplayError(Problem("bad_set", f"--set {item!r} is not PATH=VALUE",
                                  "write it as --set order.api_token=VALUE (VALUE as JSON, else text)"))
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return path.split("."), value


def apply_sets(payload: Any, sets: list[str]) -> tuple[Any, list[str]]:
    """``payload`` (a copy) with each ``--set PATH=VALUE`` applied; returns it and the paths set."""
    payload = copy.deepcopy(payload)
    done: list[str] = []
    for item in sets:
        parts, value = _parse_set(item)
        node = payload
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                elif part in node:
                    node = node[part]
                else:
                    node = node.setdefault(part, {})
            else:
                where = ".".join(parts[:depth]) or "the input"
                raise ReplayError(Problem("bad_set", f"--set {item.partition('=')[0]}: {where} is not an "
                                          "object or list", "name a path inside the captured input"))
        done.append(".".join(parts))
    return payload, done


def redacted_paths(value: Any, prefix: str = "") -> list[str]:
    """Every path in ``value`` whose value is the redaction placeholder."""
    if value == REDACTED:
        return [prefix or "."]
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += redacted_paths(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for n, v in enumerate(value):
            out += redacted_paths(v, f"{prefix}.{n}" if prefix else str(n))
    return out


def _covered(path: str, sets: list[str]) -> bool:
    return any(path == s or path.startswith(s + ".") for s in sets)


def make_plan(doc: dict[str, Any], trace_path: Path, wanted: str | None, sets: list[str]) -> Plan:
    """Decide the replay of one step of ``doc`` (read from ``trace_path``)."""
    index, step = pick_step(doc, wanted)
    plan = Plan(step=step, index=index)
    replay = step.get("replay")
    inv = step.get("invocation_json")
    if not isinstance(inv, dict) or "payload" not in inv:
        plan.problems.append(Problem(
            "no_capture", f"{_label(step)} has no captured input (inputs were not captured)",
            f"run the pipeline again with {CAPTURE_ENV}=1, then replay the new trace"))
        return plan
    if not isinstance(replay, dict) or not isinstance(replay.get("callable"), str):
        plan.problems.append(Problem(
            "no_callable", f"{_label(step)} does not say which callable ran it",
            "record it with a runner that knows the callable (recorder.step as a decorator, the "
            f"Hamilton or Celery adapter) with {CAPTURE_ENV}=1"))
        return plan
    plan.callable = replay["callable"]
    plan.source_file = replay.get("source_file") if isinstance(replay.get("source_file"), str) else None
    plan.args_kind = str(replay.get("args_kind"))
    payload = inv["payload"]
    if isinstance(payload, dict) and payload.get("$truncated") is True:
        size = payload.get("original_bytes")
        plan.problems.append(Problem(
            "truncated", f"the captured input of {_label(step)} was cut at the capture cap ({size} bytes)",
            "capture it whole: raise TraceConfig(max_capture_bytes=...) above that size and run again"))
        return plan
    if isinstance(payload, dict) and "$capture_error" in payload:
        plan.problems.append(Problem(
            "capture_error",
            f"the input of {_label(step)} could not be captured ({payload['$capture_error']})",
            "pass the node JSON-native values, arrays or frames"))
        return plan
    payload, plan.set_paths = apply_sets(payload, sets)
    raw_stored = replay.get("stored")
    stored: dict[str, Any] = raw_stored if isinstance(raw_stored, dict) else {}
    if stored and isinstance(payload, dict):
        directory = store.store_dir(trace_path.parent)
        for name, entry in stored.items():
            if _covered(name, plan.set_paths):
                continue
            try:
                payload[name] = store.load(directory, entry.get("file"), entry.get("type"))
            except (store.StoreError, AttributeError, ValueError, OSError) as exc:
                plan.problems.append(Problem(
                    "store_missing", f"input {name!r}: {exc}",
                    f"copy the trace's {store.STORE_DIRNAME}/ directory along with it"))
    raw_lossy = replay.get("not_replayable")
    lossy: dict[str, Any] = raw_lossy if isinstance(raw_lossy, dict) else {}
    for name, why in lossy.items():
        if not _covered(str(name), plan.set_paths):
            plan.problems.append(Problem(
                "not_replayable", f"input {name!r} cannot be rebuilt as the value the node took: {why}",
                f"supply it: --set {name}=JSON, or pass the node JSON-native values, arrays or frames"))
    skip = set(stored) - set(plan.set_paths)
    json_part = {k: v for k, v in payload.items() if k not in skip} if isinstance(payload, dict) else payload
    for path in redacted_paths(json_part):
        plan.problems.append(Problem(
            "redacted", f"input field {path} was redacted when captured",
            f"supply it: --set {path}=..."))
    plan.payload = payload
    return plan
