"""numpy values, and the blake3 digest of array buffers that arrays and frames hash from.

An array hashes from its bytes, never through JSON of every element: its form is a header
(dtype, shape) plus ``blake3`` of its canonical bytes, so a 40 MB array costs about one blake3
pass. Canonical bytes are C order and little-endian (layout and byte order are not the value),
with every NaN rewritten to one bit pattern (NaNs made by different operations carry different
payload bits, and are equal values). -0.0 and 0.0 stay apart, as orjson writes them. Object
arrays have no bytes to hash: their elements are the form. numpy is imported only when one of
its values is hashed, so it is there already.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from tracekit.capture.tags import bytes_form, tag_non_finite

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

__all__ = ["array_digest", "dtype_name", "feed", "ndarray_form", "rule_for", "scalar_form"]

_BIG_ENDIAN = sys.byteorder == "big"


def dtype_name(dtype: np.dtype[Any]) -> str:
    """``dtype.str`` in little-endian spelling: ``<f8``, ``|b1``, ``<U3``, ``<M8[ns]``."""
    if dtype.names is None and (dtype.byteorder == ">" or (dtype.byteorder == "=" and _BIG_ENDIAN)):
        return dtype.newbyteorder("<").str
    return dtype.str


#: Floats are checked for NaN and hashed this many bytes at a time: a block is still in cache
#: when blake3 reads it, and only a block that holds a NaN is copied to be rewritten.
_BLOCK_BYTES = 1 << 20


def _contiguous_le(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    import numpy as np

    dt = arr.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and _BIG_ENDIAN):
        return arr.astype(dt.newbyteorder("<"), order="C")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def feed(hasher: Any, arr: np.ndarray[Any, Any]) -> None:
    """Add ``arr``'s canonical bytes (not object, not structured) to a blake3 ``hasher``."""
    import numpy as np

    dt = arr.dtype
    flat = _contiguous_le(arr).reshape(-1)
    kind = dt.kind
    if kind == "f" and dt.itemsize > 8 and np.finfo(dt).nmant == 63:
        # x87 long double: 10 bytes of value, the rest padding that may hold anything.
        rows = flat.view(np.uint8).reshape(-1, dt.itemsize).copy()
        rows[:, 10:] = 0
        flat = rows.reshape(-1).view(dt)
    if kind not in "fc" or not flat.size:
        hasher.update(flat.view(np.uint8))
        return
    parts = flat.view(f"<f{dt.itemsize // 2}") if kind == "c" else flat
    step = max(1, _BLOCK_BYTES // parts.itemsize)
    nan = parts.dtype.type(np.nan)
    with np.errstate(all="ignore"):  # overflow is no NaN; a user's seterr(all="raise") stays out
        for start in range(0, parts.size, step):
            block = parts[start : start + step]
            # A sum is NaN when any element is (or inf meets -inf: then the exact test finds
            # none): ~15% of a blake3 pass, and no copy unless a NaN is really there.
            if np.isnan(np.add.reduce(block)):
                block = block.copy()
                np.copyto(block, nan, where=np.isnan(block))
            hasher.update(block.view(np.uint8))


def array_digest(arr: np.ndarray[Any, Any]) -> str:
    """blake3 hex of ``arr``'s canonical bytes (not object, not structured)."""
    hasher = blake3()
    feed(hasher, arr)
    return str(hasher.hexdigest())


def ndarray_form(arr: np.ndarray[Any, Any]) -> dict[str, Any]:
    """``{"$ndarray": {"dtype": "<f8", "shape": [...], "blake3": hex}}``.

    Object arrays carry ``"values"`` (the elements, C order) instead of ``"blake3"``; structured
    arrays carry ``"fields"`` (``[name, form]`` per field, so padding bytes never count);
    masked arrays add ``"mask"`` and hash 0 under it.
    """
    import numpy as np

    a = np.asarray(arr) if not isinstance(arr, np.ma.MaskedArray) else arr
    header: dict[str, Any] = {"dtype": dtype_name(a.dtype), "shape": list(a.shape)}
    if isinstance(a, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(a)
        data = np.ma.getdata(a)
        a = np.where(mask, np.zeros((), dtype=data.dtype), data)
        header["mask"] = array_digest(mask)
    if a.dtype.names is not None:
        header["fields"] = [[name, ndarray_form(a[name])] for name in a.dtype.names]
    elif a.dtype.hasobject:
        header["values"] = tag_non_finite(a.reshape(-1).tolist())
    else:
        header["blake3"] = array_digest(a)
    return {"$ndarray": header}


def scalar_form(value: Any) -> dict[str, Any]:
    """``{"$numpy": "<i8", "value": 3}``: a numpy scalar keeps its dtype, as arrays do."""
    import numpy as np

    dt = value.dtype
    if dt.kind in "Mm":
        item: Any = int(np.asarray(value).view("<i8")[()])  # NaT is the smallest int64
    elif dt.kind == "V":
        item = bytes_form(value.tobytes())
    else:
        item = value.item()
    return {"$numpy": dtype_name(dt), "value": item}


def _dtype_form(dtype: Any) -> dict[str, str]:
    return {"$numpy.dtype": dtype_name(dtype)}


def rule_for(cls: type) -> Callable[[Any], Any] | None:
    """The rule for a numpy class: arrays, scalars, dtypes."""
    import numpy as np

    if issubclass(cls, np.ndarray):
        return ndarray_form
    if issubclass(cls, np.generic):
        return scalar_form
    if issubclass(cls, np.dtype):
        return _dtype_form
    return None
