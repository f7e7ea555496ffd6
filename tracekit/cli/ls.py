"""``tracekit ls``: the traces of a directory, in the order their runs started.

Listed: every history file (named ``{UTC start}-{flow_id}.json``), and every other ``*.json`` that
is a trace (a JSON object with a ``trace_version``), so a folder of traces named by hand lists
too; other JSON files are skipped and named on stderr. Order comes from each file's
``run.started_at``, not from its name or modification time: names have one-second resolution
and copies change mtimes. A history file that cannot be read or is not a valid trace is listed as
such (last), never fatal: a history directory is where broken runs land. A trace written by a
newer tracekit is listed as unreadable and makes the exit status 1, as in every command.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from tracekit.cli._io import EXIT_INVALID, EXIT_USAGE, TraceLoadError, dump_json, fail, load_trace
from tracekit.cli._style import STATUS_COLORS, Column, echo, table
from tracekit.cli._text import safe, terminal_width
from tracekit.cli._trace import failing_node, obj, run_started, s
from tracekit.trace.check import check_trace
from tracekit.trace.sink import HISTORY_NAME

__all__ = ["Entry", "list_history", "ls", "scan"]


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
    newer: bool = False  # written by a newer tracekit: refused, as every command does

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
            "newer_version": self.newer,
        }


def _entry(path: Path) -> Entry | None:
    """The file as ``ls`` lists it; None for a JSON file that is neither a history file nor a trace."""
    history = HISTORY_NAME.match(path.name) is not None
    try:
        doc = load_trace(path)
    except TraceLoadError as exc:
        newer = exc.rule == "trace_version"
        if not history and not newer:
            return None
        return Entry(path, None, None, None, None, None, exc.message, loaded=False, newer=newer)
    if not history and "trace_version" not in doc:
        return None
    found = check_trace(doc, cap=1)
    started_at = obj(doc, "run").get("started_at")
    problem = None
    if not found.valid and found.problems:
        problem = f"{found.problems[0]}" + (f" (and {found.total - 1} more)" if found.total > 1 else "")
    return Entry(
        path,
        run_started(doc),
        started_at if isinstance(started_at, str) else None,
        s(obj(doc, "flow").get("id"), "") or None,
        s(obj(doc, "run").get("outcome"), "") or None,
        failing_node(doc),
        problem,
    )


def _json_files(directory: Path) -> list[Path]:
    try:
        names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(".json") and e.is_file())
    except OSError:
        return []
    return [directory / n for n in names]


def scan(directory: Path) -> tuple[list[Entry], list[Path]]:
    """The traces of ``directory`` oldest run first (files without a start time last), and the
    ``*.json`` files skipped because they are not traces."""
    entries: list[Entry] = []
    skipped: list[Path] = []
    for path in _json_files(directory):
        entry = _entry(path)
        if entry is None:
            skipped.append(path)
        else:
            entries.append(entry)
    entries.sort(key=lambda e: (e.started is None, e.started.timestamp() if e.started else 0.0, e.path.name))
    return entries, skipped


def list_history(directory: Path) -> list[Entry]:
    """The traces of ``directory``, oldest run first; files without a start time last."""
    return scan(directory)[0]


def _to_second(e: Entry) -> str:
    """The start time to the second, as history names have it (``--json`` has it whole)."""
    if e.started is None:
        return safe(e.started_at or "-")
    return e.started.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refuse_newer(entries: list[Entry]) -> bool:
    newer = [e for e in entries if e.newer]
    for e in newer:
        echo(safe(f"{e.path}: {e.problem}"), err=True)
    return bool(newer)


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
        fail(f"{safe(str(directory))}: not a directory; allowed: the history directory (TRACEKIT_TRACE_DIR)",
             EXIT_USAGE)
    entries, skipped = scan(directory)
    newer = _refuse_newer(entries)
    if skipped:
        names = ", ".join(p.name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        skip = f"{directory}: skipped {len(skipped)} *.json file(s) that are not traces: {names}"
        echo(safe(skip), err=True)
    if flow is not None:
        entries = [e for e in entries if e.flow == flow]
    if outcome is not None:
        entries = [e for e in entries if e.outcome == outcome]
    if latest:
        readable = [e for e in entries if e.started is not None]
        if not readable:
            fail(f"{safe(str(directory))}: no readable history file matches", EXIT_INVALID)
        click.echo(safe(str(readable[-1].path)))
        raise click.exceptions.Exit(EXIT_INVALID if newer else 0)
    if as_json:
        click.echo(dump_json([e.to_json() for e in entries]))
        raise click.exceptions.Exit(EXIT_INVALID if newer else 0)
    if not entries:
        if skipped and not (flow or outcome):
            fail(f"{safe(str(directory))}: no traces here (none of its *.json files is a trace)",
                 EXIT_INVALID)
        echo(f"{safe(str(directory))}: no history files" + (" match" if flow or outcome else ""), err=True)
        return
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for e in entries:
        name = safe(e.path.name)
        if not e.loaded:
            rows.append([name, "-", "-", "unreadable", safe(e.problem or "")])
            colors.append("yellow")
            continue
        note = e.failing_node or ""
        if e.problem is not None:
            note = f"invalid: {e.problem}"
        rows.append([name, _to_second(e), safe(e.flow or "-"), safe(e.outcome or "-"), safe(note)])
        colors.append("yellow" if e.problem else STATUS_COLORS.get(e.outcome or ""))
    # Narrow terminals lose the start time first, then the flow; the file name is never cut.
    columns = [Column("file", keep=0), Column("started_at", keep=4),
               Column("flow", keep=3, shrink=True, min_width=6), Column("outcome", keep=1),
               Column("failing node", keep=2, shrink=True, min_width=12)]
    for line in table(columns, rows, colors, width=terminal_width()):
        echo(line)
    if newer:
        raise click.exceptions.Exit(EXIT_INVALID)
