"""``tracekit replay`` on real pipelines: a script run in a subprocess fails, is replayed, fixed,
replayed again; every reason a step cannot be replayed; the emitted test red then green."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

PIPELINE = '''
import sys
from tracekit import TraceContext, TraceRecorder

recorder = TraceRecorder.from_env(TraceContext(pack_ref="shop@1", flow_id="orders", flow_version="1"))


@recorder.step()
def load_orders(day: str) -> list:
    return [{"id": i, "qty": i % 3, "price": 2.5} for i in range(4)]


@recorder.step()
def unit_cost(orders: list, *, discount: float = 0.0) -> float:
    total = sum(o["qty"] * o["price"] for o in orders)
    return total / sum(o["qty"] for o in orders if o["qty"] > 2) - discount  # BUG


def main() -> None:
    with recorder.run():
        orders = load_orders("2026-12-01")
        print(unit_cost(orders, discount=0.5))


if __name__ == "__main__":
    main()
'''
BUG = 'sum(o["qty"] for o in orders if o["qty"] > 2)'
FIX = 'sum(o["qty"] for o in orders)'


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def _tracekit(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "tracekit", *args], cwd, **env)


def _script(tmp_path: Path, source: str = PIPELINE, name: str = "pipeline.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def _record(
    tmp_path: Path, script: Path, capture: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    extra = {"TRACEKIT_TRACE_CAPTURE_INPUTS": "1"} if capture else {}
    return _run([sys.executable, str(script)], tmp_path, **extra, **env)


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return orjson.loads(proc.stdout)


def test_fails_replays_fixed_replays_green(tmp_path: Path) -> None:
    # A good run first: it leaves the flow's last good run beside the trace.
    good = _script(tmp_path, PIPELINE.replace(BUG, FIX))
    assert _record(tmp_path, good).returncode == 0
    assert (tmp_path / ".tracekit-last-good" / "orders.json").is_file()
    assert not (tmp_path / "trace.json").exists()  # mode on: no trace for a success
    script = _script(tmp_path)
    run = _record(tmp_path, script)
    assert run.returncode == 1 and "ZeroDivisionError" in run.stderr
    trace = orjson.loads((tmp_path / "trace.json").read_bytes())
    (failed,) = [s for s in trace["steps"] if s["status"] == "failed"]
    assert failed["replay"] == {"callable": "__main__:unit_cost", "source_file": str(script),
                                "args_kind": "params"}
    assert failed["invocation_json"]["payload"]["discount"] == 0.5
    before = (tmp_path / "trace.json").read_bytes()

    replay = _tracekit(tmp_path, "replay", "trace.json")
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert "still fails (exit 1): ZeroDivisionError: float division by zero" in replay.stdout
    assert "same error type and message as recorded" in replay.stdout
    assert "Traceback" not in replay.stderr
    assert (tmp_path / "trace.json").read_bytes() == before  # recording was off
    report = _json(_tracekit(tmp_path, "replay", "trace.json", "--json"))
    assert report["status"] == "still_fails" and report["same_error"] is True
    assert report["step"]["node_id"] == "unit_cost"

    # The completed node before it: same input gives the recorded output hash.
    ok = _tracekit(tmp_path, "replay", "trace.json", "load_orders")
    assert ok.returncode == 0 and "output hash matches the recorded one" in ok.stdout

    # The emitted test is red while the bug is there...
    emitted = _tracekit(tmp_path, "replay", "trace.json", "--emit-test", "tests/test_unit_cost.py")
    assert emitted.returncode == 0, emitted.stderr
    red = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_unit_cost.py"],
               tmp_path)
    assert red.returncode == 1 and "ZeroDivisionError" in red.stdout

    # ... since the last good run no input changed (the discount and orders are the same, the
    # output of load_orders too) but unit_cost now fails: show says so, pointing at the code.
    show = _tracekit(tmp_path, "show", "trace.json", COLUMNS="200")
    line = [x for x in show.stdout.splitlines() if x.startswith("since the last good run (")]
    assert line and line[0].endswith(
        "first difference at unit_cost: same input, now fails "
        "(the code or its environment changed, not its input)"
    ), show.stdout
    narrow = _tracekit(tmp_path, "show", "trace.json", COLUMNS="60")
    assert max(len(x) for x in narrow.stdout.splitlines()) <= 60, narrow.stdout
    diff = _tracekit(tmp_path, "diff", "--last-good", "trace.json")
    assert diff.returncode == 0 and "load_orders  same" in diff.stdout

    # Fix the code: replay exits 0, and the emitted test goes green.
    script.write_text(script.read_text().replace(BUG, FIX))
    fixed = _tracekit(tmp_path, "replay", "trace.json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "now completes (exit 0)" in fixed.stdout
    assert "recorded: ZeroDivisionError: float division by zero" in fixed.stdout
    green = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_unit_cost.py"],
                 tmp_path)
    assert green.returncode == 0, green.stdout


def test_emit_test_of_a_completed_node_asserts_its_output_hash(tmp_path: Path) -> None:
    script = _script(tmp_path)
    _record(tmp_path, script)
    emitted = _tracekit(tmp_path, "replay", "trace.json", "load_orders", "--emit-test", "test_load.py")
    assert "asserts the recorded output hash" in emitted.stdout
    green = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_load.py"], tmp_path)
    assert green.returncode == 0, green.stdout
    # A change in what load_orders returns turns it red.
    script.write_text(script.read_text().replace('"price": 2.5', '"price": 2.75'))
    red = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_load.py"], tmp_path)
    assert red.returncode == 1 and "differs from the recorded one" in red.stdout


def test_show_names_the_first_difference_since_the_last_good_run(tmp_path: Path) -> None:
    assert _record(tmp_path, _script(tmp_path, PIPELINE.replace(BUG, FIX))).returncode == 0
    changed = PIPELINE.replace('"price": 2.5', '"price": 3.0')  # load_orders now returns other data
    assert _record(tmp_path, _script(tmp_path, changed)).returncode == 1
    show = _tracekit(tmp_path, "show", "trace.json", COLUMNS="200")
    line = [x for x in show.stdout.splitlines() if x.startswith("since the last good run (")]
    assert line and line[0].endswith(": first difference at load_orders: output differs"), show.stdout
    diff = _tracekit(tmp_path, "diff", "--last-good", "trace.json", "--json")
    report = _json(diff)
    assert diff.returncode == 1 and report["first_difference"]["node_id"] == "load_orders"
    assert [s["input"] for s in report["steps"]] == ["same", "differs"]


# --- exit 2: every reason, with its fix -----------------------------------------------------


def _cannot(tmp_path: Path, *args: str) -> dict[str, Any]:
    proc = _tracekit(tmp_path, "replay", "trace.json", *args, "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report: dict[str, Any] = _json(proc)
    assert report["status"] == "cannot_replay"
    human = _tracekit(tmp_path, "replay", "trace.json", *args)
    assert human.returncode == 2 and "fix:" in human.stdout + human.stderr
    assert "Traceback" not in human.stderr
    return report


def test_no_captured_input_says_to_capture(tmp_path: Path) -> None:
    _record(tmp_path, _script(tmp_path), capture=False)
    report = _cannot(tmp_path)
    assert report["problems"][0]["code"] == "no_capture"
    assert "TRACEKIT_TRACE_CAPTURE_INPUTS=1" in report["problems"][0]["fix"]


def test_redacted_fields_are_named_and_can_be_supplied(tmp_path: Path) -> None:
    source = PIPELINE.replace("def unit_cost(orders: list, *, discount: float = 0.0)",
                              "def unit_cost(orders: list, *, discount: float = 0.0, auth: dict)")
    source = source.replace("unit_cost(orders, discount=0.5)",
                            'unit_cost(orders, discount=0.5, auth={"user": "ci", "api_token": "tk-live"})')
    source = source.replace("def load_orders(day: str)", "def load_orders(day: str, session_id: str = 's')")
    _record(tmp_path, _script(tmp_path, source))
    raw = (tmp_path / "trace.json").read_text()
    assert "tk-live" not in raw
    report = _cannot(tmp_path)
    assert [p["message"] for p in report["problems"]] == ["input field auth was redacted when captured"]
    assert report["problems"][0]["fix"] == "supply it: --set auth=..."
    supplied = _tracekit(tmp_path, "replay", "trace.json", "--set", 'auth={"user": "ci", "api_token": "x"}')
    assert supplied.returncode == 1 and "same error type and message" in supplied.stdout


def test_redacted_nested_field_path(tmp_path: Path) -> None:
    source = PIPELINE.replace('unit_cost(orders, discount=0.5)', 'unit_cost(orders + [{"qty": 0, "price": 1, '
                              '"card": {"cvv": "123"}}], discount=0.5)')
    _record(tmp_path, _script(tmp_path, source))
    report = _cannot(tmp_path)
    assert report["problems"][0]["message"] == "input field orders.4.card.cvv was redacted when captured"
    ok = _tracekit(tmp_path, "replay", "trace.json", "--set", "orders.4.card.cvv=000")
    assert ok.returncode == 1


def test_truncated_input(tmp_path: Path) -> None:
    source = PIPELINE.replace('TraceRecorder.from_env(TraceContext(pack_ref="shop@1", flow_id="orders", '
                              'flow_version="1"))',
                              'TraceRecorder.from_env(TraceContext(pack_ref="shop@1", flow_id="orders", '
                              'flow_version="1"), max_capture_bytes=40)')
    _record(tmp_path, _script(tmp_path, source))
    report = _cannot(tmp_path)
    assert report["problems"][0]["code"] == "truncated"
    assert "max_capture_bytes" in report["problems"][0]["fix"]


def test_callable_not_importable(tmp_path: Path) -> None:
    script = _script(tmp_path)
    _record(tmp_path, script)
    script.write_text(script.read_text().replace("def unit_cost(", "def unit_cost_v2("))
    report = _cannot(tmp_path)
    assert report["problems"][0]["code"] == "not_importable"
    assert "callable __main__:unit_cost cannot be imported" in report["problems"][0]["message"]
    script.unlink()
    report = _cannot(tmp_path)
    assert f"its script {script} is not there" in report["problems"][0]["message"]


def test_value_not_stored_as_its_type(tmp_path: Path) -> None:
    source = PIPELINE.replace("def load_orders(day: str)", "def load_orders(day)")
    date = "__import__('datetime').date(2026, 12, 1)"
    source = source.replace('load_orders("2026-12-01")', f"load_orders({date})")
    _record(tmp_path, _script(tmp_path, source))
    report = _cannot(tmp_path, "load_orders")
    assert report["problems"][0]["code"] == "not_replayable"
    assert "datetime.date" in report["problems"][0]["message"]


def test_missing_side_store_file(tmp_path: Path) -> None:
    source = PIPELINE.replace("def load_orders(day: str) -> list:\n    return",
                              "def load_orders(day: str, weights=None) -> list:\n    return")
    ones = '__import__("numpy").ones(3)'
    source = source.replace('load_orders("2026-12-01")', f'load_orders("2026-12-01", {ones})')
    _record(tmp_path, _script(tmp_path, source))
    step = orjson.loads((tmp_path / "trace.json").read_bytes())["steps"][0]
    file = step["replay"]["stored"]["weights"]["file"]
    stored = tmp_path / ".tracekit-store" / file
    assert stored.stat().st_mode & 0o777 == 0o600
    assert _tracekit(tmp_path, "replay", "trace.json", "load_orders").returncode == 0
    stored.write_bytes(stored.read_bytes() + b"x")
    report = _cannot(tmp_path, "load_orders")
    assert report["problems"][0]["code"] == "store_missing" and "altered" in report["problems"][0]["message"]
    stored.unlink()
    assert _cannot(tmp_path, "load_orders")["problems"][0]["code"] == "store_missing"


def test_script_that_fails_on_import(tmp_path: Path) -> None:
    script = _script(tmp_path)
    _record(tmp_path, script)
    script.write_text(script.read_text() + "\nraise RuntimeError('no config here')\n")
    report = _cannot(tmp_path)
    assert report["problems"][0]["code"] == "not_importable"
    assert f"importing {script} raised RuntimeError: no config here" in report["problems"][0]["message"]


def test_no_such_step_and_unreadable_trace(tmp_path: Path) -> None:
    _record(tmp_path, _script(tmp_path))
    proc = _tracekit(tmp_path, "replay", "trace.json", "nope")
    assert proc.returncode == 2 and "no step or node named 'nope'" in proc.stderr
    assert "load_orders, unit_cost" in proc.stderr
    missing = _tracekit(tmp_path, "replay", "absent.json")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_strings_from_the_trace_are_escaped(tmp_path: Path) -> None:
    _record(tmp_path, _script(tmp_path))
    doc = orjson.loads((tmp_path / "trace.json").read_bytes())
    for st in doc["steps"]:
        if st["status"] == "failed":
            st["step_id"] = "evil\x1b[2J\u202e"
    (tmp_path / "trace.json").write_bytes(orjson.dumps(doc))
    proc = _tracekit(tmp_path, "replay", "trace.json")
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "evil\\x1b[2J\\u202e" in proc.stdout


@pytest.mark.parametrize("kind", ["numpy", "pandas"])
def test_typed_inputs_round_trip_through_the_store(tmp_path: Path, kind: str) -> None:
    make = "__import__('numpy').arange(6.0)" if kind == "numpy" else (
        "__import__('pandas').DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
    source = f'''
from tracekit import TraceContext, TraceRecorder
recorder = TraceRecorder.from_env(TraceContext(pack_ref="p", flow_id="typed", flow_version="1"))

@recorder.step()
def stats(data):
    return repr(type(data).__name__) + str(len(data))

@recorder.step()
def boom(data):
    raise ValueError(type(data).__name__)

if __name__ == "__main__":  # replay imports the script: this block does not run then
    with recorder.run():
        stats({make})
        boom({make})
'''
    _record(tmp_path, _script(tmp_path, source))
    doc = orjson.loads((tmp_path / "trace.json").read_bytes())
    stored = doc["steps"][0]["replay"]["stored"]["data"]
    assert stored["file"].endswith(".npy" if kind == "numpy" else ".arrow")
    ok = _tracekit(tmp_path, "replay", "trace.json", "stats")
    assert ok.returncode == 0 and "output hash matches" in ok.stdout, ok.stdout + ok.stderr
    fails = _json(_tracekit(tmp_path, "replay", "trace.json", "--json"))
    assert fails["same_error"] is True
    assert fails["error"]["message"] == ("ndarray" if kind == "numpy" else "DataFrame")


def test_the_default_step_is_the_failure_that_ended_the_run_not_a_recovered_one() -> None:
    from tracekit.replay.plan import pick_step

    steps = [
        {"step_id": "s1", "node_id": "fetch", "status": "failed", "recovered": True},
        {"step_id": "s2", "node_id": "fetch", "status": "completed"},
        {"step_id": "s3", "node_id": "load", "status": "failed", "recovered": False},
        {"step_id": "s4", "node_id": "fetch", "status": "failed", "recovered": True},
    ]
    assert pick_step({"steps": steps}, None)[1]["step_id"] == "s3"


def test_the_last_good_line_says_when_the_same_input_now_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracekit.trace import last_good

    good = {"flow": {"id": "f", "version": "1"}, "finished_at": "2026-12-01T03:00:00Z", "steps": [
        {"node_id": "load", "input_hash": "a" * 64, "output_hash": "b" * 64},
    ]}
    doc = {"run": {"outcome": "failure"}, "steps": [
        {"node_id": "load", "status": "failed", "started_at": "2026-12-02T03:00:00Z",
         "input_hash": {"algorithm": "blake3", "value": "a" * 64}},
    ]}
    diffs = last_good.compare(doc, good)
    assert [(d.node_id, d.input, d.output) for d in diffs] == [("load", "same", "missing")]
    monkeypatch.setattr(last_good, "load_for", lambda path, d: good)
    line = last_good.summary_line(tmp_path / "trace.json", doc)
    assert line == ("since the last good run (2026-12-01 03:00): first difference at load: same input, "
                    "now fails (the code or its environment changed, not its input)")
