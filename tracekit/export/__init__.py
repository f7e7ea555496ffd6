"""Exporters from the tracekit envelope to other viewers' formats."""

__all__: list[str] = []
