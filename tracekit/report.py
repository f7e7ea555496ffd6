"""Alias of :mod:`tracekit.export.report` (the README once pointed here)."""

from tracekit.export.report import render_report

__all__ = ["render_report"]
