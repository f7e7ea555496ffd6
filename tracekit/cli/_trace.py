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
    "ending_failure",
    "failing_node",
    "failing_steps",
    "obj",
    "recovered_steps",
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
    """The node of this run's failure: the step that ended it, else the innermost failed one."""
    ending = ending_failure(doc)
    if ending is not None:
        return s(ending.get("node_id"))
    failed = failing_steps(doc)
    return s(failed[0].get("node_id")) if failed else None


def run_started(doc: dict[str, Any]) -> _dt.datetime | None:
    return parse_time(obj(doc, "run").get("started_at"))


def _end_key(step: dict[str, Any], index: int) -> tuple[float, int]:
    t = parse_time(step.get("started_at"))
    ns = step.get("duration_ns")
    took = ns / 1e9 if type(ns) is int else 0.0
    return ((t.timestamp() + took) if t is not None else float("-inf"), index)


def _attempt(step: dict[str, Any]) -> int:
    raw = step.get("attempt")
    return raw if type(raw) is int else 1


def recovered_steps(doc: dict[str, Any]) -> set[int]:
    """Indexes (into :func:`steps`) of failed steps the run got past.

    The recorder says so on each failed step (``recovered``); for traces without the field, a
    failure is recovered when the run succeeded, when a later attempt of the same node (same
    parent) completed, or when its parent step completed (the parent handled it).
    """
    items = steps(doc)
    success = obj(doc, "run").get("outcome") == "success"
    by_id = {st.get("step_id"): st for st in items if isinstance(st.get("step_id"), str)}
    done: dict[tuple[Any, Any], int] = {}
    for st in items:
        if st.get("status", "completed") == "completed":
            key = (st.get("node_id"), st.get("parent_step_id"))
            done[key] = max(done.get(key, 0), _attempt(st))
    out: set[int] = set()
    for i, st in enumerate(items):
        if st.get("status") != "failed":
            continue
        said = st.get("recovered")
        if type(said) is bool:
            if said:
                out.add(i)
            continue
        parent = by_id.get(st.get("parent_step_id"))
        retried = done.get((st.get("node_id"), st.get("parent_step_id")), 0) > _attempt(st)
        handled = parent is not None and parent is not st and parent.get("status", "completed") == "completed"
        if success or retried or handled:
            out.add(i)
    return out


def ending_failure(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The step whose failure ended the run: what a person reads first.

    The outermost failed step the run did not get past (the first to end, when there are
    several independent ones, as in a test suite: later ones are often its consequences); else a
    step still in flight that the run's error was put on; else the outermost cancelled step. None
    when no step ended the run (it succeeded, or failed outside any step).
    """
    items = steps(doc)
    recovered = recovered_steps(doc)
    by_id = {st.get("step_id"): i for i, st in enumerate(items) if isinstance(st.get("step_id"), str)}

    def outermost(pool: list[int]) -> dict[str, Any] | None:
        chosen = set(pool)

        def is_root(i: int) -> bool:  # its parent is not in the pool (or it is its own parent)
            parent = by_id.get(items[i].get("parent_step_id"))
            return parent not in chosen or parent == i

        candidates = [i for i in pool if is_root(i)] or pool
        if not candidates:
            return None
        return items[min(candidates, key=lambda i: _end_key(items[i], i))]

    failed = [i for i, st in enumerate(items) if st.get("status") == "failed" and i not in recovered]
    flying = [i for i, st in enumerate(items)
              if st.get("status") == "in_flight" and isinstance(st.get("error"), dict)]
    cancelled = [i for i, st in enumerate(items) if st.get("status") == "cancelled"]
    for pool in (failed, flying, cancelled):
        found = outermost(pool)
        if found is not None:
            return found
    return None
