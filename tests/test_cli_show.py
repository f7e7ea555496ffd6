"""``tracekit show``: the minute after a failure, from real recorder traces."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from _cli_support import FIXTURES, failing_trace, invoke, load, run_exe, success_trace, write_json

from tracekit import NodeEvent, TraceContext, TraceRecorder

WIDE = {"COLUMNS": "200"}  # content tests; fitting the terminal is tests/test_cli_terminal.py


def test_failure_shows_chain_hints_input_and_nesting(tmp_path: Path) -> None:
    path = failing_trace(tmp_path / "t.json")
    result = invoke("show", str(path), env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].startswith("flow     nightly v3   pack etl@1.4.0")
    assert lines[1].startswith("run      FAILURE   ")
    # Steps in start order, the nested one indented under its parent, failures marked.
    rows = [ln for ln in lines if ln.startswith("  ") and ln.split()[0] in ("x", "load", "transform")]
    names = [ln.replace("x ", "", 1).split()[0] for ln in rows]
    assert names[:3] == ["load", "transform", "write"]
    assert any(ln.strip().startswith("x   └ connect") for ln in lines), out
    # The failure that ended the run first, before the steps, with the whole chain down to the
    # root cause; then the child whose error is that root cause, in two lines.
    first, table, child = out.index("FAILED  write"), out.index("steps (4"), out.index("FAILED  connect")
    assert first < table < child
    parent = out[first:table]
    assert "1. raised _cli_support.ServiceDown: cannot write orders" in parent
    assert "2. caused by ConnectionRefusedError: [Errno 111] Connection refused  <- root cause" in parent
    assert "- start the service" in parent
    assert "phase execution" in parent
    assert '"table": "orders"' in parent
    assert "Connection refused (in the chain of write above)" in out[child:]
    assert '"host": "db"' in out[child:]
    assert "hunter2" not in out  # the captured password was redacted by the recorder


def test_not_captured_input_says_how_to_capture(tmp_path: Path) -> None:
    path = failing_trace(tmp_path / "t.json", capture=False)
    out = invoke("show", str(path)).stdout
    assert "not captured (set TRACEKIT_TRACE_CAPTURE_INPUTS=1 to keep it)" in out


def test_success_says_no_failures(tmp_path: Path) -> None:
    out = invoke("show", str(success_trace(tmp_path / "t.json"))).stdout
    assert "run      SUCCESS" in out
    assert "no failures recorded" in out
    assert "FAILED" not in out


def test_in_flight_and_runner_errors(tmp_path: Path) -> None:
    ctx = TraceContext(pack_ref="p@1", flow_id="worker", flow_version="1")
    rec = TraceRecorder.from_env(ctx, out=tmp_path / "t.json")
    started = NodeEvent("slow", "c", "op", {"x": 1}, step_id="slow-1")
    rec.on_node_start(started)
    rec.emit_error("scheduler", message="queue stalled", code="timeout", tags={"queue": "default"})
    path = rec.flush_buffer()
    assert path is not None
    out = invoke("show", str(path)).stdout
    assert "> slow" in out and "IN FLIGHT" in out
    assert "in flight when written (1)" in out
    assert "runner errors (1)" in out
    assert "scheduler  timeout: queue stalled" in out


def test_json_has_the_same_information(tmp_path: Path) -> None:
    path = failing_trace(tmp_path / "t.json")
    result = invoke("show", "--json", str(path))
    assert result.exit_code == 0
    data = orjson.loads(result.stdout)
    assert data["valid"] is True and data["run"]["outcome"] == "failure"
    assert [(s["node_id"], s["depth"]) for s in data["steps"]] == [
        ("load", 0), ("transform", 0), ("write", 0), ("connect", 1)
    ]
    assert [f["node_id"] for f in data["failures"]] == ["connect", "write"]
    write = data["failures"][1]
    assert [c["type"] for c in write["chain"]] == ["_cli_support.ServiceDown", "ConnectionRefusedError"]
    assert write["input"] == {"table": "orders"} and write["code"] == "node_error"
    assert data["steps"][0]["input_hash"] == load(path)["steps"][0]["input_hash"]["value"][:10]


def test_invalid_trace_is_still_shown_with_a_note(tmp_path: Path) -> None:
    doc = load(failing_trace(tmp_path / "t.json"))
    doc["steps"][0]["status"] = 7
    doc["steps"][1] = "junk"
    doc["run"]["started_at"] = ["no"]
    path = write_json(tmp_path / "bad.json", doc)
    result = invoke("show", str(path))
    assert result.exit_code == 0
    assert "note: this trace breaks" in result.stdout
    assert "FAILED  write" in result.stdout


@pytest.mark.parametrize(("data", "code"), [(b"", 1), (b"[1]", 1), (b"{", 1)])
def test_unloadable_file(tmp_path: Path, data: bytes, code: int) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(data)
    result = invoke("show", str(path))
    assert result.exit_code == code
    assert result.stderr.startswith(f"{path}: /: ")
    assert invoke("show", str(tmp_path / "missing.json")).exit_code == 2


def test_installed_script_plain_output_and_no_color(tmp_path: Path) -> None:
    path = failing_trace(tmp_path / "t.json")
    proc = run_exe("show", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout and "FAILED  write" in proc.stdout
    colored = invoke("show", str(path), color=True).stdout
    assert "\x1b[31m" in colored  # red for the failure, as on a terminal
    assert "\x1b[" not in invoke("show", str(path), color=True, env={"NO_COLOR": "1"}).stdout
    proc = run_exe("show", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{tmp_path / 'nope.json'}: /: no such file"


def test_every_fixture_shows(tmp_path: Path) -> None:
    files = sorted(FIXTURES.glob("*.json")) + sorted((FIXTURES / "invalid").glob("*.json"))
    if not files:
        pytest.fail("fixtures/ holds no traces yet")
    for f in files:
        result = invoke("show", str(f))
        assert result.exit_code in (0, 1), (f, result.output)
        if result.exit_code == 0:
            assert result.stdout.startswith(("flow", "note")), f


@pytest.mark.parametrize("depth", [300, 1000])
def test_deeply_nested_values_never_crash_a_command(tmp_path: Path, depth: int) -> None:
    """orjson reads 1024 levels but writes 254: printing such a trace must elide, not crash."""
    path = failing_trace(tmp_path / "t.json")
    deep = "[" * depth + "]" * depth
    text = path.read_text()
    assert '{"table":"orders"}' in text  # the captured payload, as the recorder wrote it
    text = text.replace('{"table":"orders"}', f'{{"table": {deep}}}', 1)
    text = text.replace('"flow": {', f'"flow": {{"extra": {deep}, ', 1)
    bad = tmp_path / "deep.json"
    bad.write_text(text)
    for args in (["show"], ["show", "--json"], ["validate", "--json"], ["diff", "--json", str(path)]):
        result = invoke(*args, str(bad))
        assert result.exit_code in (0, 1), (args, result.output)
    data = orjson.loads(invoke("show", "--json", str(bad)).stdout)
    assert "nested deeper than 200 levels, not printed" in orjson.dumps(data["failures"][1]["input"]).decode()
    assert "more characters]" in invoke("show", str(bad)).stdout  # the text view cuts long inputs
    proc = run_exe("show", str(bad), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def test_many_failures_are_capped_in_text_but_all_in_json(tmp_path: Path) -> None:
    rec = TraceRecorder.from_env(TraceContext("p@1", "retry", "1"), out=tmp_path / "t.json")
    with rec.run():
        for attempt in range(1, 9):
            try:
                with rec.step("call", payload={}, attempt=attempt):
                    raise TimeoutError(f"try {attempt}")
            except TimeoutError:
                pass
    out = invoke("show", str(tmp_path / "t.json")).stdout
    assert out.count("FAILED, recovered  call") == 5  # each was caught: the run went on and succeeded
    assert "... and 3 more failed step(s); `tracekit show --json` lists them all" in out
    data = orjson.loads(invoke("show", "--json", str(tmp_path / "t.json")).stdout)
    assert [f["attempt"] for f in data["failures"]] == list(range(1, 9))
