"""The timeline (bars positioned by start and duration, children under their parents) and the
steps table, rendered as static HTML: no script, so the report reads the same with JS off."""

from __future__ import annotations

from typing import Final

from tracekit.export._timeline import StepSpan, Timeline, error_of
from tracekit.export.report._html import esc, fmt_duration, hash_short, text

__all__ = ["render_steps_table", "render_timeline", "step_anchor"]

_TICKS: Final = 5  # axis labels across the timeline
_INDENT_PX: Final = 14  # per nesting level in the label column
_FLAGS: Final = {"failed": "FAILED", "in_flight": "IN FLIGHT", "cancelled": "cancelled"}


def step_anchor(span: StepSpan) -> str:
    """The id of a step's timeline row (positional, so any step id is safe in it)."""
    return f"step-{span.index}"


def _pct(ns: int, total: int) -> float:
    return max(0.0, min(100.0, ns * 100 / total))


def _tooltip(span: StepSpan) -> str:
    step = span.step
    lines = [
        f"{span.node_id} (step {span.step_id}, attempt {text(step.get('attempt'), '1')})",
        f"status: {span.status}; duration: {fmt_duration(span.duration_ns)}"
        + (" so far" if span.status == "in_flight" else ""),
    ]
    if span.parent_step_id:
        lines.append(f"parent: {span.parent_step_id}")
    for key in ("input_hash", "output_hash"):
        full = hash_short(step.get(key))[1]
        if full:
            lines.append(f"{key}: {full}")
    error = error_of(step)
    if error is not None:
        lines.append(f"error: {text(error.get('code'))}: {text(error.get('message'))[:300]}")
    return "\n".join(lines)


def _axis(total: int) -> str:
    ticks = "".join(
        f'<span class="tick" style="left:{i * 100 / _TICKS:.2f}%">'
        f"{esc(fmt_duration(total * i // _TICKS))}</span>"
        for i in range(_TICKS)
    )
    return f'<div class="axis"><div class="label mono">step</div><div class="track">{ticks}</div></div>'


def render_timeline(timeline: Timeline, failing: StepSpan | None) -> str:
    """One row per step in tree order; ``failing`` (the first failure) is highlighted."""
    if not timeline.spans:
        return '<p class="empty">The trace has no steps.</p>'
    total = max(timeline.end_ns - timeline.origin_ns, 1)
    rows = [_axis(total)]
    for span in timeline.tree_order():
        left = _pct(span.start_ns - timeline.origin_ns, total)
        width = min(_pct(span.duration_ns, total), 100 - left)  # CSS min-width keeps tiny steps visible
        classes = "row failing" if span is failing else "row"
        flag = _FLAGS.get(span.status)
        flag_html = f'<span class="flag {esc(span.status)}">{esc(flag)}</span>' if flag else ""
        flag_html += f'<span class="flag">{esc(fmt_duration(span.duration_ns))}</span>'
        rows.append(
            f'<div class="{classes}" id="{step_anchor(span)}" data-step-id="{esc(span.step_id)}">'
            f'<div class="label" style="padding-left:{8 + span.depth * _INDENT_PX}px" '
            f'title="{esc(_tooltip(span))}">{esc(span.node_id)}{flag_html}</div>'
            f'<div class="track"><div class="bar st-{esc(span.status)}" '
            f'style="left:{left:.3f}%;width:{width:.3f}%" title="{esc(_tooltip(span))}"></div></div></div>'
        )
    return f'<div class="timeline">{"".join(rows)}</div>'


def render_steps_table(timeline: Timeline) -> str:
    """Every step with its hashes, for reading (and printing) without tooltips."""
    if not timeline.spans:
        return ""
    head = ("step", "node", "component / operation", "attempt", "status", "start", "duration",
            "input hash", "output hash")
    body = []
    for span in timeline.tree_order():
        step = span.step
        cells = [
            f'<a href="#{step_anchor(span)}" class="mono">{esc(span.step_id)}</a>',
            esc(span.node_id),
            f"{esc(step.get('component_id'))} / {esc(step.get('operation'))}",
            esc(step.get("attempt"), "1"),
            f'<span class="badge st-{esc(span.status)}">{esc(span.status)}</span>',
            "+" + esc(fmt_duration(span.start_ns - timeline.origin_ns))
            + (" (estimated)" if span.estimated else ""),
            esc(fmt_duration(span.duration_ns)),
        ]
        for key in ("input_hash", "output_hash"):
            short, full = hash_short(step.get(key))
            cells.append(f'<span class="mono" title="{esc(full)}">{esc(short)}</span>')
        row_class = ' class="st-row-failed"' if span.status == "failed" else ""
        body.append(f"<tr{row_class}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
