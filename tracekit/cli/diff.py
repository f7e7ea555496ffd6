"""``tracekit diff``: where did two runs of a flow part ways?

Steps are aligned by ``(node_id, attempt, occurrence)``: the n-th time a node ran with a given
attempt in A is compared with the n-th such time in B, so loops and repeats line up. The first
aligned step (in A's start order) whose input or output hash, status or error differs is what
a person looks at first; the summary counts the rest.

Both files must be readable, valid traces (the check every command shares): anything else exits
non-zero before comparing (2 unreadable, 1 not a valid trace or from a newer tracekit), so a
script never takes "could not compare" for "same".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from tracekit.cli._io import (
    EXIT_INVALID,
    EXIT_OK,
    TraceLoadError,
    dump_json,
    exit_for,
    fail,
    load_trace,
    problem_line,
)
from tracekit.cli._last_good import diff_last_good
from tracekit.cli._style import echo, style
from tracekit.cli._text import safe
from tracekit.cli._trace import obj, s, steps_tree
from tracekit.trace.check import check_trace

__all__ = ["StepDiff", "align", "compare", "diff"]

Key = tuple[str, int, int]  # node_id, attempt, occurrence

#: Problems printed per invalid input before "... and N more".
_MAX_PROBLEMS_SHOWN: Final = 10
#: What must agree for two aligned steps to count as the same, in the order reported.
COMPARED: Final = ("input_hash", "output_hash", "status", "error.code", "error.type")
_KIND_TEXT: Final = {"only_in_a": "only in A", "only_in_b": "only in B"}


@dataclass(frozen=True, slots=True)
class StepDiff:
    """One aligned pair and what differs; ``a`` or ``b`` is None for a step only in the other."""

    key: Key
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    changes: tuple[tuple[str, str, str], ...]  # (field, value in A, value in B)

    @property
    def kind(self) -> str:
        if self.a is None:
            return "only_in_b"
        if self.b is None:
            return "only_in_a"
        return "changed" if self.changes else "same"

    def to_json(self) -> dict[str, Any]:
        node, attempt, occurrence = self.key
        return {
            "node_id": node,
            "attempt": attempt,
            "occurrence": occurrence,
            "kind": self.kind,
            "step_id_a": self.a.get("step_id") if self.a else None,
            "step_id_b": self.b.get("step_id") if self.b else None,
            "changes": [{"field": f, "a": x, "b": y} for f, x, y in self.changes],
        }


def _keyed(doc: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    seen: dict[tuple[str, int], int] = {}
    out: dict[Key, dict[str, Any]] = {}
    for _, st in steps_tree(doc):
        node = s(st.get("node_id"), "?")
        raw = st.get("attempt")
        attempt: int = raw if type(raw) is int else 1
        n = seen.get((node, attempt), 0) + 1
        seen[(node, attempt)] = n
        out[(node, attempt, n)] = st
    return out


def _field(step: dict[str, Any], name: str) -> str:
    if name.endswith("_hash"):
        h = step.get(name)
        return s(h.get("value")) if isinstance(h, dict) else "-"
    if name == "error.code":
        return s(obj(step, "error").get("code"))
    if name == "error.type":
        return s(obj(step, "error", "details").get("type"))
    return s(step.get(name), "completed" if name == "status" else "-")


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """The compared fields that differ between two aligned steps, in :data:`COMPARED` order."""
    return tuple((f, _field(a, f), _field(b, f)) for f in COMPARED if _field(a, f) != _field(b, f))


def align(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> list[StepDiff]:
    """Every step of A (in start order) with its partner in B, then the steps only in B."""
    ka, kb = _keyed(doc_a), _keyed(doc_b)
    out = [StepDiff(k, st, kb.get(k), compare(st, kb[k]) if k in kb else ()) for k, st in ka.items()]
    out.extend(StepDiff(k, None, st, ()) for k, st in kb.items() if k not in ka)
    return out


def _load(path: Path) -> tuple[dict[str, Any] | None, int]:
    """The trace, or None and the exit code after saying on stderr why it cannot be compared."""
    try:
        doc = load_trace(path)
    except TraceLoadError as exc:
        echo(safe(str(exc)), err=True)
        return None, exit_for(invalid=True, unreadable=exc.unreadable)
    found = check_trace(doc, cap=_MAX_PROBLEMS_SHOWN)
    if found.valid:
        return doc, EXIT_OK
    for p in found.problems:
        echo(safe(problem_line(path, p.pointer, p.message)), err=True)
    if found.more > 0:
        echo(safe(f"{path}: ... and {found.more} more problems"), err=True)
    echo(safe(f"{path}: not a valid trace; not compared (run `tracekit validate {path}`)"), err=True)
    return None, EXIT_INVALID


def _label(d: StepDiff) -> str:
    node, attempt, occurrence = d.key
    extra = f", run #{occurrence} of it" if occurrence > 1 else ""
    return f"{safe(node, 200)} (attempt {attempt}{extra})"


def _show(field: str, value: str) -> str:
    return safe(value[:16] if field.endswith("_hash") and value != "-" else value, 500)


@click.command()
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--last-good", "against_last_good", is_flag=True,
              help="Compare trace A with its flow's last good run (kept beside it) instead of B.")
def diff(a: Path, b: Path | None, as_json: bool, against_last_good: bool) -> None:
    """Compare the steps of two traces; exit 0 only when they match.

    Steps are aligned by node, attempt and occurrence; a step differs when its input or output
    hash, status, error code or error type does.

    \b
    Examples:
      tracekit diff yesterday.json today.json
      tracekit diff a.json b.json --json | jq .first_difference
      tracekit diff --last-good trace.json
    """
    if against_last_good or b is None:
        raise click.exceptions.Exit(diff_last_good(a, as_json) if against_last_good and b is None
                                    else fail("diff takes two traces A B, or --last-good A"))
    (doc_a, code_a), (doc_b, code_b) = _load(a), _load(b)
    if doc_a is None or doc_b is None:
        raise click.exceptions.Exit(max(code_a, code_b))
    diffs = align(doc_a, doc_b)
    counts = {k: sum(d.kind == k for d in diffs) for k in ("only_in_a", "only_in_b", "changed", "same")}
    first = next((d for d in diffs if d.kind != "same"), None)
    flows = (obj(doc_a, "flow"), obj(doc_b, "flow"))
    if as_json:
        report = {
            "a": str(a),
            "b": str(b),
            "match": first is None,
            "flow_a": flows[0],
            "flow_b": flows[1],
            "first_difference": first.to_json() if first else None,
            "summary": counts,
            "steps": [d.to_json() for d in diffs],
        }
        click.echo(dump_json(report))
    else:
        if flows[0] != flows[1]:
            (fa, fb) = flows
            note = (f"note: different flows: A is {s(fa.get('id'))} v{s(fa.get('version'))}, "
                    f"B is {s(fb.get('id'))} v{s(fb.get('version'))}")
            echo(style(safe(note), "yellow"))
        if first is None:
            echo(style(f"same: {counts['same']} step(s) match in input, output, status and error", "green"))
        else:
            echo(style(f"first difference: {_label(first)}", "red", bold=True))
            if first.kind == "only_in_a":
                echo(safe(f"  only in A ({a}): step {s(first.a.get('step_id') if first.a else None)}"))
            elif first.kind == "only_in_b":
                echo(safe(f"  only in B ({b}): step {s(first.b.get('step_id') if first.b else None)}"))
            for f, x, y in first.changes:
                echo(f"  {f}: {_show(f, x)} -> {_show(f, y)}")
            for d in diffs:
                if d.kind != "same" and d is not first:
                    what = ", ".join(f for f, _, _ in d.changes) or _KIND_TEXT[d.kind]
                    echo(f"  also: {_label(d)}: {what}")
        echo(f"only in A: {counts['only_in_a']}  only in B: {counts['only_in_b']}  "
             f"changed: {counts['changed']}  same: {counts['same']}")
    raise click.exceptions.Exit(EXIT_OK if first is None else EXIT_INVALID)
