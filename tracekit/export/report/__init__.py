"""A trace as one self-contained HTML page, for the person reading it at 3 a.m.

The page has a header (flow, pack, run, outcome), a timeline of the steps (children under their
parents, the first failure highlighted, in-flight steps and steps that never ran marked, round
axis labels and one at the run's end), the failure's error chain (root cause last, hints,
traceback collapsed), the unfinished steps, every step's validation issues (warnings and info
too) and the runner-level errors.

It needs nothing from the network: CSS is inline and there is no script at all, and a Content
Security Policy forbids loading anything, so a hostile string that slipped past escaping still
could not run. Every string taken from the trace is HTML-escaped.

Threading contract: :func:`render_report` is a pure function of its argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from tracekit.export._timeline import StepSpan, Timeline, read_timeline, section
from tracekit.export.report._html import esc, fmt_duration
from tracekit.export.report.failures import render_errors, render_failures, render_unfinished
from tracekit.export.report.issues import render_issues
from tracekit.export.report.style import CSS
from tracekit.export.report.timeline import never_ran, render_steps_table, render_timeline

__all__ = ["CONTENT_SECURITY_POLICY", "first_failure", "render_report"]

#: Nothing may be fetched or run; only the inline stylesheet applies.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def first_failure(timeline: Timeline) -> StepSpan | None:
    """The step that failed first (by end time): the one the report highlights."""
    failed = [s for s in timeline.spans if s.status == "failed"]
    return min(failed, key=lambda s: (s.end_ns, s.index)) if failed else None


def _meta(pairs: list[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="meta">{items}</dl>'


def _header(envelope: Mapping[str, Any], timeline: Timeline) -> str:
    flow, run, pack = section(envelope, "flow"), section(envelope, "run"), section(envelope, "pack")
    buffer, recorder = section(envelope, "buffer"), section(envelope, "recorder")
    outcome = run.get("outcome") or "unknown"
    took = None
    if timeline.run_start_ns is not None and timeline.run_end_ns is not None:
        took = fmt_duration(max(0, timeline.run_end_ns - timeline.run_start_ns))
    counts = {s: sum(1 for x in timeline.spans if x.status == s)
              for s in ("completed", "failed", "in_flight", "cancelled")}
    steps = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n) or "none"
    if (rejected := sum(1 for x in timeline.spans if never_ran(x.step))):
        steps += f" ({rejected} never ran: rejected by validation)"
    out = [
        f'<h1>{esc(flow.get("id"), "?")} '
        f'<span class="badge outcome-{esc(outcome)}">{esc(outcome)}</span></h1>',
        _meta([
            ("flow", f"{flow.get('id', '?')} version {flow.get('version', '?')}"),
            ("pack", pack.get("pack_ref")),
            ("resolved digest", pack.get("resolved_digest")),
            ("run", run.get("id")),
            ("started", run.get("started_at")),
            ("finished", run.get("finished_at")),
            ("took", took),
            ("host / pid", " / ".join(str(run[k]) for k in ("host", "pid") if k in run)),
            ("steps shown", steps),
            ("git sha", envelope.get("git_sha")),
            ("runner", envelope.get("runner_version")),
            ("recorder", " ".join(str(recorder[k]) for k in ("name", "version") if k in recorder)),
        ]),
    ]
    dropped = buffer.get("dropped")
    if isinstance(dropped, int) and dropped > 0:
        out.append(f'<p class="warn">{esc(dropped)} earlier finished steps were dropped: the ring buffer '
                   f'keeps the last {esc(buffer.get("capacity"), "?")}.</p>')
    if any(s.estimated for s in timeline.spans):
        out.append('<p class="warn">This trace records no start times: steps are laid end to end in '
                   "the order recorded.</p>")
    return "".join(out)


def render_report(envelope: Mapping[str, Any]) -> str:
    """The whole report as one HTML document (a string).

    Raises :class:`~tracekit.export.ExportError` naming the field when the envelope is malformed.
    """
    timeline = read_timeline(envelope)
    failing = first_failure(timeline)
    flow = section(envelope, "flow")
    outcome = section(envelope, "run").get("outcome") or "unknown"
    title = f"tracekit: {flow.get('id', '?')} ({outcome})"
    body = "".join([
        _header(envelope, timeline),
        "<h2>Timeline</h2>",
        render_timeline(timeline, failing),
        "<h2>Failure</h2>",
        render_failures(timeline, failing),
        render_unfinished(timeline),
        "<h2>Validation issues</h2>",
        render_issues(timeline),
        "<h2>Runner errors</h2>",
        render_errors(envelope),
        "<h2>Steps</h2>",
        render_steps_table(timeline),
    ])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CONTENT_SECURITY_POLICY)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
