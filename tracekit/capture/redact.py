"""Redaction and size caps for captured inputs.

Capture is off by default. When on, every key whose lower-cased name contains a denylist word is
replaced by :data:`REDACTED`, at any depth and inside lists; over-redacting is the safe side.
Hashes are always computed on the original payload, never on the redacted copy.

Redaction sees every container hashing walks: a value that is not a dict, list, tuple or set is
walked as its canonical form (:mod:`tracekit.capture.canonical`), so the fields of mappings of
any kind, namedtuples, dataclasses, attrs classes, pydantic models and objects' state are keys
too; frames, arrays and tables become previews (:mod:`tracekit.capture.preview`) whose
secret-named columns are masked.
"""

from __future__ import annotations

import datetime
import functools
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from tracekit.capture.canonical import canonical_form, safe_repr_form
from tracekit.capture.hashing import canonical_json, hash_object, resolve_digest
from tracekit.capture.preview import Placement, placement, preview
from tracekit.capture.tags import REDACTED

__all__ = [
    "DENYLIST",
    "REDACTED",
    "Capture",
    "capture_payload",
    "is_secret_key",
    "redact",
]

DENYLIST: Final[tuple[str, ...]] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "auth",  # also authorization, oauth
    "cookie",
    "session",
    "credential",  # also credentials
    "private_key",
    "privatekey",
    "signature",
    "bearer",
    "jwt",
    "ssn",
    "card_number",
    "cvv",
)

_MAX_DEPTH: Final = 64
_PLAIN: Final = (str, int, float, bool)
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})  # exact types only
_CONTAINERS: Final = (dict, list, tuple, set, frozenset)  # a tuple: isinstance with X | Y is slower
_EXACT_CONTAINERS: Final = frozenset(_CONTAINERS)
#: Leaves orjson writes natively (datetime is a date): kept as they are, like scalars.
_LEAVES: Final = (*_PLAIN, datetime.date, datetime.time, uuid.UUID)


_KEY_CACHE_SIZE: Final = 4096


class _SecretKeys:
    """Which keys are secret, for one set of extra words; answers are cached per key.

    Payloads of one runner reuse the same few keys, so after the first call a key costs one
    dict look-up instead of a lower-casing and a regex search.
    """

    __slots__ = ("_answers", "_search")

    def __init__(self, extra: tuple[str, ...]) -> None:
        # One compiled alternation: ~5x faster than testing each word in turn.
        words = sorted({*DENYLIST, *(w.lower() for w in extra if w)}, key=len, reverse=True)
        self._search = re.compile("|".join(map(re.escape, words))).search
        self._answers: dict[str, bool] = {}

    def __call__(self, key: Any) -> bool:
        text = key if type(key) is str else str(key)
        answer = self._answers.get(text)
        if answer is None:
            answer = self._search(text.lower()) is not None
            if len(self._answers) >= _KEY_CACHE_SIZE:
                self._answers.clear()
            self._answers[text] = answer
        return answer


@functools.lru_cache(maxsize=64)
def _secret_keys(extra: tuple[str, ...]) -> _SecretKeys:
    return _SecretKeys(extra)


def is_secret_key(key: object, extra: Iterable[str] = ()) -> bool:
    return _secret_keys(tuple(extra))(key)


def redact(value: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with secret keys masked; containers are copied, leaves shared."""
    return _redact(value, extra)[0]


def _honest(v: Any) -> bool:
    try:
        return v.__class__ is type(v)
    except Exception:
        return False


def _redact(value: Any, extra: Iterable[str]) -> tuple[Any, bool]:
    """:func:`redact`, and whether a preview in it left something out."""
    is_secret = _secret_keys(extra if type(extra) is tuple else tuple(extra))
    seen: set[int] = set()
    cut = False

    def walk(v: Any, depth: int) -> Any:
        if type(v) not in _EXACT_CONTAINERS and (
            not _honest(v) or not isinstance(v, _CONTAINERS) or isinstance(v, tuple)
        ):
            return leaf(v, depth)  # a namedtuple is its fields, not a list
        if id(v) in seen:
            return "[cycle]"
        if depth >= _MAX_DEPTH:
            return "[too deep]"
        seen.add(id(v))
        try:
            # Scalars are kept as they are without a call: most of a payload is scalars.
            if isinstance(v, dict):
                return {
                    k: REDACTED if is_secret(k)
                    else x if type(x) in _SCALARS else walk(x, depth + 1)
                    for k, x in list(v.items())
                }
            return [x if type(x) in _SCALARS else walk(x, depth + 1) for x in list(v)]
        finally:
            seen.discard(id(v))

    def leaf(v: Any, depth: int) -> Any:
        nonlocal cut
        if not _honest(v):
            return safe_repr_form(v)
        if v is None or isinstance(v, _LEAVES):
            return v
        if id(v) in seen:
            return "[cycle]"
        if depth >= _MAX_DEPTH:
            return "[too deep]"
        seen.add(id(v))
        try:
            if placement(v) is Placement.PREVIEW:
                shown = preview(v, is_secret)
                cut = cut or shown.get("truncated") is True
                return walk(shown, depth + 1)
            # Anything else is written as the form it hashes as: fields, items or state, whose
            # keys can be secrets too (a LoginRequest's password, a namedtuple's token).
            return walk(canonical_form(v), depth + 1)
        finally:
            seen.discard(id(v))

    return walk(value, 0), cut


class Capture:
    """A captured, redacted and capped payload, ready to be written as JSON."""

    __slots__ = ("data", "replay", "truncated")

    def __init__(self, data: bytes, truncated: bool) -> None:
        self.data = data
        self.truncated = truncated
        #: The step's ``replay`` object (tracekit.trace.replayable), set where the runner knows
        #: the callable. It rides on the capture because it exists exactly when inputs are captured.
        self.replay: dict[str, Any] | None = None

    def fragment(self) -> orjson.Fragment:
        return orjson.Fragment(self.data)


def capture_payload(
    payload: Any,
    *,
    input_src: bytes,
    max_bytes: int,
    extra_keys: Iterable[str] = (),
    redactor: Callable[[Any], Any] | None = None,
) -> Capture:
    """Redact ``payload`` and serialize it canonically; over ``max_bytes`` it becomes a marker.

    ``input_src`` is the payload's :func:`~tracekit.capture.hashing.hash_source`; the marker of a cut
    payload carries the original's hash, so its blake3 runs only then. ``truncated`` is also
    set when a frame or array in it is only a preview of its first rows.
    """
    cut = False
    try:
        safe, cut = _redact(payload, extra_keys)
        if redactor is not None:
            safe = redactor(safe)
        data = canonical_json(safe)
    except Exception as exc:
        data = orjson.dumps({"$capture_error": type(exc).__qualname__})
    if len(data) <= max_bytes:
        return Capture(data, cut)
    marker = {
        "$truncated": True,
        "original_bytes": len(data),
        "hash": hash_object(resolve_digest(input_src)),
        "preview": data[: min(256, max_bytes // 4)].decode("utf-8", "replace"),
    }
    return Capture(orjson.dumps(marker), True)
