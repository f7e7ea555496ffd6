"""examples/pipeline.py, run as a user would: a subprocess in an empty directory."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3
import orjson
import pytest

from tracekit.trace.schema import validate_document

PIPELINE = Path(__file__).resolve().parent.parent / "examples" / "pipeline.py"


def _import_example() -> Any:
    spec = importlib.util.spec_from_file_location("example_pipeline", PIPELINE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _blake3(value: Any) -> str:
    return blake3.blake3(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # The developer's own TRACEKIT_* settings never reach the example (module fixtures run
    # before conftest's per-test isolation).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    return subprocess.run(
        [sys.executable, str(PIPELINE), *args],
        cwd=cwd, env=clean | env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One default run (it fails on purpose), shared by the tests that only read its results."""
    cwd = tmp_path_factory.mktemp("failed")
    return cwd, _run(cwd)


def test_failing_pipeline_exits_non_zero_and_leaves_a_valid_trace(
    failed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cwd, done = failed
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "pipeline failed: node 'enrich' failed: order 1002 refers to unknown customer 'c-9'" in done.stderr
    assert "(trace: trace.json)" in done.stderr
    trace = orjson.loads((cwd / "trace.json").read_bytes())
    assert validate_document(trace) == []
    assert trace["run"]["outcome"] == "failure"
    assert trace["runner_version"] == "pipeline.py 1.0" and trace["flow"]["id"] == "orders_daily"
    assert [(s["node_id"], s["status"]) for s in trace["steps"]] == [
        ("extract", "completed"), ("customers", "completed"), ("enrich", "failed"),
    ]  # the third node fails; clean and load never run
    enrich = trace["steps"][-1]
    chain = enrich["error"]["details"]["chain"]
    assert [(c["type"], c["relation"]) for c in chain] == [
        ("__main__.EnrichmentError", "raised"), ("KeyError", "cause"),
    ]
    assert chain[-1]["message"] == "'c-9'"
    assert "Add the customer to the customers table" in enrich["error"]["details"]["hints"][0]
    extract = trace["steps"][0]
    issues = [(i["code"], i["severity"]) for i in extract["validation_issues"]]
    assert issues == [("extract_check", "warning")]
    # The hook adapter passes each node's inputs as its payload, and anyone can recompute the hash.
    example = _import_example()
    inputs = {"extract": example.ORDERS, "customers": example._customers({})}
    assert enrich["input_hash"]["value"] == _blake3(inputs)
    assert extract["output_hash"]["value"] == _blake3(example.ORDERS)


def test_second_observer_sees_every_event(failed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, done = failed
    lines = [line for line in done.stderr.splitlines() if line.startswith("pipeline: ")]
    assert lines == [
        "pipeline: start  extract (orders_reader)",
        "pipeline: check  extract: order 1003 has a non-positive amount (-1.0); 'clean' will drop it",
        "pipeline: done   extract",
        "pipeline: start  customers (customers_reader)",
        "pipeline: done   customers",
        "pipeline: start  enrich (customer_join)",
        "pipeline: FAILED enrich: EnrichmentError: order 1002 refers to unknown customer 'c-9'",
    ], done.stderr


def test_successful_run_writes_only_in_always_mode(tmp_path: Path) -> None:
    on = tmp_path / "on"
    on.mkdir()
    done = _run(on, "--ok")
    assert done.returncode == 0, done.stderr
    assert "pipeline ok: 2 rows written" in done.stderr
    assert not (on / "trace.json").exists()

    always = tmp_path / "always"
    always.mkdir()
    done = _run(always, "--ok", TRACEKIT_TRACE="always")
    assert done.returncode == 0, done.stderr
    trace = orjson.loads((always / "trace.json").read_bytes())
    assert validate_document(trace) == []
    assert trace["run"]["outcome"] == "success"
    assert [s["status"] for s in trace["steps"]] == ["completed"] * 5


def test_off_mode_writes_nothing_and_still_fails(tmp_path: Path) -> None:
    done = _run(tmp_path, TRACEKIT_TRACE="off")
    assert done.returncode == 1
    assert "pipeline failed" in done.stderr and "(trace:" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_quick_start_validate(failed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """The README's quick start: run the pipeline, then `tracekit validate trace.json`."""
    cwd, _ = failed
    done = subprocess.run(
        [sys.executable, "-m", "tracekit", "validate", "trace.json"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trace.json" in done.stdout and "ok" in done.stdout
