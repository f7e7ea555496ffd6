"""The last good run of a flow: a hash-only summary a successful run leaves, and the comparison
of a failing trace with it ("since the last good run ... first difference at NODE").

Where: ``<trace dir>/.tracekit-last-good/<flow_id>.json`` (the trace dir is the history directory
in history mode, else the trace file's directory). What: ``{flow, run_id, finished_at, steps:
[{node_id, input_hash, output_hash}]}``, hex digests only, no payloads; one small atomic write per
successful run (modes on and always), replacing the previous one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from tracekit.capture.hashing import resolve_digest
from tracekit.trace.model import Step, rfc3339
from tracekit.trace.sink import atomic_write
from tracekit.trace.text import esc

__all__ = [
    "DIRNAME",
    "Difference",
    "compare",
    "load_for",
    "path_for",
    "summary",
    "summary_line",
    "write_summary",
]

DIRNAME: Final = ".tracekit-last-good"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def path_for(trace_dir: Path, flow_id: str) -> Path:
    name = _UNSAFE.sub("_", flow_id).strip(".") or "flow"
    return trace_dir / DIRNAME / f"{name[:120]}.json"


def summary(flow: dict[str, Any], run_id: str, finished_ns: int, steps: Sequence[Step]) -> dict[str, Any]:
    """The summary of a finished run's kept steps (completed ones, in finish order)."""
    out = []
    for st in steps:
        if st.status != "completed":
            continue
        item: dict[str, Any] = {"node_id": st.node_id, "input_hash": resolve_digest(st.input_src).hex()}
        if st.output_src is not None:
            item["output_hash"] = resolve_digest(st.output_src).hex()
        out.append(item)
    return {"flow": flow, "run_id": run_id, "finished_at": rfc3339(finished_ns), "steps": out}


def write_summary(recorder: Any, outcome: str) -> None:
    """The run-end hook: a successful run of ``recorder`` becomes its flow's last good run.

    Never raises: the run's outcome does not depend on this small file.
    """
    try:
        if outcome != "success" or not recorder.config.enabled:
            return
        run = recorder._run
        with recorder._lock:
            steps = list(recorder._ring)
        if not steps:
            return
        ctx, cfg = recorder.context, recorder.config
        doc = summary({"id": ctx.flow_id, "version": ctx.flow_version}, run.id, run.finished_ns or 0, steps)
        if cfg.dir is not None:
            trace_dir = cfg.dir
        elif str(cfg.out) == "-":
            return
        else:
            trace_dir = cfg.out.parent
        atomic_write(path_for(trace_dir, ctx.flow_id), orjson.dumps(doc), mode=0o644)
    except Exception:
        with contextlib.suppress(Exception):
            recorder.internal_error("last good run summary")


def load_for(trace_path: Path, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The last good run of ``doc``'s flow, kept beside ``trace_path``; None when there is none."""
    flow = doc.get("flow")
    flow_id = flow.get("id") if isinstance(flow, dict) else None
    if not isinstance(flow_id, str):
        return None
    try:
        good = orjson.loads(path_for(trace_path.parent, flow_id).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(good, dict) or not isinstance(good.get("steps"), list):
        return None
    if good.get("run_id") == _run(doc).get("id"):
        return None  # the trace is the last good run itself
    return good


def _run(doc: dict[str, Any]) -> dict[str, Any]:
    run = doc.get("run")
    return run if isinstance(run, dict) else {}


def _hex(h: Any) -> str | None:
    if isinstance(h, dict):
        v = h.get("value")
        return v if isinstance(v, str) else None
    return h if isinstance(h, str) else None


@dataclass(frozen=True, slots=True)
class Difference:
    node_id: str
    occurrence: int
    input: str  # same, differs, missing (the node is not in the last good run)
    output: str  # same, differs, missing (no output on one side)

    @property
    def differs(self) -> bool:
        return "differs" in (self.input, self.output)

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "occurrence": self.occurrence, "input": self.input,
                "output": self.output}


def compare(doc: dict[str, Any], good: dict[str, Any]) -> list[Difference]:
    """Each kept step of ``doc`` (in start order), matched by node and occurrence to ``good``."""
    seen: dict[str, int] = {}
    ref: dict[tuple[str, int], dict[str, Any]] = {}
    for st in good.get("steps", []):
        if isinstance(st, dict) and isinstance(st.get("node_id"), str):
            n = seen[st["node_id"]] = seen.get(st["node_id"], 0) + 1
            ref[(st["node_id"], n)] = st
    raw = doc.get("steps")
    steps = [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []
    steps.sort(key=lambda s: str(s.get("started_at", "")))
    counts: dict[str, int] = {}
    out = []
    for st in steps:
        node = st.get("node_id")
        if not isinstance(node, str):
            continue
        n = counts[node] = counts.get(node, 0) + 1
        other = ref.get((node, n))
        if other is None:
            out.append(Difference(node, n, "missing", "missing"))
            continue
        a_in, b_in = _hex(st.get("input_hash")), _hex(other.get("input_hash"))
        a_out, b_out = _hex(st.get("output_hash")), _hex(other.get("output_hash"))
        inp = "same" if a_in == b_in else "differs"
        outp = "missing" if a_out is None or b_out is None else "same" if a_out == b_out else "differs"
        out.append(Difference(node, n, inp, outp))
    return out


def _when(good: dict[str, Any]) -> str:
    from tracekit.trace.semantic import parse_time  # jsonschema loads only when a trace is read

    t = parse_time(good.get("finished_at"))
    return t.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M") if t is not None else "?"


def summary_line(trace_path: Path, doc: dict[str, Any]) -> str | None:
    """``since the last good run (YYYY-MM-DD HH:MM): ...`` for a failing trace, or None."""
    if _run(doc).get("outcome") == "success":
        return None
    good = load_for(trace_path, doc)
    if good is None:
        return None
    head = f"since the last good run ({_when(good)})"
    diffs = compare(doc, good)
    for d in diffs:
        if d.differs:
            what = "input differs" if d.input == "differs" else "output differs"
            return f"{head}: first difference at {esc(d.node_id)}: {what}"
    # Same inputs everywhere: say where it now fails, which points at code or environment.
    raw = doc.get("steps")
    failed = {
        s.get("node_id") for s in (raw if isinstance(raw, list) else [])
        if isinstance(s, dict) and s.get("status") in ("failed", "cancelled")
    }
    for d in diffs:
        if d.node_id in failed and d.input == "same":
            return (f"{head}: first difference at {esc(d.node_id)}: same input, now fails "
                    "(the code or its environment changed, not its input)")
    return f"{head}: no difference in the steps kept"
