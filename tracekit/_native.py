"""Whether tracekit's compiled helpers (``tracekit._speedups``, built from ``_speedups.c``) run.

They are optional and give the same results as the Python code they replace, only faster; see
README "Performance". ``TRACEKIT_PURE_PYTHON=1`` rules them out (to compare, or when debugging):
read when a recorder is made for its callbacks, and when tracekit is imported for hashing.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Final

__all__ = ["PURE_PYTHON_ENV", "built", "forced_pure", "in_use"]

#: Set to ``1`` to run the pure-Python code even where the compiled helpers were built.
PURE_PYTHON_ENV: Final = "TRACEKIT_PURE_PYTHON"


def built() -> ModuleType | None:
    """The compiled module, or None where it was not built."""
    try:
        from tracekit import _speedups
    except ImportError:
        return None
    return _speedups


def forced_pure() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "").strip() == "1"


def in_use() -> ModuleType | None:
    """The compiled module if it was built and is not ruled out now."""
    return None if forced_pure() else built()
