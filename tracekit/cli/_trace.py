"""Reading a loaded trace defensively: commands show what is there even when a trace is not valid.

A person runs ``show`` on whatever file the failed run left; a field of the wrong type must make
that field blank, not the command crash. Every accessor here returns a safe default instead.

Threading contract: pure functions of their arguments; safe from any thread.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from tracekit.trace.semantic import parse_time

__all__ = [
    "failing_node",
    "failing_steps",
    "obj",
    "run_started",
    "s",
    "steps",
    "steps_tree",
]


def obj(value: Any, *keys: str) -> dict[str, Any]:
    """The object at ``value[k1][k2]...``, or ``{}`` when any level is missing or not an object."""
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def s(value: Any, default: str = "-") -> str:
    """A field as display text: strings as they are, numbers printed, anything else ``default``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int | float):
        return str(value)
    return default


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The step objects of a trace, in file order; anything that is not an object is skipped."""
    raw = doc.get("steps")
    return [x for x in raw if isinstance(x, dict)] if isinstance(raw, list) else []


def _start_key(step: dict[str, Any], index: int) -> tuple[float, int]:
    t = parse_time(step.get("started_at"))
    return (t.timestamp() if t is not None else float("inf"), index)


def steps_tree(doc: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """Steps as ``(depth, step)`` in start order, each child right under its parent.

    The file lists finished steps in finish order (children before parents), which reads
    backwards; a person wants the order things started, nested as they ran.
    """
    items = steps(doc)
    order = sorted(range(len(items)), key=lambda i: _start_key(items[i], i))
    ids = {items[i].get("step_id"): i for i in order if isinstance(items[i].get("step_id"), str)}
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i in order:
        parent = items[i].get("parent_step_id")
        p = ids.get(parent) if isinstance(parent, str) else None
        if p is None or p == i:
            roots.append(i)
        else:
            children.setdefault(p, []).append(i)
    out: list[tuple[int, dict[str, Any]]] = []
    placed: set[int] = set()

    def walk(i: int, depth: int) -> None:
        if i in placed:  # a parent cycle in a hand-edited file: show each step once
            return
        placed.add(i)
        out.append((depth, items[i]))
        for c in children.get(i, ()):
            walk(c, depth + 1)

    for r in roots:
        walk(r, 0)
    for i in order:  # steps only reachable through a cycle
        walk(i, 0)
    return out


def failing_steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Failed steps, deepest first, then in start order.

    The innermost failure is where the problem happened; its parents only passed it on.
    """
    tree = steps_tree(doc)
    failed = [(d, st) for d, st in tree if st.get("status") == "failed"]
    return [st for _, st in sorted(failed, key=lambda x: -x[0])] if failed else []


def failing_node(doc: dict[str, Any]) -> str | None:
    """The node a person should look at first: the innermost failed step's node, if any."""
    failed = failing_steps(doc)
    return s(failed[0].get("node_id")) if failed else None


def run_started(doc: dict[str, Any]) -> _dt.datetime | None:
    return parse_time(obj(doc, "run").get("started_at"))
