"""The ``tracekit`` command line: a thin group; each command lives in ``tracekit._cli.<name>``."""

from __future__ import annotations

import os
import sys

import click

from tracekit._cli.demo import demo
from tracekit._cli.diff import diff
from tracekit._cli.env import env
from tracekit._cli.export import export
from tracekit._cli.ls import ls
from tracekit._cli.report import report
from tracekit._cli.schema import schema
from tracekit._cli.show import show
from tracekit._cli.validate import validate
from tracekit._version import __version__

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


for _command in (validate, show, diff, ls, schema, demo, env, export, report):
    cli.add_command(_command)


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
