"""Marking a step replayable: the hook the step scope and the adapters call once a step is in flight.

Only when inputs are captured (the step has a capture); never raises into the runner: a failure
leaves the step as it was (captured, not replayable) and is counted as a recorder fault.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tracekit.trace import replayable

if TYPE_CHECKING:
    from tracekit.config import TraceConfig
    from tracekit.observer import NodeEvent
    from tracekit.trace.model import Step

__all__ = ["mark_event", "mark_step", "trace_dir"]


class _Host(Protocol):
    @property
    def config(self) -> TraceConfig: ...

    def internal_error(self, where: str) -> None: ...


def trace_dir(config: TraceConfig) -> Path:
    """Where this recorder's traces go: the history directory, or the trace file's directory."""
    if config.dir is not None:
        return config.dir
    return Path.cwd() if str(config.out) == "-" else config.out.parent


def mark_step(host: Any, step: Step | None, func: Any, payload: Any, args_kind: str = "params") -> None:
    """Give ``step`` its ``replay`` object (callable ``func``, payload as passed)."""
    if step is None or step.capture is None:
        return
    try:
        ref = func if isinstance(func, dict) else replayable.callable_ref(func)
        if ref is None:
            return
        cfg = host.config
        step.capture = replayable.build(
            ref,
            args_kind,
            payload,
            step.capture,
            input_src=step.input_src,
            trace_dir=trace_dir(cfg),
            max_bytes=cfg.max_capture_bytes,
            extra_keys=cfg.redact_keys,
            redactor=cfg.redactor,
        )
    except Exception:
        with contextlib.suppress(Exception):
            host.internal_error("replay capture")


def mark_event(host: Any, event: NodeEvent, func: Any, args_kind: str = "params") -> None:
    """As :func:`mark_step`, for the in-flight step of ``event`` (adapters: right after the start)."""
    if not getattr(host, "_capture", False):
        return
    try:
        step = host._peek(event)
    except Exception:
        return
    mark_step(host, step, func, event.payload, args_kind)
