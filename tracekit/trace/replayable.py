"""What a step keeps so ``tracekit replay`` can call its node again: the ``replay`` object.

``{callable: "module:qualname", source_file?, args_kind, stored?, not_replayable?}``:

- ``callable`` names the node's function; ``source_file`` is its file when the module is
  ``__main__`` (a pipeline script), so replay can import the script under another name.
- ``args_kind`` says how the captured payload is passed back: ``params`` (a mapping of parameter
  name to value, bound again by the function's signature), ``args_kwargs`` (``{args, kwargs}``,
  as the Celery adapter captures) or ``pytest`` (the step is a test, re-run by its node id).
- ``stored`` maps a parameter to its side-store file (``tracekit.trace.store``): arrays and
  frames always (as ``.npy`` / ``.arrow``), JSON values when the payload is over the inline cap.
  The inline payload holds ``{"$store": "<file>"}`` in its place, so it stays readable.
- ``not_replayable`` maps a parameter to why its captured form is not the value the callable took
  (a datetime is captured as text, a dataclass as its fields): replay refuses rather than guess.

Secret parameters (by the redaction denylist) are never stored: they stay redacted inline, and
replay asks for them with ``--set``.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from tracekit.capture.hashing import canonical_json
from tracekit.capture.redact import Capture, capture_payload, is_secret_key, redact
from tracekit.trace import store

__all__ = ["ARGS_KINDS", "build", "callable_ref", "json_native"]

ARGS_KINDS: Final = ("params", "args_kwargs", "pytest")
_INT_RANGE: Final = (-(2**63), 2**64)
_MAX_DEPTH: Final = 200


def callable_ref(func: Any) -> dict[str, str] | None:
    """``{callable, source_file?}`` for ``func``, or None when it has no importable name."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or not module or not qualname:
        return None
    ref = {"callable": f"{module}:{qualname}"}
    if module == "__main__":
        source: str | None = None
        try:
            source = inspect.getsourcefile(func)
        except TypeError:
            source = None
        source = source or getattr(sys.modules.get("__main__"), "__file__", None)
        if isinstance(source, str) and source:
            ref["source_file"] = os.path.abspath(source)
    return ref


def json_native(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` loads back from its JSON exactly (same types, same value)."""
    t = type(value)
    if value is None or t is str or t is bool:
        return True
    if t is int:
        return bool(_INT_RANGE[0] <= value < _INT_RANGE[1])
    if t is float:
        return math.isfinite(value)
    if depth >= _MAX_DEPTH:
        return False
    if t is list:
        return all(json_native(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and json_native(v, depth + 1) for k, v in value.items())
    return False


def _type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def _secret_columns(value: Any, extra: tuple[str, ...]) -> list[str]:
    names = value.columns if hasattr(value, "columns") else getattr(value, "column_names", ())
    return [str(c) for c in names if is_secret_key(str(c), extra)]


def build(
    ref: dict[str, str],
    args_kind: str,
    payload: Any,
    capture: Capture,
    *,
    input_src: bytes,
    trace_dir: Path,
    max_bytes: int,
    extra_keys: Iterable[str] = (),
    redactor: Callable[[Any], Any] | None = None,
) -> Capture:
    """The capture to keep for a replayable step: ``capture`` itself, or a new one whose payload
    has side-store placeholders; either way with its ``replay`` object set.

    May raise (an unwritable store): the caller keeps the plain capture then.
    """
    replay: dict[str, Any] = {**ref, "args_kind": args_kind}
    if args_kind != "params" or not isinstance(payload, dict):
        if args_kind == "args_kwargs" and not json_native(payload):
            replay["not_replayable"] = {"args": "not JSON-native: captured as its JSON form, not its type"}
        capture.replay = replay
        return capture
    extra = tuple(extra_keys)
    stored: dict[str, dict[str, str]] = {}
    lossy: dict[str, str] = {}
    inline: dict[str, Any] = dict(payload)
    directory = store.store_dir(trace_dir)
    for name, value in payload.items():
        if not isinstance(name, str) or is_secret_key(name, extra):
            continue  # redacted inline; replay asks for it
        kind = store.typed_kind(value)
        if kind is not None:
            secret = _secret_columns(value, extra)
            if secret:
                lossy[name] = f"{kind} with secret column(s) {', '.join(secret)}: not stored"
                continue
            try:
                fmt, data = store.encode(value, kind)
            except (ValueError, TypeError) as exc:
                lossy[name] = f"{kind} with no pickle-free form ({exc})"
                continue
            file = store.put(directory, fmt, data)
            stored[name] = {"file": file, "type": kind}
            inline[name] = {"$store": file}
        elif not json_native(value):
            lossy[name] = f"{_type_name(value)}: captured as its JSON form, not as its type"
    if capture.truncated or stored:
        # Over the cap: the biggest JSON values go to the store until the rest fits.
        sizes = sorted(
            ((len(canonical_json(v)), k) for k, v in inline.items()
             if k not in stored and k not in lossy and isinstance(k, str) and not is_secret_key(k, extra)),
            reverse=True,
        )
        for _, name in sizes:
            if len(canonical_json(redact(inline, extra))) <= max_bytes:
                break
            file = store.put(directory, "json", canonical_json(redact(payload[name], extra)))
            stored[name] = {"file": file, "type": "json"}
            inline[name] = {"$store": file}
        capture = capture_payload(
            inline, input_src=input_src, max_bytes=max_bytes, extra_keys=extra, redactor=redactor
        )
    if stored:
        replay["stored"] = stored
    if lossy:
        replay["not_replayable"] = lossy
    capture.replay = replay
    return capture
