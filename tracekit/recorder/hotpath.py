"""Swaps a recorder's on_node_start/on_node_end for the compiled ones, where that changes nothing.

``tracekit._speedups`` (built from ``_speedups.c`` when the package is installed with a C
compiler at hand) does the two callbacks' common case without the interpreter's per-line cost,
and hands every other case to the Python methods untouched. The reference it must match is
:meth:`tracekit.recorder.core.TraceRecorder.on_node_start` (whose step is built by
``StepBook._start`` in ``tracekit/recorder/steps.py``) and
:meth:`tracekit.recorder.core.TraceRecorder.on_node_end`; ``tests/test_speedups.py`` runs every
scenario on both. Where it was not built, is stale or unsafe here (see :mod:`tracekit._native`),
``TRACEKIT_PURE_PYTHON=1`` is set, or a subclass overrides a callback, the Python methods run:
same results, slower. If installing the compiled callbacks fails, pure Python runs from then on,
with one warning.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from tracekit._native import PURE_PYTHON_ENV, built, give_up, in_use, why_not
from tracekit.capture import hashing
from tracekit.observer import NodeEvent
from tracekit.recorder._context import CURRENT_STEP_ID, current_task, get_running_loop
from tracekit.recorder._counter import TickCounter
from tracekit.recorder.inflight import InFlight
from tracekit.trace.model import Step

if TYPE_CHECKING:
    from collections.abc import Callable

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
        return "python", why_not()
    if in_use() is None:
        return "python", f"{PURE_PYTHON_ENV}=1"
    return "compiled", "tracekit._speedups"


class HotPathHost(Protocol):
    """What the compiled callbacks read of a recorder, and the Python methods they call.

    :func:`install` reads ``_open`` (an InFlight), ``_ring.append``, ``_finished.counter``,
    ``_seq``, ``_capture`` and ``misuse`` once and hands them to C with the bound methods
    ``_capture_of``, ``_key_taken``, ``_drop_oldest_in_flight``, ``_internal_error``,
    ``_misused`` and ``_open.take`` as callables (C looks nothing up by name); every unusual case
    goes to the reference callbacks given to :func:`install` (``TraceRecorder.on_node_start`` /
    ``on_node_end``), which are what the C code must match.
    """

    __dict__: dict[str, Any]
    _open: InFlight
    _ring: deque[Step]
    _finished: TickCounter
    _seq: itertools.count[int]
    _capture: bool
    misuse: dict[str, int]

    def _capture_of(self, payload: Any, input_src: bytes) -> Any: ...
    def _key_taken(self, key: Any, held: Any, step: Step, event: NodeEvent, reused_id: bool) -> None: ...
    def _drop_oldest_in_flight(self) -> None: ...
    def _internal_error(self, where: str) -> None: ...
    def _misused(self, kind: str, event: NodeEvent) -> None: ...


def install(
    recorder: HotPathHost,
    max_in_flight: int,
    py_start: Callable[..., None],
    py_end: Callable[..., None],
) -> bool:
    """Give ``recorder`` the compiled callbacks, equivalents of ``py_start`` / ``py_end``.

    The caller checks that those are the callbacks ``recorder`` would run (not a subclass's).
    False when they cannot be had; a module whose HotPath refuses these arguments (built from
    other C) is given up for the process, with one warning.
    """
    compiled = in_use()
    if compiled is None:
        return False
    try:
        hot = _hot_path(compiled, recorder, max_in_flight, py_start, py_end)
    except Exception as exc:
        give_up(f"{type(exc).__qualname__}: {exc}")
        return False
    uninstall(recorder)
    # Instance attributes shadow the methods: a runner's call goes straight to C.
    recorder.__dict__["on_node_start"] = hot.start
    recorder.__dict__["on_node_end"] = hot.end
    recorder.__dict__["_hot_path"] = hot
    return True


def _hot_path(
    compiled: Any,
    recorder: HotPathHost,
    max_in_flight: int,
    py_start: Callable[..., None],
    py_end: Callable[..., None],
) -> Any:
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
        py_start=py_start,
        py_end=py_end,
        event_type=NodeEvent,
        event_fields=_EVENT_SLOTS,
        internal_error=recorder._internal_error,
        key_taken=recorder._key_taken,
        capture_of=recorder._capture_of,
        drop_oldest=recorder._drop_oldest_in_flight,
        take=recorder._open.take,
        misused=recorder._misused,
        misuse=recorder.misuse,
    )
    if not (callable(getattr(hot, "start", None)) and callable(getattr(hot, "end", None))):
        raise TypeError("HotPath has no start/end callbacks")
    return hot


def uninstall(recorder: HotPathHost) -> None:
    """Back to the Python callbacks, also for callers still holding the compiled ones."""
    hot = recorder.__dict__.pop("_hot_path", None)
    if hot is not None:
        hot.active = False
    recorder.__dict__.pop("on_node_start", None)
    recorder.__dict__.pop("on_node_end", None)
