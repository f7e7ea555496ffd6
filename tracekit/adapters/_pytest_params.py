"""Test parameters made safe to hash: modules are named, never walked.

Test parameters are often modules (``params=(attr, attrs)``); the generic hashing rule for an
object walks its ``__dict__``, and a module's reaches every module loaded: on attrs' own suite
that took seconds and gigabytes per test (RSS reached 14 GB) and ended in a RecursionError
that lost the step. A module becomes ``{"$module": name}`` (``"$module:name"`` as a dict key or
set element), at any depth of plain lists, tuples, dicts and sets. Anything else is returned as
it is (the very object when nothing in it changed), so it hashes as ``hash_value`` hashes it.

Threading contract: pure functions; safe from any thread.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final

__all__ = ["MAX_PARAM_DEPTH", "safe_param"]

#: Container levels of a parameter searched for modules; deeper values are left as they are.
MAX_PARAM_DEPTH: Final = 64


def safe_param(value: Any) -> Any:
    """``value`` with every module in it named (see the module doc)."""
    return _param(value, 0)


def _param(value: Any, depth: int) -> Any:
    if isinstance(value, ModuleType):
        return {"$module": value.__name__}
    kind = type(value)
    if depth >= MAX_PARAM_DEPTH:
        return value
    if kind is list or kind is tuple:
        items = [_param(v, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else kind(items)
    if kind is dict:
        pairs = [(_name(k), k, _param(v, depth + 1), v) for k, v in value.items()]
        if all(nk is k and nv is v for nk, k, nv, v in pairs):
            return value
        return {nk: nv for nk, _, nv, _ in pairs}
    if (kind is set or kind is frozenset) and any(isinstance(v, ModuleType) for v in value):
        return kind(_name(v) for v in value)
    return value


def _name(value: Any) -> Any:
    """A hashable stand-in for a module used as a dict key or set element."""
    return f"$module:{value.__name__}" if isinstance(value, ModuleType) else value
