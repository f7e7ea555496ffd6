"""A real Hamilton pandas pipeline, run on two CSVs that differ in one cell: ``tracekit diff``
names the node that loaded the CSV as the first difference (it used to say ``same: 6``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from hamilton import driver

from tracekit import TraceContext, TraceRecorder
from tracekit.adapters.hamilton import TracekitHook
from tracekit.trace.schema import validate_document

PIPELINE = '''
import pandas as pd


def orders(csv_path: str) -> pd.DataFrame:
    return pd.read_csv(csv_path)


def priced(orders: pd.DataFrame) -> pd.DataFrame:
    return orders.assign(total=orders["quantity"] * orders["price"])


def by_region(priced: pd.DataFrame) -> pd.Series:
    return priced.groupby("region")["total"].sum()


def revenue(by_region: pd.Series) -> float:
    return float(by_region.sum())


def top_region(by_region: pd.Series) -> str:
    return str(by_region.idxmax())
'''

CSV = """order_id,region,quantity,price
1,north,3,7.0
2,south,1,10.0
3,north,2,8.0
4,east,5,1.25
"""


def _pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    path = tmp_path / "tk_orders.py"
    path.write_text(textwrap.dedent(PIPELINE), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("tk_orders", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tk_orders", module)  # Hamilton looks modules up there
    spec.loader.exec_module(module)
    return module


def _run(module: ModuleType, csv: Path, out: Path) -> dict[str, Any]:
    recorder = TraceRecorder.from_env(TraceContext("orders@1", "orders", "1"), out=out, mode="always")
    dr = driver.Builder().with_modules(module).with_adapters(TracekitHook(recorder)).build()
    result = dr.execute(["revenue", "top_region"], inputs={"csv_path": str(csv)})
    assert recorder.last_flush_error is None
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    assert validate_document(doc) == []
    return {"result": result, "doc": doc}


def _diff(a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracekit", "diff", str(a), str(b), *extra],
                          capture_output=True, text=True, check=False)


def test_diff_names_the_loading_node_when_one_csv_cell_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _pipeline(tmp_path, monkeypatch)
    csv = tmp_path / "orders.csv"  # the same path both times: only the file's content differs
    csv.write_text(CSV, encoding="utf-8")
    good = _run(module, csv, tmp_path / "good.json")
    again = _run(module, csv, tmp_path / "again.json")
    csv.write_text(CSV.replace("2,south,1,10.0", "2,south,1,100.0"), encoding="utf-8")  # one cell
    bad = _run(module, csv, tmp_path / "bad.json")
    assert good["result"]["revenue"] == 53.25 and bad["result"]["revenue"] == 143.25
    assert (good["result"]["top_region"], bad["result"]["top_region"]) == ("north", "south")

    # The same data twice: every step matches.
    same = _diff(tmp_path / "good.json", tmp_path / "again.json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"same: {len(good['doc']['steps'])} step(s) match" in same.stdout
    assert again["doc"]["steps"][0]["output_hash"] == good["doc"]["steps"][0]["output_hash"]

    # One cell changed: the loading node is the first difference, by its output hash.
    changed = _diff(tmp_path / "good.json", tmp_path / "bad.json")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    lines = changed.stdout.splitlines()
    assert lines[0] == "first difference: orders (attempt 1)"
    assert lines[1].startswith("  output_hash: ")
    assert not any(line.startswith("  input_hash") for line in lines[1:2])  # the path is the same

    report = orjson.loads(_diff(tmp_path / "good.json", tmp_path / "bad.json", "--json").stdout)
    first = report["first_difference"]
    assert first["node_id"] == "orders"
    assert [c["field"] for c in first["changes"]] == ["output_hash"]
    kinds = {s["node_id"]: s["kind"] for s in report["steps"]}
    assert kinds == dict.fromkeys(["orders", "priced", "by_region", "revenue", "top_region"], "changed")
