"""Stub of the compiled module built from _speedups.c (see tracekit/recorder/hotpath.py)."""

from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

N_FIELDS: int
ABI_VERSION: int

def has_null(data: bytes, /) -> bool: ...
def non_finite(value: object, /) -> bool | None: ...

class HotPath:
    active: bool
    def __init__(
        self,
        *,
        recorder: Any,
        open: dict[Any, Any],
        ring_append: Callable[[Any], None],
        finished_counter: Iterator[int],
        seq_counter: Iterator[int],
        capture: bool,
        step_type: type,
        step_fields: tuple[Any, ...],
        hash_source: Callable[[Any], bytes],
        finish_source: Callable[[Any, bytes], bytes],
        dumps: Callable[..., bytes],
        sort_option: int,
        defer_limit: int,
        max_in_flight: int,
        current_step: ContextVar[str | None],
        get_running_loop: Callable[[], Any],
        current_task: Callable[[Any], Any],
        perf_ns: Callable[[], int],
        monotonic: bool,
        py_start: Callable[[Any, Any], None],
        py_end: Callable[[Any, Any, Any], None],
        event_type: type,
        event_fields: tuple[Any, ...],
        internal_error: Callable[[str], None],
        key_taken: Callable[[Any, Any, Any, Any, bool], None],
        capture_of: Callable[[Any, bytes], Any],
        drop_oldest: Callable[[], None],
        take: Callable[[Any, Any], Any],
        misused: Callable[[str, Any], None],
        misuse: dict[str, int],
    ) -> None: ...
    def start(self, event: Any) -> None: ...
    def end(self, event: Any, output: Any) -> None: ...
