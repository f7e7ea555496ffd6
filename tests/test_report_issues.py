"""The HTML report: every step's validation issues, round axis labels ending at the run's end, and
steps that never ran marked as such."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from _cli_support import FIXTURES

from tracekit.export.report.timeline import axis_ticks
from tracekit.report import render_report


def _fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return doc


def test_warning_and_info_issues_of_a_completed_step_are_shown() -> None:
    page = render_report(_fixture("validation_issues.json"))
    section = page.split("<h2>Validation issues</h2>", 1)[1].split("<h2>", 1)[0]
    for words in ("deprecated_column", "column &#x27;amt&#x27; is deprecated; use &#x27;amount&#x27;",
                  "/columns/2", "rows_skipped", "2 empty rows skipped", "missing_field", "bad_type"):
        assert words in section, words
    assert section.count('<tr class="issue') == 4
    assert 'class="issue issue-warning"' in section and 'class="issue issue-info"' in section
    failure = page.split('<div class="failure"', 1)[1].split("</div>", 1)[0]
    assert "Validation issues" in failure and "/rows/1/currency" in failure


def test_no_issues_says_none() -> None:
    page = render_report(_fixture("success_always.json"))
    assert '<h2>Validation issues</h2><p class="empty">None.</p>' in page


@pytest.mark.parametrize(("total", "labels"), [
    (8_500_000, ["0 ns", "2 ms", "4 ms", "6 ms", "8.5 ms"]),
    (369_000_000, ["0 ns", "100 ms", "200 ms", "300 ms", "369 ms"]),
    (317_000_000, ["0 ns", "100 ms", "200 ms", "317 ms"]),
    (1_000_000_000, ["0 ns", "200 ms", "400 ms", "600 ms", "800 ms", "1 s"]),
    (37, ["0 ns", "10 ns", "20 ns", "30 ns", "37 ns"]),
])
def test_axis_labels_are_round_with_one_at_the_end(total: int, labels: list[str]) -> None:
    from tracekit.export.durations import human_duration

    ticks = axis_ticks(total)
    assert [human_duration(ns) for _, ns, _ in ticks] == labels
    assert ticks[-1] == (100.0, total, True) and not any(end for _, _, end in ticks[:-1])
    assert all(0 <= pct <= 100 for pct, _, _ in ticks)


def test_the_timeline_ends_with_the_runs_length() -> None:
    doc = _fixture("failure_on.json")
    page = render_report(doc)
    labels = re.findall(r'<span class="tick[^"]*" style="left:([\d.]+)%">([^<]+)</span>', page)
    assert labels[-1] == ("100.00", "369 ms")  # the run took 369 ms (started_at to finished_at)
    assert [t for _, t in labels] == ["0 ns", "100 ms", "200 ms", "300 ms", "369 ms"]


def test_a_step_that_never_ran_is_marked() -> None:
    page = render_report(_fixture("validation_issues.json"))
    row = page.split('data-step-id="s2">', 1)[1].split('<div class="row', 1)[0]
    assert "NEVER RAN: rejected by validation" in row and 'class="bar never-ran"' in row
    assert "(1 never ran: rejected by validation)" in page  # the header's count of steps
    assert "never ran: rejected by validation</span>" in page.split("<h2>Steps</h2>", 1)[1]
    assert "NEVER RAN" not in render_report(_fixture("failure_on.json"))
