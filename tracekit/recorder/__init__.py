"""The engine: the :class:`TraceRecorder` facade and the parts it owns.

``core`` (the facade and the observer callbacks), ``run`` (run lifecycle, outcome, flush
policy), ``inflight`` (steps started and not yet ended), ``ring`` (finished steps and pinned
failures), ``error_log`` (runner-level error events), ``scope`` (``recorder.step()``),
``crash`` (crash and exit handling), ``hotpath`` (the compiled callbacks and their loader).
"""

from tracekit.recorder.core import MAX_IN_FLIGHT, RECORDER_NAME, TraceRecorder

__all__ = ["MAX_IN_FLIGHT", "RECORDER_NAME", "TraceRecorder"]
