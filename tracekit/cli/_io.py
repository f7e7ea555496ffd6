"""Reading trace files for the command line, and the exit-code conventions every command shares.

Every command reads traces through :func:`load_trace`, which turns every way a file can be wrong
(missing, a directory, empty, truncated, binary, not UTF-8, too many values to hold in memory, a
key given twice, not an object, written by a newer tracekit) into one :class:`TraceLoadError`
with a ``file: /pointer: message`` form, so no user mistake ever ends in a Python traceback and
every command refuses the same files the same way. It only parses and checks the version;
schema and semantic checks are ``tracekit validate``'s job.

Threading contract: the functions here hold no state and may be called from any thread.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Final, NoReturn

import click
import orjson

from tracekit.cli._strict_json import MAX_TRACE_VALUES, count_values, duplicate_key
from tracekit.trace.check import newer_version, newer_version_message

__all__ = [
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_PRINT_DEPTH",
    "MAX_TRACE_BYTES",
    "TraceLoadError",
    "dump_json",
    "exit_for",
    "fail",
    "load_trace",
    "problem_line",
]

EXIT_OK: Final = 0
#: Some input is not a valid trace (malformed JSON and empty files included), or traces differ.
EXIT_INVALID: Final = 1
#: A usage error, or a path that cannot be read at all.
EXIT_USAGE: Final = 2

#: Larger files are refused rather than read: a trace is the last N steps, never gigabytes.
MAX_TRACE_BYTES: Final = 512 * 1024 * 1024

#: orjson writes at most 254 levels; deeper parts of a trace are elided when a command prints JSON.
MAX_PRINT_DEPTH: Final = 200

_BOMS: Final = (
    (b"\xef\xbb\xbf", "UTF-8"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


class TraceLoadError(Exception):
    """A file that is not a readable JSON object.

    ``unreadable`` is True when the path cannot be read at all (missing, a directory, no
    permission: exit 2) and False when it was read but is not a trace (exit 1).
    """

    def __init__(
        self, path: Path, message: str, *, pointer: str = "", unreadable: bool = False, rule: str = "load"
    ) -> None:
        super().__init__(message)
        self.path = path
        self.pointer = pointer
        self.message = message
        self.unreadable = unreadable
        self.rule = rule  # as in SchemaProblem.rule: "load", "duplicate_key", "trace_version"

    def __str__(self) -> str:
        return problem_line(self.path, self.pointer, self.message)


def problem_line(path: Path | str, pointer: str, message: str) -> str:
    """The one line format every command uses for a problem: ``file: /json/pointer: message``."""
    return f"{path}: {pointer or '/'}: {message}"


def _read(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise TraceLoadError(path, "is a directory, not a trace file", unreadable=True)
        size = path.stat().st_size
        if size > MAX_TRACE_BYTES:
            raise TraceLoadError(
                path, f"file is {size} bytes; allowed: at most {MAX_TRACE_BYTES} bytes for a trace"
            )
        return path.read_bytes()
    except TraceLoadError:
        raise
    except FileNotFoundError:
        raise TraceLoadError(path, "no such file", unreadable=True) from None
    except PermissionError:
        raise TraceLoadError(path, "permission denied: cannot read the file", unreadable=True) from None
    except OSError as exc:
        reason = exc.strerror or os.strerror(exc.errno or errno.EIO)
        raise TraceLoadError(path, f"cannot read the file: {reason}", unreadable=True) from None


def _decode_problem(data: bytes) -> str | None:
    """A plain-words reason why ``data`` is not UTF-8 JSON text, checked before parsing."""
    if not data:
        return "empty file; a trace is a JSON object"
    if not data.strip():
        return "file holds only whitespace; a trace is a JSON object"
    for bom, name in _BOMS:
        if data.startswith(bom):
            return f"file starts with a {name} byte order mark; a trace is UTF-8 JSON without one"
    if b"\x00" in data[:4096]:
        return "binary data (NUL bytes), not JSON text"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 at byte {exc.start}; a trace is UTF-8 JSON"
    return None


def _json_problem(exc: orjson.JSONDecodeError) -> str:
    where = f"line {exc.lineno}, column {exc.colno}"
    reason = exc.msg
    if "end of data" in reason or "EOF" in reason:
        return f"truncated JSON: the file ends before the document does ({where})"
    if "depth" in reason or "recursion" in reason.lower():
        return f"JSON nested too deeply to read ({where})"
    if "infinity" in reason:
        return f"a number too large for a double ({where})"
    return f"not valid JSON: {reason} ({where})"


_KIND: Final = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def load_trace(path: Path) -> dict[str, Any]:
    """Read and parse ``path``; return the top-level JSON object. Does not schema-validate.

    Raises :class:`TraceLoadError` for every way the file can fail to be a JSON object.
    """
    data = _read(path)
    reason = _decode_problem(data)
    if reason is not None:
        raise TraceLoadError(path, reason)
    values = count_values(data)
    if values > MAX_TRACE_VALUES:
        raise TraceLoadError(path, f"holds about {values:,} JSON values; allowed: at most "
                             f"{MAX_TRACE_VALUES:,} (a trace is the last N steps, not a data dump)",
                             rule="size")
    repeated = duplicate_key(data)
    if repeated is not None:
        at, key = repeated
        raise TraceLoadError(path, f"the key {key!r} appears twice in the object at {at or '/'}; allowed: "
                             "each key once (JSON readers disagree on which value counts)",
                             pointer=f"{at}/{_escape(key)}", rule="duplicate_key")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TraceLoadError(path, _json_problem(exc)) from None
    del data
    if not isinstance(doc, dict):
        kind = "null" if doc is None else _KIND.get(type(doc), type(doc).__name__)
        raise TraceLoadError(path, f"the top level is {kind}; a trace is a JSON object")
    if (version := newer_version(doc)) is not None:
        raise TraceLoadError(path, newer_version_message(version), pointer="/trace_version",
                             rule="trace_version")
    return doc


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _clip(value: Any, depth: int) -> Any:
    if isinstance(value, dict):
        if depth >= MAX_PRINT_DEPTH:
            return f"[object nested deeper than {MAX_PRINT_DEPTH} levels, not printed]"
        return {k: _clip(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth >= MAX_PRINT_DEPTH:
            return f"[array nested deeper than {MAX_PRINT_DEPTH} levels, not printed]"
        return [_clip(v, depth + 1) for v in value]
    return value


def dump_json(value: Any, *, indent: bool = True) -> str:
    """``value`` as JSON text for output; parts nested too deeply for orjson are elided, not fatal.

    A trace may hold a payload nested up to the reader's limit (1024) while orjson writes only
    254 levels; a command must still print the rest.
    """
    option = orjson.OPT_INDENT_2 if indent else 0
    try:
        return orjson.dumps(value, option=option, default=repr).decode()
    except TypeError:  # orjson.JSONEncodeError: nesting beyond its limit
        return orjson.dumps(_clip(value, 0), option=option, default=repr).decode()


def exit_for(*, invalid: bool = False, unreadable: bool = False) -> int:
    """The exit code for a command's findings: unreadable input beats invalid input."""
    if unreadable:
        return EXIT_USAGE
    return EXIT_INVALID if invalid else EXIT_OK


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``: the end of a user's mistake, no traceback."""
    click.echo(f"tracekit: {message}", err=True)
    raise click.exceptions.Exit(code)
