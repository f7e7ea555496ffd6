"""What went wrong: each failed step's error chain (raised error first, root cause last), hints,
traceback (collapsed), then the steps still in flight and the runner-level ``errors[]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from tracekit.export._timeline import StepSpan, Timeline, error_of, section
from tracekit.export.report._html import esc, fmt_duration, hash_short, text
from tracekit.export.report.issues import issue_list
from tracekit.export.report.timeline import never_ran, step_anchor

__all__ = ["render_errors", "render_failures", "render_unfinished"]

_MAX_GROUP_SHOWN: Final = 20  # members of an exception group listed before "and N more"


def _list(value: Any) -> list[Any]:
    # A trace read from disk may hold anything where a list belongs: show nothing, never crash.
    return value if isinstance(value, list) else []


def _group(link: Mapping[str, Any]) -> str:
    members = link.get("exceptions")
    if not isinstance(members, list) or not members:
        return ""
    items = [
        f"<li><code>{esc(m.get('type'))}</code>: {esc(m.get('message'))}</li>"
        for m in members[:_MAX_GROUP_SHOWN]
        if isinstance(m, Mapping)
    ]
    dropped = link.get("exceptions_dropped")
    more = max(0, len(members) - _MAX_GROUP_SHOWN) + (dropped if isinstance(dropped, int) else 0)
    if more > 0:
        items.append(f'<li class="empty">and {more} more</li>')
    return f"<ul>{''.join(items)}</ul>"


def _chain(error: Mapping[str, Any]) -> str:
    details = section(error, "details")
    links = [x for x in _list(details.get("chain")) if isinstance(x, Mapping)]
    if not links:
        return (f"<p><code>{esc(details.get('type'), 'Error')}</code>: "
                f"{esc(error.get('message'))}</p>")
    items = []
    for i, link in enumerate(links):
        root = i == len(links) - 1 and len(links) > 1
        trace = link.get("trace")
        items.append(
            f'<li class="{"root" if root else ""}"><span class="relation">{esc(link.get("relation"))}</span> '
            f"<code>{esc(link.get('type'))}</code>: {esc(link.get('message'))}"
            + ('<span class="root-tag">root cause</span>' if root else "")
            + (f"<pre>{esc(trace)}</pre>" if trace else "")
            + _group(link)
            + "</li>"
        )
    return f'<ol class="chain">{"".join(items)}</ol>'


def _error_body(error: Mapping[str, Any]) -> str:
    details = section(error, "details")
    parts = [_chain(error)]
    hints = details.get("hints")
    if isinstance(hints, list) and hints:
        parts.append("<p><b>What to try</b></p><ul>" + "".join(f"<li>{esc(h)}</li>" for h in hints) + "</ul>")
    if details.get("trace") and not any(
        isinstance(x, Mapping) and x.get("trace") for x in _list(details.get("chain"))
    ):
        parts.append(f"<pre>{esc(details.get('trace'))}</pre>")
    if details.get("traceback"):
        parts.append(f"<details><summary>Traceback</summary><pre>{esc(details.get('traceback'))}</pre></details>")
    return "".join(parts)


def _input(step: Mapping[str, Any]) -> str:
    """The failed step's input: its hash, and the captured (redacted) payload when there is one."""
    full = hash_short(step.get("input_hash"))[1]
    parts = [f"<p>input hash <code>{esc(full)}</code></p>"] if full else []
    invocation = step.get("invocation_json")
    if isinstance(invocation, Mapping) and "payload" in invocation:
        try:
            payload = orjson.dumps(invocation["payload"], option=orjson.OPT_INDENT_2).decode()
        except TypeError:
            payload = repr(invocation["payload"])
        parts.append("<details open><summary>Input (captured, redacted)</summary>"
                     f"<pre>{esc(payload)}</pre></details>")
    return "".join(parts)


def render_failures(timeline: Timeline, failing: StepSpan | None) -> str:
    """A block per failed step, the first failure first."""
    failed = [s for s in timeline.spans if s.status == "failed"]
    failed.sort(key=lambda s: (s is not failing, s.end_ns, s.index))
    if not failed:
        return '<p class="empty">No step failed.</p>'
    blocks = []
    for span in failed:
        error = error_of(span.step) or {}
        details = section(error, "details")
        label = "first failure" if span is failing else "also failed"
        if never_ran(span.step):
            label += ", never ran: rejected by validation"
        phase = f", phase {esc(details.get('phase'))}" if details.get("phase") else ""
        blocks.append(
            f'<div class="failure" data-step-id="{esc(span.step_id)}">'
            f'<h3><a href="#{step_anchor(span)}">{esc(span.node_id)}</a> '
            f'<span class="relation">({esc(label)}: step {esc(span.step_id)}, attempt '
            f"{esc(span.step.get('attempt'), '1')}{phase})</span></h3>"
            f"<p><b>{esc(error.get('code'), 'error')}</b>: {esc(error.get('message'))}</p>"
            f"{_error_body(error)}{issue_list(span.step)}{_input(span.step)}</div>"
        )
    return "".join(blocks)


def render_unfinished(timeline: Timeline) -> str:
    """Steps that had not ended (in flight) or were cancelled when the trace was written."""
    spans = [s for s in timeline.spans if s.status in ("in_flight", "cancelled")]
    if not spans:
        return ""
    rows = []
    for span in spans:
        error = error_of(span.step)
        note = f"{text(error.get('code'))}: {text(error.get('message'))}" if error else ""
        rows.append(
            f'<tr><td><a href="#{step_anchor(span)}">{esc(span.node_id)}</a></td>'
            f'<td class="mono">{esc(span.step_id)}</td>'
            f'<td><span class="badge st-{esc(span.status)}">{esc(span.status)}</span></td>'
            f"<td>{esc(fmt_duration(span.duration_ns))}"
            f"{' so far' if span.status == 'in_flight' else ''}</td><td>{esc(note)}</td></tr>"
        )
    return (
        "<h2>Unfinished steps</h2><table><thead><tr><th>node</th><th>step</th><th>status</th>"
        f"<th>elapsed</th><th>error</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def render_errors(envelope: Mapping[str, Any]) -> str:
    """The runner-level ``errors[]`` (failures that belong to no step)."""
    raw = envelope.get("errors")
    events = [e for e in raw if isinstance(e, Mapping)] if isinstance(raw, list) else []
    dropped = envelope.get("errors_dropped")
    note = (f'<p class="warn">{esc(dropped)} more runner errors were dropped (cap reached).</p>'
            if isinstance(dropped, int) and dropped > 0 else "")
    if not events:
        return '<p class="empty">None.</p>' + note
    rows = []
    for event in events:
        where = " / ".join(esc(event.get(k)) for k in ("node_id", "step_id") if event.get(k))
        tags = event.get("tags")
        tag_text = ", ".join(f"{k}={v}" for k, v in tags.items()) if isinstance(tags, Mapping) else ""
        record = section(event, "error")
        body = f"<details><summary>error chain</summary>{_error_body(record)}</details>" if record else ""
        rows.append(
            f"<tr><td>{esc(event.get('scope'))}</td><td class=\"mono\">{esc(event.get('time'))}</td>"
            f"<td>{esc(event.get('code'))}</td><td>{where}</td>"
            f"<td>{esc(event.get('message'))}{body}</td><td>{esc(tag_text)}</td></tr>"
        )
    return (
        "<table><thead><tr><th>scope</th><th>time</th><th>code</th><th>node / step</th>"
        f"<th>message</th><th>tags</th></tr></thead><tbody>{''.join(rows)}</tbody></table>" + note
    )
