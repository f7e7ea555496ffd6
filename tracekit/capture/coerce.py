"""Input hygiene: what a runner hands the recorder, made into what the envelope's types need.

A runner that passes an int as ``node_id`` or a string as a validation issue has made a
mistake, but the recorder must neither raise into it nor write a trace the schema rejects.
These helpers coerce; the recorder counts each coercion as a misuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tracekit.observer import NodeEvent, ValidationIssue

__all__ = ["capped", "capped_context", "coerce_event", "coerce_issues", "text"]


def text(value: Any) -> str:
    """A string for a field the envelope types as one (a runner passed an int, bytes, ...)."""
    if isinstance(value, str):
        return str.__str__(value)
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__qualname__}>"


def capped(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... [truncated: {len(value)} characters in all]"


def capped_context(context: dict[str, Any], limit: int) -> dict[str, Any]:
    """An error's context, or a marker with its size when it is bigger than a captured payload."""
    size = len(orjson.dumps(context))
    return context if size <= limit else {"$truncated": True, "original_bytes": size}


def coerce_event(event: NodeEvent) -> NodeEvent | None:
    """None when ``event``'s fields have the envelope's types, else a corrected copy."""
    sid, pid, attempt = event.step_id, event.parent_step_id, event.attempt
    if (
        type(event.node_id) is str
        and type(event.component_id) is str
        and type(event.operation) is str
        and (sid is None or (type(sid) is str and sid))
        and (pid is None or type(pid) is str)
        and type(attempt) is int
        and attempt >= 1
    ):
        return None
    return NodeEvent(
        node_id=text(event.node_id),
        component_id=text(event.component_id),
        operation=text(event.operation),
        payload=event.payload,
        step_id=None if sid is None or sid == "" else text(sid),
        parent_step_id=None if pid is None else text(pid),
        attempt=attempt if type(attempt) is int and attempt >= 1 else 1,
    )


def coerce_issues(issues: Sequence[Any], limit: int) -> tuple[list[ValidationIssue], int]:
    """The issues with typed fields and capped texts, and how many needed coercing."""
    found: list[ValidationIssue] = []
    bad = 0
    for item in list(issues):
        if not isinstance(item, ValidationIssue):
            bad += 1
            found.append(ValidationIssue("invalid_issue", capped(text(item), limit)))
            continue
        code, message, path = item.code, item.message, item.path
        if type(code) is not str or type(message) is not str or (
            path is not None and type(path) is not str
        ):
            bad += 1
        elif len(message) <= limit and len(code) <= limit:
            found.append(item)
            continue
        found.append(ValidationIssue(
            capped(text(code), limit),
            capped(text(message), limit),
            None if path is None else capped(text(path), limit),
            item.severity,
        ))
    return found, bad
