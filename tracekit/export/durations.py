"""Durations for people, one way everywhere (``tracekit show``, the HTML report)."""

from __future__ import annotations

__all__ = ["human_duration"]


def human_duration(ns: int) -> str:
    """``850 ns``, ``12.3 µs``, ``4.56 ms``, ``1.23 s``, ``2 min 3 s``: three significant digits."""
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3g} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.3g} ms"
    if ns < 60_000_000_000:
        return f"{ns / 1_000_000_000:.3g} s"
    minutes, rest = divmod(ns // 1_000_000_000, 60)
    return f"{minutes} min {rest} s"
