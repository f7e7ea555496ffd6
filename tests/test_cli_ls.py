"""``tracekit ls``: history files ordered by their run's start, with filters and broken files."""

from __future__ import annotations

from pathlib import Path

import orjson
from _cli_support import invoke, load, run_exe, write_json

from tracekit import TraceContext, TraceRecorder


def _run(directory: Path, flow: str, fail: bool) -> Path:
    rec = TraceRecorder.from_env(TraceContext("p@1", flow, "1"), dir=directory, mode="always")
    try:
        with rec.run():
            with rec.step("extract", payload={}):
                pass
            if fail:
                with rec.step("load", payload={}):
                    raise ValueError("bad row")
    except ValueError:
        pass
    assert rec.last_trace_path is not None, rec.last_flush_error
    return rec.last_trace_path


def _set_start(path: Path, when: str) -> None:
    doc = load(path)
    doc["run"]["started_at"] = when
    doc["run"]["finished_at"] = when
    for step in doc["steps"]:
        step["started_at"] = when
    write_json(path, doc)


def _history(tmp_path: Path) -> tuple[Path, list[Path]]:
    d = tmp_path / "traces"
    files = [_run(d, "nightly", True), _run(d, "hourly", False), _run(d, "nightly", False)]
    # Names have one-second resolution; the order comes from run.started_at inside each file.
    for path, when in zip(files, ["2026-11-23T10:00:03Z", "2026-11-23T10:00:01Z", "2026-11-23T10:00:02Z"],
                          strict=True):
        _set_start(path, when)
    return d, files


WIDE = {"COLUMNS": "200"}  # these tests read every column; fitting narrow terminals is tested apart


def test_ordered_by_started_at_with_flow_outcome_and_failing_node(tmp_path: Path) -> None:
    d, (failed, hourly, nightly_ok) = _history(tmp_path)
    result = invoke("ls", str(d), env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["file", "started_at", "flow", "outcome", "failing", "node"]
    assert [ln.split()[:4] for ln in lines[1:]] == [
        [hourly.name, "2026-11-23T10:00:01Z", "hourly", "success"],
        [nightly_ok.name, "2026-11-23T10:00:02Z", "nightly", "success"],
        [failed.name, "2026-11-23T10:00:03Z", "nightly", "failure"],
    ]
    assert lines[3].split()[4] == "load"


def test_latest_and_filters(tmp_path: Path) -> None:
    d, (failed, hourly, nightly_ok) = _history(tmp_path)
    assert invoke("ls", str(d), "--latest").stdout == f"{failed}\n"
    assert invoke("ls", str(d), "--latest", "--outcome", "success").stdout == f"{nightly_ok}\n"
    assert invoke("ls", str(d), "--latest", "--flow", "hourly").stdout == f"{hourly}\n"
    data = orjson.loads(invoke("ls", str(d), "--json", "--flow", "nightly").stdout)
    assert [(e["name"], e["outcome"], e["failing_node"]) for e in data] == [
        (nightly_ok.name, "success", None), (failed.name, "failure", "load"),
    ]
    none = invoke("ls", str(d), "--latest", "--flow", "weekly")
    assert none.exit_code == 1 and "no readable history file matches" in none.stderr
    assert invoke("ls", str(d), "--outcome", "bogus").exit_code == 2


def test_broken_files_are_listed_not_fatal(tmp_path: Path) -> None:
    d, files = _history(tmp_path)
    (d / "20260101-000000-empty.json").write_bytes(b"")
    doc = load(files[0])
    doc["steps"][0]["attempt"] = 0
    write_json(d / "20260101-000001-invalid.json", doc)
    (d / "notes.json").write_text("{}")  # not a history name and not a trace: not listed
    result = invoke("ls", str(d), env=WIDE)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 5
    empty = next(ln for ln in lines if "empty.json" in ln)
    assert "unreadable" in empty and "empty file" in empty
    invalid = next(ln for ln in lines if "invalid.json" in ln)
    assert "invalid: /steps/0/attempt: 0 is less than the minimum of 1" in invalid
    assert "notes.json" not in result.stdout
    assert result.stderr.strip() == f"{d}: skipped 1 *.json file(s) that are not traces: notes.json"
    data = orjson.loads(invoke("ls", "--json", str(d)).stdout)
    flags = {e["name"]: (e["readable"], e["valid"]) for e in data}
    assert flags["20260101-000000-empty.json"] == (False, False)
    assert flags["20260101-000001-invalid.json"] == (True, False)
    assert invoke("ls", str(d), "--latest").stdout == f"{files[0]}\n"


def test_not_a_directory_and_empty(tmp_path: Path) -> None:
    result = invoke("ls", str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("ls", str(empty))
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == f"{empty}: no history files"


def test_installed_script(tmp_path: Path) -> None:
    _, files = _history(tmp_path)
    proc = run_exe("ls", "traces", "--latest", "--outcome", "failure", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(Path("traces") / files[0].name)
    proc = run_exe("ls", "nowhere", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
