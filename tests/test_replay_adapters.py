"""Replay of steps recorded by the adapters, against the real library: Apache Hamilton."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

FEATURES = '''
def raw(source: list) -> list:
    return [x * 2 for x in source]


def total(raw: list) -> int:
    return sum(raw)


def ratio(total: int, divisor: int) -> float:
    try:
        return total / divisor
    except ZeroDivisionError as err:
        raise ValueError(f"cannot scale {total} by {divisor}") from err
'''

DRIVER = '''
from hamilton import driver

import features
from tracekit import TraceContext, TraceRecorder
from tracekit.adapters.hamilton import TracekitHook

recorder = TraceRecorder.from_env(TraceContext(pack_ref="feat@1", flow_id="features", flow_version="1"))
dr = driver.Builder().with_modules(features).with_adapters(TracekitHook(recorder)).build()
print(dr.execute(["ratio"], inputs={"source": [1, 2, 3], "divisor": 0}))
'''


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def test_hamilton_node_replays_from_its_module(tmp_path: Path) -> None:
    (tmp_path / "features.py").write_text(textwrap.dedent(FEATURES), encoding="utf-8")
    (tmp_path / "run_features.py").write_text(textwrap.dedent(DRIVER), encoding="utf-8")
    run = _run([sys.executable, "run_features.py"], tmp_path, TRACEKIT_TRACE_CAPTURE_INPUTS="1")
    assert run.returncode == 1 and "cannot scale 12 by 0" in run.stderr
    doc = orjson.loads((tmp_path / "trace.json").read_bytes())
    by_node = {s["node_id"]: s for s in doc["steps"]}
    assert by_node["ratio"]["replay"] == {"callable": "features:ratio", "args_kind": "params"}
    assert by_node["ratio"]["invocation_json"]["payload"] == {"total": 12, "divisor": 0}

    replay = _run([sys.executable, "-m", "tracekit", "replay", "trace.json", "--json"], tmp_path)
    report = orjson.loads(replay.stdout)
    assert replay.returncode == 1 and report["same_error"] is True, replay.stdout
    assert report["error"]["type"] == "ValueError" and report["error"]["message"] == "cannot scale 12 by 0"

    done = _run([sys.executable, "-m", "tracekit", "replay", "trace.json", "total"], tmp_path)
    assert done.returncode == 0 and "output hash matches the recorded one" in done.stdout, done.stdout

    features = tmp_path / "features.py"
    features.write_text(features.read_text().replace("return total / divisor",
                                                     "return total / divisor if divisor else 0.0"))
    fixed = _run([sys.executable, "-m", "tracekit", "replay", "trace.json"], tmp_path)
    assert fixed.returncode == 0 and "now completes (exit 0)" in fixed.stdout, fixed.stdout + fixed.stderr
