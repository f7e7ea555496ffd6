"""Replay: re-run one node of a trace on its captured input (``tracekit replay``).

The engine reads a trace (never the recorder's state): ``plan`` decides the step, callable and
input from the trace alone; ``target`` imports the callable from the user's code; ``engine``
runs it with recording off and compares with the trace; ``emit`` writes a pytest test.
"""

from __future__ import annotations

from tracekit.replay.engine import EXIT_CANNOT, EXIT_COMPLETES, EXIT_FAILS, Outcome, replay
from tracekit.replay.plan import Plan, Problem, ReplayError, make_plan

__all__ = [
    "EXIT_CANNOT",
    "EXIT_COMPLETES",
    "EXIT_FAILS",
    "Outcome",
    "Plan",
    "Problem",
    "ReplayError",
    "make_plan",
    "replay",
]
