"""The timeline (bars positioned by start and duration, children under their parents) and the
steps table, rendered as static HTML: no script, so the report reads the same with JS off."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from tracekit.export._timeline import StepSpan, Timeline, error_of, section
from tracekit.export.report._html import esc, fmt_duration, hash_short, text

__all__ = ["axis_ticks", "never_ran", "render_steps_table", "render_timeline", "step_anchor"]

_TICKS: Final = 5  # about this many axis labels across the timeline
_NICE: Final = (1.0, 2.0, 2.5, 5.0, 10.0)  # tick steps, times a power of ten
_END_GAP: Final = 0.12  # a round tick this close to the end label (share of the axis) is left out
_INDENT_PX: Final = 14  # per nesting level in the label column
_FLAGS: Final = {"failed": "FAILED", "in_flight": "IN FLIGHT", "cancelled": "cancelled"}


def step_anchor(span: StepSpan) -> str:
    """The id of a step's timeline row (positional, so any step id is safe in it)."""
    return f"step-{span.index}"


def never_ran(step: Mapping[str, Any]) -> bool:
    """A step rejected by validation before it started (the recorder's phase ``validation``)."""
    details = section(section(step, "error"), "details")
    return step.get("status") == "failed" and details.get("phase") == "validation"


def axis_ticks(total: int) -> list[tuple[float, int, bool]]:
    """(percent, ns, is_end) of the axis labels: round steps (1, 2, 2.5 or 5 times a power of ten)
    from 0, and a label at the run's end, so a reader sees 0, 100 ms, 200 ms ... 369 ms."""
    if total <= 0:
        return [(0.0, 0, False)]
    raw = total / _TICKS
    power = 10 ** math.floor(math.log10(raw))
    step = next(n * power for n in _NICE if n * power >= raw)
    ticks = [(i * step * 100 / total, round(i * step), False) for i in range(math.ceil(total / step) + 1)
             if i * step < total * (1 - _END_GAP) or i == 0]
    return [*ticks, (100.0, total, True)]


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
        f'<span class="tick{" end" if end else ""}" style="left:{pct:.2f}%">{esc(fmt_duration(ns))}</span>'
        for pct, ns, end in axis_ticks(total)
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
        bar = f"st-{esc(span.status)}"
        if never_ran(span.step):
            flag, bar = "NEVER RAN: rejected by validation", "never-ran"
        flag_html = f'<span class="flag {esc(span.status)}">{esc(flag)}</span>' if flag else ""
        if not never_ran(span.step):
            flag_html += f'<span class="flag">{esc(fmt_duration(span.duration_ns))}</span>'
        rows.append(
            f'<div class="{classes}" id="{step_anchor(span)}" data-step-id="{esc(span.step_id)}">'
            f'<div class="label" style="padding-left:{8 + span.depth * _INDENT_PX}px" '
            f'title="{esc(_tooltip(span))}">{esc(span.node_id)}{flag_html}</div>'
            f'<div class="track"><div class="bar {bar}" '
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
            f'<span class="badge st-{esc(span.status)}">{esc(span.status)}</span>'
            + (' <span class="relation">never ran: rejected by validation</span>' if never_ran(step) else ""),
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
