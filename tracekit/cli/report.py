"""``tracekit report``: a trace as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from tracekit.cli.export import convert, read_valid_trace, write_output
from tracekit.export.report import render_report

__all__ = ["default_output", "report"]


def default_output(path: Path) -> Path:
    """``trace.json`` -> ``trace.html`` beside it, never the input file itself."""
    target = path.with_suffix(".html")
    return target if target != path else path.with_name(path.name + ".report.html")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--output", "-o", "out", default=None, metavar="OUT",
              help="Where to write the HTML ('-' is stdout); default: PATH with .html.")
def report(path: Path, out: str | None) -> None:
    """Render the trace at PATH as an HTML report (open it in any browser, no network needed).

    \b
    Example:
      tracekit report trace.json -o report.html
    """
    doc = read_valid_trace(path)
    html = convert(path, doc, render_report)
    write_output(out if out is not None else str(default_output(path)), html.encode("utf-8"), "the report",
                 source=path)
