"""``tracekit replay TRACE [STEP]``: re-run one node on its captured input (see docs/replay.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tracekit.cli._io import TraceLoadError, dump_json, load_trace
from tracekit.cli._style import echo, style
from tracekit.replay.emit import EmitError, emit_test
from tracekit.replay.engine import EXIT_CANNOT, EXIT_COMPLETES, Outcome
from tracekit.replay.engine import replay as run_replay
from tracekit.replay.plan import ReplayError
from tracekit.trace.text import esc

__all__ = ["replay"]

_TRACEBACK_LINES = 12


def _error_text(err: dict[str, Any] | None) -> str:
    if not err:
        return "-"
    raw = err.get("details")
    details: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return f"{esc(details.get('type', '?'))}: {esc(err.get('message', ''))}"


def _lines(out: Outcome, trace: Path) -> list[str]:
    plan, step = out.plan, out.plan.step
    where = f" from {esc(plan.source_file)}" if plan.source_file else ""
    head = (f"replaying {esc(step.get('node_id'))} (step {esc(step.get('step_id'))}, recorded "
            f"{esc(step.get('status'))}) of {trace}")
    lines = [style(head, bold=True)]
    if plan.callable:
        lines.append(f"  callable {esc(plan.callable)}{where}")
    if plan.set_paths:
        lines.append(f"  with --set {', '.join(esc(p) for p in plan.set_paths)}")
    if out.exit == EXIT_CANNOT:
        lines.append(style("cannot replay (exit 2):", "yellow", bold=True))
        for p in out.problems:
            lines += [f"  - {esc(p.message)}", f"    fix: {esc(p.fix)}"]
        return lines
    if out.exit == EXIT_COMPLETES:
        if step.get("status") == "failed":
            done = "now completes (exit 0): the recorded failure no longer happens"
            lines.append(style(done, "green", bold=True))
            lines.append(f"  recorded: {_error_text(out.recorded_error)}")
        else:
            lines.append(style("completes (exit 0)", "green", bold=True))
        if out.output_matches is True:
            lines.append(f"  output hash matches the recorded one ({out.output_hash})")
        elif out.output_matches is False:
            rec = step.get("output_hash", {}).get("value")
            differs = f"  output hash differs: recorded {esc(rec)}, now {out.output_hash}"
            lines.append(style(differs, "yellow"))
        else:
            lines.append(f"  output hash {out.output_hash} (none recorded to compare)")
        return lines
    lines.append(style(f"still fails (exit 1): {_error_text(out.error)}", "red", bold=True))
    if out.same_error is True:
        lines.append("  same error type and message as recorded")
    elif out.same_error is False:
        lines.append(style(f"  a different error than recorded: {_error_text(out.recorded_error)}", "yellow"))
    tb = str((out.error or {}).get("details", {}).get("traceback") or "").rstrip().splitlines()
    if tb:
        lines.append("  traceback (replayed, last lines):")
        lines += [f"    {esc(t)}" for t in tb[-_TRACEBACK_LINES:]]
    return lines


@click.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.argument("step", required=False)
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
              help="Supply an input field (redacted when captured): VALUE as JSON, else text. Repeatable.")
@click.option("--emit-test", "emit", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write a pytest regression test for the step instead of replaying it.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def replay(trace: Path, step: str | None, sets: tuple[str, ...], emit: Path | None, as_json: bool) -> None:
    """Re-run one node of TRACE in this process on its captured input, with recording off.

    STEP is a step id or a node name; by default the failure that ended the run. Replay calls
    your real code (run it where its side effects are safe); nothing from the trace is executed.
    Exit 0 the node completes, 1 it still fails, 2 it cannot be replayed (the reason is printed).

    \b
    Examples:
      tracekit replay trace.json
      tracekit replay trace.json load_orders --set order.api_token=tk-test
      tracekit replay trace.json --emit-test tests/test_regression_orders.py
    """
    try:
        doc = load_trace(trace)
    except TraceLoadError as exc:
        echo(str(exc), err=True)
        raise click.exceptions.Exit(EXIT_CANNOT) from None
    try:
        if emit is not None:
            written = emit_test(doc, trace, step, list(sets), emit)
            if as_json:
                click.echo(dump_json({"exit": 0, "test": str(written.test), "side_files": written.side_files,
                                      "step_id": written.step_id, "asserts": written.asserts}))
            else:
                echo(f"wrote {written.test}: {written.asserts}")
                for f in written.side_files:
                    echo(f"  with its input in {f}")
                if sets:
                    echo("  note: it holds the values given with --set (mode 0600); keep secrets out of git")
                echo(f"run it: pytest {written.test}")
            return
        outcome = run_replay(doc, trace, step, list(sets))
    except ReplayError as exc:
        if as_json:
            click.echo(dump_json({"exit": EXIT_CANNOT, "status": "cannot_replay",
                                  "problems": [exc.problem.to_json()]}))
        else:
            echo(f"tracekit: {esc(exc.problem.message)}", err=True)
            echo(f"  fix: {esc(exc.problem.fix)}", err=True)
        raise click.exceptions.Exit(EXIT_CANNOT) from None
    except EmitError as exc:
        echo(f"tracekit: {esc(exc)}", err=True)
        raise click.exceptions.Exit(EXIT_CANNOT) from None
    if as_json:
        click.echo(dump_json(outcome.to_json()))
    else:
        for line in _lines(outcome, trace):
            echo(line)
    raise click.exceptions.Exit(outcome.exit)
