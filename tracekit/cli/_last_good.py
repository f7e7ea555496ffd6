"""``tracekit diff --last-good TRACE``: every kept step of a trace against its flow's last good run."""

from __future__ import annotations

from pathlib import Path

import click

from tracekit.cli._io import EXIT_INVALID, EXIT_OK, EXIT_USAGE, TraceLoadError, dump_json, load_trace
from tracekit.cli._style import echo, style
from tracekit.trace import last_good
from tracekit.trace.text import esc

__all__ = ["diff_last_good"]


def diff_last_good(trace: Path, as_json: bool) -> int:
    """Print the comparison; the exit code: 0 no step differs, 1 some does, 2 no last good run."""
    try:
        doc = load_trace(trace)
    except TraceLoadError as exc:
        echo(str(exc), err=True)
        return EXIT_USAGE if exc.unreadable else EXIT_INVALID
    good = last_good.load_for(trace, doc)
    if good is None:
        flow = doc.get("flow")
        flow_id = flow.get("id") if isinstance(flow, dict) else None
        where = last_good.path_for(trace.parent, str(flow_id))
        click.echo(f"tracekit: no last good run of flow {esc(flow_id)} beside {trace} (looked for {where}); "
                   "a successful run in mode on or always leaves one", err=True)
        return EXIT_USAGE
    diffs = last_good.compare(doc, good)
    first = next((d for d in diffs if d.differs), None)
    if as_json:
        ref = {k: good.get(k) for k in ("run_id", "finished_at")}
        click.echo(dump_json({"trace": str(trace), "last_good": ref,
                              "match": first is None, "first_difference": first.to_json() if first else None,
                              "steps": [d.to_json() for d in diffs]}))
        return EXIT_OK if first is None else EXIT_INVALID
    run, when = esc(good.get("run_id")), esc(good.get("finished_at"))
    echo(style(f"against the last good run {run} (finished {when})", bold=True))
    width = max([len(esc(d.node_id)) for d in diffs] + [4])
    echo(style(f"{'node'.ljust(width)}  input    output", bold=True))
    for d in diffs:
        color = "red" if d.differs else None
        echo(style(f"{esc(d.node_id).ljust(width)}  {d.input.ljust(7)}  {d.output}", color))
    if first is None:
        echo(style("no difference in the steps kept", "green"))
    else:
        what = "input" if first.input == "differs" else "output"
        echo(style(f"first difference at {esc(first.node_id)}: {what} differs", "red", bold=True))
    return EXIT_OK if first is None else EXIT_INVALID
