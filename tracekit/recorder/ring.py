"""What is kept of finished steps: the last N (the ring) plus, pinned, the run's failures.

A failure is what a trace exists for, so a later success never evicts one: every failed step of
the run, and the steps on its parent chain, are pinned beside the ring, capped separately
(:data:`DEFAULT_MAX_FAILURES`): the oldest half of the cap and the newest half are kept, the
first failure (usually the cause) and the last (usually what ended the run) among them, the way
Sentry users asked breadcrumbs to keep what matters; what falls between is counted.

The success path pays nothing for this: completed steps go to the ring with one ``append``
(compiled or not); only a failure takes the pinning lock.

Threading contract: ``ring.append`` is atomic (a deque); :meth:`Pins.pin` and the readers take
the pins' own lock, never held while calling out.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from tracekit.config import DEFAULT_MAX_FAILURES
from tracekit.trace.model import Step

__all__ = ["DEFAULT_MAX_FAILURES", "Pins", "kept_steps"]


class Pins:
    """The failed steps of the current run, and their parents, capped: oldest and newest kept."""

    __slots__ = ("_head", "_ids", "_lock", "_tail", "capacity", "dropped")

    def __init__(self, capacity: int = DEFAULT_MAX_FAILURES) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._head: list[Step] = []
        self._tail: deque[Step] = deque(maxlen=capacity - capacity // 2)
        self._ids: set[int] = set()
        self.dropped = 0

    def pin(self, steps: Iterable[Step]) -> None:
        """Keep ``steps`` (a failure, then its parents); a step already pinned is not added twice."""
        with self._lock:
            for step in steps:
                key = id(step)
                if key in self._ids:
                    continue
                if len(self._head) < self.capacity // 2:
                    self._head.append(step)
                    self._ids.add(key)
                    continue
                if len(self._tail) == self._tail.maxlen:
                    evicted = self._tail.popleft()
                    self._ids.discard(id(evicted))
                    self.dropped += 1
                self._tail.append(step)
                self._ids.add(key)

    def retain(self, keep: Callable[[Step], bool]) -> None:
        """Drop the pins ``keep`` refuses (those an implicit run's final trace told of)."""
        with self._lock:
            self._head = [s for s in self._head if keep(s)]
            kept = [s for s in self._tail if keep(s)]
            self._tail.clear()
            self._tail.extend(kept)
            self._ids = {id(s) for s in (*self._head, *self._tail)}
            self.dropped = 0

    def steps(self) -> list[Step]:
        with self._lock:
            return [*self._head, *self._tail]

    def clear(self) -> None:
        with self._lock:
            self._head.clear()
            self._tail.clear()
            self._ids.clear()
            self.dropped = 0

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._head.clear()
        self._tail.clear()
        self._ids.clear()
        self.dropped = 0


def kept_steps(
    ring: Iterable[Step], pinned: Iterable[Step], told: Mapping[int, Step]
) -> tuple[list[Step], int]:
    """The finished steps a trace holds, in the order they finished, and how many came from pins.

    A pinned step the ring no longer holds finished before every step the ring holds, so pins
    come first (in finish order), then the ring. Failed and cancelled steps an earlier run's final
    trace already told of (``told``, by id; still in a worker's ring as its recent history) are
    left out: a reader must not take them for this run's.
    """
    recent = [s for s in ring if s.status == "completed" or told.get(id(s)) is not s]
    in_ring = {id(s) for s in recent}
    older = sorted(
        (s for s in pinned if s.status != "in_flight" and id(s) not in in_ring), key=_end
    )
    return [*older, *recent], len(older)


def _end(step: Step) -> int:
    return step.end_ns
