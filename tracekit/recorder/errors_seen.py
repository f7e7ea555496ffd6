"""The errors a run has already recorded, so a runner re-raising one is not recorded twice.

Bounded (:data:`MAX_REMEMBERED`): a long-lived worker that reports errors and never ends a run
must not grow. Each error is held (so its id is not reused by a new object) until it is evicted,
oldest first; an evicted error re-raised later is recorded again, which is the safe side.

Threading contract: callers hold the recorder's lock around :meth:`add` and :meth:`clear`;
``in`` is a single dict lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

__all__ = ["MAX_REMEMBERED", "ErrorsSeen"]

#: Errors remembered per run.
MAX_REMEMBERED: Final = 1_000


class ErrorsSeen:
    __slots__ = ("_by_id", "capacity")

    def __init__(self, capacity: int = MAX_REMEMBERED) -> None:
        self.capacity = capacity
        self._by_id: OrderedDict[int, BaseException] = OrderedDict()

    def add(self, error: BaseException) -> None:
        self._by_id[id(error)] = error
        self._by_id.move_to_end(id(error))
        while len(self._by_id) > self.capacity:
            self._by_id.popitem(last=False)

    def __contains__(self, error: object) -> bool:
        held = self._by_id.get(id(error))
        return held is not None and held is error

    def __len__(self) -> int:
        return len(self._by_id)

    def clear(self) -> None:
        self._by_id.clear()
