"""Inline or preview: what a captured input holds for a frame, an array or any other value.

:func:`placement` is the one place that decides, per value, how capture keeps it:

* ``INLINE``: written whole, as its canonical form (redacted). Every value but those below.
* ``PREVIEW``: pandas frames, series and indexes, numpy arrays, Arrow tables, batches and
  arrays, polars frames and series. Inline they are a bounded preview (:func:`preview`): the
  schema, the shape and the first rows, capped, with ``"truncated"`` saying whether anything
  was left out. Never internal state. These are the values whose full form replay will keep
  in its side store, beside the trace, as the types the node took.

A column (or series, index, field) whose name is a secret key has its cells redacted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final

from tracekit.capture.tags import REDACTED

__all__ = [
    "PREVIEW_COLUMNS",
    "PREVIEW_ITEMS",
    "PREVIEW_ROWS",
    "PREVIEW_TEXT",
    "Placement",
    "placement",
    "preview",
]

#: Rows of a frame or table shown in its preview.
PREVIEW_ROWS: Final = 5
#: Columns of a frame or table shown in its preview.
PREVIEW_COLUMNS: Final = 20
#: Elements of a series, index or array shown in its preview.
PREVIEW_ITEMS: Final = 20
#: Characters of a string cell shown in a preview.
PREVIEW_TEXT: Final = 200

Secret = Callable[[Any], bool]
Builder = Callable[[Any, Secret], dict[str, Any]]


class Placement(enum.Enum):
    """How capture keeps a value: whole inline, or a preview inline (and, later, whole aside)."""

    INLINE = "inline"
    PREVIEW = "preview"


def _cell(x: Any) -> Any:
    if isinstance(x, str) and len(x) > PREVIEW_TEXT:
        return f"{x[:PREVIEW_TEXT]}... [{len(x)} characters]"
    if isinstance(x, bytes | bytearray) and len(x) > PREVIEW_TEXT:
        return f"<{len(x)} bytes>"
    return x


def _cells(values: list[Any], secret: bool) -> list[Any]:
    return [REDACTED] * len(values) if secret else [_cell(x) for x in values]


def _rows(columns: list[list[Any]], n: int) -> list[list[Any]]:
    return [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in range(n)]


# --- builders, one per kind ---------------------------------------------------------------------

def _pandas_frame(df: Any, is_secret: Secret) -> dict[str, Any]:
    head = df.iloc[:PREVIEW_ROWS, :PREVIEW_COLUMNS]
    columns, data = [], []
    for name, col in head.items():
        columns.append({"name": name, "dtype": str(col.dtype)})
        data.append(_cells(col.tolist(), is_secret(name)))
    return {
        "$preview": "pandas.DataFrame",
        "shape": list(df.shape),
        "columns": columns,
        "index": _cells(head.index.tolist(), is_secret(head.index.name)),
        "rows": _rows(data, len(head)),
        "truncated": df.shape[0] > head.shape[0] or df.shape[1] > head.shape[1],
    }


def _pandas_series(s: Any, is_secret: Secret) -> dict[str, Any]:
    head = s.iloc[:PREVIEW_ITEMS]
    return {
        "$preview": "pandas.Series",
        "name": s.name,
        "dtype": str(s.dtype),
        "length": len(s),
        "index": _cells(head.index.tolist(), is_secret(s.index.name)),
        "values": _cells(head.tolist(), is_secret(s.name)),
        "truncated": len(s) > len(head),
    }


def _pandas_index(index: Any, is_secret: Secret) -> dict[str, Any]:
    head = index[:PREVIEW_ITEMS]
    names = list(index.names)
    return {
        "$preview": f"pandas.{type(index).__name__}",
        "name": index.name,
        "dtype": str(index.dtype),
        "length": len(index),
        "values": _cells(head.tolist(), any(is_secret(n) for n in names)),
        "truncated": len(index) > len(head),
    }


def _numpy_array(a: Any, is_secret: Secret) -> dict[str, Any]:
    head = a.flat[:PREVIEW_ITEMS].tolist()  # the first elements in C order, without copying the rest
    names = a.dtype.names
    if names is not None:  # records, by field name: a secret field is masked in each
        values: list[Any] = [
            {n: REDACTED if is_secret(n) else _cell(v) for n, v in zip(names, row, strict=False)}
            for row in head
        ]
    else:
        values = _cells(head, False)
    return {
        "$preview": "numpy.ndarray",
        "dtype": str(a.dtype),
        "shape": list(a.shape),
        "values": values,
        "truncated": a.size > PREVIEW_ITEMS,
    }


def _arrow_table(t: Any, is_secret: Secret) -> dict[str, Any]:
    head = t.slice(0, PREVIEW_ROWS)
    fields = list(t.schema)[:PREVIEW_COLUMNS]
    columns = [{"name": f.name, "type": str(f.type)} for f in fields]
    data = [_cells(head.column(i).to_pylist(), is_secret(f.name)) for i, f in enumerate(fields)]
    return {
        "$preview": f"pyarrow.{type(t).__name__}",
        "shape": [t.num_rows, t.num_columns],
        "columns": columns,
        "rows": _rows(data, head.num_rows),
        "truncated": t.num_rows > head.num_rows or t.num_columns > len(fields),
    }


def _arrow_array(a: Any, is_secret: Secret) -> dict[str, Any]:
    return {
        "$preview": f"pyarrow.{type(a).__name__}",
        "type": str(a.type),
        "length": len(a),
        "values": _cells(a.slice(0, PREVIEW_ITEMS).to_pylist(), False),
        "truncated": len(a) > PREVIEW_ITEMS,
    }


def _polars_frame(df: Any, is_secret: Secret) -> dict[str, Any]:
    names = df.columns[:PREVIEW_COLUMNS]
    head = df.select(names).head(PREVIEW_ROWS)
    columns = [{"name": n, "dtype": str(d)} for n, d in head.schema.items()]
    data = [_cells(s.to_list(), is_secret(s.name)) for s in head.get_columns()]
    return {
        "$preview": "polars.DataFrame",
        "shape": [df.height, df.width],
        "columns": columns,
        "rows": _rows(data, head.height),
        "truncated": df.height > head.height or df.width > len(names),
    }


def _polars_series(s: Any, is_secret: Secret) -> dict[str, Any]:
    head = s.head(PREVIEW_ITEMS)
    return {
        "$preview": "polars.Series",
        "name": s.name,
        "dtype": str(s.dtype),
        "length": len(s),
        "values": _cells(head.to_list(), is_secret(s.name)),
        "truncated": len(s) > len(head),
    }


def _pandas_builder(cls: type) -> Builder | None:
    import pandas as pd

    if issubclass(cls, pd.DataFrame):
        return _pandas_frame
    if issubclass(cls, pd.Series):
        return _pandas_series
    if issubclass(cls, pd.Index):
        return _pandas_index
    return None


def _numpy_builder(cls: type) -> Builder | None:
    import numpy as np

    return _numpy_array if issubclass(cls, np.ndarray) else None


def _arrow_builder(cls: type) -> Builder | None:
    import pyarrow as pa

    if issubclass(cls, pa.Table | pa.RecordBatch):
        return _arrow_table
    if issubclass(cls, pa.Array | pa.ChunkedArray):
        return _arrow_array
    return None


def _polars_builder(cls: type) -> Builder | None:
    import polars as pl

    if issubclass(cls, pl.DataFrame):
        return _polars_frame
    if issubclass(cls, pl.Series):
        return _polars_series
    return None


_LIBRARIES: Final[dict[str, Callable[[type], Builder | None]]] = {
    "pandas": _pandas_builder,
    "numpy": _numpy_builder,
    "pyarrow": _arrow_builder,
    "polars": _polars_builder,
}
_builders: dict[type, Builder | None] = {}


def _builder_for(cls: type) -> Builder | None:
    try:
        return _builders[cls]
    except KeyError:
        pass
    found: Builder | None = None
    try:
        for klass in cls.__mro__:
            finder = _LIBRARIES.get(str(klass.__module__).partition(".")[0])
            if finder is not None:
                found = finder(cls)
                if found is not None:
                    break
    except Exception:
        found = None
    if len(_builders) >= 1024:
        _builders.clear()
    _builders[cls] = found
    return found


def placement(value: Any) -> Placement:
    """``PREVIEW`` for frames, series, indexes, arrays and tables; ``INLINE`` for the rest."""
    return Placement.INLINE if _builder_for(type(value)) is None else Placement.PREVIEW


def preview(value: Any, is_secret: Secret) -> dict[str, Any]:
    """The bounded inline preview of a ``PREVIEW`` value; secret-named columns are redacted."""
    builder = _builder_for(type(value))
    if builder is None:
        raise TypeError(f"no preview for {type(value).__qualname__}: its placement is inline")
    return builder(value, is_secret)
