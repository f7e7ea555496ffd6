"""``tracekit show`` on a terminal: fits the width, the failure first, hints once, every issue shown,
bold that stays bold, no colour where colour is not wanted."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from _cli_support import FIXTURES, invoke, load, run_exe, write_json

from tracekit import NodeEvent, TraceContext, TraceRecorder
from tracekit.cli._style import style
from tracekit.cli._text import _UNSAFE, cells, fit, safe, safe_lines, wrap

ALL_FIXTURES = sorted(p for p in FIXTURES.rglob("*.json") if p.name != "index.json")


def _demo(tmp_path: Path, columns: int) -> str:
    result = invoke("demo", env={"TRACEKIT_TRACE_OUT": str(tmp_path / "demo.json"), "COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_no_line_is_wider_than_the_terminal_on_any_fixture(tmp_path: Path, columns: int) -> None:
    assert len(ALL_FIXTURES) > 150  # valid, invalid (schema) and invalid (semantic) fixtures
    for path in ALL_FIXTURES:
        result = invoke("show", str(path), env={"COLUMNS": str(columns)})
        assert result.exit_code in (0, 1), (path, result.output)
        for line in result.stdout.splitlines():
            assert cells(line) <= columns and len(line) <= columns, (path.name, line)
    demo = invoke("show", str(FIXTURES / "failure_on.json"), env={"COLUMNS": str(columns)}, color=True).stdout
    assert "\x1b[" in demo  # styled lines fit too: escape codes are not counted, text is
    _demo(tmp_path, columns)  # the trace the demo shows
    shown = invoke("show", str(tmp_path / "demo.json"), env={"COLUMNS": str(columns)}).stdout
    for line in shown.splitlines():
        assert cells(line) <= columns, line


def test_the_failure_that_ended_the_run_is_on_the_first_screen(tmp_path: Path) -> None:
    """An 80x50 terminal: the demo's failure, its error and its first hint before line 25."""
    _demo(tmp_path, 80)
    lines = invoke("show", str(tmp_path / "demo.json"), env={"COLUMNS": "80"}).stdout.splitlines()
    title = next(i for i, ln in enumerate(lines) if ln.startswith("FAILED  enrich"))
    assert title < 10, lines
    assert lines[title + 1].startswith("  error    demo.DemoError: could not price 2 orders")
    assert next(i for i, ln in enumerate(lines) if "The pricing service did not answer" in ln) < 25
    assert title < next(i for i, ln in enumerate(lines) if ln.startswith("steps (4"))
    for name in ("failure_on", "error_chain", "exception_group", "ring_buffer", "validation_issues"):
        out = invoke("show", str(FIXTURES / f"{name}.json")).stdout.splitlines()
        assert next(i for i, ln in enumerate(out) if ln.startswith("FAILED  ")) < 12, name


def test_a_parent_repeating_its_childs_error_prints_each_hint_once(tmp_path: Path) -> None:
    out = _demo(tmp_path, 200)
    assert out.count("The connection was refused: the service is not listening") == 1
    assert "FAILED  fetch_prices" in out
    assert "(in the chain of enrich above)" in out
    group = invoke("show", str(FIXTURES / "exception_group.json"), env={"COLUMNS": "200"}).stdout
    assert group.count("- A connection failed: check the host") == 1
    assert group.count("hints    as above") == 2


def test_warning_and_info_issues_on_a_completed_step_are_shown() -> None:
    out = invoke("show", str(FIXTURES / "validation_issues.json"), env={"COLUMNS": "200"}).stdout
    assert "validation issues (2 on 1 step(s))" in out
    assert "parse (step s1, completed)" in out
    assert "- [warning] deprecated_column: column 'amt' is deprecated; use 'amount' at /columns/2" in out
    assert "- [info] rows_skipped: 2 empty rows skipped" in out
    assert "- [error] missing_field: field 'currency' is required at /rows/1/currency" in out


def test_the_cancelled_step_is_named() -> None:
    out = invoke("show", str(FIXTURES / "cancelled.json")).stdout.splitlines()
    assert any(ln.startswith("CANCELLED  long_poll   (step s2") for ln in out[:10]), out


