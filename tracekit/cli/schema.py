"""``tracekit schema``: print the published JSON Schema, or where the installed copy lives."""

from __future__ import annotations

import click

from tracekit.cli._io import fail
from tracekit.trace.schema import schema_path

__all__ = ["schema"]


@click.command()
@click.option("--path", "show_path", is_flag=True, help="Print where the installed schema file lives.")
def schema(show_path: bool) -> None:
    """Print the JSON Schema (2020-12) of the trace envelope.

    \b
    Examples:
      tracekit schema > trace-envelope.v1.schema.json
      tracekit schema --path
    """
    try:
        p = schema_path()
        text = str(p) if show_path else p.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"the schema cannot be read: {exc}")
    click.echo(text, nl=show_path)
