"""``tracekit export``: a trace in another viewer's format (Chrome Trace Event, OTLP/JSON).

Also holds the two steps every converting command shares: reading a trace that must be valid
(:func:`read_valid_trace`) and writing the result atomically or to stdout (:func:`write_output`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import orjson

from tracekit.cli._io import EXIT_INVALID, EXIT_USAGE, TraceLoadError, fail, load_trace, problem_line
from tracekit.cli._text import safe
from tracekit.export import FORMATS, ExportError
from tracekit.trace.check import check_trace
from tracekit.trace.sink import atomic_write

__all__ = ["STDOUT", "convert", "export", "read_valid_trace", "write_output"]

T = TypeVar("T")

STDOUT: Final = "-"
#: Schema problems printed before "... and N more" (a broken file can have thousands).
_MAX_PROBLEMS_SHOWN: Final = 20


def read_valid_trace(path: Path) -> dict[str, Any]:
    """The trace at ``path``; on any problem, print it and exit (2 unreadable, 1 not a trace).

    The check is the one every command shares (version gate, nesting bound, schema); semantic
    rules are ``validate``'s business, a converter only needs the shapes right.
    """
    try:
        doc = load_trace(path)
    except TraceLoadError as exc:
        fail(safe(str(exc)), EXIT_USAGE if exc.unreadable else EXIT_INVALID)
    found = check_trace(doc, cap=_MAX_PROBLEMS_SHOWN, semantic=False)
    if not found.valid:
        for problem in found.problems:
            click.echo(safe(problem_line(path, problem.pointer, problem.message)), err=True)
        if found.more > 0:
            at_least = "" if found.counted_all else "at least "
            click.echo(safe(f"{path}: ... and {at_least}{found.more} more problems"), err=True)
        fail(safe(f"{path} is not a valid trace (run `tracekit validate {path}` for details)"), EXIT_INVALID)
    return doc


def convert(path: Path, doc: dict[str, Any], convert_fn: Callable[[dict[str, Any]], T]) -> T:
    """``convert_fn(doc)``, turning an unreadable field into exit 1 with its JSON Pointer."""
    try:
        return convert_fn(doc)
    except ExportError as exc:
        fail(safe(problem_line(path, exc.pointer, exc.message)), EXIT_INVALID)
    except RecursionError:
        fail(safe(f"{path}: /: nested too deeply to convert"), EXIT_INVALID)


def write_output(out: str, data: bytes, what: str, *, source: Path | None = None) -> None:
    """Write ``data`` to ``out`` atomically, or to stdout when ``out`` is ``-``.

    The file gets ``source``'s permission bits (a 0600 trace of captured inputs gives a 0600
    output); a device, FIFO or symlink at ``out`` is written as the sink writes traces.
    """
    if out == STDOUT:
        with click.open_file(STDOUT, "wb") as stream:  # stdout, kept open
            stream.write(data)
            stream.flush()
        return
    target = Path(out)
    try:
        atomic_write(target, data, mode=_mode_of(source))
    except OSError as exc:
        fail(f"cannot write {what} to {out}: {exc.strerror or exc}", EXIT_USAGE)
    click.echo(f"tracekit: wrote {what} to {out}", err=True)


def _mode_of(source: Path | None) -> int:
    if source is None:
        return 0o644
    try:
        return os.stat(source).st_mode & 0o666
    except OSError:
        return 0o600  # cannot tell: the private side


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--format", "-f", "fmt", required=True, type=click.Choice(sorted(FORMATS)),
    help="chrome: Chrome Trace Event Format (Perfetto, chrome://tracing); otlp: OTLP/JSON.",
)
@click.option("--output", "-o", "out", default=STDOUT, show_default=True, metavar="OUT",
              help="Where to write; '-' is stdout. Files are replaced atomically.")
def export(path: Path, fmt: str, out: str) -> None:
    """Convert the trace at PATH for another viewer.

    \b
    Examples:
      tracekit export trace.json --format chrome -o trace.chrome.json   # open in ui.perfetto.dev
      tracekit export trace.json --format otlp -o - | curl -X POST -H 'Content-Type: application/json' \\
          --data-binary @- http://localhost:4318/v1/traces
    """
    doc = read_valid_trace(path)
    result = convert(path, doc, FORMATS[fmt])
    write_output(out, orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE), f"the {fmt} export",
                 source=path)
