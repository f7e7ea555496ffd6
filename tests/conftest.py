"""Shared test fixtures: every test runs in its own empty directory with a clean environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekit import TraceContext

_ENV_PREFIXES = ("TRACEKIT_",)
_ENV_NAMES = ("GIT_SHA", "GITHUB_SHA")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's TRACEKIT_* settings or writes into the checkout."""
    import os

    for name in list(os.environ):
        if name in ("TRACEKIT_SOAK_ITERATIONS", "TRACEKIT_PURE_PYTHON"):
            continue  # knobs of the test run (its length; which callbacks it exercises)
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # Celery's worker and other libraries reconfigure logging (disabling existing loggers,
    # raising levels); each test starts with the tracekit logger as a user's program has it.
    log = logging.getLogger("tracekit")
    monkeypatch.setattr(log, "disabled", False)
    monkeypatch.setattr(log, "propagate", True)
    monkeypatch.setattr(log, "level", logging.NOTSET)
    root = logging.getLogger()
    monkeypatch.setattr(root, "disabled", False)
    monkeypatch.setattr(root, "level", logging.WARNING)  # Python's default; Celery raises it
    yield


@pytest.fixture
def context() -> TraceContext:
    return TraceContext(pack_ref="etl@1.4.0", flow_id="nightly", flow_version="3")
