"""pandas values: frames, series and indexes hash from their column buffers, never their internals.

A frame's form is its column labels, its index and one form per column (dtype, length and a
blake3 digest of the column's data), so cached state (``repr()`` filling a cache, the block
layout after a copy or consolidation) never changes a hash, and a 40 MB float64 frame costs
about one blake3 pass. Column data hashes from, in order of preference:

* numpy-backed columns: the canonical bytes of the array (see :mod:`tracekit.capture.arrays`);
* categoricals: the codes, plus the categories as an index and whether they are ordered;
* columns with an Arrow form (pyarrow strings, nullable ints, ...): the Arrow column digest;
* datetimes with a time zone, periods: their int64 values (``asi8``), the zone in the dtype;
* anything else (object columns): the elements themselves, NaN tagged.

pandas is imported only when one of its values is hashed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracekit.capture import arrow_forms
from tracekit.capture.arrays import array_digest
from tracekit.capture.tags import tag_non_finite

__all__ = ["column_form", "column_values", "index_form", "rule_for"]


def column_values(obj: Any) -> Any:
    """The data of a Series or Index: a numpy array for numpy dtypes, else the ExtensionArray."""
    import numpy as np

    if isinstance(obj.dtype, np.dtype):
        return np.asarray(obj.array)
    return obj.array


def column_form(values: Any) -> dict[str, Any]:
    """``{"dtype": str, "length": n, "blake3": hex}``, or ``"values"`` for object data."""
    import numpy as np
    import pandas as pd

    dtype = values.dtype
    out: dict[str, Any] = {"dtype": str(dtype), "length": len(values)}
    if isinstance(values, np.ndarray):
        if dtype.hasobject:
            out["values"] = tag_non_finite(values.tolist())
        else:
            out["blake3"] = array_digest(values)
        return out
    if isinstance(dtype, pd.CategoricalDtype):
        out["ordered"] = bool(dtype.ordered)
        out["categories"] = index_form(dtype.categories)
        out["codes"] = array_digest(np.asarray(values.codes))
        return out
    if hasattr(values, "__arrow_array__"):
        try:
            import pyarrow as pa

            out["blake3"] = arrow_forms.column_digest(pa.array(values))
            return out
        except Exception:
            pass  # no pyarrow, or no Arrow form for this dtype: the elements below
    asi8 = getattr(values, "asi8", None)
    if isinstance(asi8, np.ndarray):
        out["blake3"] = array_digest(asi8)
        return out
    out["values"] = tag_non_finite(np.asarray(values, dtype=object).tolist())
    return out


def index_form(index: Any) -> dict[str, Any]:
    """A RangeIndex is its range; a MultiIndex its names and levels' values; else name and data."""
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        return {"$pandas.RangeIndex": {
            "name": index.name, "start": index.start, "stop": index.stop, "step": index.step,
        }}
    if isinstance(index, pd.MultiIndex):
        return {"$pandas.MultiIndex": {
            "names": list(index.names),
            "levels": [column_form(column_values(index.get_level_values(i))) for i in range(index.nlevels)],
        }}
    return {"$pandas.Index": {"name": index.name, "data": column_form(column_values(index))}}


def _frame_form(frame: Any) -> dict[str, Any]:
    # Columns by position (labels may repeat); attrs and flags are metadata, not the value.
    return {"$pandas.DataFrame": {
        "columns": index_form(frame.columns),
        "index": index_form(frame.index),
        "shape": list(frame.shape),
        "data": [column_form(column_values(col)) for _, col in frame.items()],
    }}


def _series_form(series: Any) -> dict[str, Any]:
    return {"$pandas.Series": {
        "name": series.name, "index": index_form(series.index), "data": column_form(column_values(series)),
    }}


def _array_form(array: Any) -> dict[str, Any]:
    return {"$pandas.array": column_form(array)}


def _timestamp_form(ts: Any) -> str:
    # As orjson writes the datetime it equals, with nanoseconds when there are any.
    return str(ts.isoformat())


def _timedelta_form(td: Any) -> dict[str, int]:
    return {"$timedelta_ns": int(td.value)}


def _text_form(value: Any) -> dict[str, str]:
    return {f"$pandas.{type(value).__name__}": str(value)}


def _missing_form(value: Any) -> dict[str, str]:
    return {"$pandas": "NaT" if type(value).__name__ == "NaTType" else "NA"}


def rule_for(cls: type) -> Callable[[Any], Any] | None:
    """The rule for a pandas class: frames, series, indexes, arrays, scalars, dtypes."""
    import pandas as pd

    if issubclass(cls, pd.DataFrame):
        return _frame_form
    if issubclass(cls, pd.Series):
        return _series_form
    if issubclass(cls, pd.Index):
        return index_form
    if issubclass(cls, pd.api.extensions.ExtensionArray):
        return _array_form
    if cls is type(pd.NaT) or cls is type(pd.NA):
        return _missing_form
    if issubclass(cls, pd.Timestamp):
        return _timestamp_form
    if issubclass(cls, pd.Timedelta):
        return _timedelta_form
    if issubclass(cls, pd.Period | pd.Interval | pd.api.extensions.ExtensionDtype):
        return _text_form
    return None
