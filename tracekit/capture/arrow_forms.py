"""pyarrow and polars values: schema plus a blake3 digest of each column's buffers.

An Arrow column hashes from three streams: the values (fixed-width bytes, or the bytes of
string and binary data), the lengths of variable-width values, and the positions of nulls.
Bytes under a null are undefined in Arrow, so they hash as zero; slices and chunking never
change a digest (a column in one chunk or in ten hashes the same). Nested types (lists,
structs, maps, unions) have no flat buffer: their Python values (``to_pylist()``) are the form.
polars frames go through ``to_arrow()`` (zero-copy for most dtypes) and are named by their
polars schema. pyarrow and polars are imported only when one of their values is hashed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blake3 import blake3

from tracekit.capture.arrays import feed
from tracekit.capture.tags import bytes_form, tag_non_finite

__all__ = ["arrow_column", "column_digest", "polars_rule_for", "rule_for"]


def _binary_like(pa: Any, t: Any) -> bool:
    types = pa.types
    return bool(
        types.is_string(t) or types.is_large_string(t) or types.is_binary(t)
        or types.is_large_binary(t) or types.is_string_view(t) or types.is_binary_view(t)
    )


def _storage(pa: Any, t: Any) -> Any:
    while True:
        if pa.types.is_dictionary(t):
            t = t.value_type
        elif isinstance(t, pa.ExtensionType):
            t = t.storage_type
        else:
            return t


def _has_buffers(pa: Any, t: Any) -> bool:
    """Whether a column of type ``t`` hashes from buffers (else from its Python values)."""
    t = _storage(pa, t)
    if pa.types.is_null(t) or pa.types.is_boolean(t) or _binary_like(pa, t):
        return True
    if pa.types.is_nested(t) or pa.types.is_union(t):
        return False
    try:
        width = int(t.bit_width)
    except ValueError:
        return False
    return width > 0 and width % 8 == 0


def _feed_chunk(chunk: Any, start: int, values: Any, lengths: Any, nulls: Any) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    while True:
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_decode()
        elif isinstance(chunk.type, pa.ExtensionType):
            chunk = chunk.storage
        else:
            break
    t, n = chunk.type, len(chunk)
    valid = None
    if chunk.null_count:
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        nulls.update((np.flatnonzero(~valid) + start).astype("<i8").view(np.uint8))
    if n == 0 or pa.types.is_null(t):
        return
    if pa.types.is_boolean(t):
        bools = pc.fill_null(chunk, False).to_numpy(zero_copy_only=False)
        values.update(np.ascontiguousarray(bools, dtype=np.bool_).view(np.uint8))
        return
    if _binary_like(pa, t):
        # Offsets and data as they are for (large) strings and binaries; views are rebuilt.
        wide = pa.types.is_large_binary(t) or pa.types.is_large_string(t)
        c = chunk if wide or pa.types.is_string(t) or pa.types.is_binary(t) else chunk.cast(pa.large_binary())
        if valid is not None:
            c = pc.fill_null(c.cast(pa.large_binary()), b"")
        _, offsets_buf, data_buf = c.buffers()
        kind = "<i8" if c.type.id in (pa.large_binary().id, pa.large_string().id) else "<i4"
        offsets = np.frombuffer(offsets_buf, dtype=kind)[c.offset : c.offset + n + 1].astype("<i8")
        lengths.update(np.diff(offsets).astype("<i8").view(np.uint8))
        if data_buf is not None and offsets[-1] > offsets[0]:
            values.update(np.frombuffer(data_buf, dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])])
        return
    width = int(t.bit_width) // 8
    raw = np.frombuffer(chunk.buffers()[1], dtype=np.uint8)[chunk.offset * width : (chunk.offset + n) * width]
    if valid is not None:
        raw = raw.reshape(n, width).copy()
        raw[~valid] = 0
        raw = raw.reshape(-1)
    if pa.types.is_floating(t):
        feed(values, raw.view(f"<f{width}"))
    else:
        values.update(raw)


def column_digest(col: Any) -> str:
    """blake3 hex of an Arrow ``Array`` or ``ChunkedArray`` whose type has buffers."""
    import pyarrow as pa

    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    values, lengths, nulls = blake3(), blake3(), blake3()
    start = 0
    for chunk in chunks:
        _feed_chunk(chunk, start, values, lengths, nulls)
        start += len(chunk)
    return str(blake3(values.digest() + lengths.digest() + nulls.digest()).hexdigest())


def arrow_column(col: Any) -> dict[str, Any]:
    """``{"nulls": n, "blake3": hex}``, or ``{"nulls": n, "values": [...]}`` for nested types."""
    import pyarrow as pa

    out: dict[str, Any] = {"nulls": col.null_count}
    if _has_buffers(pa, col.type):
        out["blake3"] = column_digest(col)
    else:
        out["values"] = tag_non_finite(col.to_pylist())
    return out


def _schema(schema: Any) -> list[list[Any]]:
    return [[f.name, str(f.type), f.nullable] for f in schema]


def _table_form(table: Any) -> dict[str, Any]:
    body = {
        "schema": _schema(table.schema),
        "rows": table.num_rows,
        "columns": [arrow_column(c) for c in table.columns],
    }
    return {f"$arrow.{type(table).__name__}": body}


def _array_form(arr: Any) -> dict[str, Any]:
    import pyarrow as pa

    tag = "$arrow.ChunkedArray" if isinstance(arr, pa.ChunkedArray) else "$arrow.Array"
    return {tag: {"type": str(arr.type), "length": len(arr), **arrow_column(arr)}}


def _scalar_form(scalar: Any) -> dict[str, Any]:
    return {"$arrow.Scalar": {"type": str(scalar.type), "value": scalar.as_py()}}


def _text_form(value: Any) -> dict[str, str]:
    return {f"$arrow.{type(value).__name__}": str(value)}


def _buffer_form(buf: Any) -> dict[str, str]:
    return bytes_form(memoryview(buf))


def rule_for(cls: type) -> Callable[[Any], Any] | None:
    """The rule for a pyarrow class: tables, batches, arrays, scalars, types and schemas."""
    import pyarrow as pa

    if issubclass(cls, pa.Table | pa.RecordBatch):
        return _table_form
    if issubclass(cls, pa.Array | pa.ChunkedArray):
        return _array_form
    if issubclass(cls, pa.Scalar):
        return _scalar_form
    if issubclass(cls, pa.DataType | pa.Schema | pa.Field):
        return _text_form
    if issubclass(cls, pa.Buffer):
        return _buffer_form
    return None


# --- polars -------------------------------------------------------------------------------------

def _polars_column(series: Any) -> dict[str, Any]:
    try:
        return arrow_column(series.to_arrow())
    except Exception:  # an Object column has no Arrow form
        return {"nulls": series.null_count(), "values": tag_non_finite(series.to_list())}


def _polars_frame_form(frame: Any) -> dict[str, Any]:
    return {"$polars.DataFrame": {
        "schema": [[name, str(dtype)] for name, dtype in frame.schema.items()],
        "rows": frame.height,
        "columns": [_polars_column(s) for s in frame.get_columns()],
    }}


def _polars_series_form(series: Any) -> dict[str, Any]:
    return {"$polars.Series": {
        "name": series.name, "dtype": str(series.dtype), "length": len(series), **_polars_column(series),
    }}


def _polars_lazy_form(frame: Any) -> dict[str, str]:
    # A query plan, not data: it hashes as its unoptimized plan text.
    return {"$polars.LazyFrame": frame.explain(optimized=False)}


def _polars_dtype_form(dtype: Any) -> dict[str, str]:
    return {"$polars.dtype": str(dtype)}


def polars_rule_for(cls: type) -> Callable[[Any], Any] | None:
    """The rule for a polars class: frames, series, lazy frames, dtypes."""
    import polars as pl

    if issubclass(cls, pl.DataFrame):
        return _polars_frame_form
    if issubclass(cls, pl.Series):
        return _polars_series_form
    if issubclass(cls, pl.LazyFrame):
        return _polars_lazy_form
    if issubclass(cls, pl.DataType):
        return _polars_dtype_form
    return None
