"""A forked child never inherits a held lock, and records its own run.

``os.fork()`` copies every lock in whatever state another thread left it: a flush in progress on
another thread would leave the child's first flush blocked forever. After a fork, in the child,
every live recorder gets new locks and starts a new run of its own (new run id, its own pid,
empty ring, pins and in-flight table: the parent's steps are the parent's), and its sink is
told, so the child never rewrites the parent's file (a single-file sink writes
``trace.<pid>.json`` beside ``trace.json``; a history sink claims a new file for the new run).

Threading contract: runs in the child right after ``fork()``, where only the forking thread
exists; it takes no lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from tracekit.registry import registry

__all__ = ["Forkable", "register"]


class Forkable(Protocol):
    def reinit_after_fork(self) -> None:
        """Replace locks and start a new run; called in the child only."""
        ...


_live: Callable[[], Iterable[Forkable]] | None = None


def register(live: Callable[[], Iterable[Forkable]]) -> None:
    """Have the recorders ``live()`` returns reinitialised in every forked child (once per process)."""
    global _live
    if _live is None and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_in_child)
    _live = live


def _in_child() -> None:
    registry._lock = threading.Lock()  # a registration in progress on another thread
    if _live is None:
        return
    for recorder in list(_live()):
        with contextlib.suppress(Exception):  # never break the child
            recorder.reinit_after_fork()
