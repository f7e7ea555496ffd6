"""The sample traces in fixtures/: valid ones pass the schema, each invalid one breaks exactly its rule.

The schema's rules are found by walking the schema itself, so a rule added without an invalid
fixture fails :func:`test_every_schema_rule_has_exactly_one_invalid_fixture`. The valid traces
are regenerated with the current recorder (``fixtures/generate.py``) and what each scenario
claims to show is checked on both the committed and the regenerated copies.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import orjson
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from tracekit.trace.schema import load_schema, validate_document

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
INVALID = FIXTURES / "invalid"
INDEX: dict[str, dict[str, str]] = orjson.loads((INVALID / "index.json").read_bytes())

SCENARIOS = (
    "cancelled", "captured_inputs", "error_chain", "error_events", "exception_group", "failure_on",
    "in_flight", "nested_steps", "replayable", "ring_buffer", "seed_fields_only", "success_always",
    "validation_issues",
)
SEED_TOP = {"trace_version", "runner_version", "git_sha", "pack", "flow", "steps"}
SEED_STEP = {
    "node_id", "component_id", "operation", "input_hash", "invocation_json", "invocation_path",
    "output_hash", "state_delta_hash", "duration_ms", "validation_issues", "error",
}


def _valid_files(root: Path) -> list[Path]:
    return sorted(root.glob("*.json")) + sorted((root / "history").glob("*.json"))


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


# --- walking the schema -----------------------------------------------------------------------

_ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "default", "examples", "$ref"}
_ASSERTIONS = {
    "type", "const", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems", "minProperties",
    "maxProperties", "not", "anyOf", "oneOf",
}
_NAMED_SUBSCHEMAS = {"properties", "$defs", "patternProperties", "dependentSchemas"}
_ONE_SUBSCHEMA = {"items", "additionalProperties", "then", "else", "contains", "propertyNames"}
_SUBSCHEMA_LISTS = {"allOf", "prefixItems"}


def _escape(segment: object) -> str:
    return str(segment).replace("~", "~0").replace("/", "~1")


def schema_rules(node: Any, at: str = "") -> Iterator[str]:
    """Every rule the schema states, named as in fixtures/invalid/index.json.

    A keyword this walker does not know fails loudly, so a new kind of rule cannot slip past
    the coverage test unnoticed.
    """
    if node is False:
        yield at
        return
    if node is True:
        return
    for keyword, value in node.items():
        where = f"{at}/{_escape(keyword)}"
        if keyword in _ANNOTATIONS or keyword == "if":  # "if" is a condition, not a rule
            continue
        if keyword in _ASSERTIONS:
            yield where
        elif keyword in ("required", "dependentRequired"):
            names = value if keyword == "required" else [n for ns in value.values() for n in ns]
            for name in names:
                yield f"{where}/{_escape(name)}"
        elif keyword in _NAMED_SUBSCHEMAS:
            for name, sub in value.items():
                yield from schema_rules(sub, f"{where}/{_escape(name)}")
        elif keyword in _ONE_SUBSCHEMA:
            yield from schema_rules(value, where)
        elif keyword in _SUBSCHEMA_LISTS:
            for i, sub in enumerate(value):
                yield from schema_rules(sub, f"{where}/{i}")
        else:
            raise AssertionError(f"schema keyword {keyword!r} at {at or '/'}: teach schema_rules() about it")


def _resolve(schema: dict[str, Any], pointer: str) -> Any:
    node: Any = schema
    for part in pointer.split("/")[1:]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _follow_refs(schema: dict[str, Any], node: Any, at: str, key: object) -> tuple[Any, str]:
    while isinstance(node, dict) and key not in node and "$ref" in node:
        at = node["$ref"].removeprefix("#")
        node = _resolve(schema, at)
    return node, at


def rule_of(schema: dict[str, Any], error: ValidationError) -> str:
    """The rule ``error`` comes from: its keyword's place in the schema, ``$ref`` followed."""
    path = list(error.absolute_schema_path)
    node: Any = schema
    at = ""
    for segment in path[:-1]:
        node, at = _follow_refs(schema, node, at, segment)
        node = node[segment]
        at = f"{at}/{_escape(segment)}"
    keyword = path[-1]
    node, at = _follow_refs(schema, node, at, keyword)
    at = f"{at}/{_escape(keyword)}"
    if keyword == "required":
        required: Any = error.validator_value
        instance: Any = error.instance
        missing = [n for n in required if n not in instance]
        assert len(missing) == 1, missing
        at = f"{at}/{_escape(missing[0])}"
    return at


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    if error.context:
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


