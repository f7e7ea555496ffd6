"""Envelope helpers: times as RFC 3339."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from tracekit.trace.model import rfc3339

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999_999))  # up to 9999-12-31
def test_rfc3339_is_utc_with_microseconds_truncated(epoch_ns: int) -> None:
    expected = EPOCH + dt.timedelta(microseconds=epoch_ns // 1_000)
    assert rfc3339(epoch_ns) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_rfc3339_examples() -> None:
    assert rfc3339(1_763_906_400_123_456_789) == "2025-11-23T14:00:00.123456Z"
    assert rfc3339(999) == "1970-01-01T00:00:00.000000Z"  # truncated, never rounded up
    assert rfc3339(59_999_999_999) == "1970-01-01T00:00:59.999999Z"
