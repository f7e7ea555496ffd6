"""Trace files people send each other: every command reads them the same careful way.

Terminal escapes are escaped, newer traces refused alike, duplicate keys rejected, hostile sizes
and depths answered in bounded memory and without a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from _cli_support import FIXTURES, exe, failing_trace, invoke, load, run_exe, write_json

MB = 1024 * 1024
UPGRADE = "written by a newer tracekit (trace_version 2); this one reads 1: upgrade"
EVIL = "\x1b]0;pwned\x07\x1b[2J\rhidden\u202eevil"
RAW = ("\x1b", "\x07", "\r", "\u202e")


# Measures its child with wait4. It runs between pytest and the command because Linux keeps, as
# a process's peak RSS, the RSS of the image it was forked from: forked from a big pytest, the
# command would be charged for pytest's memory; forked from this small interpreter, for ~10 MB.
_MEASURE = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)\n"
    "out = p.stdout.read()\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "sys.stdout.buffer.write(b'%d %d\\n' % (os.waitstatus_to_exitcode(status), usage.ru_maxrss) + out)\n"
)


def _rss_of(*args: str, cwd: Path) -> tuple[int, int, str]:
    """(exit code, peak RSS in MB, stdout+stderr) of the real ``tracekit ARGS`` as a process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    done = subprocess.run([sys.executable, "-c", _MEASURE, exe(), *args], cwd=cwd, env=env,
                          capture_output=True, check=True, timeout=300)
    head, _, out = done.stdout.partition(b"\n")
    code, kb = map(int, head.split())
    return code, (kb if sys.platform != "darwin" else kb // 1024) // 1024, out.decode("utf-8", "replace")


# --- terminals -----------------------------------------------------------------------------------


def _evil_trace(tmp_path: Path, name: str = "evil.json") -> Path:
    doc = load(failing_trace(tmp_path / "base.json"))
    doc["flow"]["id"] = f"nightly{EVIL}"
    for step in doc["steps"]:
        step["node_id"] = f"{step['node_id']}{EVIL}"
        step["step_id"] = f"{step['step_id']}{EVIL}"
        if "error" in step:
            step["error"]["message"] += EVIL
            step["error"]["details"]["hints"].append(f"hint{EVIL}")
            step["error"]["details"]["trace"] = f"line one{EVIL}\nline two\r\n"
            for link in step["error"]["details"]["chain"]:
                link["message"] += EVIL
    doc["steps"][0]["validation_issues"] = [{"code": f"c{EVIL}", "message": EVIL, "severity": "warning"}]
    return write_json(tmp_path / name, doc)


def _assert_escaped(text: str) -> None:
    for ch in RAW:
        assert ch not in text, repr(ch)


def test_every_command_escapes_control_and_bidi_characters(tmp_path: Path) -> None:
    evil = _evil_trace(tmp_path)
    history = tmp_path / "history"
    history.mkdir()
    write_json(history / "20261123-030000-nightly.json", load(evil))
    runs = {
        "show": invoke("show", str(evil), env={"COLUMNS": "200"}),
        "diff": invoke("diff", str(tmp_path / "base.json"), str(evil)),
        "ls": invoke("ls", str(history), env={"COLUMNS": "200"}),
    }
    for name, result in runs.items():
        _assert_escaped(result.stdout + result.stderr)
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\rhidden\\u202eevil" in result.stdout, name
    show = runs["show"].stdout
    assert "line two" in show and "hint\\x1b" in show and "c\\x1b" in show
    # validate: a problem quoting trace data, and a file whose very name is hostile
    bad = load(evil)
    bad["steps"][0]["attempt"] = EVIL
    named = write_json(tmp_path / f"name{EVIL}.json", bad)
    result = invoke("validate", str(named), str(tmp_path))
    assert result.exit_code == 1
    _assert_escaped(result.stdout + result.stderr)
    assert "name\\x1b]0;pwned" in result.stdout


def test_json_output_stays_as_it_is(tmp_path: Path) -> None:
    """JSON escapes control characters itself and is read by tools: the values come back exact."""
    evil = _evil_trace(tmp_path)
    out = invoke("show", "--json", str(evil)).stdout
    assert "\x1b" not in out and "\\u001b" in out
    data = orjson.loads(out)
    assert data["flow"]["id"] == f"nightly{EVIL}"
    assert data["failures"][0]["node_id"].endswith(EVIL)


# --- versions: one check, every command ---------------------------------------------------------


@pytest.fixture
def newer(tmp_path: Path) -> Path:
    doc = load(FIXTURES / "failure_on.json")
    doc["trace_version"] = 2
    doc["run"]["outcome"] = "whatever v2 says"
    return write_json(tmp_path / "20261123-030000-nightly.json", doc)


@pytest.mark.parametrize("args", [
    ["validate", "{}"], ["show", "{}"], ["show", "--json", "{}"], ["diff", "{}", "{ok}"],
    ["diff", "{ok}", "{}"], ["ls", "{dir}"], ["ls", "--json", "{dir}"], ["export", "-f", "chrome", "{}"],
    ["export", "-f", "otlp", "{}"],
    ["report", "{}", "-o", "-"],
], ids=lambda a: "-".join(x for x in a if not x.startswith("{")))
def test_a_newer_trace_is_refused_alike_by_every_command(newer: Path, args: list[str]) -> None:
    filled = [a.replace("{}", str(newer)).replace("{ok}", str(FIXTURES / "failure_on.json"))
              .replace("{dir}", str(newer.parent)) for a in args]
    result = invoke(*filled)
    assert result.exit_code == 1, result.output
    assert UPGRADE in result.output
    assert "Traceback" not in result.output


def test_a_string_version_is_an_invalid_trace_not_an_unsupported_one(tmp_path: Path) -> None:
    doc = load(FIXTURES / "failure_on.json")
    doc["trace_version"] = "1"
    path = write_json(tmp_path / "t.json", doc)
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.strip() == (
        f"{path}: /trace_version: trace_version is a string ('1'); allowed: the integer 1"
    )
    assert "unsupported" not in result.stdout and "upgrade" not in result.stdout


def test_diff_exits_non_zero_on_anything_unreadable_or_invalid(tmp_path: Path) -> None:
    ok = str(FIXTURES / "failure_on.json")
    assert invoke("diff", ok, ok).exit_code == 0
    assert invoke("diff", ok, str(tmp_path / "missing.json")).exit_code == 2
    (tmp_path / "empty.json").write_bytes(b"")
    assert invoke("diff", str(tmp_path / "empty.json"), ok).exit_code == 1
    invalid = invoke("diff", ok, str(FIXTURES / "invalid" / "attempt_0.json"))
    assert invalid.exit_code == 1 and "not a valid trace; not compared" in invalid.stderr
    assert "same:" not in invalid.stdout
    semantic = invoke("diff", str(FIXTURES / "invalid" / "semantic" / "step_within_run.json"), ok)
    assert semantic.exit_code == 1 and "after its run finished" in semantic.stderr


# --- duplicate keys ------------------------------------------------------------------------------


def test_duplicate_keys_are_rejected_naming_the_key_and_its_path(tmp_path: Path) -> None:
    text = (FIXTURES / "failure_on.json").read_text()
    forged = text.replace('"outcome": "failure",', '"outcome": "failure", "outcome": "success",', 1)
    path = tmp_path / "forged.json"
    path.write_text(forged)
    assert orjson.loads(forged)["run"]["outcome"] == "success"  # what a last-wins reader sees
    message = (f"{path}: /run/outcome: the key 'outcome' appears twice in the object at /run; allowed: each "
               "key once (JSON readers disagree on which value counts)")
    result = invoke("validate", str(path))
    assert (result.exit_code, result.stdout.strip()) == (1, message)
    for args in (["show", str(path)], ["diff", str(path), str(path)], ["export", "-f", "chrome", str(path)]):
        result = invoke(*args)
        assert result.exit_code == 1 and "the key 'outcome' appears twice" in result.output, args
    deep = text.replace('"code": "node_error",', '"code": "node_error", "code": "x",', 1)
    (tmp_path / "deep.json").write_text(deep)
    result = invoke("validate", str(tmp_path / "deep.json"))
    assert "/steps/2/error/code: the key 'code' appears twice in the object at /steps/2/error" in (
        result.stdout
    )


# --- hostile sizes and depths --------------------------------------------------------------------


def _empty_steps(n: int) -> dict[str, Any]:
    doc = load(FIXTURES / "failure_on.json")
    doc["steps"] = [{} for _ in range(n)]
    return doc


def test_validate_of_100000_empty_steps_is_capped_and_bounded(tmp_path: Path) -> None:
    path = write_json(tmp_path / "empty_steps.json", _empty_steps(100_000))
    assert path.stat().st_size < 1 * MB
    code, rss, out = _rss_of("validate", str(path), cwd=tmp_path)
    assert code == 1, out
    assert rss < 300, f"{rss} MB"
    lines = out.splitlines()
    assert len(lines) == 101
    assert re.fullmatch(rf"{re.escape(str(path))}: \.\.\. and at least 99\d\d more problems "
                        r"\(counting stopped at 10000\)", lines[-1]), lines[-1]
    report = orjson.loads(invoke("validate", "--json", str(path)).stdout)["files"][0]
    assert len(report["problems"]) == 100 and 10_000 <= report["problems_total"] < 10_100
    assert report["problems_counted_all"] is False
    assert report["problems"][0]["pointer"] == "/steps/0"  # the first ones, in document order


def _write_repeated(path: Path, head: bytes, item: bytes, count: int, tail: bytes) -> Path:
    """``head`` + ``count`` times ``item`` (comma-separated) + ``tail``, written a chunk at a time."""
    with path.open("wb") as f:
        f.write(head)
        chunk = b",".join([item] * 100_000) + b","
        for _ in range(count // 100_000):
            f.write(chunk)
        f.write(tail)
    return path


def _hostile_files(tmp_path: Path) -> dict[str, Path]:
    """Files under 50 MB shaped to blow up when parsed into Python objects."""
    base = (FIXTURES / "failure_on.json").read_bytes()
    at = base.index(b'"steps": [') + len(b'"steps": [')
    doc = load(FIXTURES / "failure_on.json")
    doc["steps"][2]["error"]["details"]["hints"] = ["@@"]
    text = orjson.dumps(doc)
    hint = text.index(b'"@@"')
    near = _empty_steps(0)
    near["steps"] = [{"node_id": str(i)} for i in range(300_000)]  # ~900k values: under the bound
    return {
        "empty_objects": _write_repeated(tmp_path / "objects.json", base[:at], b"{}", (49 * MB) // 3,
                                         base[at:]),
        "short_strings": _write_repeated(tmp_path / "strings.json", text[:hint], b'"ab"', (49 * MB) // 5,
                                         b'"end"' + text[hint + 4:]),
        "one_long_string": _write_repeated(tmp_path / "long.json", text[:hint] + b'"', b"x" * 450,
                                           (45 * MB) // 451, b'x"' + text[hint + 4:]),
        "many_small_steps": write_json(tmp_path / "near.json", near),
    }


def test_memory_stays_under_300_mb_for_any_file_under_50_mb(tmp_path: Path) -> None:
    for shape, path in _hostile_files(tmp_path).items():
        assert path.stat().st_size < 50 * MB, shape
        for command in (["validate"], ["show"]):
            code, rss, out = _rss_of(*command, str(path), cwd=tmp_path)
            assert code in (0, 1), (shape, command, out[-2000:])
            assert "Traceback" not in out, (shape, out[-2000:])
            assert rss < 300, f"{shape} {command}: {rss} MB"
    code, _, out = _rss_of("validate", str(tmp_path / "objects.json"), cwd=tmp_path)
    assert code == 1 and "JSON values; allowed: at most 1,000,000" in out


def test_deeply_nested_exception_groups_never_end_in_a_traceback(tmp_path: Path) -> None:
    doc = load(FIXTURES / "exception_group.json")
    fan_out = next(s for s in doc["steps"] if s["node_id"] == "fan_out")
    fan_out["error"]["details"]["chain"][0]["exceptions"] = ["@@"]
    inner = '{"type": "ValueError", "message": "leaf"}'
    for i in range(120):
        inner = (f'{{"type": "ExceptionGroup", "message": "g{i}", "chain": [{{"type": "ExceptionGroup", '
                 f'"message": "g{i}", "relation": "raised", "exceptions": [{inner}]}}]}}')
    path = tmp_path / "groups.json"
    path.write_text(orjson.dumps(doc).decode().replace('"@@"', inner))
    for args in (["export", "-f", "chrome"], ["export", "-f", "otlp"], ["report"], ["validate"]):
        proc = run_exe(*args, str(path), cwd=tmp_path)
        assert proc.returncode == 1, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr + proc.stdout
        assert "exception groups nested more than 32 deep" in proc.stderr + proc.stdout, args
    proc = run_exe("show", str(path), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def test_nested_groups_within_the_bound_still_export(tmp_path: Path) -> None:
    doc = load(FIXTURES / "exception_group.json")
    fan_out = next(s for s in doc["steps"] if s["node_id"] == "fan_out")
    member: dict[str, Any] = {"type": "ValueError", "message": "leaf"}
    for i in range(30):
        member = {"type": "ExceptionGroup", "message": f"g{i}",
                  "chain": [{"type": "ExceptionGroup", "message": f"g{i}", "relation": "raised",
                             "exceptions": [member]}]}
    fan_out["error"]["details"]["chain"][0]["exceptions"] = [member]
    path = tmp_path / "groups.json"
    path.write_text(orjson.dumps(doc).decode())
    for args in (["validate"], ["report", "-o", str(tmp_path / "r.html")]):
        assert invoke(*args, str(path)).exit_code == 0, args


# --- small things ---------------------------------------------------------------------------------


def test_a_negative_buffer_is_too_small_not_not_an_integer() -> None:
    result = invoke("env", env={"TRACEKIT_TRACE_BUFFER": "-1"})
    assert result.exit_code == 2
    assert "TRACEKIT_TRACE_BUFFER='-1' is too small; allowed: an integer >= 1" in result.stderr


def test_the_demo_shows_a_short_error_type(tmp_path: Path) -> None:
    out = invoke("demo", env={"TRACEKIT_TRACE_OUT": str(tmp_path / "t.json"), "COLUMNS": "200"}).stdout
    assert "  error    demo.DemoError: could not price 2 orders" in out
    assert "tracekit." not in out.split("FAILED  enrich", 1)[1].split("steps (", 1)[0]


def test_ls_lists_traces_not_named_like_history_files(tmp_path: Path) -> None:
    folder = tmp_path / "sent-to-me"
    folder.mkdir()
    for name in ("monday.json", "tuesday.json"):
        write_json(folder / name, load(FIXTURES / "failure_on.json"))
    (folder / "notes.json").write_text('{"todo": 1}')
    result = invoke("ls", str(folder), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert [ln.split()[0] for ln in result.stdout.splitlines()[1:]] == ["monday.json", "tuesday.json"]
    assert "skipped 1 *.json file(s) that are not traces: notes.json" in result.stderr
    only_notes = tmp_path / "notes"
    only_notes.mkdir()
    (only_notes / "notes.json").write_text("{}")
    result = invoke("ls", str(only_notes))
    assert result.exit_code == 1 and "no traces here (none of its *.json files is a trace)" in result.stderr
