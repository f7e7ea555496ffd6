"""pytest plugin: inert unless ``pytest --tracekit`` is given."""

from __future__ import annotations

from typing import Any

__all__ = ["pytest_addoption"]


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("tracekit")
    group.addoption(
        "--tracekit",
        action="store_true",
        default=False,
        help="record each test as a tracekit step and write a trace per the TRACEKIT_TRACE mode",
    )
