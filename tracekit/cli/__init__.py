"""The ``tracekit`` command line: a thin group; each command lives in ``tracekit.cli.<name>``."""

from __future__ import annotations

import os
import sys

import click

from tracekit._version import __version__
from tracekit.cli import demo, diff, env, export, ls, replay, report, schema, show, validate

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracekit")
def cli() -> None:
    """tracekit: a flight recorder for execution engines.

    \b
    Examples:
      tracekit demo                 # a small pipeline that fails on purpose, then its trace
      tracekit show trace.json      # what failed, why, and what to try next
      tracekit validate traces/     # check traces against the schema
    """


# Each module's command has the module's name; the package keeps the modules under those names
# (``tracekit.cli.export`` is the module), so a command is never mistaken for its module.
for _module in (validate, show, diff, ls, schema, demo, env, export, report, replay):
    cli.add_command(getattr(_module, _module.__name__.rsplit(".", 1)[1]))


def main() -> None:
    """The console script: a closed pipe (``| head``) or Ctrl-C ends quietly, without a traceback."""
    try:
        cli()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
