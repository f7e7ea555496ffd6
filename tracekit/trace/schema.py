"""The published JSON Schema of the envelope, and validation against it.

The schema ships inside the wheel (``tracekit/_schemas``); a source checkout reads
``schemas/`` at the repository root instead, so both always hold one and the same file.
"""

from __future__ import annotations

import functools
import heapq
import importlib.resources
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

__all__ = [
    "SCHEMA_FILE",
    "SchemaProblem",
    "first_schema_problems",
    "iter_schema_problems",
    "load_schema",
    "schema_path",
    "validate_document",
]

SCHEMA_FILE: Final = "trace-envelope.v1.schema.json"


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One way a document breaks the schema: where (a JSON Pointer) and what."""

    pointer: str
    message: str
    rule: str  # the schema keyword that failed, e.g. "required", "pattern"

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def schema_path() -> Path:
    """Where the schema file lives: the installed package's copy, else the source tree's."""
    packaged = importlib.resources.files("tracekit").joinpath("_schemas", SCHEMA_FILE)
    if packaged.is_file():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_FILE
    if source.is_file():
        return source
    raise FileNotFoundError(f"the tracekit schema {SCHEMA_FILE} is missing from the installation")


@functools.cache
def load_schema() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(schema_path().read_bytes())
    return data


@functools.cache
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _pointer(path: Any) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    # if/then and allOf report their sub-errors as context; the leaves say what is wrong.
    if error.context:
        for sub in error.context:
            yield from _leaf_errors(sub)
    else:
        yield error


def iter_schema_problems(document: Any) -> Iterator[SchemaProblem]:
    """Every schema violation in ``document``, in document order."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    for err in errors:
        for leaf in _leaf_errors(err):
            yield SchemaProblem(_pointer(leaf.absolute_path), leaf.message, str(leaf.validator))


def _leaves(document: Any) -> Iterator[ValidationError]:
    for err in _validator().iter_errors(document):
        yield from _leaf_errors(err)


def _order(error: ValidationError) -> tuple[Any, ...]:
    # Document order: array indices as numbers. Two paths first differ under one parent, so
    # the segments compared there are both indices or both keys.
    return tuple(error.absolute_path)


def first_schema_problems(
    document: Any, cap: int | None, count_limit: int | None = None
) -> tuple[list[SchemaProblem], int, bool]:
    """The first ``cap`` schema problems in document order, how many were counted, and
    whether counting finished (it stops at ``count_limit``).

    Unlike :func:`iter_schema_problems` nothing but ``cap`` problems is ever held, so a file that
    breaks a rule a million times is checked in bounded memory.
    """
    counted = 0
    complete = True

    def counting() -> Iterator[ValidationError]:
        nonlocal counted, complete
        for leaf in _leaves(document):
            if count_limit is not None and counted >= count_limit:
                complete = False
                return
            counted += 1
            yield leaf

    if cap is None:
        kept = sorted(counting(), key=_order)
    else:
        # A tie-breaking counter keeps the heap from ever comparing two errors.
        tick = itertools.count()
        kept = [e for _, _, e in heapq.nsmallest(cap, ((_order(e), next(tick), e) for e in counting()))]
    problems = [SchemaProblem(_pointer(e.absolute_path), e.message, str(e.validator)) for e in kept]
    return problems, counted, complete


def validate_document(document: Any) -> list[SchemaProblem]:
    """All schema problems of ``document`` (empty when it is a valid trace)."""
    return list(iter_schema_problems(document))
