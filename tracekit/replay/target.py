"""Finding the node's callable in the user's own code, as ``pytest`` would find a test.

``sys.path`` gets the working directory and, for a script (``__main__``), the script's
directory (pytest's rootdir insertion). A script is imported under another module name, so its
``if __name__ == "__main__":`` block does not run; its top-level code does, as any import's would.
The ``recorder.step`` layer of a decorated function is stepped over (replay never records);
other decorators stay, since they are part of what the node did.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Final

from tracekit.replay.plan import Problem

__all__ = ["SCRIPT_MODULE", "NotImportable", "resolve"]

#: The name a ``__main__`` script is imported under while it is replayed.
SCRIPT_MODULE: Final = "__tracekit_replay_main__"


class NotImportable(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _fail(ref: str, why: str, fix: str) -> NotImportable:
    return NotImportable(Problem("not_importable", f"callable {ref} cannot be imported: {why}", fix))


def _add_path(directory: str) -> None:
    if directory not in sys.path:
        sys.path.insert(0, directory)


def _import_script(ref: str, source_file: str) -> Any:
    path = Path(source_file)
    if not path.is_file():
        raise _fail(ref, f"its script {source_file} is not there",
                    "replay on the machine and checkout that ran it, or copy the script back")
    _add_path(str(path.parent))
    spec = importlib.util.spec_from_file_location(SCRIPT_MODULE, path)
    if spec is None or spec.loader is None:
        raise _fail(ref, f"{source_file} is not a Python file", "point the step at the script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[SCRIPT_MODULE] = module
    spec.loader.exec_module(module)
    return module


def resolve(ref: str, source_file: str | None) -> Any:
    """The function named ``module:qualname`` (unwrapped of tracekit's step layer)."""
    module_name, _, qualname = ref.partition(":")
    if "<locals>" in qualname.split("."):
        raise _fail(ref, "it is defined inside a function",
                    "define the node at module level so it can be imported")
    _add_path(os.getcwd())
    try:
        if module_name == "__main__":
            if source_file is None:
                raise _fail(ref, "the trace does not say which script was __main__",
                            "record it again with this tracekit (it records the script's path)")
            module = _import_script(ref, source_file)
        else:
            module = importlib.import_module(module_name)
    except NotImportable:
        raise
    except Exception as exc:
        what = source_file if module_name == "__main__" else module_name
        raise _fail(ref, f"importing {what} raised {type(exc).__name__}: {exc}",
                    "run replay from the project's directory (or set PYTHONPATH), in its environment",
                    ) from None
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _fail(ref, f"{module_name} has no {qualname}",
                        "was it renamed or moved? record a new trace with the current code",
                        ) from None
    while getattr(obj, "__tracekit_step__", False) and hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    if not callable(obj):
        raise _fail(ref, f"{qualname} is a {type(obj).__name__}, not a function", "name a function")
    return obj
