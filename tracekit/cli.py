"""The ``tracekit`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from tracekit._version import __version__
from tracekit.schema import schema_path, validate_document

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracekit")
def cli() -> None:
    """tracekit: a flight recorder for execution engines."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check trace files against the published JSON Schema.

    Example: tracekit validate trace.json
    """
    bad = False
    for path in paths:
        try:
            doc = orjson.loads(path.read_bytes())
        except OSError as exc:
            click.echo(f"{path}: cannot read: {exc.strerror}", err=True)
            sys.exit(2)
        except orjson.JSONDecodeError as exc:
            click.echo(f"{path}: /: not valid JSON: {exc}")
            bad = True
            continue
        problems = validate_document(doc)
        for p in problems:
            click.echo(f"{path}: {p}")
        bad = bad or bool(problems)
        if not problems:
            click.echo(f"{path}: ok")
    sys.exit(1 if bad else 0)


@cli.command()
@click.option("--path", "show_path", is_flag=True, help="Print where the installed schema lives.")
def schema(show_path: bool) -> None:
    """Print the JSON Schema of the trace envelope."""
    p = schema_path()
    click.echo(str(p) if show_path else p.read_text(encoding="utf-8"), nl=show_path)


def main() -> None:
    cli()
