"""What a pytest item and its reports say, read defensively for the pytest plugin.

Items come from pytest and from any plugin (doctest items have no module, unittest items no
callspec, a rerun plugin sets ``execution_count``); every reader here has a safe default.

Threading contract: pure functions of their arguments; safe from any thread.
"""

from __future__ import annotations

from typing import Any, Final

import pytest

from tracekit.adapters._pytest_params import safe_param

__all__ = ["MAX_LONGREPR", "attempt", "component", "payload", "report_text", "skip_reason", "subtest"]

#: Characters of a report's text kept when there is no exception (the last ones: the error).
MAX_LONGREPR: Final = 4096


def payload(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    params = getattr(callspec, "params", None)
    if not isinstance(params, dict):
        return {}
    return {str(name): safe_param(value) for name, value in params.items()}


def component(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    name = getattr(module, "__name__", None)
    if isinstance(name, str) and name:
        return name
    return item.nodeid.split("::", 1)[0]


def report_text(report: pytest.TestReport | pytest.CollectReport) -> str:
    try:
        text = report.longreprtext
    except Exception:
        text = ""
    return text if len(text) <= MAX_LONGREPR else "..." + text[-MAX_LONGREPR:]


def attempt(item: pytest.Item) -> int:
    count = getattr(item, "execution_count", None)  # pytest-rerunfailures: 1, 2, ... per attempt
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 1 else 1


def subtest(report: pytest.TestReport) -> str | None:
    """``[msg] (k=v, ...)`` as pytest prints a subtest (its ``subtests``); None for a test's own report."""
    context = getattr(report, "context", None)
    if context is None or not hasattr(context, "kwargs"):
        return None
    msg = getattr(context, "msg", None)
    kwargs = getattr(context, "kwargs", None) or {}
    parts = [f"[{msg}]"] if msg is not None else []
    if kwargs:
        parts.append("(" + ", ".join(f"{k}={v}" for k, v in dict(kwargs).items()) + ")")
    return " ".join(parts) or "subtest"


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return "skipped"
