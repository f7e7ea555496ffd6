"""The small tagged objects that stand for values JSON cannot hold; shared by every form."""

from __future__ import annotations

import base64
import math
from typing import Any, Final

__all__ = ["REDACTED", "bytes_form", "non_finite_form", "qualname", "tag_non_finite"]

#: What a secret becomes in a capture.
REDACTED: Final = "[REDACTED]"


def qualname(obj: Any) -> str:
    """``module.QualName`` of ``type(obj)``."""
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def non_finite_form(value: float) -> dict[str, str]:
    """NaN and the infinities, which orjson writes as null: ``{"$float": "nan" | "inf" | "-inf"}``."""
    return {"$float": "nan" if value != value else ("inf" if value > 0 else "-inf")}


def bytes_form(value: Any) -> dict[str, str]:
    """``{"$bytes": "<base64>"}`` for bytes, bytearray, memoryview and other buffers."""
    return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}


def tag_non_finite(values: list[Any]) -> list[Any]:
    """``values`` with its NaN and infinite floats tagged at the top level.

    For the element lists of object columns and arrays: they can be far past the size up to
    which hashing looks for NaN hidden behind a null, and a missing value there is common.
    """
    return [
        non_finite_form(x) if isinstance(x, float) and not math.isfinite(x) else x for x in values
    ]
