"""Whether tracekit's compiled helpers (``tracekit._speedups``, built from ``_speedups.c``) run.

They are optional and give the same results as the Python code they replace, only faster; see
README "Performance". ``TRACEKIT_PURE_PYTHON=1`` rules them out (to compare, or when debugging):
read when a recorder is made for its callbacks, and when tracekit is imported for hashing.

The module is used only when it is safe to:

- its ``ABI_VERSION`` must equal :data:`ABI_VERSION` (a ``.so`` built from older C, left behind
  by ``git pull`` on an editable install, is not used);
- not on a free-threaded CPython (``sys._is_gil_enabled()`` False, or a ``Py_GIL_DISABLED``
  build): importing a single-phase-init extension there turns the GIL back on for the whole
  process, so it is not even imported;
- once installing its callbacks failed (:func:`give_up`), it is not tried again.

A stale or failing module means pure Python with **one** warning on the ``tracekit`` logger;
"not built" and free-threading are normal, and silent. The answer is worked out once per
process (:func:`reset` works it out again, for tests).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import sysconfig
from types import ModuleType
from typing import Final

__all__ = [
    "ABI_VERSION",
    "PURE_PYTHON_ENV",
    "NativeState",
    "built",
    "forced_pure",
    "free_threaded",
    "give_up",
    "in_use",
    "reset",
    "restore",
    "snapshot",
    "why_not",
]

#: Set to ``1`` to run the pure-Python code even where the compiled helpers were built.
PURE_PYTHON_ENV: Final = "TRACEKIT_PURE_PYTHON"
#: What ``_speedups.c`` must say in its ``ABI_VERSION``; bump both whenever the interface between
#: them changes (HotPath's keywords, the module's functions, the field orders).
ABI_VERSION: Final = 2

_log = logging.getLogger("tracekit")

#: (the module or None, why not, whether a warning was given); None until first asked.
NativeState = tuple[ModuleType | None, str, bool]
_state: list[NativeState] = []


def free_threaded() -> bool:
    """Whether this CPython runs, or was built to run, without the GIL."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is not None and not is_gil_enabled():
        return True
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _load() -> NativeState:
    if free_threaded():
        return None, "free-threaded CPython (the extension would turn the GIL back on)", False
    try:
        _speedups = importlib.import_module("tracekit._speedups")
    except ModuleNotFoundError as exc:
        if exc.name not in ("tracekit._speedups", "tracekit"):
            return _warn(f"tracekit._speedups could not be imported ({exc})")
        return None, "C speedups not built", False
    except ImportError as exc:  # a .so for another interpreter, a missing symbol
        return _warn(f"tracekit._speedups could not be imported ({exc})")
    abi = getattr(_speedups, "ABI_VERSION", None)
    if type(abi) is not int or abi != ABI_VERSION:
        where = getattr(_speedups, "__file__", None) or "tracekit._speedups"
        return _warn(f"{where} has ABI {abi!r}, this tracekit needs ABI {ABI_VERSION} "
                     "(a stale build: reinstall, e.g. `pip install -e .`)")
    return _speedups, "", False


def _warn(reason: str) -> NativeState:
    _log.warning("tracekit: compiled speedups not used: %s; running pure Python", reason)
    return None, reason, True


def _current() -> NativeState:
    if not _state:
        _state.append(_load())
    return _state[0]


def built() -> ModuleType | None:
    """The compiled module, or None where it was not built or must not be used (see above)."""
    return _current()[0]


def why_not() -> str:
    """Why :func:`built` is None (empty when it is not)."""
    return _current()[1]


def give_up(reason: str) -> None:
    """Stop using the compiled module (installing its callbacks failed); warn once."""
    module, _, warned = _current()
    if module is None:
        return
    if not warned:
        _log.warning("tracekit: compiled callbacks could not be installed (%s); running pure Python", reason)
    _state[0] = (None, f"compiled callbacks could not be installed ({reason})", True)


def forced_pure() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "").strip() == "1"


def in_use() -> ModuleType | None:
    """The compiled module if it was built and is not ruled out now."""
    return None if forced_pure() else built()


def snapshot() -> NativeState | None:
    """The current answer (None: not worked out yet), for :func:`restore`."""
    return _state[0] if _state else None


def restore(state: NativeState | None) -> None:
    _state.clear()
    if state is not None:
        _state.append(state)


def reset() -> None:
    """Forget the answer: the next question imports and checks the module again."""
    _state.clear()
