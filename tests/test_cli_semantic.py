"""Semantic rules (tracekit.trace.semantic): each one broken, alone, on a real recorder trace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _cli_support import failing_trace, invoke, load, success_trace, write_json

from tracekit.trace.check import validate_trace
from tracekit.trace.semantic import RULES, semantic_problems

Doc = dict[str, Any]


def _set_parent(doc: Doc) -> None:
    doc["steps"][0]["parent_step_id"] = doc["steps"][0]["step_id"]


def _dup_id(doc: Doc) -> None:
    doc["steps"][1]["step_id"] = doc["steps"][0]["step_id"]


def _ms(doc: Doc) -> None:
    doc["steps"][0]["duration_ns"] = 5_999_999
    doc["steps"][0]["duration_ms"] = 6


def _sha(doc: Doc) -> None:
    doc["steps"][0]["input_hash"] = {"algorithm": "sha256", "value": "ab" * 20}


def _order(doc: Doc) -> None:
    doc["run"]["started_at"], doc["run"]["finished_at"] = "2026-11-23T12:00:01Z", "2026-11-23T12:00:00Z"


def _feb30(doc: Doc) -> None:
    doc["steps"][1]["started_at"] = "2026-02-30T10:00:00.000001Z"


def _dropped(doc: Doc) -> None:
    doc["buffer"] = {"capacity": 20, "dropped": 4}


def _over(doc: Doc) -> None:
    doc["buffer"] = {"capacity": 1, "dropped": 0}


def _errors_dropped(doc: Doc) -> None:
    doc["errors"], doc["errors_dropped"] = [], 3


def _completed_error(doc: Doc) -> None:
    doc["steps"][0]["error"] = {"code": "x", "message": "m", "details": {}}


def _chain(doc: Doc) -> None:
    failed = next(s for s in doc["steps"] if len(s.get("error", {}).get("details", {}).get("chain", [])) > 1)
    failed["error"]["details"]["chain"][1]["relation"] = "raised"


def _late_step(doc: Doc) -> None:
    doc["steps"][1]["started_at"] = "2099-01-01T00:00:00Z"


def _invocation(doc: Doc) -> None:
    doc["steps"][0]["invocation_json"]["operation"] = "other"


CASES: list[tuple[str, Callable[[Doc], None], str, str]] = [
    ("parent_not_self", _set_parent, "/steps/0/parent_step_id", "is its own parent"),
    ("unique_step_id", _dup_id, "/steps/1/step_id", "step_id 's1' is also the step_id of /steps/0"),
    ("duration_consistent", _ms, "/steps/0/duration_ms",
     "duration_ms is 6 but duration_ns 5999999 gives 5 (duration_ns // 1000000)"),
    ("hash_length", _sha, "/steps/0/input_hash/value", "a sha256 digest has 64 hex digits, this one has 40"),
    ("time_order", _order, "/run/finished_at", "finished_at 2026-11-23T12:00:00Z is before started_at"),
    ("step_within_run", _late_step, "/steps/1/started_at",
     "the step starts at 2099-01-01T00:00:00Z, after its run finished at"),
    ("rfc3339", _feb30, "/steps/1/started_at", "'2026-02-30T10:00:00.000001Z' is not a valid RFC 3339"),
    ("buffer_consistent", _dropped, "/buffer/dropped",
     "4 steps were dropped but the buffer holds only 4 of 20"),
    ("buffer_consistent", _over, "/buffer/capacity",
     "finished steps are recorded but the buffer holds at most 1"),
    ("errors_dropped_consistent", _errors_dropped, "/errors_dropped", "3 error events were dropped but none"),
    ("completed_without_error", _completed_error, "/steps/0/error", "a completed step has an error"),
    ("chain_order", _chain, "/error/details/chain/1/relation", "only the first link of a chain is 'raised'"),
    ("invocation_matches", _invocation, "/steps/0/invocation_json/operation",
     "'other' differs from the step's"),
]


@pytest.fixture
def trace(tmp_path: Path) -> Doc:
    return load(failing_trace(tmp_path / "t.json"))


def test_a_parent_outside_the_trace_is_allowed(trace: Doc) -> None:
    """The ring buffer may have dropped the parent, or it ran in another process."""
    trace["steps"][0]["parent_step_id"] = "evicted-or-remote"
    assert semantic_problems(trace) == []


def test_recorder_traces_break_no_rule(tmp_path: Path, trace: Doc) -> None:
    assert semantic_problems(trace) == []
    assert semantic_problems(load(success_trace(tmp_path / "s.json"))) == []


@pytest.mark.parametrize(("rule", "mutate", "pointer", "says"), CASES, ids=[c[1].__name__ for c in CASES])
def test_each_rule(
    tmp_path: Path, trace: Doc, rule: str, mutate: Callable[[Doc], None], pointer: str, says: str
) -> None:
    mutate(trace)
    problems = [p for p in validate_trace(trace) if p.rule == rule]
    assert len(problems) == 1, validate_trace(trace)
    assert problems[0].pointer.endswith(pointer)
    assert says in problems[0].message
    path = write_json(tmp_path / "bad.json", trace)
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert any(line.startswith(f"{path}: /") and says in line for line in result.stdout.splitlines())


def test_every_rule_has_a_case(tmp_path: Path) -> None:
    fired: set[str] = set()
    for rule, mutate, _, _ in CASES:
        doc = load(failing_trace(tmp_path / "t.json"))
        mutate(doc)
        fired |= {name for name, check in RULES.items() if any(p.rule == rule for p in check(doc))}
    assert fired == set(RULES)


def test_failed_step_without_error_is_reported_once(trace: Doc) -> None:
    failed = next(s for s in trace["steps"] if s["status"] == "failed")
    del failed["error"]
    problems = validate_trace(trace)
    assert len(problems) == 1, problems
    assert "'error' is a required property" in problems[0].message


def test_unsupported_version_stops_further_checks(trace: Doc) -> None:
    trace["trace_version"] = 2
    trace["steps"] = "not checked"
    problems = validate_trace(trace)
    assert [(p.pointer, p.message) for p in problems] == [
        ("/trace_version", "written by a newer tracekit (trace_version 2); this one reads 1: upgrade")
    ]
    trace["trace_version"] = 0
    assert validate_trace(trace)[0].message == "unsupported trace_version 0; allowed: 1"
    trace["trace_version"] = True  # a bool is not the integer 1
    assert [(p.rule, p.message) for p in validate_trace(trace)] == [
        ("type", "trace_version is a boolean (True); allowed: the integer 1")
    ]
    trace["trace_version"] = "1"  # a string is an invalid trace, not an unsupported version
    assert [(p.rule, p.message) for p in validate_trace(trace)] == [
        ("type", "trace_version is a string ('1'); allowed: the integer 1")
    ]


def test_rules_tolerate_wrong_types() -> None:
    odd: Doc = {
        "trace_version": 1, "steps": [1, None, {"status": "failed", "error": "x", "duration_ns": "1"}],
        "run": [], "buffer": {"capacity": "2"}, "errors": {}, "errors_dropped": "3",
    }
    semantic_problems(odd)  # no exception: the schema reports wrong types
    assert validate_trace(odd)
    assert validate_trace([1])[0].pointer == ""


def test_a_step_within_the_clocks_slack_of_the_run_end_is_allowed(trace: Doc) -> None:
    """finished_at comes from the wall clock, step times from the monotonic one: a hair apart."""
    end = trace["run"]["finished_at"]
    trace["steps"][1]["started_at"] = end.replace("Z", "")[:19] + ".999999Z"  # < 1 s after
    assert [p for p in semantic_problems(trace) if p.rule == "step_within_run"] == []


def test_leap_second_is_a_valid_time(trace: Doc) -> None:
    trace["steps"][0]["started_at"] = "2016-12-31T23:59:60Z"
    assert [p for p in semantic_problems(trace) if p.rule == "rfc3339"] == []
