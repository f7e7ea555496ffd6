"""Swaps a recorder's on_node_start/on_node_end for the compiled ones, where that changes nothing.

``tracekit._speedups`` (built from ``_speedups.c`` when the package is installed with a C
compiler at hand) does the two callbacks' common case without the interpreter's per-line cost,
and hands every other case to the Python methods untouched. Where it was not built, or
``TRACEKIT_PURE_PYTHON=1`` is set, or a subclass overrides a callback, the Python methods run:
same results, slower.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

import orjson

from tracekit import hashing
from tracekit._context import CURRENT_STEP_ID, current_task, get_running_loop
from tracekit._native import PURE_PYTHON_ENV, built, in_use
from tracekit.model import Step
from tracekit.observer import NodeEvent

if TYPE_CHECKING:
    from tracekit.recorder import TraceRecorder

__all__ = ["EVENT_FIELDS", "STEP_FIELDS", "callbacks_here", "install", "uninstall"]

#: Whether perf_counter_ns reads CLOCK_MONOTONIC here: then C reads it without a call to Python.
_PERF_IS_MONOTONIC: Final = (
    time.get_clock_info("perf_counter").implementation == "clock_gettime(CLOCK_MONOTONIC)"
)

#: NodeEvent's slots in the order _speedups.c reads them.
EVENT_FIELDS: Final = (
    "node_id", "component_id", "operation", "payload", "step_id", "parent_step_id", "attempt",
)

#: Step's slots in the order _speedups.c fills them (all of them: it builds steps whole).
STEP_FIELDS: Final = (
    "seq", "node_id", "component_id", "operation", "given_id", "parent_step_id", "attempt",
    "start_ns", "input_src", "capture", "ctx_key", "end_ns", "status", "output_src",
    "state_delta_src", "issues", "error",
)


# Their member descriptors, which tell C where each slot lives.
_EVENT_SLOTS: Final = tuple(NodeEvent.__dict__[name] for name in EVENT_FIELDS)
_STEP_SLOTS: Final = tuple(Step.__dict__[name] for name in STEP_FIELDS)


def callbacks_here() -> tuple[str, str]:
    """Which callbacks a recorder made now would run (``compiled`` or ``python``), and why."""
    if built() is None:
        return "python", "C speedups not built"
    if in_use() is None:
        return "python", f"{PURE_PYTHON_ENV}=1"
    return "compiled", "tracekit._speedups"


def install(recorder: TraceRecorder, max_in_flight: int) -> bool:
    """Give ``recorder`` the compiled callbacks if they would behave exactly as its own."""
    from tracekit.recorder import TraceRecorder

    compiled = in_use()
    cls = type(recorder)
    if (
        compiled is None
        or cls.on_node_start is not TraceRecorder.on_node_start
        or cls.on_node_end is not TraceRecorder.on_node_end
    ):
        return False
    hot = compiled.HotPath(
        recorder=recorder,
        open=recorder._open,
        ring_append=recorder._ring.append,
        finished_counter=recorder._finished.counter,
        seq_counter=recorder._seq,
        capture=recorder._capture,
        step_type=Step,
        step_fields=_STEP_SLOTS,
        hash_source=hashing.hash_source,
        finish_source=hashing.finish_source,
        dumps=orjson.dumps,
        sort_option=hashing.DUMPS_OPTION,
        defer_limit=hashing.DEFER_LIMIT,
        max_in_flight=max_in_flight,
        current_step=CURRENT_STEP_ID,
        get_running_loop=get_running_loop,
        current_task=current_task,
        perf_ns=time.perf_counter_ns,
        monotonic=_PERF_IS_MONOTONIC,
        py_start=TraceRecorder.on_node_start,
        py_end=TraceRecorder.on_node_end,
        event_type=NodeEvent,
        event_fields=_EVENT_SLOTS,
    )
    uninstall(recorder)
    # Instance attributes shadow the methods: a runner's call goes straight to C.
    recorder.__dict__["on_node_start"] = hot.start
    recorder.__dict__["on_node_end"] = hot.end
    recorder.__dict__["_hot_path"] = hot
    return True


def uninstall(recorder: TraceRecorder) -> None:
    """Back to the Python callbacks, also for callers still holding the compiled ones."""
    hot = recorder.__dict__.pop("_hot_path", None)
    if hot is not None:
        hot.active = False
    recorder.__dict__.pop("on_node_start", None)
    recorder.__dict__.pop("on_node_end", None)
