"""``tracekit show``: what a person needs in the minute after a failure, on one terminal screen.

First a short header (what ran, how it ended), then the failure that ended the run with its
whole error chain down to the root cause, the hints, the validation issues and the captured
input, so it is on the first screen however many steps ran. Then the step table (start order,
nested as they ran), the other failures (a hint already shown is not repeated; a child whose error
is the root cause above is one line), steps still in flight, validation issues on any other step,
and the runner-level errors. Works on invalid traces too (it says so first).

Every line fits the terminal (``COLUMNS`` / :func:`shutil.get_terminal_size`): prose wraps,
cells and ids are cut with an ellipsis. Every string from the trace is escaped and capped
(:mod:`tracekit.cli._text`). ``--json`` prints the same facts whole, for tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import click

from tracekit.cli._io import TraceLoadError, dump_json, exit_for, load_trace
from tracekit.cli._layout import Block, failure_block, issue_lines, labelled, prose
from tracekit.cli._style import STATUS_COLORS, Column, Span, echo, fmt_duration, paint, short_hash, table
from tracekit.cli._text import safe, terminal_width, wrap
from tracekit.cli._trace import ending_failure, failing_steps, obj, recovered_steps, s, steps, steps_tree
from tracekit.trace import last_good
from tracekit.trace.check import check_trace
from tracekit.trace.semantic import parse_time

__all__ = ["render", "show", "summary"]

#: Failed steps detailed in the text view; a retry storm must not bury the first failure.
MAX_FAILURES_SHOWN: Final = 5
#: Rows of the step table, runner errors and validation issues listed before "... and N more".
MAX_ROWS: Final = 200
MAX_ERRORS_SHOWN: Final = 20
MAX_ISSUES_SHOWN: Final = 20
_INDENT: Final = "  "
_MAX_TREE_INDENT: Final = 8  # deeper steps are not indented further


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
    ending = ending_failure(doc)
    recovered = recovered_steps(doc)
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
        "ended_by": ending.get("step_id") if ending is not None else None,
        "recovered": [st.get("step_id") for i, st in enumerate(steps(doc)) if i in recovered],
        "in_flight": [st.get("step_id") for st in steps(doc) if st.get("status") == "in_flight"],
        "errors": [e for e in doc.get("errors", []) if isinstance(e, dict)]
        if isinstance(doc.get("errors"), list) else [],
        "errors_dropped": doc.get("errors_dropped"),
    }


def _header(doc: dict[str, Any], problems: int, width: int) -> list[str]:
    flow, pack, run = obj(doc, "flow"), obj(doc, "pack"), obj(doc, "run")
    outcome = s(run.get("outcome"), "unknown")
    lines: list[str] = []
    if problems:
        lines += prose(f"note: this trace breaks {problems} rule(s) of the schema; run `tracekit validate` "
                       "for details", width, color="yellow")
    digest = f" ({safe(pack['resolved_digest'])})" if isinstance(pack.get("resolved_digest"), str) else ""
    lines += labelled("flow", [
        [Span(f"{safe(s(flow.get('id')))} v{safe(s(flow.get('version')))}")],
        [Span("pack", bold=True), Span(f" {safe(s(pack.get('pack_ref')))}{digest}")],
    ], width)
    verdict = Span(safe(outcome.upper()), STATUS_COLORS.get(outcome), bold=True)
    lines += labelled("run", [[verdict], [Span(safe(s(run.get("id"))))]], width)
    times = [[Span(f"started {safe(s(run.get('started_at')))}")]]
    if "finished_at" in run:
        times.append([Span(f"finished {safe(s(run.get('finished_at')))}")])
        if (took := _elapsed(run)) is not None:
            times.append([Span(f"({took})")])
    lines += labelled("time", times, width)
    rec, buf = obj(doc, "recorder"), obj(doc, "buffer")
    where = [[Span(f"host {safe(s(run.get('host')))} pid {safe(s(run.get('pid')))}")]]
    if isinstance(doc.get("git_sha"), str):
        where.append([Span(f"git {safe(doc['git_sha'][:12])}")])
    if rec:
        where.append([Span(f"recorder {safe(s(rec.get('name')))} {safe(s(rec.get('version')))}")])
    if buf:
        capacity, dropped = safe(s(buf.get("capacity"))), safe(s(buf.get("dropped"), "0"))
        where.append([Span(f"buffer {capacity} (dropped {dropped})")])
    lines += labelled("where", where, width)
    return lines


def _status_cell(status: str, recovered: bool) -> str:
    if status == "failed" and recovered:
        return "recovered"
    return status.replace("in_flight", "IN FLIGHT")


def _step_table(doc: dict[str, Any], width: int) -> list[str]:
    tree = steps_tree(doc)
    n_dropped = obj(doc, "buffer").get("dropped")
    title = f"steps ({len(tree)}, in start order"
    title += f"; {n_dropped} older ones dropped)" if isinstance(n_dropped, int) and n_dropped else ")"
    head = paint([Span(title, bold=True)], width)
    if not tree:
        return [head, paint([_INDENT + "(no steps recorded)"], width)]
    items = steps(doc)
    recovered = {id(items[i]) for i in recovered_steps(doc)}
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for depth, st in tree[:MAX_ROWS]:
        status = s(st.get("status"), "completed")
        marker = "> " if status == "in_flight" else ("x " if status == "failed" else "  ")
        shown = min(depth, _MAX_TREE_INDENT)
        rows.append([
            marker + _INDENT * shown + ("└ " if depth else "") + safe(s(st.get("node_id")), 200),
            _status_cell(status, id(st) in recovered),
            safe(s(st.get("attempt"), "1"), 20),
            fmt_duration(st),
            short_hash(st.get("input_hash")),
            short_hash(st.get("output_hash")),
            safe(s(st.get("step_id")), 200),
        ])
        colors.append("yellow" if id(st) in recovered else STATUS_COLORS.get(status))
    columns = [
        Column("  node", keep=0, shrink=True, min_width=10), Column("status", keep=1),
        Column("attempt", keep=5), Column("duration", keep=2), Column("input", keep=4),
        Column("output", keep=6), Column("step", keep=3, shrink=True, min_width=6),
    ]
    body = table(columns, rows, colors, width=width - len(_INDENT))
    out = [head, *(_INDENT + line for line in body)]
    if len(tree) > MAX_ROWS:
        out += prose(f"... and {len(tree) - MAX_ROWS} more steps; `tracekit show --json` lists them all",
                     width, indent=_INDENT)
    return out


def _errors_lines(data: dict[str, Any], width: int) -> list[str]:
    errors = data["errors"]
    if not errors:
        return []
    lines = [paint([Span(f"runner errors ({len(errors)})", bold=True)], width)]
    for e in errors[:MAX_ERRORS_SHOWN]:
        scope = s(e.get("scope"))
        node = safe(e["node_id"]) if isinstance(e.get("node_id"), str) else None
        if node is None:
            where = safe(scope)
        else:  # "node load", not "node node load"
            where = f"node {node}" if scope == "node" else f"{safe(scope)}, node {node}"
        text = f"{safe(s(e.get('time')))}  {where}  {safe(s(e.get('code')))}: {safe(s(e.get('message'), ''))}"
        lines += prose(text, width, indent=_INDENT * 3, first=_INDENT)
    more = len(errors) - MAX_ERRORS_SHOWN
    if more > 0:
        lines += prose(f"... and {more} more; `tracekit show --json` lists them all", width, indent=_INDENT)
    if isinstance(data["errors_dropped"], int) and data["errors_dropped"]:
        lines += prose(f"... and {data['errors_dropped']} more (dropped past the cap)", width, indent=_INDENT)
    return lines


def _issues_elsewhere(doc: dict[str, Any], shown: set[int], width: int) -> list[str]:
    """Validation issues (any severity) on steps whose block did not already list them."""
    found = [(st, st["validation_issues"]) for st in steps(doc)
             if id(st) not in shown and isinstance(st.get("validation_issues"), list)
             and any(isinstance(i, dict) for i in st["validation_issues"])]
    if not found:
        return []
    total = sum(sum(isinstance(i, dict) for i in issues) for _, issues in found)
    lines = [paint([Span(f"validation issues ({total} on {len(found)} step(s))", bold=True)], width)]
    listed = 0
    for st, issues in found:
        if listed >= MAX_ISSUES_SHOWN:
            break
        lines += prose(f"{safe(s(st.get('node_id')))} (step {safe(s(st.get('step_id')))}, "
                       f"{safe(s(st.get('status'), 'completed'))})", width, indent=_INDENT)
        dicts = [i for i in issues if isinstance(i, dict)][:MAX_ISSUES_SHOWN - listed]
        lines += issue_lines(dicts, width, _INDENT * 2)
        listed += len(dicts)
    if total > listed:
        lines += prose(f"... and {total - listed} more; `tracekit show --json` lists them all", width,
                       indent=_INDENT)
    return lines


def _in_flight_lines(doc: dict[str, Any], skip: set[int], width: int) -> list[str]:
    in_flight = [st for st in steps(doc) if st.get("status") == "in_flight"]
    if not in_flight:
        return []
    lines = [paint([Span(f"in flight when written ({len(in_flight)})", "magenta", bold=True)], width)]
    for st in in_flight[:MAX_ROWS]:
        err = obj(st, "error")
        why = ""
        if err and id(st) not in skip:
            why = f"  ({safe(s(err.get('code')))}: {safe(s(err.get('message'), ''))})"
        elif err:
            why = "  (failed with the run: see above)"
        lines += prose(f"{safe(s(st.get('node_id')))}  step {safe(s(st.get('step_id')))}  running for "
                       f"{fmt_duration(st)}{why}", width, indent=_INDENT * 2, first=_INDENT)
    return lines


def _failures(
    doc: dict[str, Any], ending: dict[str, Any] | None, width: int
) -> tuple[list[str], list[str], set[int]]:
    """(the ending failure's lines, the other failures' lines, ids of steps detailed)."""
    block = Block(width)
    items = steps(doc)
    recovered = {id(items[i]) for i in recovered_steps(doc)}
    first: list[str] = []
    if ending is not None:
        first = failure_block(block, ending, ending=True, recovered=False)
    shown = {id(ending)} if ending is not None else set()
    others = [st for st in failing_steps(doc) if id(st) not in shown]
    # The ending failure's own failed descendants first (its causes), then the rest.
    rest: list[str] = []
    budget = MAX_FAILURES_SHOWN - (1 if ending is not None and ending.get("status") == "failed" else 0)
    for st in others[:max(budget, 0)]:
        rest += ["", *failure_block(block, st, ending=False, recovered=id(st) in recovered)]
        shown.add(id(st))
    hidden = len(others) - max(budget, 0)
    if hidden > 0:
        more = f"... and {hidden} more failed step(s); `tracekit show --json` lists them all"
        rest += ["", *prose(more, width)]
    return first, rest, shown


def render(doc: dict[str, Any], problems: int = 0, *, width: int | None = None) -> list[str]:
    """The text of ``show`` for one loaded trace, every line at most ``width`` cells wide."""
    width = terminal_width() if width is None else max(width, 1)
    raw_errors = doc.get("errors")
    data: dict[str, Any] = {  # the parts of summary() the text needs; summary() copies every step
        "run": obj(doc, "run"),
        "errors": [e for e in raw_errors if isinstance(e, dict)] if isinstance(raw_errors, list) else [],
        "errors_dropped": doc.get("errors_dropped"),
        "failures": any(st.get("status") == "failed" for st in steps(doc)),
        "in_flight": any(st.get("status") == "in_flight" for st in steps(doc)),
    }
    ending = ending_failure(doc)
    lines = _header(doc, problems, width)
    first, rest, shown = _failures(doc, ending, width)
    errors = _errors_lines(data, width)
    if first:
        lines += ["", *first]
    elif errors and s(data["run"].get("outcome"), "") == "failure":
        lines += ["", *errors]  # the run failed outside any step: that is its failure
        errors = []
    lines += ["", *_step_table(doc, width), *rest]
    if (flying := _in_flight_lines(doc, shown, width)):
        lines += ["", *flying]
    if (issues := _issues_elsewhere(doc, shown, width)):
        lines += ["", *issues]
    if errors:
        lines += ["", *errors]
    if not data["failures"] and not data["in_flight"] and not data["errors"] and ending is None:
        lines += ["", paint([Span("no failures recorded", "green")], width)]
    return lines


@click.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the same information as JSON.")
def show(path: Path, as_json: bool) -> None:
    """Show a trace: the run, the failure that ended it (cause, hints, input), and its steps.

    Lines fit the terminal (COLUMNS); colour is off when piped, under NO_COLOR or TERM=dumb.

    \b
    Examples:
      tracekit show trace.json
      tracekit show "$(tracekit ls traces/ --latest)"
      tracekit show trace.json --json | jq '.failures[0].chain'
    """
    try:
        doc = load_trace(path)
    except TraceLoadError as exc:
        echo(safe(str(exc)), err=True)
        raise click.exceptions.Exit(exit_for(invalid=True, unreadable=exc.unreadable)) from None
    problems = check_trace(doc, cap=1).total
    if as_json:
        click.echo(dump_json(summary(doc, problems)))
        return
    for line in render(doc, problems):
        echo(line)
    if (since := last_good.summary_line(path, doc)) is not None:
        for line in wrap(since, terminal_width(), indent="  ", first_indent=""):  # fits, as the rest
            echo(line)
