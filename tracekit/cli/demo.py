"""``tracekit demo``: a newcomer's first trace, from nothing but the installed package.

A four-step pipeline runs with a recorder configured from the environment, exactly as a real
runner would (``TraceRecorder.from_env``). Its ``enrich`` step fails on purpose: a refused
connection to a pricing service, wrapped in a domain error that carries a hint, so the trace
shows a nested failure, the whole chain down to the root cause, and what to try next. The trace
is then validated and shown.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Final

import click

from tracekit.cli._io import EXIT_INVALID, EXIT_USAGE, TraceLoadError, fail, load_trace, problem_line
from tracekit.cli._style import echo, style
from tracekit.cli._text import safe
from tracekit.cli.show import render
from tracekit.config import ENV_CAPTURE_INPUTS, ConfigError
from tracekit.recorder import TraceRecorder
from tracekit.trace.check import check_trace
from tracekit.trace.model import TraceContext

__all__ = ["DemoError", "demo", "run_demo"]

DEMO_CONTEXT: Final = TraceContext(
    pack_ref="tracekit-demo@1.0.0", flow_id="demo-orders", flow_version="1", runner_version="tracekit-demo"
)
#: A port nothing listens on; the demo never opens a socket, it only raises what one would.
PRICING_ADDRESS: Final = ("127.0.0.1", 9)

ORDERS: Final = [
    {"order_id": "A-1001", "sku": "tea-green", "qty": 2},
    {"order_id": "A-1002", "sku": "tea-black", "qty": 1},
]


class DemoError(RuntimeError):
    """The domain error a real pipeline would raise; its ``hints`` end up in the trace.

    Its module is named ``demo`` so the trace (and ``show``) say ``demo.DemoError``, as a
    user's own pipeline module would, not the private ``tracekit.cli.demo``.
    """

    code = "connection"
    hints = (
        "The pricing service did not answer: start it (demo: nothing listens on 127.0.0.1:9), or "
        "point the pipeline at another instance, then re-run.",
    )


DemoError.__module__ = "demo"


def _fetch_prices(skus: list[str]) -> dict[str, float]:
    # What a client library raises when the port is closed, without touching the network.
    host, port = PRICING_ADDRESS
    raise ConnectionRefusedError(111, f"Connection refused: pricing service at {host}:{port}")


def run_demo(recorder: TraceRecorder) -> None:
    """The pipeline: load -> parse -> enrich (fails, with a nested fetch) -> publish (never runs)."""
    with recorder.run():
        with recorder.step("load_orders", component_id="demo.source", payload={"day": "2026-11-23"}) as st:
            st.set_output(ORDERS)
        with recorder.step("parse", component_id="demo.parser", payload={"rows": ORDERS}) as st:
            skus = sorted({str(o["sku"]) for o in ORDERS})
            st.set_output(skus)
        payload: dict[str, Any] = {"skus": skus, "currency": "EUR", "api_token": "demo-not-a-secret"}
        with recorder.step("enrich", component_id="demo.pricing", payload=payload):
            try:
                with recorder.step("fetch_prices", component_id="demo.http", operation="GET",
                                   payload={"url": "http://127.0.0.1:9/prices", "skus": skus}):
                    _fetch_prices(skus)
            except ConnectionRefusedError as err:
                raise DemoError("could not price 2 orders: the pricing service is unreachable") from err
        with recorder.step("publish", component_id="demo.sink", payload={"orders": ORDERS}):
            pass  # never reached: enrich failed


@click.command()
def demo() -> None:
    """Run a small built-in pipeline that fails on purpose, then validate and show its trace.

    The recorder is configured from the environment like any other (TRACEKIT_TRACE_OUT or
    TRACEKIT_TRACE_DIR say where the trace goes; default ./trace.json). Inputs are captured
    unless TRACEKIT_TRACE_CAPTURE_INPUTS says otherwise. Exit 0 when the demo worked.

    \b
    Examples:
      tracekit demo
      TRACEKIT_TRACE_DIR=traces tracekit demo && tracekit ls traces
    """
    overrides: dict[str, Any] = {}
    if not os.environ.get(ENV_CAPTURE_INPUTS, "").strip():
        overrides["capture_inputs"] = True  # the demo's point is to show the failing input
    try:
        recorder = TraceRecorder.from_env(DEMO_CONTEXT, **overrides)
    except ConfigError as exc:
        fail(f"invalid configuration: {exc}", EXIT_USAGE)
    echo(style("tracekit demo:", bold=True) + " running load_orders -> parse -> enrich -> publish; "
         "enrich fails on purpose (a refused connection).")
    if not recorder.enabled:
        echo("TRACEKIT_TRACE is off, so no trace is written; unset it to see one.")
        return
    with contextlib.suppress(DemoError):  # intended: the failure is what the demo records
        run_demo(recorder)
    path = recorder.last_trace_path
    if path is None:
        reason = recorder.last_flush_error
        fail(f"the trace could not be written: {reason}" if reason else "no trace was written", EXIT_INVALID)
    try:
        doc = load_trace(Path(path))
    except TraceLoadError as exc:
        fail(str(exc), EXIT_INVALID)
    found = check_trace(doc)
    for p in found.problems:
        echo(safe(problem_line(path, p.pointer, p.message)), err=True)
    verdict = style("valid", "green") if found.valid else style(f"{found.total} problem(s)", "red")
    echo(f"trace written to {safe(str(path))} ({verdict})")
    echo()
    for line in render(doc, found.total):
        echo(line)
    echo()
    echo(style("The failure above is intended: that is what a trace looks like.", bold=True))
    echo(f"Next: tracekit show {path}   |   tracekit validate {path}   |   tracekit env")
    if not found.valid:
        raise click.exceptions.Exit(EXIT_INVALID)
