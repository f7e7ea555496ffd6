"""The whole error chain of a failure: the raised error first, then its causes and contexts.

Bounded (``MAX_CHAIN`` links deep, ``MAX_LINKS`` in all, groups capped) so a hostile error
still gives a small record. Threading contract: pure functions, safe from any thread.
"""

from __future__ import annotations

from typing import Any, Final

from tracekit.errors.codes import classify
from tracekit.errors.text import MAX_CHAIN, MAX_LINKS, qualname, safe_message, trace_text

__all__ = ["MAX_CHAIN", "chain"]

_MAX_GROUP_MEMBERS: Final = 64
_MAX_GROUP_DEPTH: Final = 4


class _Budget:
    __slots__ = ("left",)

    def __init__(self, links: int) -> None:
        self.left = links


def _link(error: BaseException, relation: str, cap: int, depth: int, budget: _Budget) -> dict[str, Any]:
    link: dict[str, Any] = {
        "type": qualname(error),
        "message": safe_message(error, cap),
        "relation": relation,
    }
    trace = trace_text(error, cap)
    if trace is not None:
        link["trace"] = trace
    if isinstance(error, BaseExceptionGroup):
        members = list(error.exceptions)
        listed: list[dict[str, Any]] = []
        for member in members[:_MAX_GROUP_MEMBERS]:
            if budget.left <= 0:
                break
            budget.left -= 1
            item: dict[str, Any] = {
                "type": qualname(member),
                "message": safe_message(member, cap),
                "code": classify(member),
            }
            if depth < _MAX_GROUP_DEPTH:
                item["chain"] = _chain(member, cap, depth + 1, budget)
            listed.append(item)
        link["exceptions"] = listed
        if len(members) > len(listed):
            link["exceptions_dropped"] = len(members) - len(listed)
    return link


def _chain(error: BaseException, cap: int, depth: int, budget: _Budget) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    relation = "raised"
    while current is not None and id(current) not in seen and len(links) < MAX_CHAIN:
        if budget.left <= 0 and links:
            break
        budget.left -= 1
        seen.add(id(current))
        links.append(_link(current, relation, cap, depth, budget))
        if current.__cause__ is not None:
            current, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "context"
        else:
            current = None
    return links


def chain(error: BaseException, cap: int = 4096) -> list[dict[str, Any]]:
    """The raised error first, then its causes and contexts as Python prints them; root cause last.

    Each link has ``type``, ``message``, ``relation`` (``raised``, ``cause`` or ``context``),
    ``trace`` for a Traceable error, and ``exceptions`` (each with ``type``, ``message``,
    ``code`` and its own ``chain``) for an exception group. Loops are cut where they close.
    """
    return _chain(error, cap, 0, _Budget(MAX_LINKS))
