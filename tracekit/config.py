"""Modes and configuration, read from environment variables with explicit overrides.

Every invalid value raises :class:`ConfigError` naming the variable (or override), the value
given and what is allowed, so a mistyped deployment setting fails loudly at start-up rather than
silently recording nothing at 3 a.m.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_MAX_CAPTURE_BYTES",
    "DEFAULT_MAX_DETAIL_CHARS",
    "DEFAULT_MAX_ERRORS",
    "DEFAULT_OUT",
    "ENV_BUFFER",
    "ENV_CAPTURE_INPUTS",
    "ENV_DIR",
    "ENV_KEEP",
    "ENV_OUT",
    "ENV_TRACE",
    "ConfigError",
    "Redactor",
    "TraceConfig",
    "TraceMode",
]

ENV_TRACE: Final = "TRACEKIT_TRACE"
ENV_OUT: Final = "TRACEKIT_TRACE_OUT"
ENV_DIR: Final = "TRACEKIT_TRACE_DIR"
ENV_BUFFER: Final = "TRACEKIT_TRACE_BUFFER"
ENV_CAPTURE_INPUTS: Final = "TRACEKIT_TRACE_CAPTURE_INPUTS"
ENV_KEEP: Final = "TRACEKIT_TRACE_KEEP"
ENV_GIT_SHA: Final = ("GIT_SHA", "GITHUB_SHA")

DEFAULT_BUFFER: Final = 20
DEFAULT_OUT: Final = "trace.json"
DEFAULT_MAX_CAPTURE_BYTES: Final = 64 * 1024
DEFAULT_MAX_DETAIL_CHARS: Final = 16 * 1024
DEFAULT_MAX_ERRORS: Final = 100
#: Failed steps (and their parent chains) kept per run beyond the ring; see tracekit.recorder.ring.
DEFAULT_MAX_FAILURES: Final = 100

#: A user hook applied to each captured payload after the key denylist: (payload) -> payload.
Redactor = Callable[[Any], Any]


class ConfigError(ValueError):
    """An invalid configuration value; the message names the setting, the value and what is allowed."""


class TraceMode(enum.Enum):
    """When traces are written: never, when a run fails, or after every run."""

    OFF = "off"
    ON = "on"
    ALWAYS = "always"


_MODES: Final = {"off": TraceMode.OFF, "0": TraceMode.OFF, "on": TraceMode.ON, "1": TraceMode.ON,
                 "always": TraceMode.ALWAYS}
_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off"}


def _parse_mode(name: str, value: Any) -> TraceMode:
    if isinstance(value, TraceMode):
        return value
    if isinstance(value, str) and value.strip().lower() in _MODES:
        return _MODES[value.strip().lower()]
    raise ConfigError(f"{name}={value!r} is not a trace mode; allowed: off, on, always (any case), 0, 1")


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise ConfigError(f"{name}={value!r} is not a boolean; allowed: 1, 0, true, false, yes, no")


def _parse_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not an integer; allowed: an integer >= 1")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        n = int(value.strip())  # "-1" is an integer, only too small
    else:
        raise ConfigError(f"{name}={value!r} is not an integer; allowed: an integer >= 1")
    if n < 1:
        raise ConfigError(f"{name}={value!r} is too small; allowed: an integer >= 1")
    return n


def _parse_path(name: str, value: Any) -> Path:
    if isinstance(value, os.PathLike | str) and str(os.fspath(value)).strip():
        return Path(os.fspath(value))
    raise ConfigError(f"{name}={value!r} is not a path; allowed: a non-empty file system path")


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """Effective configuration of a recorder.

    Build it with :meth:`from_env`; explicit overrides beat the environment. ``out`` is the trace
    file; ``dir`` (history mode) makes one new file per run instead. ``strict`` makes flush
    methods raise write errors instead of only logging them (callbacks still never raise).
    """

    mode: TraceMode = TraceMode.ON
    out: Path = field(default_factory=lambda: Path(DEFAULT_OUT))
    dir: Path | None = None
    buffer: int = DEFAULT_BUFFER
    capture_inputs: bool = False
    keep: int | None = None
    git_sha: str | None = None
    strict: bool = False
    max_capture_bytes: int = DEFAULT_MAX_CAPTURE_BYTES
    max_detail_chars: int = DEFAULT_MAX_DETAIL_CHARS
    max_errors: int = DEFAULT_MAX_ERRORS
    max_failures: int = DEFAULT_MAX_FAILURES
    redact_keys: tuple[str, ...] = ()
    redactor: Redactor | None = None

    def __post_init__(self) -> None:
        # Built directly (TraceConfig(...)) the values were not parsed: check them here, as attrs
        # validators do, so no recorder ever runs on a config that from_env would refuse.
        if not isinstance(self.mode, TraceMode):
            raise ConfigError(f"mode={self.mode!r} is not allowed; allowed: a TraceMode (OFF, ON, ALWAYS)")
        if not isinstance(self.out, Path):
            raise ConfigError(f"out={self.out!r} is not allowed; allowed: a pathlib.Path")
        if self.dir is not None and not isinstance(self.dir, Path):
            raise ConfigError(f"dir={self.dir!r} is not allowed; allowed: a pathlib.Path or None")
        for name in ("buffer", "max_capture_bytes", "max_detail_chars", "max_errors", "max_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is not allowed; allowed: an integer >= 1")
        if self.keep is not None and (isinstance(self.keep, bool) or not isinstance(self.keep, int)
                                      or self.keep < 1):
            raise ConfigError(f"keep={self.keep!r} is not allowed; allowed: an integer >= 1 or None")
        for name in ("capture_inputs", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not allowed; allowed: True or False")
        if self.git_sha is not None and not isinstance(self.git_sha, str):
            raise ConfigError(f"git_sha={self.git_sha!r} is not allowed; allowed: a string or None")
        if not isinstance(self.redact_keys, tuple) or not all(isinstance(k, str) for k in self.redact_keys):
            raise ConfigError(f"redact_keys={self.redact_keys!r} is not allowed; allowed: a tuple of strings")
        if self.redactor is not None and not callable(self.redactor):
            raise ConfigError(f"redactor={self.redactor!r} is not callable; allowed: a callable or None")

    @property
    def enabled(self) -> bool:
        return self.mode is not TraceMode.OFF

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> TraceConfig:
        """Read every ``TRACEKIT_TRACE*`` variable, then apply ``overrides`` (field names)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if (raw := env.get(ENV_TRACE)) is not None and raw.strip():
            values["mode"] = _parse_mode(ENV_TRACE, raw)
        if (raw := env.get(ENV_OUT)) is not None and raw != "":
            values["out"] = _parse_path(ENV_OUT, raw)
        if (raw := env.get(ENV_DIR)) is not None and raw != "":
            values["dir"] = _parse_path(ENV_DIR, raw)
        if "out" in values and "dir" in values and not ({"out", "dir"} & overrides.keys()):
            raise ConfigError(
                f"{ENV_OUT}={env[ENV_OUT]!r} and {ENV_DIR}={env[ENV_DIR]!r} are both set; "
                "allowed: one of them (a single trace file, or a history directory)"
            )
        if (raw := env.get(ENV_BUFFER)) is not None and raw.strip():
            values["buffer"] = _parse_positive_int(ENV_BUFFER, raw)
        if (raw := env.get(ENV_CAPTURE_INPUTS)) is not None and raw.strip():
            values["capture_inputs"] = _parse_bool(ENV_CAPTURE_INPUTS, raw)
        if (raw := env.get(ENV_KEEP)) is not None and raw.strip():
            values["keep"] = _parse_positive_int(ENV_KEEP, raw)
        for var in ENV_GIT_SHA:
            if env.get(var):
                values["git_sha"] = env[var].strip()
                break
        if "out" in overrides and "dir" not in overrides:
            values.pop("dir", None)
        if "dir" in overrides and "out" not in overrides:
            values.pop("out", None)
        values.update(overrides)
        return cls.create(**values)

    @classmethod
    def create(cls, **values: Any) -> TraceConfig:
        """Build a config from field values, checking each one (strings are parsed as env values)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown TraceConfig option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        v = dict(values)
        if "mode" in v:
            v["mode"] = _parse_mode("mode", v["mode"])
        if v.get("out") is not None:
            v["out"] = _parse_path("out", v["out"])
        elif "out" in v:
            del v["out"]
        if v.get("dir") is not None:
            v["dir"] = _parse_path("dir", v["dir"])
        if "out" in values and values.get("out") is not None and v.get("dir") is not None:
            raise ConfigError(
                f"out={values['out']!r} and dir={values['dir']!r} are both set; "
                "allowed: one of them (a single trace file, or a history directory)"
            )
        for name in ("buffer", "max_capture_bytes", "max_detail_chars", "max_errors", "max_failures"):
            if name in v:
                v[name] = _parse_positive_int(name, v[name])
        if v.get("keep") is not None:
            v["keep"] = _parse_positive_int("keep", v["keep"])
        for name in ("capture_inputs", "strict"):
            if name in v:
                v[name] = _parse_bool(name, v[name])
        if "redact_keys" in v:
            keys = v["redact_keys"]
            if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
                raise ConfigError(f"redact_keys={keys!r}; allowed: a sequence of strings")
            v["redact_keys"] = tuple(k.lower() for k in keys)
        if v.get("redactor") is not None and not callable(v["redactor"]):
            raise ConfigError(f"redactor={v['redactor']!r} is not callable; allowed: a callable or None")
        return cls(**v)

    def describe(self) -> dict[str, Any]:
        """The effective settings as JSON-able data (used by ``tracekit env``)."""
        return {
            "mode": self.mode.value,
            "out": None if self.dir is not None else str(self.out),
            "dir": None if self.dir is None else str(self.dir),
            "buffer": self.buffer,
            "capture_inputs": self.capture_inputs,
            "keep": self.keep,
            "git_sha": self.git_sha,
            "strict": self.strict,
            "max_capture_bytes": self.max_capture_bytes,
            "max_detail_chars": self.max_detail_chars,
            "max_errors": self.max_errors,
            "max_failures": self.max_failures,
            "redact_keys": list(self.redact_keys),
        }
