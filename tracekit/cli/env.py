"""``tracekit env``: the configuration a recorder started here would use, and where each value came from.

It reads the environment exactly as :meth:`TraceConfig.from_env` does, so a mistyped variable is
explained here, before a 3 a.m. run finds it.
"""

from __future__ import annotations

import os
from typing import Any, Final

import click

from tracekit.cli._io import EXIT_USAGE, dump_json
from tracekit.cli._style import echo, style
from tracekit.config import (
    ENV_BUFFER,
    ENV_CAPTURE_INPUTS,
    ENV_DIR,
    ENV_KEEP,
    ENV_OUT,
    ENV_TRACE,
    ConfigError,
    TraceConfig,
)
from tracekit.recorder.hotpath import callbacks_here

__all__ = ["env", "sources"]

#: The variable behind each setting of ``TraceConfig.describe()`` (others have no variable).
VARIABLES: Final = {
    "mode": (ENV_TRACE,),
    "out": (ENV_OUT,),
    "dir": (ENV_DIR,),
    "buffer": (ENV_BUFFER,),
    "capture_inputs": (ENV_CAPTURE_INPUTS,),
    "keep": (ENV_KEEP,),
    "git_sha": ("GIT_SHA", "GITHUB_SHA"),
}


def sources(settings: dict[str, Any]) -> dict[str, str]:
    """For each setting, the variable that set it, or ``default``."""
    out: dict[str, str] = {}
    for name in settings:
        found = next((v for v in VARIABLES.get(name, ()) if os.environ.get(v, "").strip()), None)
        out[name] = found or "default"
    return out


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
def env(as_json: bool) -> None:
    """Print the effective tracekit configuration read from the environment.

    Exit 2, with the reason, when a TRACEKIT_* variable holds a value that is not allowed.

    \b
    Examples:
      tracekit env
      TRACEKIT_TRACE=always TRACEKIT_TRACE_DIR=traces tracekit env --json
    """
    try:
        settings = TraceConfig.from_env().describe()
    except ConfigError as exc:
        if as_json:
            click.echo(dump_json({"valid": False, "error": str(exc)}))
        else:
            echo(f"tracekit: invalid configuration: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    origin = sources(settings)
    callbacks, why = callbacks_here()
    if as_json:
        report = {"valid": True, "settings": settings, "sources": origin,
                  "callbacks": {"kind": callbacks, "why": why}}
        click.echo(dump_json(report))
        return
    width = max(len(k) for k in settings)
    for name, value in settings.items():
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        where = origin[name]
        note = style(f"(from {where})", "cyan") if where != "default" else style("(default)", dim=True)
        echo(f"{name.ljust(width)}  {shown}  {note}")
    echo(f"{'callbacks'.ljust(width)}  {callbacks}  {style(f'({why})', dim=True)}")
