"""Hostile value types for test_hostile.py, and a child process that hashes pickled values.

As a script it reads a pickled list from stdin and prints one hex hash per value, so a test can
check that hashes do not depend on the process (hash seed, memory addresses, set order).
The classes live here, not in the test module, so the child can unpickle them.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any


class Plain:
    """An object with state in ``__dict__``."""

    def __init__(self, a: Any = 1, b: Any = "two") -> None:
        self.a = a
        self.b = b


class Slotted:
    __slots__ = ("x", "y")

    def __init__(self, x: Any = 1, y: Any = None) -> None:
        self.x = x
        self.y = y


class Opaque:
    """No state: hashed by its repr, whose memory address is masked."""

    __slots__ = ()


class BadRepr:
    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("repr refuses")


class BadEq:
    """Hashable, but comparing raises: sorting or de-duplicating it must not be attempted."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq refuses")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("lt refuses")

    def __hash__(self) -> int:
        return object.__hash__(self)  # by identity, so dicts never need to compare two of them


class BadHash:
    def __init__(self, n: int = 0) -> None:
        self.n = n

    def __hash__(self) -> int:
        raise RuntimeError("hash refuses")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq refuses")


class SubDict(dict[Any, Any]):
    """A dict subclass with an extra attribute."""

    label = "sub"


class LyingDict(dict[Any, Any]):
    """A dict subclass whose accessors raise: the stored items are what count."""

    def items(self) -> Any:
        raise RuntimeError("items refuses")

    def values(self) -> Any:
        raise RuntimeError("values refuses")

    def keys(self) -> Any:
        raise RuntimeError("keys refuses")

    def __iter__(self) -> Any:
        raise RuntimeError("iter refuses")


class Haunted:
    """Every attribute access raises, even ``__class__`` (which ``isinstance`` reads)."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


def main() -> None:
    from tracekit.capture.hashing import hash_hex

    values = pickle.loads(sys.stdin.buffer.read())
    for v in values:
        print(hash_hex(v))


if __name__ == "__main__":
    main()