def test_a_step_in_flight_when_the_run_failed_shows_its_error_like_a_failed_step(tmp_path: Path) -> None:
    rec = TraceRecorder.from_env(TraceContext("p@1", "worker", "1"), out=tmp_path / "t.json")
    rec.on_node_start(NodeEvent("slow", "c", "op", {"x": 1}, step_id="slow-1"))
    rec.flush_error(TimeoutError("the run timed out after 30 s"))
    out = invoke("show", str(tmp_path / "t.json"), env={"COLUMNS": "120"}).stdout
    lines = out.splitlines()
    title = next(i for i, ln in enumerate(lines) if ln.startswith("IN FLIGHT when the run failed  slow"))
    assert title < 10
    assert lines[title + 1] == "  error    TimeoutError: the run timed out after 30 s"
    block = "\n".join(lines[title:])
    assert "  hints" in block and "timed out" in block.split("  hints", 1)[1]
    assert "(failed with the run: see above)" in out


def test_recovered_failures_say_so() -> None:
    out = invoke("show", str(FIXTURES / "nested_steps.json"), env={"COLUMNS": "120"}).stdout
    assert "FAILED, recovered  fetch_weights" in out and "the run got past it" in out
    assert "recovered" in next(ln for ln in out.splitlines() if "fetch_weights" in ln and "s2" in ln)


def test_runner_errors_name_the_node_once() -> None:
    out = invoke("show", str(FIXTURES / "error_events.json"), env={"COLUMNS": "200"}).stdout
    assert "node load  timeout: no heartbeat from the load worker for 30 s" in out
    assert "node node" not in out
    assert out.index("runner errors (3)") < out.index("steps (0")  # the run failed outside any step


def test_bold_stays_bold() -> None:
    assert style("x", bold=True) == "\x1b[1mx\x1b[0m"
    assert style("x", "red", bold=True) == "\x1b[31m\x1b[1mx\x1b[0m"
    out = invoke("show", str(FIXTURES / "failure_on.json"), color=True).stdout
    assert "\x1b[1m" in out and "\x1b[22m" not in out


@pytest.mark.parametrize("env", [{"TERM": "dumb"}, {"NO_COLOR": "1"}])
def test_no_colour_for_a_dumb_terminal_or_no_color(env: dict[str, str]) -> None:
    for args in (["show", str(FIXTURES / "failure_on.json")], ["validate", str(FIXTURES / "failure_on.json")],
                 ["ls", str(FIXTURES / "history")]):
        assert "\x1b[" in invoke(*args, color=True).stdout  # as on a terminal
        assert "\x1b" not in invoke(*args, color=True, env=env).stdout


# --- the text helpers ---------------------------------------------------------------------------


def test_every_control_format_and_separator_character_is_escaped() -> None:
    for code in range(0x110000):
        ch = chr(code)
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            assert _UNSAFE.fullmatch(ch), hex(code)
    assert safe("a\x1b]0;pwned\x07b\rc\u202ed\ne\t") == "a\\x1b]0;pwned\\x07b\\rc\\u202ed\\ne\\t"
    assert safe("\U000e0041") == "\\U000e0041"
    assert safe("ok: é 日本 ✓") == "ok: é 日本 ✓"
    assert safe_lines("one\r\ntwo\rthree\n") == ["one", "two\\rthree", ""]


def test_fit_and_wrap_count_terminal_cells() -> None:
    assert cells("日本") == 4 and fit("日本語です", 5) == "日本…"
    assert fit("abcdef", 4) == "abc…" and fit("abc", 3) == "abc"
    lines = wrap("the quick brown fox jumps over 0123456789012345678901234567890", 12, "  ", "- ")
    assert all(cells(ln) <= 12 for ln in lines)
    assert lines[0] == "- the quick" and lines[1] == "  brown fox"
    assert wrap("a  b", 10) == ["a  b"]  # runs of spaces inside a line are kept


def test_every_printed_field_is_capped(tmp_path: Path) -> None:
    """A hint of 100 MB: show prints a few KB, saying how much it left out."""
    doc = load(FIXTURES / "failure_on.json")
    doc["steps"][2]["error"]["details"]["hints"] = ["x" * 100_000_000]
    doc["steps"][2]["node_id"] = "n" * 100_000
    path = write_json(tmp_path / "big.json", doc)
    del doc
    proc = run_exe("show", str(path), cwd=tmp_path, env={"COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) < 50_000
    words = " ".join(proc.stdout.split())
    assert "[99999500 more characters]" in words
