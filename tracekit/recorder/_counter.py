"""A counter that many threads can bump without a lock."""

from __future__ import annotations

import itertools
import threading

__all__ = ["TickCounter"]


class TickCounter:
    """Counts events from any thread; ``tick`` is the hot path, ``value()`` the rare read.

    ``tick`` is ``itertools.count``'s C-level ``__next__``: one atomic call under the GIL (and
    thread-safe in free-threaded builds), where a ``Lock`` around ``+= 1`` costs twice as much
    and convoys threads when one is preempted holding it. Reading takes a number from the same
    count, so reads are remembered and subtracted.
    """

    __slots__ = ("_read_lock", "_reads", "counter", "tick")

    def __init__(self) -> None:
        #: The count itself; compiled code advances it with one C call (tp_iternext).
        self.counter = itertools.count()
        self.tick = self.counter.__next__
        self._reads = 0
        self._read_lock = threading.Lock()

    def reinit_after_fork(self) -> None:
        self._read_lock = threading.Lock()

    def value(self) -> int:
        with self._read_lock:
            total = next(self.counter) - self._reads
            self._reads += 1
            return total
