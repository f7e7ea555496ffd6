"""``tracekit validate`` on real traces, fixtures, and every kind of malformed input."""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
import pytest
from _cli_support import FIXTURES, failing_trace, invoke, load, run_exe, success_trace, write_json

from tracekit.cli._io import TraceLoadError, load_trace

LINE = re.compile(r"^(?P<file>.+?): (?P<pointer>/\S*): (?P<message>.+)$")

# name -> (bytes, what the message must say); each is read (exit 1), none is a trace.
MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty.json": (b"", "empty file"),
    "whitespace.json": (b"  \n\t\n", "only whitespace"),
    "truncated.json": (b'{"trace_version": 1, "steps": [', "truncated JSON"),
    "garbage.json": (bytes(range(256)) * 4, "binary data"),
    "array.json": (b"[1, 2, 3]", "top level is an array"),
    "string.json": (b'"a trace"', "top level is a string"),
    "null.json": (b"null", "top level is null"),
    "number.json": (b"42", "top level is a number"),
    "utf16.json": ('{"trace_version": 1}'.encode("utf-16"), "UTF-16 byte order mark"),
    "utf8bom.json": (b"\xef\xbb\xbf{}", "UTF-8 byte order mark"),
    "bad_utf8.json": (b'{"flow": "caf\xe9"}', "not valid UTF-8 at byte 13"),
    "deep.json": (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    "huge_number.json": (b'{"trace_version": 1e999999}', "too large"),
    "trailing.json": (b'{"a": 1} {"b": 2}', "not valid JSON"),
    "nan.json": (b'{"trace_version": NaN}', "not valid JSON"),
}


@pytest.fixture
def malformed(tmp_path: Path) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    for name, (data, _) in MALFORMED.items():
        (d / name).write_bytes(data)
    return d


def _lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, f"not a 'file: /pointer: message' line: {line!r}"
        out[Path(m["file"]).name] = f"{m['pointer']}: {m['message']}"
    return out


def test_recorder_traces_are_valid(tmp_path: Path) -> None:
    a = failing_trace(tmp_path / "a.json")
    b = success_trace(tmp_path / "b.json")
    result = invoke("validate", str(a), str(b))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{a}: ok", f"{b}: ok"]
    assert "2 files checked: 2 valid" in result.stderr


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_each_malformed_input_is_one_clear_line(malformed: Path, name: str) -> None:
    path = malformed / name
    result = invoke("validate", str(path))
    assert result.exit_code == 1, result.output
    line = result.stdout.strip()
    assert line.startswith(f"{path}: /: "), line
    assert MALFORMED[name][1] in line
    assert "Traceback" not in result.output
    with pytest.raises(TraceLoadError) as info:
        load_trace(path)
    assert info.value.unreadable is False
    assert str(info.value) == line


