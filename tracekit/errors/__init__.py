"""Error context: what a trace says about a failure (chain, code, hints, phase) and error events.

``codes`` classifies (codes, hints, control flow; their registries live in
:mod:`tracekit.registry`), ``text`` makes exception text safe to keep, ``chain`` walks causes
and contexts, ``record`` builds the envelope's ``error`` object, ``events`` is the model of
runner-level error events. Nothing here imports the recorder.
"""

from tracekit.errors.chain import chain
from tracekit.errors.codes import (
    CODES,
    CONTROL_FLOW_EXCEPTIONS,
    DEFAULT_MAX_CHARS,
    PHASES,
    Traceable,
    classify,
    hints_for,
    is_control_flow,
    register_code,
    register_control_flow,
    register_hint,
)
from tracekit.errors.record import error_record
from tracekit.errors.text import MAX_CHAIN

__all__ = [
    "CODES",
    "CONTROL_FLOW_EXCEPTIONS",
    "DEFAULT_MAX_CHARS",
    "MAX_CHAIN",
    "PHASES",
    "Traceable",
    "chain",
    "classify",
    "error_record",
    "hints_for",
    "is_control_flow",
    "register_code",
    "register_control_flow",
    "register_hint",
]
