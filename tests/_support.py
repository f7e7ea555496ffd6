"""Helpers shared by the recorder's tests: build a recorder, read back a trace it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tracekit import TraceConfig, TraceContext, TraceRecorder
from tracekit.trace.schema import validate_document

__all__ = ["load", "make"]


def make(context: TraceContext, **overrides: Any) -> TraceRecorder:
    """A recorder configured by ``overrides`` only (the test's environment is clean)."""
    return TraceRecorder(TraceConfig.from_env({}, **overrides), context)


def load(path: Path | str = "trace.json") -> dict[str, Any]:
    """The trace at ``path``, asserted valid against the schema."""
    doc: dict[str, Any] = orjson.loads(Path(path).read_bytes())
    problems = validate_document(doc)
    assert problems == [], problems
    return doc
