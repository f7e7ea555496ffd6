"""The side store: captured inputs too big for the trace, or typed (arrays, frames), kept beside it.

Traces are sent between people, so nothing here is ever pickled: JSON as JSON, numpy arrays as
``.npy`` (``allow_pickle=False`` both ways, so object arrays are refused), pandas frames and Arrow
tables as Arrow IPC files (``.arrow``). Files are named by the blake3 of their bytes, so the same
value captured by many runs is stored once; each is written atomically with mode 0600.

Retention: after a new file is written, the oldest files (by modification time; a file stored
again is touched) are removed until the store holds at most :data:`MAX_STORE_BYTES`; the file just
written is never removed. Only files named ``<64 hex>.<json|npy|arrow>`` are ever considered.

Where: ``<trace dir>/.tracekit-store/``, the trace dir being the history directory or the parent
of the trace file (the working directory when the trace goes to stdout).

This module does not depend on the data-type hashing registry: it only needs the bytes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any, Final

import orjson
from blake3 import blake3

from tracekit.trace.sink import atomic_write

__all__ = [
    "FORMATS",
    "MAX_STORE_BYTES",
    "STORE_DIRNAME",
    "StoreError",
    "encode",
    "load",
    "put",
    "store_dir",
    "typed_kind",
]

STORE_DIRNAME: Final = ".tracekit-store"
#: The store's bound: the newest files up to this many bytes are kept.
MAX_STORE_BYTES: Final = 256 * 1024 * 1024
#: format -> file extension
FORMATS: Final = {"json": ".json", "npy": ".npy", "arrow": ".arrow"}
_NAME: Final = re.compile(r"^[0-9a-f]{64}\.(json|npy|arrow)$")


class StoreError(Exception):
    """A stored value that cannot be read back (missing, altered, of an unknown format)."""


def store_dir(trace_dir: Path) -> Path:
    return trace_dir / STORE_DIRNAME


def typed_kind(value: Any) -> str | None:
    """``numpy.ndarray``, ``pandas.DataFrame`` or ``pyarrow.Table`` when ``value`` is one, else None.

    Checked by the type's module and name, so nothing is imported for a value of another type.
    """
    t = type(value)
    name = f"{t.__module__.split('.', 1)[0]}.{t.__qualname__}"
    return name if name in ("numpy.ndarray", "pandas.DataFrame", "pyarrow.Table") else None


def encode(value: Any, kind: str | None) -> tuple[str, bytes]:
    """``(format, bytes)`` of ``value``: typed kinds as npy/arrow, anything else as JSON bytes.

    Raises ValueError for a value that has no pickle-free form (an object-dtype array).
    """
    if kind == "numpy.ndarray":
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return "npy", buf.getvalue()
    if kind in ("pandas.DataFrame", "pyarrow.Table"):
        import pyarrow as pa

        table = pa.Table.from_pandas(value) if kind == "pandas.DataFrame" else value
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return "arrow", sink.getvalue().to_pybytes()
    if isinstance(value, bytes):
        return "json", value  # already canonical JSON
    return "json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def put(directory: Path, fmt: str, data: bytes, *, max_bytes: int = MAX_STORE_BYTES) -> str:
    """Store ``data`` (of ``fmt``) in ``directory``; returns its file name ``<blake3 hex><ext>``."""
    name = blake3(data).hexdigest() + FORMATS[fmt]
    target = directory / name
    if target.is_file():
        with contextlib.suppress(OSError):
            os.utime(target)  # stored again: newest for retention
        return name
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(target, data, mode=0o600)
    _retain(directory, max_bytes, keep=name)
    return name


def _retain(directory: Path, max_bytes: int, keep: str) -> None:
    entries: list[tuple[float, int, Path]] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if _NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                entries.append((st.st_mtime, st.st_size, Path(entry.path)))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path.name == keep:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size


def load(directory: Path, name: str, kind: str | None) -> Any:
    """The value stored as ``name``, as the type it was captured as (``kind``); never unpickles.

    Raises :class:`StoreError` when the file is missing, not named as the store names files,
    or its bytes no longer match its name.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(f"{name!r} is not a side-store file name")
    path = directory / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"stored input {path} cannot be read ({exc.strerror or exc})") from None
    if blake3(data).hexdigest() != name.split(".", 1)[0]:
        raise StoreError(f"stored input {path} was altered (its bytes no longer match its name)")
    fmt = name.rsplit(".", 1)[1]
    if fmt == "json":
        return orjson.loads(data)
    if fmt == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    import pyarrow as pa

    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    return table.to_pandas() if kind == "pandas.DataFrame" else table