# --- the fixture set --------------------------------------------------------------------------


def test_fixture_set_is_the_documented_one() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(SCENARIOS)
    history = [p.name for p in (FIXTURES / "history").glob("*.json")]
    assert len(history) == 1 and re.fullmatch(r"\d{8}-\d{6}-nightly\.json", history[0])
    on_disk = {p.name for p in INVALID.glob("*.json")} - {"index.json"}
    assert on_disk == set(INDEX), "fixtures/invalid/ and its index.json disagree: run fixtures/generate.py"
    readme = (INVALID / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in INDEX)


@pytest.mark.parametrize("path", _valid_files(FIXTURES), ids=lambda p: p.name)
def test_valid_fixture_passes_the_schema(path: Path) -> None:
    assert validate_document(_load(path)) == []


@pytest.mark.parametrize("name", sorted(INDEX))
def test_invalid_fixture_breaks_only_its_own_rule(name: str) -> None:
    expected = INDEX[name]
    doc = _load(INVALID / name)
    problems = validate_document(doc)
    assert [(p.pointer, p.rule) for p in problems] == [(expected["pointer"], expected["keyword"])], problems
    # The same single failure, traced back to where the schema states the rule.
    schema = load_schema()
    errors = [leaf for e in Draft202012Validator(schema).iter_errors(doc) for leaf in _leaves(e)]
    assert [rule_of(schema, e) for e in errors] == [expected["rule"]]
    # And it is one edit away from a valid trace: the base it names passes.
    assert validate_document(_load(FIXTURES / expected["from"])) == []


def test_every_schema_rule_has_exactly_one_invalid_fixture() -> None:
    rules = list(schema_rules(load_schema()))
    assert len(rules) == len(set(rules))
    covered = [e["rule"] for e in INDEX.values()]
    missing = sorted(set(rules) - set(covered))
    unknown = sorted(set(covered) - set(rules))
    assert not missing, f"rules without an invalid fixture (add cases to fixtures/_mutations.py): {missing}"
    assert not unknown, f"invalid fixtures for rules the schema does not state: {unknown}"
    assert len(covered) == len(set(covered)), "two invalid fixtures for one rule"


def test_a_new_rule_without_a_fixture_is_noticed() -> None:
    schema = copy.deepcopy(load_schema())
    schema["properties"]["flow"]["properties"]["id"]["maxLength"] = 200
    schema["$defs"]["step"]["required"].append("status")
    new = set(schema_rules(schema)) - {e["rule"] for e in INDEX.values()}
    assert new == {"/properties/flow/properties/id/maxLength", "/$defs/step/required/status"}


def test_rule_walker_refuses_a_keyword_it_does_not_know() -> None:
    with pytest.raises(AssertionError, match="unevaluatedProperties"):
        list(schema_rules({"type": "object", "unevaluatedProperties": False}))


# --- what each scenario shows, on the committed and on freshly generated fixtures -------------


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fixtures") / "set"
    done = subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(params=["committed", "regenerated"])
def fixture_dir(request: pytest.FixtureRequest) -> Path:
    if request.param == "committed":
        return FIXTURES
    path: Path = request.getfixturevalue("regenerated")
    return path


