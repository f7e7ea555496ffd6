"""``tracekit ls``: the history files of a directory, in the order their runs started.

Order comes from each file's ``run.started_at``, not from its name or modification time: names
have one-second resolution and copies change mtimes. A file that cannot be read or is not a
valid trace is listed as such (last), never fatal: a history directory is where broken runs land.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from tracekit.cli._io import EXIT_INVALID, EXIT_USAGE, TraceLoadError, dump_json, fail, load_trace
from tracekit.cli._style import STATUS_COLORS, echo, style, table
from tracekit.cli._trace import failing_node, obj, run_started, s
from tracekit.trace.semantic import validate_trace
from tracekit.trace.sink import history_files

__all__ = ["Entry", "list_history", "ls"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One history file as ``ls`` sees it; ``problem`` is set when it is unreadable or invalid."""

    path: Path
    started: _dt.datetime | None
    started_at: str | None
    flow: str | None
    outcome: str | None
    failing_node: str | None
    problem: str | None
    loaded: bool = True  # False: not even a JSON object (missing, empty, malformed)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.path.name,
            "started_at": self.started_at,
            "flow": self.flow,
            "outcome": self.outcome,
            "failing_node": self.failing_node,
            "valid": self.problem is None,
            "readable": self.loaded,
            "problem": self.problem,
        }


def _entry(path: Path) -> Entry:
    try:
        doc = load_trace(path)
    except TraceLoadError as exc:
        return Entry(path, None, None, None, None, None, exc.message, loaded=False)
    try:
        problems = validate_trace(doc)
    except RecursionError:
        problems = []
    started_at = obj(doc, "run").get("started_at")
    return Entry(
        path,
        run_started(doc),
        started_at if isinstance(started_at, str) else None,
        s(obj(doc, "flow").get("id"), "") or None,
        s(obj(doc, "run").get("outcome"), "") or None,
        failing_node(doc),
        f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        if problems else None,
    )


def list_history(directory: Path) -> list[Entry]:
    """The history files of ``directory``, oldest run first; files without a start time last."""
    entries = [_entry(p) for p in history_files(directory)]
    return sorted(entries, key=lambda e: (e.started is None,
                                          e.started.timestamp() if e.started else 0.0, e.path.name))


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--latest", is_flag=True, help="Print only the path of the newest matching run.")
@click.option("--flow", "flow", metavar="FLOW_ID", help="Only runs of this flow id.")
@click.option("--outcome", type=click.Choice(["success", "failure", "cancelled", "in_progress"]),
              help="Only runs that ended this way.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def ls(directory: Path, latest: bool, flow: str | None, outcome: str | None, as_json: bool) -> None:
    """List the trace history of DIRECTORY (TRACEKIT_TRACE_DIR), oldest run first.

    \b
    Examples:
      tracekit ls traces/
      tracekit ls traces/ --outcome failure --flow nightly
      tracekit show "$(tracekit ls traces/ --latest --outcome failure)"
    """
    if not directory.is_dir():
        fail(f"{directory}: not a directory; allowed: the history directory (TRACEKIT_TRACE_DIR)",
             EXIT_USAGE)
    entries = list_history(directory)
    if flow is not None:
        entries = [e for e in entries if e.flow == flow]
    if outcome is not None:
        entries = [e for e in entries if e.outcome == outcome]
    if latest:
        readable = [e for e in entries if e.started is not None]
        if not readable:
            fail(f"{directory}: no readable history file matches", EXIT_INVALID)
        click.echo(str(readable[-1].path))
        return
    if as_json:
        click.echo(dump_json([e.to_json() for e in entries]))
        return
    if not entries:
        echo(f"{directory}: no history files" + (" match" if flow or outcome else ""), err=True)
        return
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for e in entries:
        if not e.loaded:
            rows.append([e.path.name, "-", "-", "unreadable", e.problem or ""])
            colors.append("yellow")
            continue
        note = e.failing_node or ""
        if e.problem is not None:
            note = f"invalid: {e.problem}"
        rows.append([e.path.name, e.started_at or "-", e.flow or "-", e.outcome or "-", note])
        colors.append("yellow" if e.problem else STATUS_COLORS.get(e.outcome or ""))
    for line in table(["file", "started_at", "flow", "outcome", "failing node"], rows, colors):
        echo(style(line))
