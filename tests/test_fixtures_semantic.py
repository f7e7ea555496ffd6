"""fixtures/invalid/semantic/: one schema-valid file per semantic rule, each breaking only that rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from _cli_support import FIXTURES, invoke

from tracekit.trace.check import validate_trace
from tracekit.trace.schema import validate_document
from tracekit.trace.semantic import RULES

SEMANTIC = FIXTURES / "invalid" / "semantic"
INDEX: dict[str, dict[str, str]] = orjson.loads((SEMANTIC / "index.json").read_bytes())


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def test_index_matches_the_files() -> None:
    on_disk = {p.name for p in SEMANTIC.glob("*.json")} - {"index.json"}
    assert on_disk == set(INDEX), "fixtures/invalid/semantic/ and its index.json disagree: run generate.py"
    readme = (SEMANTIC / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in INDEX)


def test_every_semantic_rule_has_a_fixture() -> None:
    assert {e["rule"] for e in INDEX.values()} == set(RULES)


@pytest.mark.parametrize("name", sorted(INDEX))
def test_each_breaks_only_its_rule_and_passes_the_schema(name: str) -> None:
    expected = INDEX[name]
    doc = _load(SEMANTIC / name)
    assert validate_document(doc) == []
    assert [(p.pointer, p.rule) for p in validate_trace(doc)] == [(expected["pointer"], expected["keyword"])]
    problems = list(RULES[expected["rule"]](doc))
    assert [p.rule for p in problems] == [expected["keyword"]]
    assert validate_trace(_load(FIXTURES / expected["from"])) == []


def test_validate_rejects_each_with_exit_1() -> None:
    files = sorted(str(SEMANTIC / n) for n in INDEX)
    result = invoke("validate", *files)
    assert result.exit_code == 1
    for name, e in INDEX.items():
        assert f"{SEMANTIC / name}: {e['pointer']}: " in result.stdout


def test_a_step_after_the_run_finished_is_named() -> None:
    result = invoke("validate", str(SEMANTIC / "step_within_run.json"))
    assert result.exit_code == 1
    assert result.stdout.strip().endswith(
        "/steps/2/started_at: the step starts at 2026-11-23T03:00:05.270127Z, after its run finished at "
        "2026-11-23T03:00:00.370699Z; allowed: a step starts before its run finishes"
    )


def test_every_valid_fixture_breaks_no_semantic_rule() -> None:
    for path in [*FIXTURES.glob("*.json"), *(FIXTURES / "history").glob("*.json")]:
        assert validate_trace(_load(path)) == [], path.name
