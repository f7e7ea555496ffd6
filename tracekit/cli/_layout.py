"""Blocks of ``tracekit show``'s text, each line already fitted to the terminal's width.

Prose (messages, hints) wraps at spaces; titles and labelled header items are cut with an
ellipsis. Every string from the trace is escaped here or before it gets here.

Threading contract: a :class:`Block` belongs to one rendering; the functions are pure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tracekit.cli._io import dump_json
from tracekit.cli._style import STATUS_COLORS, Span, paint, style
from tracekit.cli._text import cells, safe, safe_lines, wrap
from tracekit.cli._trace import obj, s

__all__ = ["Block", "failure_block", "issue_lines", "labelled", "prose"]

#: The label column of the header and of a failure's fields ("flow     ", "  error    ").
LABEL: Final = 9
_IN: Final = "  "
#: Captured input: characters kept, then lines shown, in the text view (``--json`` has it whole).
MAX_INPUT_CHARS: Final = 2000
MAX_INPUT_LINES: Final = 6
#: Error messages in the chain are cut to this many characters per link in the text view.
MAX_MESSAGE_CHARS: Final = 500
#: Lines of a ``trace_format()`` shown, and exception-group members listed per link.
MAX_TRACE_LINES: Final = 12
MAX_MEMBERS: Final = 10
_RELATION: Final = {"raised": "raised", "cause": "caused by", "context": "while handling"}


@dataclass
class Block:
    """What one rendering has printed so far, so a later failure does not repeat it."""

    width: int
    hints: set[str] = field(default_factory=set)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, message) -> node shown in


def prose(text: str, width: int, *, indent: str = "", first: str | None = None,
          color: str | None = None, bold: bool = False) -> list[str]:
    """``text`` (already safe) wrapped to ``width``, each line styled."""
    return [style(line, color, bold=bold) for line in wrap(text, width, indent, first)]


def labelled(label: str, items: Sequence[Sequence[Span]], width: int) -> list[str]:
    """``label`` in the label column, then ``items`` three spaces apart, wrapped onto more lines
    (under the label column) when they do not fit; an item too long for a line is cut."""
    pad = " " * max(LABEL - len(label), 1)
    lead = len(label) + len(pad)
    lines: list[str] = []
    current: list[Span] = [Span(label, bold=True), Span(pad)]
    used, fresh = lead, True
    for item in items:
        size = sum(cells(p.text) for p in item)
        if not fresh and used + 3 + size > width:
            lines.append(paint(current, width))
            current, used, fresh = [Span(" " * lead)], lead, True
        if not fresh:
            current.append(Span("   "))
            used += 3
        current += item
        used += size
        fresh = False
    lines.append(paint(current, width))
    return lines


def _field(label: str, text: str, width: int, color: str | None = None) -> list[str]:
    """``  label    text`` with the text wrapped under itself."""
    lead = (_IN + label).ljust(len(_IN) + LABEL)
    return prose(text, width, indent=" " * len(lead), first=lead, color=color)


def _error_text(kind: Any, message: Any) -> str:
    return f"{safe(s(kind, '?'), 200)}: {safe(s(message, ''), MAX_MESSAGE_CHARS)}"


def issue_lines(issues: Sequence[dict[str, Any]], width: int, indent: str) -> list[str]:
    """Each validation issue as ``- [severity] code: message at path``, wrapped."""
    lines: list[str] = []
    for i in issues:
        at = f" at {safe(i['path'], 200)}" if isinstance(i.get("path"), str) else ""
        severity = s(i.get("severity"), "error")
        text = f"- [{safe(severity, 20)}] {safe(s(i.get('code')), 200)}: {safe(s(i.get('message'), ''))}{at}"
        color = {"error": "red", "warning": "yellow"}.get(severity)
        lines += prose(text, width, indent=indent + "  ", first=indent, color=color)
    return lines


def _input_lines(step: dict[str, Any], width: int) -> list[str]:
    if not isinstance(step.get("invocation_json"), dict):
        return _field("input", "not captured (set TRACEKIT_TRACE_CAPTURE_INPUTS=1 to keep it)", width)
    payload = obj(step, "invocation_json").get("payload")
    try:
        text = json.dumps(payload, ensure_ascii=False, default=repr)
    except (RecursionError, ValueError, TypeError):  # deeper than json walks: orjson elides the rest
        text = dump_json(payload, indent=False)
    lines = [_IN + "input (captured, secrets redacted)"]
    body = wrap(safe(text, MAX_INPUT_CHARS), width, _IN * 2)
    if len(body) > MAX_INPUT_LINES:
        kept = body[:MAX_INPUT_LINES]
        more = max(len(text) - sum(len(ln) - len(_IN * 2) for ln in kept), 1)
        return lines + kept + prose(f"... [{more} more characters]", width, indent=_IN * 2)
    return lines + body


def _chain_lines(chain: list[dict[str, Any]], width: int) -> list[str]:
    lines = _field("chain", "(raised first, root cause last)", width)
    for n, link in enumerate(chain):
        rel = s(link.get("relation"), "raised" if n == 0 else "cause")
        label = _RELATION.get(rel, safe(rel, 40))
        root = "  <- root cause" if n == len(chain) - 1 and n > 0 else ""
        lead = f"{_IN * 2}{n + 1}. "
        text = prose(f"{label} {_error_text(link.get('type'), link.get('message'))}", width,
                     indent=" " * len(lead), first=lead)
        if root and cells(text[-1]) + len(root) <= width:
            text[-1] += root
        elif root:
            text.append(" " * len(lead) + root.strip())
        lines += text
        members = link.get("exceptions")
        if isinstance(members, list):
            dicts = [m for m in members if isinstance(m, dict)]
            for m in dicts[:MAX_MEMBERS]:
                lines += prose(f"- {_error_text(m.get('type'), m.get('message'))}", width,
                               indent=_IN * 5, first=_IN * 4)
            dropped = link.get("exceptions_dropped")
            more = max(len(dicts) - MAX_MEMBERS, 0) + (dropped if type(dropped) is int and dropped > 0 else 0)
            if more:
                lines += prose(f"- ... and {more} more", width, indent=_IN * 5, first=_IN * 4)
    return lines


def _title(step: dict[str, Any], *, recovered: bool, width: int) -> list[str]:
    status = s(step.get("status"), "failed")
    details = obj(obj(step, "error"), "details")
    where = [f"step {safe(s(step.get('step_id')), 200)}", f"attempt {safe(s(step.get('attempt'), '1'), 20)}"]
    if isinstance(details.get("phase"), str):
        where.append(f"phase {safe(details['phase'], 40)}")
    if status == "in_flight":
        head = Span("IN FLIGHT when the run failed  ", "magenta", bold=True)
    elif status == "cancelled":
        head = Span("CANCELLED  ", STATUS_COLORS["cancelled"], bold=True)
    elif recovered:
        head = Span("FAILED, recovered  ", "yellow", bold=True)
        where.append("the run got past it")
    else:
        head = Span("FAILED  ", "red", bold=True)
    node = Span(safe(s(step.get("node_id")), 200), head.color, bold=True)
    place = f"({', '.join(where)})"
    if cells(head.text) + cells(node.text) + 3 + cells(place) <= width:
        return [paint([head, node, Span(f"   {place}")], width)]
    return [paint([head, node], width), *prose(place, width, indent=_IN)]


def _hints(block: Block, hints: list[str], width: int) -> list[str]:
    unique = list(dict.fromkeys(hints))
    new = [h for h in unique if h not in block.hints]
    if not unique:
        return []
    if not new:
        return _field("hints", "as above", width)
    lines = [style(_IN + "hints", "cyan", bold=True)]
    for h in new:
        lines += prose(f"- {safe(h, MAX_MESSAGE_CHARS)}", width, indent=_IN * 3, first=_IN * 2)
    block.hints.update(new)
    return lines


def failure_block(block: Block, step: dict[str, Any], *, ending: bool, recovered: bool) -> list[str]:
    """A failed (or failed-in-flight, or cancelled) step: what it raised, why, what to try, its input.

    A step whose error is already part of a chain printed above (a child whose failure its
    parent re-raised) is shown in two lines: its error, where it was shown, and its input.
    """
    width = block.width
    error = obj(step, "error")
    details = obj(error, "details")
    kind, message = s(details.get("type"), "?"), s(error.get("message"), "")
    node = s(step.get("node_id"))
    lines = _title(step, recovered=recovered, width=width)
    seen_in = block.errors.get((kind, message))
    if not ending and seen_in is not None:
        lines += _field("error", f"{_error_text(kind, message)} (in the chain of {safe(seen_in, 200)} above)",
                        width)
        return lines + _input_lines(step, width)
    if error:
        lines += _field("error", _error_text(kind, message), width)
        lines += _field("code", safe(s(error.get("code")), 200), width)
    raw_chain = details.get("chain")
    chain = [c for c in raw_chain if isinstance(c, dict)] if isinstance(raw_chain, list) else []
    for link in chain:
        block.errors.setdefault((s(link.get("type"), "?"), s(link.get("message"), "")), node)
    block.errors.setdefault((kind, message), node)
    lone = len(chain) == 1 and (s(chain[0].get("type"), "?"), s(chain[0].get("message"), "")) == (
        kind, message)
    if chain and not (lone and not isinstance(chain[0].get("exceptions"), list)):
        lines += _chain_lines(chain, width)
    trace = details.get("trace")
    if isinstance(trace, str) and trace:
        shown = safe_lines(trace)
        lines.append(_IN + "trace")
        for ln in shown[:MAX_TRACE_LINES]:
            lines += prose(ln, width, indent=_IN * 3, first=_IN * 2)
        if len(shown) > MAX_TRACE_LINES:
            lines += prose(f"... and {len(shown) - MAX_TRACE_LINES} more lines", width, indent=_IN * 2)
    hints = details.get("hints")
    lines += _hints(block, [h for h in hints if isinstance(h, str)] if isinstance(hints, list) else [], width)
    issues = step.get("validation_issues")
    dicts = [i for i in issues if isinstance(i, dict)] if isinstance(issues, list) else []
    if dicts:
        lines.append(_IN + "validation issues")
        lines += issue_lines(dicts[:20], width, _IN * 2)
        if len(dicts) > 20:
            lines += prose(f"... and {len(dicts) - 20} more", width, indent=_IN * 2)
    return lines + _input_lines(step, width)
