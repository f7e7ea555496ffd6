"""tracekit: a flight recorder for execution engines.

Attach a :class:`TraceRecorder` to a runner as an :class:`ExecutionObserver`; it keeps the last N
finished steps, hashes every input and output, and writes one versioned JSON trace atomically
when a run fails (or always, if asked).
"""

from tracekit._version import __version__
from tracekit.capture.canonical import register_canonical
from tracekit.capture.hashing import canonical_json, hash_value
from tracekit.config import ConfigError, TraceConfig, TraceMode
from tracekit.errors import Traceable, register_code, register_control_flow, register_hint
from tracekit.errors.events import ErrorChannel, ErrorEvent
from tracekit.observer import CompositeObserver, ExecutionObserver, NodeEvent, ValidationIssue
from tracekit.recorder import TraceRecorder
from tracekit.recorder.crash import CrashHandler, TerminatedBySignal, install_crash_handler
from tracekit.recorder.scope import StepScope
from tracekit.trace.model import TraceContext

__all__ = [
    "CompositeObserver",
    "ConfigError",
    "CrashHandler",
    "ErrorChannel",
    "ErrorEvent",
    "ExecutionObserver",
    "NodeEvent",
    "StepScope",
    "TerminatedBySignal",
    "TraceConfig",
    "TraceContext",
    "TraceMode",
    "TraceRecorder",
    "Traceable",
    "ValidationIssue",
    "__version__",
    "canonical_json",
    "hash_value",
    "install_crash_handler",
    "register_canonical",
    "register_code",
    "register_control_flow",
    "register_hint",
]
