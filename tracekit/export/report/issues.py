"""Validation issues of every step (errors, warnings and info alike), in the report's own table.

A warning on a step that completed is easy to miss and often the first sign of the next failure
("order 1003 has a non-positive amount"), so the report lists them all, not only the failed
step's errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from tracekit.export._timeline import StepSpan, Timeline
from tracekit.export.report._html import esc
from tracekit.export.report.timeline import step_anchor

__all__ = ["issue_list", "render_issues"]

_MAX_SHOWN: Final = 500  # issues listed before "and N more"
_SEVERITY_CLASS: Final = {"error": "sev-error", "warning": "sev-warning", "info": "sev-info"}


def _issues(step: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = step.get("validation_issues")
    return [i for i in raw if isinstance(i, Mapping)] if isinstance(raw, list) else []


def _severity(issue: Mapping[str, Any]) -> str:
    value = issue.get("severity")
    return value if isinstance(value, str) else "error"


def issue_list(step: Mapping[str, Any]) -> str:
    """A step's issues as a list (inside its failure block)."""
    items = [
        f'<li><span class="badge {_SEVERITY_CLASS.get(_severity(i), "sev-info")}">{esc(_severity(i))}</span> '
        f"<code>{esc(i.get('code'))}</code>: {esc(i.get('message'))}"
        + (f' <span class="relation">at <code>{esc(i.get("path"))}</code></span>' if i.get("path") else "")
        + "</li>"
        for i in _issues(step)[:_MAX_SHOWN]
    ]
    return f'<p><b>Validation issues</b></p><ul class="issues">{"".join(items)}</ul>' if items else ""


def render_issues(timeline: Timeline) -> str:
    """Every step's issues, by step in tree order."""
    rows: list[str] = []
    total = 0
    for span in timeline.tree_order():
        for issue in _issues(span.step):
            total += 1
            if len(rows) < _MAX_SHOWN:
                rows.append(_row(span, issue))
    if not rows:
        return '<p class="empty">None.</p>'
    more = f'<p class="empty">and {total - len(rows)} more</p>' if total > len(rows) else ""
    return (
        "<table><thead><tr><th>node</th><th>step status</th><th>severity</th><th>code</th><th>message</th>"
        f"<th>path</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
    )


def _row(span: StepSpan, issue: Mapping[str, Any]) -> str:
    severity = _severity(issue)
    return (
        f'<tr class="issue issue-{esc(severity)}">'
        f'<td><a href="#{step_anchor(span)}">{esc(span.node_id)}</a></td>'
        f'<td><span class="badge st-{esc(span.status)}">{esc(span.status)}</span></td>'
        f"<td>{esc(severity)}</td><td><code>{esc(issue.get('code'))}</code></td>"
        f"<td>{esc(issue.get('message'))}</td><td class=\"mono\">{esc(issue.get('path'))}</td></tr>"
    )
