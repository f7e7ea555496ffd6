"""Replay of a Celery task through its real app: the trace a task wrote re-runs the task body."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("celery")

APP = """
from celery import Celery
from tracekit.adapters.celery import instrument

app = Celery("shop", broker="memory://", backend="cache+memory://")
app.conf.task_always_eager = True
instrument(app)


@app.task(name="shop.price")
def price(sku, qty, currency="EUR"):
    table = {"tea": 3}
    return table[sku] * qty  # KeyError for an unknown sku: the bug
"""

RUN = """
import tasks
try:
    tasks.price.delay("coffee", 2, currency="EUR").get()
except KeyError:
    pass
"""


def _py(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRACEKIT_TRACE_CAPTURE_INPUTS": "1", "PYTHONPATH": f"{cwd}{os.pathsep}"
           + os.environ.get("PYTHONPATH", "")}
    env.pop("TRACEKIT_TRACE", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_failed_task_replays_from_its_trace_then_passes_once_fixed(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(textwrap.dedent(APP))
    (tmp_path / "run.py").write_text(textwrap.dedent(RUN))
    ran = _py(["run.py"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    doc = json.loads((tmp_path / "trace.json").read_text())
    failed = [s for s in doc["steps"] if s["status"] == "failed"]
    assert failed and failed[0]["replay"]["callable"] == "tasks:price"
    assert failed[0]["replay"]["args_kind"] == "args_kwargs"

    again = _py(["-m", "tracekit", "replay", "trace.json"], tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "KeyError" in again.stdout

    (tmp_path / "tasks.py").write_text(textwrap.dedent(APP).replace('{"tea": 3}', '{"tea": 3, "coffee": 4}'))
    fixed = _py(["-m", "tracekit", "replay", "trace.json"], tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
