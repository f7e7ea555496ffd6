"""Exporters from the tracekit envelope to other viewers' formats.

- :func:`tracekit.export.chrome.to_chrome_trace`: Chrome Trace Event Format (Perfetto,
  chrome://tracing).
- :func:`tracekit.export.otlp.to_otlp_json`: OTLP/JSON (OpenTelemetry collectors and backends).

Both take the envelope as a dict and raise :class:`ExportError` (a ``ValueError`` naming the
JSON Pointer of the bad field) when it cannot be read.
"""

from collections.abc import Callable, Mapping
from typing import Any, Final

from tracekit.export._timeline import ExportError
from tracekit.export.chrome import to_chrome_trace
from tracekit.export.otlp import to_otlp_json

__all__ = ["FORMATS", "ExportError", "Exporter", "to_chrome_trace", "to_otlp_json"]

Exporter = Callable[[Mapping[str, Any]], dict[str, Any]]

#: Export formats by the name the command line uses.
FORMATS: Final[Mapping[str, Exporter]] = {"chrome": to_chrome_trace, "otlp": to_otlp_json}
