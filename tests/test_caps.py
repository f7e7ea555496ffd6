"""Caps: a trace stays small whatever the runner throws at it.

Captured payloads over ``max_capture_bytes`` (64 KiB) become a marker with their original size
and hash; detail strings (messages, tracebacks, ``Traceable`` text, validation messages) are cut
at ``max_detail_chars``; runner errors are capped at ``max_errors``; a 50 MB input leaves a
trace of a few KiB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder, ValidationIssue
from tracekit.capture.hashing import canonical_json, hash_hex
from tracekit.config import DEFAULT_MAX_CAPTURE_BYTES, DEFAULT_MAX_DETAIL_CHARS
from tracekit.trace.schema import validate_document

FIFTY_MB = 50 * 1024 * 1024
SMALL_TRACE = 256 * 1024  # what a trace with one 50 MB input may grow to, at most


def _recorder(tmp_path: Path, context: TraceContext, **overrides: Any) -> TraceRecorder:
    options: dict[str, Any] = {"mode": "always", "out": tmp_path / "t.json", "capture_inputs": True}
    return TraceRecorder(TraceConfig.create(**{**options, **overrides}), context)


def _written(rec: TraceRecorder) -> dict[str, Any]:
    path = rec.flush_buffer()
    assert path is not None
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    return doc


def _payload_of_size(size: int) -> dict[str, str]:
    """A payload whose canonical JSON is exactly ``size`` bytes."""
    overhead = len(canonical_json({"blob": ""}))
    payload = {"blob": "x" * (size - overhead)}
    assert len(canonical_json(payload)) == size
    return payload


def _step(rec: TraceRecorder, payload: Any, node: str = "n") -> None:
    ev = NodeEvent(node, "c", "call", payload=payload)
    rec.on_node_start(ev)
    rec.on_node_end(ev, None)


def test_defaults() -> None:
    config = TraceConfig()
    assert config.max_capture_bytes == DEFAULT_MAX_CAPTURE_BYTES == 64 * 1024
    assert config.max_detail_chars == DEFAULT_MAX_DETAIL_CHARS == 16 * 1024


def test_payload_at_the_limit_is_kept_and_one_byte_more_is_cut(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    at_limit = _payload_of_size(DEFAULT_MAX_CAPTURE_BYTES)
    over = _payload_of_size(DEFAULT_MAX_CAPTURE_BYTES + 1)
    _step(rec, at_limit, "at")
    _step(rec, over, "over")
    kept, cut = _written(rec)["steps"]
    assert kept["invocation_json"]["payload"] == at_limit
    marker = cut["invocation_json"]["payload"]
    assert marker["$truncated"] is True
    assert marker["original_bytes"] == DEFAULT_MAX_CAPTURE_BYTES + 1
    assert marker["hash"] == cut["input_hash"] == {"algorithm": "blake3", "value": hash_hex(over)}
    assert len(orjson.dumps(marker)) < 1024


def test_a_configured_capture_limit(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context, max_capture_bytes=100)
    _step(rec, _payload_of_size(100), "kept")
    _step(rec, _payload_of_size(101), "cut")
    kept, cut = _written(rec)["steps"]
    assert "$truncated" not in kept["invocation_json"]["payload"]
    assert cut["invocation_json"]["payload"]["original_bytes"] == 101


def test_the_size_counted_is_after_redaction(tmp_path: Path, context: TraceContext) -> None:
    # A huge secret is masked first: what is left fits, so nothing is cut.
    rec = _recorder(tmp_path, context)
    payload = {"password": "p" * (2 * DEFAULT_MAX_CAPTURE_BYTES), "user": "ada"}
    _step(rec, payload)
    (step,) = _written(rec)["steps"]
    assert step["invocation_json"]["payload"] == {"password": "[REDACTED]", "user": "ada"}
    assert step["input_hash"]["value"] == hash_hex(payload)


class LongTrace(Exception):
    def trace_format(self) -> str:
        return "T" * 10_000


def test_detail_strings_are_capped(tmp_path: Path, context: TraceContext) -> None:
    cap = 500
    rec = _recorder(tmp_path, context, max_detail_chars=cap)

    def recurse(n: int) -> None:
        if n == 0:
            raise LongTrace("M" * 10_000) from KeyError("K" * 10_000)
        recurse(n - 1)

    ev = NodeEvent("deep", "c", "call", payload=1)
    rec.on_node_start(ev)
    try:
        recurse(200)  # a long traceback
    except LongTrace as err:
        rec.on_node_error(ev, err)
    v = NodeEvent("v", "c", "call")
    rec.on_node_start(v)
    rec.on_validation(v, [ValidationIssue("big", "V" * 10_000, path="/" + "p" * 10_000)])
    rec.on_node_end(v, None)
    rec.emit_error("scheduler", message="S" * 10_000, tags={"t": "g" * 10_000})
    rec.emit_error("runner", RuntimeError("R" * 10_000))
    doc = _written(rec)

    failed, validated = doc["steps"]
    error = failed["error"]
    slack = 80  # the "[truncated: N characters in all]" note
    assert len(error["message"]) <= cap + slack and "10000 characters" in error["message"]
    assert len(error["details"]["traceback"]) <= cap + slack
    assert error["details"]["traceback"].rstrip().endswith("M" * 100)  # the end is kept: the error line
    assert len(error["details"]["trace"]) <= cap + slack
    chain = error["details"]["chain"]
    assert [link["type"] for link in chain] == ["test_caps.LongTrace", "KeyError"]
    assert all(len(link["message"]) <= cap + slack for link in chain)
    (issue,) = validated["validation_issues"]
    assert len(issue["message"]) <= cap + slack and len(issue["path"]) <= cap + slack
    scheduler, runner = doc["errors"]
    assert len(scheduler["message"]) <= cap + slack
    assert len(scheduler["tags"]["t"]) <= cap + slack
    assert len(runner["message"]) <= cap + slack
    assert len(runner["error"]["details"]["traceback"]) <= cap + slack


def test_runner_errors_are_capped_with_a_count_of_the_dropped(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context, max_errors=10)
    for i in range(500):
        rec.emit_error("runner", message=f"e{i}")
    doc = _written(rec)
    assert [e["message"] for e in doc["errors"]] == [f"e{i}" for i in range(10)]
    assert doc["errors_dropped"] == 490


def test_a_50_mb_input_never_makes_the_trace_huge(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context)
    blob = "x" * FIFTY_MB
    payload = {"blob": blob, "rows": [1, 2, 3]}
    with pytest.raises(ValueError), rec.run():
        ev = NodeEvent("huge", "c", "call", payload=payload)
        rec.on_node_start(ev)
        rec.on_validation(ev, [ValidationIssue("size", blob)])
        rec.emit_error("runner", message=blob, context={"input": payload})
        rec.on_node_end(ev, payload)  # the output: hashed, never written
        err = ValueError(blob)
        rec.on_node_error(NodeEvent("next", "c", "call", payload=payload), err)
        raise err
    path = tmp_path / "t.json"
    size = path.stat().st_size
    assert size < SMALL_TRACE, size
    doc = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    huge = doc["steps"][0]
    assert huge["invocation_json"]["payload"]["original_bytes"] > FIFTY_MB
    assert huge["input_hash"]["value"] == huge["output_hash"]["value"] == hash_hex(payload)
