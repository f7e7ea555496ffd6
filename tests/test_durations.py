"""One duration format for people, in `tracekit show` and in the HTML report."""

from __future__ import annotations

import pytest

from tracekit.cli._style import fmt_duration as show_duration
from tracekit.export.durations import human_duration
from tracekit.export.report._html import fmt_duration as report_duration


@pytest.mark.parametrize(
    ("ns", "shown"),
    [
        (0, "0 ns"),
        (999, "999 ns"),
        (1_000, "1 µs"),
        (12_345, "12.3 µs"),
        (999_499, "999 µs"),
        (4_560_000, "4.56 ms"),
        (1_234_000_000, "1.23 s"),
        (123_000_000_000, "2 min 3 s"),
    ],
)
def test_durations_read_the_same_everywhere(ns: int, shown: str) -> None:
    assert human_duration(ns) == shown
    assert report_duration(ns) == shown
    assert show_duration({"duration_ns": ns, "duration_ms": ns // 1_000_000}) == shown


def test_show_falls_back_to_milliseconds_and_to_a_dash() -> None:
    assert show_duration({"duration_ms": 7}) == "7 ms"
    assert show_duration({}) == "-"
