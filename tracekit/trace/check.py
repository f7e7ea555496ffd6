"""The one check every command runs on a trace: version gate, nesting bound, schema, semantic rules.

``tracekit validate`` reports it; ``show``, ``diff``, ``ls``, ``export`` and ``report`` run it too,
so every command refuses the same files the same way (a trace from a newer tracekit: exit 1,
"written by a newer tracekit ... upgrade"). It collects at most a cap of problems and counts the
rest up to a limit: a hostile file can break a rule a million times, and must not take a
million problem objects of memory to say so.

Threading contract: pure functions of their argument; safe from any thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from tracekit.trace.schema import SchemaProblem, first_schema_problems
from tracekit.trace.semantic import SUPPORTED_TRACE_VERSIONS, _error_objects, _p, semantic_problems

__all__ = [
    "MAX_COUNTED",
    "MAX_GROUP_NESTING",
    "MAX_PROBLEMS",
    "Checked",
    "check_trace",
    "newer_version",
    "newer_version_message",
    "validate_trace",
]

#: Problems collected per document; past it they are only counted (up to :data:`MAX_COUNTED`).
MAX_PROBLEMS: Final = 100
MAX_COUNTED: Final = 10_000
#: Exception groups nested deeper than this are refused before the schema is checked: the
#: recorder writes at most 4 levels, and checking ~70 would exhaust the interpreter's stack.
MAX_GROUP_NESTING: Final = 32
#: Schema messages quote the offending value; a whole object quoted is noise, so it is cut.
MAX_MESSAGE_CHARS: Final = 300
_FORBIDDEN: Final = re.compile(r"should not be valid under \{'required': \['([^']+)'\]\}")


def newer_version(document: Any) -> int | None:
    """The ``trace_version`` of a trace written by a newer tracekit than this one, else None.

    Only an integer above the versions read here is "newer"; a string ``"1"`` or a ``0`` is an
    invalid trace (the schema says why), not a reason to upgrade.
    """
    version = document.get("trace_version") if isinstance(document, dict) else None
    if type(version) is int and version > max(SUPPORTED_TRACE_VERSIONS):
        return version
    return None


def newer_version_message(version: int) -> str:
    """What every command says about a trace from a newer tracekit (exit 1)."""
    return f"written by a newer tracekit (trace_version {version}); this one reads {_versions()}: upgrade"


def _version_problem(document: dict[str, Any]) -> SchemaProblem | None:
    version = document.get("trace_version")
    if type(version) is int and version in SUPPORTED_TRACE_VERSIONS:
        return None
    if "trace_version" not in document:
        message = "trace_version is missing; allowed: " + _versions()
    elif (newer := newer_version(document)) is not None:
        message = newer_version_message(newer)
    elif type(version) is int:
        message = f"unsupported trace_version {version}; allowed: {_versions()}"
    else:
        kind = "null" if version is None else _KIND.get(type(version), type(version).__name__)
        message = f"trace_version is {kind} ({version!r}); allowed: the integer {_versions()}"
        return _p("/trace_version", message, "type")
    return _p("/trace_version", message, "trace_version")


_KIND: Final = {str: "a string", float: "a number", bool: "a boolean", list: "an array", dict: "an object"}


def _group_too_deep(document: dict[str, Any]) -> SchemaProblem | None:
    """The first exception group nested deeper than :data:`MAX_GROUP_NESTING`, walked without
    recursion (a recursive walk is what fails on such a file)."""
    stack: list[tuple[Any, str, int]] = [(error, at, 0) for at, error in _error_objects(document)]
    while stack:
        node, at, depth = stack.pop()
        if isinstance(node, dict):
            items: list[tuple[str, Any]] = list(node.items())
        elif isinstance(node, list):
            items = [(str(i), v) for i, v in enumerate(node)]
        else:
            continue
        for key, value in items:
            if not isinstance(value, dict | list):
                continue
            level = depth + (1 if key == "exceptions" and isinstance(node, dict) else 0)
            if level > MAX_GROUP_NESTING:
                return _p(f"{at}/{key}", f"exception groups nested more than {MAX_GROUP_NESTING} deep; "
                          f"allowed: at most {MAX_GROUP_NESTING} (tracekit writes at most 4)",
                          "group_nesting")
            stack.append((value, f"{at}/{key}", level))
    return None


@dataclass(frozen=True, slots=True)
class Checked:
    """What :func:`check_trace` found: the first problems, and how many there are in all.

    ``total`` counts every problem up to :data:`MAX_COUNTED`; ``counted_all`` is False when
    counting stopped there.
    """

    problems: list[SchemaProblem]
    total: int
    counted_all: bool = True

    @property
    def valid(self) -> bool:
        return self.total == 0

    @property
    def more(self) -> int:
        """Problems found but not collected."""
        return self.total - len(self.problems)


def check_trace(document: Any, *, cap: int | None = MAX_PROBLEMS, semantic: bool = True) -> Checked:
    """Everything wrong with ``document`` as a trace, at most ``cap`` problems collected.

    Order of checks: the version gate (a trace of another ``trace_version`` gets one problem and
    no further checks: its fields are not ours to judge), the nesting bound, the schema, then
    (``semantic``) the rules of :data:`RULES`; a problem the schema reports at a place is not
    repeated by a semantic rule. Never raises for anything the document contains.
    """
    if not isinstance(document, dict):
        return Checked([_p("", "the top level is not a JSON object; a trace is a JSON object", "type")], 1)
    gate = _version_problem(document) or _group_too_deep(document)
    if gate is not None:
        return Checked([gate], 1)
    try:
        found, total, complete = first_schema_problems(
            document, cap, MAX_COUNTED if cap is not None else None
        )
        problems = [_friendly(p) for p in found]
        if semantic:
            reported = {p.pointer for p in problems}
            for p in semantic_problems(document):
                if p.pointer in reported:
                    continue
                if cap is None or len(problems) < cap:
                    problems.append(p)
                total += 1
    except RecursionError:
        too_deep = _p("", "the document is nested too deeply to check", "load")
        return Checked([too_deep], 1)
    return Checked(problems, total, complete)


def _friendly(problem: SchemaProblem) -> SchemaProblem:
    """jsonschema's words, made readable: no whole objects echoed back, forbidden keys named."""
    message = problem.message
    if problem.rule == "not" and (m := _FORBIDDEN.search(message)):
        message = f"{m.group(1)!r} is not allowed here (see the schema's conditions for this object)"
        if problem.pointer == "/run" and m.group(1) == "finished_at":
            message = "an in_progress run has no finished_at; allowed: finished_at only on a final outcome"
    elif len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return SchemaProblem(problem.pointer, message, problem.rule)


def _versions() -> str:
    return ", ".join(str(v) for v in SUPPORTED_TRACE_VERSIONS)


def validate_trace(document: Any) -> list[SchemaProblem]:
    """Every problem of ``document`` as a trace: :func:`check_trace` without a cap."""
    return check_trace(document, cap=None).problems
