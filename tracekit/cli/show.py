"""``tracekit show``: what a person needs in the minute after a failure.

The header says what ran and how it ended; the step table shows the order things ran, nested as
they ran; then each failed step with its whole error chain down to the root cause, the hints, the
validation issues and the captured input. Works on invalid traces too (it says so first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import click

from tracekit.cli._io import TraceLoadError, dump_json, exit_for, load_trace
from tracekit.cli._style import STATUS_COLORS, echo, fmt_duration, short_hash, style, table
from tracekit.cli._trace import failing_steps, obj, s, steps, steps_tree
from tracekit.trace import last_good
from tracekit.trace.semantic import parse_time, validate_trace

__all__ = ["render", "show", "summary"]

#: Captured inputs longer than this are cut in the text view (``--json`` keeps them whole).
MAX_INPUT_CHARS: Final = 2000
#: Error messages in the chain are cut to this many characters per link in the text view.
MAX_MESSAGE_CHARS: Final = 500
#: Failed steps detailed in the text view; a retry storm must not bury the first failure.
MAX_FAILURES_SHOWN: Final = 5
_INDENT: Final = "  "


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _elapsed(run: dict[str, Any]) -> str | None:
    start, end = parse_time(run.get("started_at")), parse_time(run.get("finished_at"))
    if start is None or end is None:
        return None
    return fmt_duration({"duration_ns": int((end - start).total_seconds() * 1e9)})


def _failure(step: dict[str, Any]) -> dict[str, Any]:
    error = obj(step, "error")
    details = obj(error, "details")
    chain = details.get("chain")
    issues = step.get("validation_issues")
    return {
        "node_id": step.get("node_id"),
        "step_id": step.get("step_id"),
        "attempt": step.get("attempt"),
        "status": step.get("status"),
        "code": error.get("code"),
        "type": details.get("type"),
        "message": error.get("message"),
        "phase": details.get("phase"),
        "chain": [c for c in chain if isinstance(c, dict)] if isinstance(chain, list) else [],
        "hints": [h for h in details.get("hints", []) if isinstance(h, str)]
        if isinstance(details.get("hints"), list) else [],
        "trace": details.get("trace"),
        "validation_issues": [i for i in issues if isinstance(i, dict)] if isinstance(issues, list) else [],
        "input": obj(step, "invocation_json").get("payload") if "invocation_json" in step else None,
        "input_captured": isinstance(step.get("invocation_json"), dict),
    }


def summary(doc: dict[str, Any], problems: int) -> dict[str, Any]:
    """Everything ``show`` prints, as data (the ``--json`` form)."""
    run = obj(doc, "run")
    return {
        "trace_version": doc.get("trace_version"),
        "valid": problems == 0,
        "problems": problems,
        "flow": obj(doc, "flow"),
        "pack": obj(doc, "pack"),
        "run": run,
        "recorder": obj(doc, "recorder"),
        "git_sha": doc.get("git_sha"),
        "buffer": obj(doc, "buffer"),
        "steps": [
            {
                "depth": depth,
                "step_id": st.get("step_id"),
                "parent_step_id": st.get("parent_step_id"),
                "node_id": st.get("node_id"),
                "status": st.get("status"),
                "attempt": st.get("attempt"),
                "started_at": st.get("started_at"),
                "duration_ns": st.get("duration_ns"),
                "duration_ms": st.get("duration_ms"),
                "input_hash": short_hash(st.get("input_hash")),
                "output_hash": short_hash(st.get("output_hash")),
            }
            for depth, st in steps_tree(doc)
        ],
        "failures": [_failure(st) for st in failing_steps(doc)],
        "in_flight": [st.get("step_id") for st in steps(doc) if st.get("status") == "in_flight"],
        "errors": [e for e in doc.get("errors", []) if isinstance(e, dict)]
        if isinstance(doc.get("errors"), list) else [],
        "errors_dropped": doc.get("errors_dropped"),
    }


def _header(doc: dict[str, Any], problems: int) -> list[str]:
    flow, pack, run = obj(doc, "flow"), obj(doc, "pack"), obj(doc, "run")
    outcome = s(run.get("outcome"), "unknown")
    lines = []
    if problems:
        lines.append(style(f"note: this trace breaks {problems} rule(s) of the schema; "
                           "run `tracekit validate` for details", "yellow"))
    digest = f" ({pack['resolved_digest']})" if isinstance(pack.get("resolved_digest"), str) else ""
    lines.append(f"{style('flow', bold=True)}     {s(flow.get('id'))} v{s(flow.get('version'))}   "
                 f"{style('pack', bold=True)} {s(pack.get('pack_ref'))}{digest}")
    verdict = style(outcome.upper(), STATUS_COLORS.get(outcome), bold=True)
    lines.append(f"{style('run', bold=True)}      {verdict}   {s(run.get('id'))}")
    times = f"started {s(run.get('started_at'))}"
    if "finished_at" in run:
        times += f"   finished {s(run.get('finished_at'))}"
        if (took := _elapsed(run)) is not None:
            times += f"   ({took})"
    lines.append(f"{style('time', bold=True)}     {times}")
    rec, buf = obj(doc, "recorder"), obj(doc, "buffer")
    where = [f"host {s(run.get('host'))} pid {s(run.get('pid'))}"]
    if isinstance(doc.get("git_sha"), str):
        where.append(f"git {doc['git_sha'][:12]}")
    if rec:
        where.append(f"recorder {s(rec.get('name'))} {s(rec.get('version'))}")
    if buf:
        where.append(f"buffer {s(buf.get('capacity'))} (dropped {s(buf.get('dropped'), '0')})")
    lines.append(f"{style('where', bold=True)}    " + "   ".join(where))
    return lines


def _step_table(doc: dict[str, Any]) -> list[str]:
    tree = steps_tree(doc)
    n_dropped = obj(doc, "buffer").get("dropped")
    title = f"steps ({len(tree)}, in start order"
    title += f"; {n_dropped} older ones dropped)" if isinstance(n_dropped, int) and n_dropped else ")"
    if not tree:
        return [style(title, bold=True), _INDENT + "(no steps recorded)"]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for depth, st in tree:
        status = s(st.get("status"), "completed")
        marker = "> " if status == "in_flight" else ("x " if status == "failed" else "  ")
        rows.append([
            marker + _INDENT * depth + ("└ " if depth else "") + s(st.get("node_id")),
            status.replace("in_flight", "IN FLIGHT"),
            s(st.get("attempt"), "1"),
            fmt_duration(st),
            short_hash(st.get("input_hash")),
            short_hash(st.get("output_hash")),
            s(st.get("step_id")),
        ])
        colors.append(STATUS_COLORS.get(status))
    body = table(["  node", "status", "attempt", "duration", "input", "output", "step"], rows, colors)
    return [style(title, bold=True), *(_INDENT + line for line in body)]


def _failure_lines(f: dict[str, Any]) -> list[str]:
    where = [f"step {s(f['step_id'])}", f"attempt {s(f['attempt'], '1')}"]
    if isinstance(f["phase"], str):
        where.append(f"phase {f['phase']}")
    lines = [style(f"FAILED  {s(f['node_id'])}", "red", bold=True) + f"   ({', '.join(where)})"]
    lines.append(f"{_INDENT}error    {s(f['type'], '?')}: {_cut(s(f['message'], ''), MAX_MESSAGE_CHARS)}")
    lines.append(f"{_INDENT}code     {s(f['code'])}")
    chain = f["chain"]
    if chain:
        lines.append(f"{_INDENT}chain    (raised first, root cause last)")
        for n, link in enumerate(chain):
            rel = s(link.get("relation"), "raised" if n == 0 else "cause")
            label = {"raised": "raised", "cause": "caused by", "context": "while handling"}.get(rel, rel)
            root = style("  <- root cause", "red") if n == len(chain) - 1 and n > 0 else ""
            text = f"{s(link.get('type'), '?')}: {_cut(s(link.get('message'), ''), MAX_MESSAGE_CHARS)}"
            lines.append(f"{_INDENT * 2}{n + 1}. {label} {text}{root}")
            members = link.get("exceptions")
            if isinstance(members, list):
                for m in members:
                    if isinstance(m, dict):
                        lines.append(f"{_INDENT * 4}- {s(m.get('type'), '?')}: {s(m.get('message'), '')}")
    if isinstance(f["trace"], str) and f["trace"]:
        lines.append(f"{_INDENT}trace")
        lines.extend(f"{_INDENT * 2}{ln}" for ln in f["trace"].splitlines())
    if f["hints"]:
        lines.append(f"{_INDENT}{style('hints', 'cyan', bold=True)}")
        lines.extend(f"{_INDENT * 2}- {h}" for h in f["hints"])
    if f["validation_issues"]:
        lines.append(f"{_INDENT}validation issues")
        for i in f["validation_issues"]:
            at = f" at {i['path']}" if isinstance(i.get("path"), str) else ""
            lines.append(f"{_INDENT * 2}- [{s(i.get('severity'), 'error')}] {s(i.get('code'))}: "
                         f"{s(i.get('message'), '')}{at}")
    if f["input_captured"]:
        text = dump_json(f["input"])
        lines.append(f"{_INDENT}input (captured, secrets redacted)")
        lines.extend(f"{_INDENT * 2}{ln}" for ln in _cut(text, MAX_INPUT_CHARS).splitlines())
    else:
        lines.append(f"{_INDENT}input    not captured (set TRACEKIT_TRACE_CAPTURE_INPUTS=1 to keep it)")
    return lines


def _errors_lines(data: dict[str, Any]) -> list[str]:
    errors = data["errors"]
    if not errors:
        return []
    lines = [style(f"runner errors ({len(errors)})", bold=True)]
    for e in errors:
        node = f" node {e['node_id']}" if isinstance(e.get("node_id"), str) else ""
        lines.append(f"{_INDENT}{s(e.get('time'))}  {s(e.get('scope'))}{node}  {s(e.get('code'))}: "
                     f"{_cut(s(e.get('message'), ''), MAX_MESSAGE_CHARS)}")
    if isinstance(data["errors_dropped"], int) and data["errors_dropped"]:
        lines.append(f"{_INDENT}... and {data['errors_dropped']} more (dropped past the cap)")
    return lines


def render(doc: dict[str, Any], problems: int = 0) -> list[str]:
    """The text of ``show`` for one loaded trace."""
    data = summary(doc, problems)
    lines = [*_header(doc, problems), "", *_step_table(doc)]
    for f in data["failures"][:MAX_FAILURES_SHOWN]:
        lines += ["", *_failure_lines(f)]
    if len(data["failures"]) > MAX_FAILURES_SHOWN:
        more = len(data["failures"]) - MAX_FAILURES_SHOWN
        lines += ["", f"... and {more} more failed step(s); `tracekit show --json` lists them all"]
    in_flight = [st for st in steps(doc) if st.get("status") == "in_flight"]
    if in_flight:
        lines += ["", style(f"in flight when written ({len(in_flight)})", "magenta", bold=True)]
        for st in in_flight:
            err = obj(st, "error")
            why = f"  ({s(err.get('code'))}: {s(err.get('message'), '')})" if err else ""
            lines.append(f"{_INDENT}{s(st.get('node_id'))}  step {s(st.get('step_id'))}  running for "
                         f"{fmt_duration(st)}{why}")
    if (errs := _errors_lines(data)):
        lines += ["", *errs]
    if not data["failures"] and not in_flight and not data["errors"]:
        lines += ["", style("no failures recorded", "green")]
    return lines


@click.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the same information as JSON.")
def show(path: Path, as_json: bool) -> None:
    """Show a trace: the run, its steps, and each failure with its cause and hints.

    \b
    Examples:
      tracekit show trace.json
      tracekit show "$(tracekit ls traces/ --latest)"
      tracekit show trace.json --json | jq '.failures[0].chain'
    """
    try:
        doc = load_trace(path)
    except TraceLoadError as exc:
        echo(str(exc), err=True)
        raise click.exceptions.Exit(exit_for(invalid=True, unreadable=exc.unreadable)) from None
    try:
        problems = len(validate_trace(doc))
    except RecursionError:
        problems = 1
    if as_json:
        click.echo(dump_json(summary(doc, problems)))
        return
    for line in render(doc, problems):
        echo(line)
    if (since := last_good.summary_line(path, doc)) is not None:
        echo(since)
