"""The table of steps started and not yet ended, keyed as the runner will name them at the end."""

from __future__ import annotations

from typing import Any

from tracekit.capture.coerce import text
from tracekit.trace.model import Step

__all__ = ["InFlight", "Stack", "stand_in"]


def stand_in(runner_id: Any) -> Any:
    """``runner_id`` (a node or step id) as part of a key: itself, or its text if unhashable.

    A runner that passes a list as ``node_id`` still gets its start and end paired.
    """
    try:
        hash(runner_id)
    except TypeError:
        return ("$unhashable", text(runner_id))
    return runner_id


class Stack(list[Step]):
    """The steps of one key started again before the first ended (recursion, reused step ids).

    Ends take the newest first, as a call stack would.
    """

    __slots__ = ()


class InFlight(dict[Any, "Step | Stack"]):
    """key -> the step in flight under it, or a :class:`Stack` of them.

    The recorder's hot path uses the inherited C methods directly, one dict call per callback:
    ``setdefault(key, step)`` at start (anything but ``step`` back means the key was taken: call
    :meth:`push`) and ``pop(key, None)`` at end (a :class:`Stack` back means: call :meth:`take`).
    Thread safety comes from the GIL making each dict call atomic; keys hold the thread or
    asyncio task, so two threads only share a key when a runner reuses a ``step_id``.
    """

    __slots__ = ()

    def push(self, key: Any, held: Step | Stack, step: Step) -> None:
        """Start ``step`` under ``key``, which ``held`` already holds."""
        if type(held) is Stack:
            held.append(step)
        else:
            self[key] = Stack((held, step))  # type: ignore[arg-type]

    def take(self, key: Any, popped: Step | Stack | None) -> Step | None:
        """The step that ends under ``key``, given what ``pop(key, None)`` returned."""
        if type(popped) is not Stack:
            return popped  # type: ignore[return-value]
        step = popped.pop() if popped else None
        if len(popped) > 1:
            self[key] = popped
        elif popped:
            self[key] = popped[0]
        return step

    def pop_step(self, key: Any) -> Step | None:
        return self.take(key, self.pop(key, None))

    def peek(self, key: Any) -> Step | None:
        """The step that would end under ``key`` now, left in flight."""
        held = self.get(key)
        if type(held) is Stack:
            return held[-1] if held else None
        return held  # type: ignore[return-value]

    def remove(self, key: Any, step: Step) -> None:
        """Take ``step`` itself out (``recorder.step()`` holds its step; it need not be newest)."""
        held = self.get(key)
        if held is step:
            self.pop(key, None)
        elif type(held) is Stack and step in held:
            held.remove(step)
            if len(held) == 1:
                self[key] = held[0]
            elif not held:
                self.pop(key, None)

    def steps(self) -> list[Step]:
        """Every step in flight, oldest first."""
        found: list[Step] = []
        for held in list(self.values()):
            if type(held) is Stack:
                found.extend(list(held))
            else:
                found.append(held)  # type: ignore[arg-type]
        found.sort(key=lambda s: s.seq)
        return found

    def drop_oldest(self, count: int) -> int:
        """Forget the keys of the ``count`` oldest entries; return how many steps went."""
        def first_seq(item: tuple[Any, Step | Stack]) -> int:
            held = item[1]
            if type(held) is Stack:
                return held[0].seq if held else 0
            return held.seq  # type: ignore[union-attr]

        dropped = 0
        for key, held in sorted(list(self.items()), key=first_seq)[:count]:
            if self.pop(key, None) is not None:
                dropped += len(held) if type(held) is Stack else 1
        return dropped
