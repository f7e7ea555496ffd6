"""``tracekit validate``: is each file a valid trace (schema and semantic rules)?"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click

from tracekit.cli._io import TraceLoadError, dump_json, exit_for, load_trace, problem_line
from tracekit.cli._style import echo, style
from tracekit.cli._text import safe
from tracekit.trace.check import MAX_COUNTED, check_trace
from tracekit.trace.schema import SchemaProblem

__all__ = ["FileReport", "collect_paths", "validate", "validate_file"]

#: More files than this get a progress bar on stderr (when stderr is a terminal).
PROGRESS_THRESHOLD: Final = 20
_GLOB_CHARS: Final = frozenset("*?[")


@dataclass(slots=True)
class FileReport:
    """What ``validate`` found in one file: the first problems, and how many in all."""

    path: str
    problems: list[SchemaProblem] = field(default_factory=list)
    unreadable: bool = False
    total: int | None = None  # None: len(problems)
    counted_all: bool = True

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def count(self) -> int:
        return len(self.problems) if self.total is None else self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "valid": self.valid,
            "unreadable": self.unreadable,
            "problems": [{"pointer": p.pointer, "message": p.message, "rule": p.rule} for p in self.problems],
            "problems_total": self.count,
            "problems_counted_all": self.counted_all,
        }

    def more_line(self) -> str | None:
        """The "... and N more" line when problems were counted but not collected."""
        more = self.count - len(self.problems)
        if more <= 0:
            return None
        if self.counted_all:
            return f"{self.path}: ... and {more} more problems"
        return f"{self.path}: ... and at least {more} more problems (counting stopped at {MAX_COUNTED})"


def _expand(arg: str) -> Iterator[tuple[Path, str | None]]:
    """Files named by one argument, or ``(path, why)`` when it names none."""
    path = Path(arg)
    if not path.exists() and _GLOB_CHARS & set(arg):
        # The shell did not expand it (quoted, or a shell that does not glob): do it here.
        matches = sorted(glob.glob(arg, recursive=True))
        if not matches:
            yield path, "no file matches this pattern"
        for m in matches:
            yield from _expand(m)
        return
    if path.is_dir():
        # .tracekit-store/ and .tracekit-last-good/ hold tracekit's own files beside traces, not traces.
        found = sorted(p for p in path.rglob("*.json") if p.is_file()
                       and not any(part.startswith(".tracekit-") for part in p.relative_to(path).parts))
        if not found:
            yield path, "directory holds no *.json trace files"
        for p in found:
            yield p, None
        return
    yield path, None


def collect_paths(args: tuple[str, ...]) -> list[tuple[Path, str | None]]:
    """Every file to check, in order, without repeats; directories are searched recursively."""
    seen: set[Path] = set()
    out: list[tuple[Path, str | None]] = []
    for arg in args:
        for path, why in _expand(arg):
            if why is None and path in seen:
                continue
            seen.add(path)
            out.append((path, why))
    return out


def validate_file(path: Path) -> FileReport:
    """Load and check one file; never raises for anything the file contains."""
    try:
        doc = load_trace(path)
    except TraceLoadError as exc:
        return FileReport(str(path), [SchemaProblem(exc.pointer, exc.message, exc.rule)], exc.unreadable)
    found = check_trace(doc)
    return FileReport(str(path), found.problems, total=found.total, counted_all=found.counted_all)


def _check_all(items: list[tuple[Path, str | None]]) -> list[FileReport]:
    def one(item: tuple[Path, str | None]) -> FileReport:
        path, why = item
        if why is not None:
            return FileReport(str(path), [SchemaProblem("", why, "load")], unreadable=True)
        return validate_file(path)

    if len(items) <= PROGRESS_THRESHOLD or not sys.stderr.isatty():
        return [one(i) for i in items]
    # Only on a terminal: pipes and CI logs stay free of progress noise.
    with click.progressbar(items, label="validating", file=sys.stderr) as bar:
        return [one(i) for i in bar]


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of lines.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems, not the 'ok' lines.")
def validate(paths: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Check trace files against the JSON Schema and the semantic rules.

    PATHS are files, directories (searched recursively for *.json) or glob patterns. Each problem
    is printed as `file: /json/pointer: message`. Exit 0 when all are valid, 1 when any is not,
    2 when a path cannot be read at all.

    \b
    Examples:
      tracekit validate trace.json
      tracekit validate traces/ 'runs/**/*.json' --json
    """
    reports = _check_all(collect_paths(paths))
    invalid = any(not r.valid for r in reports)
    unreadable = any(r.unreadable for r in reports)
    if as_json:
        summary = {
            "files": [r.to_json() for r in reports],
            "checked": len(reports),
            "valid": sum(r.valid for r in reports),
            "invalid": sum(not r.valid and not r.unreadable for r in reports),
            "unreadable": sum(r.unreadable for r in reports),
        }
        click.echo(dump_json(summary))
    else:
        for r in reports:
            if r.valid:
                if not quiet:
                    echo(f"{safe(r.path)}: {style('ok', 'green')}")
                continue
            for p in r.problems:
                line = safe(problem_line(r.path, p.pointer, p.message))
                echo(style(line, "red" if r.unreadable else None))
            if (more := r.more_line()) is not None:
                echo(safe(more))
        if len(reports) > 1:
            bad = sum(not r.valid for r in reports)
            echo(f"{len(reports)} files checked: {len(reports) - bad} valid, {bad} not", err=True)
    raise click.exceptions.Exit(exit_for(invalid=invalid, unreadable=unreadable))
