"""The published schema: where it is found, that it is sound 2020-12, and that a wheel ships it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.trace.schema import SCHEMA_FILE, load_schema, schema_path, validate_document

ROOT = Path(__file__).resolve().parent.parent
SOURCE_SCHEMA = ROOT / "schemas" / SCHEMA_FILE
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
WHEEL_SCHEMA = f"tracekit/_schemas/{SCHEMA_FILE}"


def test_schema_path_points_at_the_schema_file() -> None:
    path = schema_path()
    assert path.name == SCHEMA_FILE and path.is_file()
    assert path.read_bytes() == SOURCE_SCHEMA.read_bytes()


def test_load_schema_is_the_file_parsed_and_cached() -> None:
    assert load_schema() == orjson.loads(SOURCE_SCHEMA.read_bytes())
    assert load_schema() is load_schema()


def test_schema_is_valid_2020_12_with_an_id() -> None:
    schema = load_schema()
    assert schema["$schema"] == DRAFT_2020_12
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].startswith("https://") and schema["$id"].endswith("/" + SCHEMA_FILE)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_ref_resolves_and_every_definition_is_used() -> None:
    schema = load_schema()
    refs = set(_refs(schema))
    resource = DRAFT202012.create_resource(schema)
    resolver = Registry().with_resource(schema["$id"], resource).resolver(base_uri=schema["$id"])
    for ref in refs:
        assert ref.startswith("#/$defs/"), ref
        assert resolver.lookup(ref).contents == schema["$defs"][ref.removeprefix("#/$defs/")]
    assert {r.removeprefix("#/$defs/") for r in refs} == set(schema["$defs"])


def test_validate_document_reports_pointer_rule_and_message() -> None:
    problems = validate_document({"trace_version": 2, "pack": {}, "flow": {"id": "f", "version": "1"},
                                  "steps": []})
    assert [(p.pointer, p.rule) for p in problems] == [("/pack", "required"), ("/trace_version", "const")]
    assert str(problems[0]) == "/pack: 'pack_ref' is a required property"


# --- a plain (non-editable) wheel install ships the schema -------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")  # the backend is here: no index needed
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("tracekit_recorder-*.whl")  # the distribution name (pyproject.toml)
    return path


def test_wheel_contains_schema_and_py_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert WHEEL_SCHEMA in names and "tracekit/py.typed" in names
        assert zf.read(WHEEL_SCHEMA) == SOURCE_SCHEMA.read_bytes()


def test_installed_wheel_finds_and_uses_its_own_schema(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The installed copy comes first on the path; the checkout is neither the cwd nor on the path.
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = "import tracekit.trace.schema as s; print(s.__file__); print(s.schema_path())"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    module_file, found = (Path(line) for line in done.stdout.splitlines())
    assert module_file.is_relative_to(target)
    assert found == target / WHEEL_SCHEMA
    valid = ROOT / "fixtures" / "failure_on.json"
    invalid = ROOT / "fixtures" / "invalid" / "trace_version_2.json"
    for path, code in ((valid, 0), (invalid, 1)):
        done = subprocess.run([sys.executable, "-m", "tracekit", "validate", str(path)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == code, done.stdout + done.stderr


# --- whatever the recorder writes or snapshots conforms ---------------------------------------


class _Boom(Exception):
    pass


@pytest.mark.parametrize("mode", ["on", "always"])
@pytest.mark.parametrize("ending", ["success", "failure", "cancelled", "flush_success_inside"])
def test_recorder_output_is_always_valid(tmp_path: Path, mode: str, ending: str) -> None:
    out = tmp_path / "trace.json"
    recorder = TraceRecorder(TraceConfig.create(mode=mode, out=out, git_sha="not-a-hex-sha"),
                             TraceContext("etl@1", "nightly", "3"))
    seen: list[Any] = []

    def check(doc: Any) -> None:
        seen.append(doc)
        assert validate_document(doc) == [], doc

    with contextlib.suppress(_Boom, KeyboardInterrupt), recorder.run():
        event = NodeEvent("a", "comp", "op", {"x": 1})
        recorder.on_node_start(event)
        check(recorder.snapshot())
        recorder.on_node_end(event, {"y": 2})
        if ending == "flush_success_inside":
            recorder.flush_success()  # in on mode: nothing written yet, so nothing written now
            check(recorder.snapshot())  # still, a final outcome has finished_at
        else:
            recorder.flush_buffer()
            check(_load(out))
        if ending == "failure":
            raise _Boom("boom")
        elif ending == "cancelled":
            raise KeyboardInterrupt
    if out.exists():
        check(_load(out))
    final = seen[-1]["run"]
    assert final["outcome"] == {"flush_success_inside": "success"}.get(ending, ending)
    assert "finished_at" in final


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())
