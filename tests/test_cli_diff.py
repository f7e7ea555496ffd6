"""``tracekit diff``: aligning two runs by node, attempt and occurrence."""

from __future__ import annotations

from pathlib import Path

import orjson
from _cli_support import failing_trace, invoke, load, run_exe, success_trace, write_json

from tracekit import TraceContext, TraceRecorder


def _retry_run(out: Path, outputs: list[int]) -> Path:
    """A node that runs once per output (a loop), then a retried node (attempts 1 and 2)."""
    rec = TraceRecorder.from_env(TraceContext("p@1", "loop", "1"), out=out, mode="always")
    with rec.run():
        for v in outputs:
            with rec.step("tick", payload={"n": 1}) as st:
                st.set_output(v)
        for attempt in (1, 2):
            with rec.step("save", payload={}, attempt=attempt) as st:
                st.set_output(attempt)
    return out


def test_identical_traces_match(tmp_path: Path) -> None:
    a = failing_trace(tmp_path / "a.json")
    b = failing_trace(tmp_path / "b.json")  # another run: new ids and times, same hashes
    result = invoke("diff", str(a), str(b))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "same: 4 step(s) match in input, output, status and error",
        "only in A: 0  only in B: 0  changed: 0  same: 4",
    ]


def test_first_difference_is_reported_with_both_hashes(tmp_path: Path) -> None:
    a = failing_trace(tmp_path / "a.json", value=1)
    b = failing_trace(tmp_path / "b.json", value=2)
    ha, hb = (load(p)["steps"][0]["output_hash"]["value"] for p in (a, b))
    result = invoke("diff", str(a), str(b))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "first difference: load (attempt 1)"
    assert lines[1] == f"  output_hash: {ha[:16]} -> {hb[:16]}"
    assert "  also: transform (attempt 1): output_hash" in lines
    assert lines[-1] == "only in A: 0  only in B: 0  changed: 2  same: 2"


def test_status_and_error_changes(tmp_path: Path) -> None:
    a = failing_trace(tmp_path / "a.json")
    doc = load(a)
    connect = next(s for s in doc["steps"] if s["node_id"] == "connect")
    connect["status"] = "completed"
    del connect["error"]
    b = write_json(tmp_path / "b.json", doc)
    data = orjson.loads(invoke("diff", "--json", str(a), str(b)).stdout)
    first = data["first_difference"]
    assert (first["node_id"], first["kind"]) == ("connect", "changed")
    assert {c["field"]: (c["a"], c["b"]) for c in first["changes"]} == {
        "status": ("failed", "completed"),
        "error.code": ("connection", "-"),
        "error.type": ("ConnectionRefusedError", "-"),
    }


def test_repeats_align_by_occurrence_and_attempt(tmp_path: Path) -> None:
    a = _retry_run(tmp_path / "a.json", [1, 2, 3])
    b = _retry_run(tmp_path / "b.json", [1, 9, 3, 4])
    result = invoke("diff", "--json", str(a), str(b))
    assert result.exit_code == 1
    data = orjson.loads(result.stdout)
    kinds = [(s["node_id"], s["attempt"], s["occurrence"], s["kind"]) for s in data["steps"]]
    assert kinds == [
        ("tick", 1, 1, "same"), ("tick", 1, 2, "changed"), ("tick", 1, 3, "same"),
        ("save", 1, 1, "same"), ("save", 2, 1, "same"), ("tick", 1, 4, "only_in_b"),
    ]
    assert data["summary"] == {"only_in_a": 0, "only_in_b": 1, "changed": 1, "same": 4}
    assert data["match"] is False
    text = invoke("diff", str(a), str(b)).stdout
    assert text.startswith("first difference: tick (attempt 1, run #2 of it)")
    assert "  also: tick (attempt 1, run #4 of it): only in B" in text


def test_different_flows_are_noted_and_steps_only_on_one_side(tmp_path: Path) -> None:
    a = success_trace(tmp_path / "a.json", flow="one")
    b = success_trace(tmp_path / "b.json", flow="two", nodes=2)
    result = invoke("diff", str(a), str(b))
    assert result.exit_code == 1
    assert result.stdout.startswith("note: different flows: A is one v3, B is two v3")
    assert "first difference: n2 (attempt 1)" in result.stdout
    assert f"  only in A ({a}): step s3" in result.stdout


def test_unreadable_and_invalid_inputs(tmp_path: Path) -> None:
    a = success_trace(tmp_path / "a.json")
    (tmp_path / "bad.json").write_bytes(b'{"steps": [')
    result = invoke("diff", str(a), str(tmp_path / "bad.json"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{tmp_path / 'bad.json'}: /: truncated JSON")
    result = invoke("diff", str(a), str(tmp_path / "none.json"))
    assert result.exit_code == 2
    assert invoke("diff", str(a)).exit_code == 2  # usage: B is missing


def test_installed_script(tmp_path: Path) -> None:
    a = failing_trace(tmp_path / "a.json")
    b = failing_trace(tmp_path / "b.json", value=5)
    same = run_exe("diff", str(a), str(a), cwd=tmp_path)
    differ = run_exe("diff", str(a), str(b), cwd=tmp_path)
    assert (same.returncode, differ.returncode) == (0, 1)
    assert differ.stdout.startswith("first difference: load (attempt 1)")
    assert "Traceback" not in same.stderr + differ.stderr