def test_regenerated_set_has_the_same_files_and_is_valid(regenerated: Path) -> None:
    names = {p.relative_to(regenerated) for p in regenerated.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(FIXTURES) for p in FIXTURES.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts and p != FIXTURES / "README.md"
    }
    assert names == committed
    for path in _valid_files(regenerated):
        assert validate_document(_load(path)) == [], path.name


def _steps(doc: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    return [s for s in doc["steps"] if s["node_id"] == node_id]


def _blake3(value: Any) -> str:
    return blake3.blake3(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def test_failure_in_on_mode(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "failure_on.json")
    assert doc["run"]["outcome"] == "failure" and "finished_at" in doc["run"]
    assert [s["node_id"] for s in doc["steps"]] == ["extract", "clean", "transform"]  # load never ran
    failed = doc["steps"][-1]
    assert failed["status"] == "failed"
    assert [(c["type"].rsplit(".", 1)[-1], c["relation"]) for c in failed["error"]["details"]["chain"]] == [
        ("TransformError", "raised"), ("KeyError", "cause"),
    ]
    # Each step's input is the previous step's output, and the hashes say so.
    assert doc["steps"][1]["input_hash"] == doc["steps"][0]["output_hash"]
    assert doc["steps"][2]["input_hash"] == doc["steps"][1]["output_hash"]
    assert doc["steps"][0]["input_hash"]["value"] == _blake3(
        {"day": "2026-11-23", "source": "s3://orders/2026-11-23.csv"}
    )


def test_success_in_always_mode(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "success_always.json")
    assert doc["run"]["outcome"] == "success"
    assert [s["status"] for s in doc["steps"]] == ["completed"] * 3
    assert doc["steps"][2]["output_hash"]["value"] == _blake3({"inserted": 3})
    assert doc["errors"] == [] and doc["errors_dropped"] == 0


def test_captured_inputs_are_redacted_and_capped(fixture_dir: Path) -> None:
    path = fixture_dir / "captured_inputs.json"
    text = path.read_text(encoding="utf-8")
    for secret in ("hunter2", "sk-live", "eyJhbGciOi", "s-7f3a", '"t-1"'):
        assert secret not in text
    doc = orjson.loads(text)
    upload, fetch = doc["steps"]
    payload = fetch["invocation_json"]["payload"]
    assert payload["api_key"] == payload["db"]["password"] == payload["params"]["session_id"] == "[REDACTED]"
    assert payload["headers"] == {"Accept": "application/json", "Authorization": "[REDACTED]"}
    assert [b["token"] for b in payload["batches"]] == ["[REDACTED]", "[REDACTED]"]
    assert payload["db"]["host"] == "db.internal" and payload["params"]["customer"] == 42
    marker = upload["invocation_json"]["payload"]
    assert marker["$truncated"] is True and marker["original_bytes"] > 1024
    assert marker["hash"] == upload["input_hash"]
    assert fetch["error"]["code"] == "connection"


def test_error_chain_three_deep_root_cause_last(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "error_chain.json")
    error = _steps(doc, "enrich")[0]["error"]
    chain = error["details"]["chain"]
    assert [(c["type"].rsplit(".", 1)[-1], c["relation"]) for c in chain] == [
        ("EnrichError", "raised"), ("CacheMiss", "cause"), ("KeyError", "context"),
    ]
    assert chain[-1]["message"] == "'customer:42'"
    assert error["code"] == "enrichment_failed"  # the error's own code attribute
    assert error["details"]["trace"].startswith("enrich(order=1001)")  # Traceable
    assert "Re-run the 'refresh_customers' flow" in error["details"]["hints"][0]
    assert "CacheMiss" in error["details"]["traceback"]


def test_validation_issues(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "validation_issues.json")
    parse = _steps(doc, "parse")[0]
    assert parse["status"] == "completed"
    assert [(i["code"], i["severity"]) for i in parse["validation_issues"]] == [
        ("deprecated_column", "warning"), ("rows_skipped", "info"),
    ]
    load = _steps(doc, "load")[0]
    assert load["status"] == "failed" and load["error"]["code"] == "validation"
    assert load["error"]["details"]["phase"] == "validation"
    assert [i["path"] for i in load["validation_issues"]] == ["/rows/1/currency", "/rows/1/amount"]
    assert [e["code"] for e in doc["errors"]] == ["flow_error"]


def test_in_flight_step(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "in_flight.json")
    assert doc["run"]["outcome"] == "in_progress" and "finished_at" not in doc["run"]
    by_id = {s["step_id"]: s for s in doc["steps"]}
    assert by_id["dl-1"]["status"] == "in_flight" and "output_hash" not in by_id["dl-1"]
    assert by_id["ck-1"]["status"] == "completed"


def test_nested_steps_and_retries(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "nested_steps.json")
    assert doc["run"]["outcome"] == "success"
    by_id = {s["step_id"]: s for s in doc["steps"]}
    (train,) = _steps(doc, "train")
    assert train["parent_step_id"] is None
    for step in doc["steps"]:
        if step is not train:
            assert step["parent_step_id"] in by_id  # every parent is in the trace
    for batch in _steps(doc, "batch"):
        assert by_id[batch["parent_step_id"]]["node_id"] == "epoch"
    for epoch in _steps(doc, "epoch"):
        assert epoch["parent_step_id"] == train["step_id"]
        assert epoch["duration_ns"] >= sum(
            s["duration_ns"] for s in doc["steps"] if s["parent_step_id"] == epoch["step_id"]
        )
    tries = [(s["attempt"], s["status"]) for s in _steps(doc, "fetch_weights")]
    assert tries == [(1, "failed"), (2, "completed")]


def test_error_events(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "error_events.json")
    assert [(e["scope"], e["code"]) for e in doc["errors"]] == [
        ("scheduler", "pool_exhausted"), ("runner", "io"), ("node", "timeout"),
    ]
    assert doc["errors_dropped"] == 1  # max_errors=3; the run's own flow error did not fit
    scheduler, runner, node = doc["errors"]
    assert scheduler["tags"] == {"queue": "default"} and scheduler["context"] == {"pending": 17, "workers": 4}
    assert "error" not in scheduler
    assert runner["error"]["details"]["type"] == "OSError"
    assert any("disk is full" in h for h in runner["error"]["details"]["hints"])
    assert (node["node_id"], node["step_id"]) == ("load", "ld-1")


def test_history_file_is_named_after_run_start(fixture_dir: Path) -> None:
    (path,) = (fixture_dir / "history").glob("*.json")
    doc = _load(path)
    started = re.sub(r"[-:]", "", doc["run"]["started_at"])[:15].replace("T", "-")
    assert path.name == f"{started}-{doc['flow']['id']}.json"
    assert doc["run"]["outcome"] == "failure"


def test_cancelled_run(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "cancelled.json")
    assert doc["run"]["outcome"] == "cancelled"
    (poll,) = _steps(doc, "long_poll")
    assert poll["status"] == "cancelled" and poll["error"]["code"] == "cancelled"


def test_exception_group_members(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "exception_group.json")
    (fan_out,) = _steps(doc, "fan_out")
    link = fan_out["error"]["details"]["chain"][0]
    assert link["type"] == "ExceptionGroup"
    assert sorted(m["type"] for m in link["exceptions"]) == ["ConnectionResetError", "TimeoutError"]
    shards = _steps(doc, "fetch_shard")
    assert {s["parent_step_id"] for s in shards} == {fan_out["step_id"]}
    assert sorted(s["status"] for s in shards) == ["completed", "failed", "failed"]


def test_ring_buffer_drops_oldest(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "ring_buffer.json")
    assert doc["buffer"] == {"capacity": 3, "dropped": 4}
    assert [s["node_id"] for s in doc["steps"]] == ["n5", "n6", "n7"]


def test_seed_fields_only(fixture_dir: Path) -> None:
    doc = _load(fixture_dir / "seed_fields_only.json")
    assert set(doc) <= SEED_TOP
    assert all(set(s) <= SEED_STEP for s in doc["steps"])