def test_malformed_inputs_through_the_installed_script(malformed: Path, tmp_path: Path) -> None:
    proc = run_exe("validate", str(malformed), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    found = _lines(proc.stdout)
    assert set(found) == set(MALFORMED)
    for name, (_, says) in MALFORMED.items():
        assert found[name].startswith("/: ") and says in found[name], (name, found[name])
    assert f"{len(MALFORMED)} files checked: 0 valid" in proc.stderr


def test_missing_file_and_directory_exit_2(tmp_path: Path) -> None:
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    missing = tmp_path / "missing.json"
    result = invoke("validate", str(missing))
    assert result.exit_code == 2
    assert result.stdout.strip() == f"{missing}: /: no such file"
    result = invoke("validate", str(empty_dir))
    assert result.exit_code == 2
    assert result.stdout.strip() == f"{empty_dir}: /: directory holds no *.json trace files"
    with pytest.raises(TraceLoadError) as info:
        load_trace(empty_dir)
    assert info.value.unreadable and "is a directory" in info.value.message
    proc = run_exe("validate", str(missing), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == f"{missing}: /: no such file"


def test_unreadable_beats_invalid_and_valid_files_still_reported(tmp_path: Path) -> None:
    good = success_trace(tmp_path / "good.json")
    (tmp_path / "bad.json").write_bytes(b"[]")
    result = invoke("validate", str(good), str(tmp_path / "bad.json"), str(tmp_path / "gone.json"))
    assert result.exit_code == 2
    assert f"{good}: ok" in result.stdout
    assert f"{tmp_path / 'bad.json'}: /: the top level is an array" in result.stdout


def test_permission_error_is_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = success_trace(tmp_path / "t.json")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert result.stdout.strip() == f"{path}: /: permission denied: cannot read the file"


def test_usage_error_exit_2() -> None:
    result = invoke("validate")
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr
    assert invoke("validate", "--bogus", "x").exit_code == 2


def test_directories_recurse_and_globs_expand(tmp_path: Path) -> None:
    (tmp_path / "runs" / "deep").mkdir(parents=True)
    a = success_trace(tmp_path / "runs" / "a.json")
    b = failing_trace(tmp_path / "runs" / "deep" / "b.json")
    (tmp_path / "runs" / "notes.txt").write_text("not a trace")
    result = invoke("validate", str(tmp_path / "runs"))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"{a}: ok", f"{b}: ok"]
    # A quoted glob (the shell did not expand it) is expanded here, recursively with **.
    result = invoke("validate", str(tmp_path / "runs" / "**" / "*.json"))
    assert result.exit_code == 0
    assert sorted(result.stdout.splitlines()) == sorted([f"{a}: ok", f"{b}: ok"])
    result = invoke("validate", str(tmp_path / "nomatch-*.json"))
    assert result.exit_code == 2
    assert "no file matches this pattern" in result.stdout


def test_schema_problems_name_the_pointer(tmp_path: Path) -> None:
    doc = load(failing_trace(tmp_path / "t.json"))
    doc["steps"][1]["attempt"] = 0
    del doc["steps"][2]["input_hash"]
    bad = write_json(tmp_path / "bad.json", doc)
    result = invoke("validate", str(bad))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"{bad}: /steps/1/attempt: 0 is less than the minimum of 1" in lines
    assert f"{bad}: /steps/2: 'input_hash' is a required property" in lines


def test_json_report(tmp_path: Path) -> None:
    good = success_trace(tmp_path / "good.json")
    doc = load(good)
    doc["run"]["started_at"] = "2026-02-30T00:00:00Z"  # the pattern allows day 30
    bad = write_json(tmp_path / "bad.json", doc)
    (tmp_path / "empty.json").write_bytes(b"")
    result = invoke("validate", "--json", str(tmp_path))
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    assert report["checked"] == 3 and report["valid"] == 1 and report["invalid"] == 2
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["good.json"]["valid"] is True and by_name["good.json"]["problems"] == []
    problem = by_name["bad.json"]["problems"][0]
    assert (problem["pointer"], problem["rule"]) == ("/run/started_at", "rfc3339")
    assert problem["message"] == "'2026-02-30T00:00:00Z' is not a valid RFC 3339 date-time with a time zone"
    assert by_name["empty.json"]["problems"][0]["rule"] == "load"
    assert str(bad) == by_name["bad.json"]["path"]


def test_fixtures_valid_and_invalid(tmp_path: Path) -> None:
    valid = sorted(FIXTURES.glob("*.json"))
    invalid = sorted(p for p in (FIXTURES / "invalid").glob("*.json") if p.name != "index.json")
    if not valid or not invalid:
        pytest.fail("fixtures/ holds no traces yet")
    result = invoke("validate", *map(str, valid))
    assert result.exit_code == 0, result.stdout
    result = invoke("validate", "--json", *map(str, invalid))
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    not_flagged = [f["path"] for f in report["files"] if f["valid"]]
    assert not_flagged == []


def test_many_files_no_progress_bar_when_piped(tmp_path: Path) -> None:
    src = success_trace(tmp_path / "one.json").read_bytes()
    d = tmp_path / "many"
    d.mkdir()
    for i in range(25):
        (d / f"t{i:02}.json").write_bytes(src)
    proc = run_exe("validate", "-q", str(d), cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert proc.stderr.strip() == "25 files checked: 25 valid, 0 not"


def test_color_on_a_terminal_plain_when_piped_or_no_color(tmp_path: Path) -> None:
    path = success_trace(tmp_path / "t.json")
    assert "\x1b[" in invoke("validate", str(path), color=True).stdout  # as on a terminal
    assert "\x1b[" not in invoke("validate", str(path), color=True, env={"NO_COLOR": "1"}).stdout
    proc = run_exe("validate", str(path), cwd=tmp_path)
    assert proc.stdout == f"{path}: ok\n"


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """More than 20 files and stderr on a terminal (a pty here): a progress bar; piped: none."""
    import pty
    import subprocess

    from _cli_support import exe

    src = success_trace(tmp_path / "one.json").read_bytes()
    d = tmp_path / "many"
    d.mkdir()
    for i in range(21):
        (d / f"t{i:02}.json").write_bytes(src)
    master, slave = pty.openpty()
    try:
        # Read while it runs, so a full pty buffer can never block the child.
        proc = subprocess.Popen([exe(), "validate", "-q", str(d)], stdout=subprocess.DEVNULL, stderr=slave,
                                cwd=tmp_path)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the writer side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.wait(timeout=120) == 0
    assert b"validating  [" in seen and b"100%" in seen
