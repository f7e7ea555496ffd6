"""Canonical JSON and blake3 hashes of inputs and outputs.

The canon (DESIGN.md): the hash is blake3 over exactly what
``orjson.dumps(value, option=orjson.OPT_SORT_KEYS)`` writes for a JSON-native value, so anyone can
recompute it from a captured payload. Values orjson serializes natively (datetimes, enums, UUIDs,
subclasses of str, int, dict and list) hash as orjson writes them.

Everything else still hashes, deterministically and without raising: each value that has no
JSON form is written as its *canonical form*, from the table in :mod:`tracekit.capture.canonical`
(which users extend with ``register_canonical``; docs/hashing.md lists every rule). The rules
kept here, for values orjson writes but ambiguously, or that need the encoder itself:

===========================  =========================================================
value                        canonical form
===========================  =========================================================
NaN, +inf, -inf              ``{"$float": "nan" | "inf" | "-inf"}`` (orjson writes null)
int outside [-2**63, 2**64)  ``{"$int": "<decimal digits>"}``
set, frozenset               ``{"$set": [elements, sorted by their canonical bytes]}``
non-string dict key k        the string ``"$key:" + canonical(k)``
a container already open     ``{"$cycle": n}``, n = how many levels up it was opened
===========================  =========================================================

Dataclasses are passed through to their rule (orjson would drop fields named ``_x``). A value
with forms is first written by orjson with the table as its ``default`` (fast: big arrays and
frames are digests of their buffers by then); only cycles, huge ints, non-string keys, NaN and
nesting past orjson's limit take the pure-Python encoder, which writes the same bytes.

NaN and infinities are told apart from ``null`` in values whose canonical JSON is at most
:data:`NAN_SCAN_LIMIT` bytes (64 KiB). Past that, finding them would need a scan of the output
that costs more than hashing it (``bytes.find`` runs at ~2 GB/s, blake3 at ~7 GB/s), so a NaN in
a large value hashes as orjson writes it: ``null``. Still deterministic; see docs/hashing.md.

Nesting deeper than orjson's limit (254) is encoded by the same rules in pure Python, so a
5,000-deep value hashes too, to exactly the bytes orjson would write if it had no limit.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import math
import threading
from collections.abc import Callable
from typing import Any, Final

import orjson
from blake3 import blake3

from tracekit._native import in_use
from tracekit.capture.canonical import canonical_form, safe_repr_form
from tracekit.capture.tags import non_finite_form

__all__ = [
    "DEFER_LIMIT",
    "DUMPS_OPTION",
    "HASH_ALGORITHM",
    "NAN_SCAN_LIMIT",
    "Digest",
    "canonical_json",
    "digest",
    "finish_source",
    "hash_hex",
    "hash_object",
    "hash_source",
    "hash_value",
    "resolve_digest",
]

HASH_ALGORITHM: Final = "blake3"

#: The options of every orjson call that writes canonical JSON (the compiled hot path's too).
DUMPS_OPTION: Final = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
_SORT: Final = DUMPS_OPTION
_dumps: Final = orjson.dumps


def _find_null(data: bytes) -> bool:
    return data.find(b"null") != -1


def _unknown(value: Any) -> bool | None:
    return None


# Compiled helpers where tracekit._speedups was built (same answers; tests/test_speedups.py):
# has_null is memchr-based (bytes.find runs at ~2 GB/s, below blake3); non_finite walks the
# JSON-native containers without the interpreter, and says None for anything else.
_native_module = in_use()
_has_null: Callable[[bytes], bool] = _find_null if _native_module is None else _native_module.has_null
_non_finite_native: Callable[[Any], bool | None] = (
    _unknown if _native_module is None else _native_module.non_finite
)
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
#: Largest canonical JSON (bytes) searched for NaN/infinity written as null; see the module doc.
NAN_SCAN_LIMIT: Final = 64 * 1024


def _has_non_finite(value: Any) -> bool:
    """True if a NaN or infinity hides in ``value`` (orjson would have written it as null)."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            continue  # the common leaves, before the isinstance chain below (~10x cheaper)
        if t is float:
            if not math.isfinite(v):
                return True
        elif t is dict:
            push(v.values())
        elif t is list or t is tuple:
            push(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                return True
        elif isinstance(v, dict):
            push(v.values())
        elif isinstance(v, list | tuple):
            push(v)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            push(getattr(v, f.name) for f in dataclasses.fields(v))
    return False


def _needs_slow_look(value: Any) -> bool:
    found = _non_finite_native(value)
    if found is not None:
        return found
    # A dict or list subclass may override values()/__iter__ to raise: then take the slow path.
    try:
        return _has_non_finite(value)
    except Exception:
        return True


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``; never raises."""
    try:
        data = _dumps(value, option=_SORT)
    except Exception:
        return _with_forms(value)
    return _canonical_from(value, data)


Memo = dict[int, tuple[Any, Any]]  # id -> (the value, kept alive; its canonical form)


def _with_forms(value: Any) -> bytes:
    """The canonical JSON of a value holding something orjson cannot write by itself.

    orjson writes it, asking the table for each such object's form; the forms are remembered,
    so when the pure-Python encoder has to take over it never computes one twice (a frame's
    digest is the costly part).
    """
    memo: Memo = {}

    def default(obj: Any) -> Any:
        hit = memo.get(id(obj))
        if hit is not None:
            return hit[1]
        form = _form_of(obj)
        memo[id(obj)] = (obj, form)
        return form

    try:
        data = _dumps(value, default=default, option=_SORT)
    except Exception:
        return _slow_canonical(value, memo)
    # The same rule for NaN as for JSON-native values, over the value and every form written.
    if (
        len(data) <= NAN_SCAN_LIMIT
        and _has_null(data)
        and (_needs_slow_look(value) or any(_needs_slow_look(form) for _, form in memo.values()))
    ):
        return _slow_canonical(value, memo)
    return data


def _set_form(value: set[Any] | frozenset[Any]) -> orjson.Fragment:
    # The underlying storage: an overridden __iter__ is not called.
    stored = list(set.__iter__(value)) if isinstance(value, set) else list(frozenset.__iter__(value))
    members = sorted(canonical_json(m) for m in stored)
    return orjson.Fragment(b'{"$set":[' + b",".join(members) + b"]}")


def _form_of(obj: Any) -> Any:
    """What the encoder writes for an object orjson refused; never raises."""
    if not _honest_class(obj):
        return safe_repr_form(obj)
    if isinstance(obj, set | frozenset):
        try:
            return _set_form(obj)
        except Exception:
            return safe_repr_form(obj)
    return canonical_form(obj)


def _canonical_from(value: Any, data: bytes) -> bytes:
    """The canonical JSON of ``value``, given ``data = orjson.dumps(value, option=DUMPS_OPTION)``."""
    # orjson writes NaN and infinities as null; only then is a second look needed.
    if len(data) <= NAN_SCAN_LIMIT and _has_null(data) and _needs_slow_look(value):
        return _slow_canonical(value)
    return data


def hash_source(value: Any) -> bytes:
    """What the recorder keeps at callback time to hash ``value``; never raises.

    The value is serialized now (it may change after the callback), but for small values the
    blake3 itself waits for :func:`resolve_digest` at flush time: most steps of a healthy run
    leave the ring buffer unwritten, so their hash is never needed. Values whose canonical
    JSON exceeds :data:`DEFER_LIMIT` are hashed at once (a :class:`Digest`), so the ring never
    holds large copies.
    """
    try:
        data = _dumps(value, option=_SORT)
    except Exception:
        return _sealed(_with_forms(value))
    # The common case, final as it is: small, and no null that could be a NaN. The compiled
    # hot path tests the same.
    if len(data) <= DEFER_LIMIT and (value is None or not _has_null(data)):
        return data  # None, the output of every node run for its effect, is null itself
    return finish_source(value, data)


def finish_source(value: Any, data: bytes) -> bytes:
    """:func:`hash_source` of ``value``, given ``data = orjson.dumps(value, option=DUMPS_OPTION)``.

    For callers that already serialized ``value`` and found ``data`` not final as it is
    (larger than :data:`DEFER_LIMIT`, or holding a ``null`` that may be a NaN); never raises.
    """
    return _sealed(_canonical_from(value, data))


def _sealed(data: bytes) -> bytes:
    return data if len(data) <= DEFER_LIMIT else Digest(blake3(data).digest())


def resolve_digest(source: bytes) -> bytes:
    """The 32-byte blake3 digest for a :func:`hash_source` result."""
    if type(source) is Digest:
        return source
    return _small_digest(source)


def digest(value: Any) -> bytes:
    """The raw 32-byte blake3 digest of ``canonical_json(value)``; never raises."""
    return resolve_digest(hash_source(value))


class Digest(bytes):
    """A finished 32-byte blake3 digest, as opposed to canonical JSON still to be hashed."""

    __slots__ = ()


#: Canonical JSON up to this size is kept and hashed at flush time (see :func:`hash_source`).
DEFER_LIMIT: Final = 1024

_local = threading.local()


def _small_digest(data: bytes) -> bytes:
    # A per-thread hasher: blake3's constructor is ~40% of hashing 100 bytes.
    try:
        hasher = _local.hasher
    except AttributeError:
        hasher = _local.hasher = blake3()
    hasher.reset()  # first, so a hash interrupted by an exception never leaks into the next
    hasher.update(data)
    out: bytes = hasher.digest()
    return out


def hash_hex(value: Any) -> str:
    """The 64-character lowercase hex blake3 hash of ``value``."""
    return digest(value).hex()


def hash_object(raw_digest: bytes) -> dict[str, str]:
    """The envelope's hash object for a raw digest."""
    return {"algorithm": HASH_ALGORITHM, "value": raw_digest.hex()}


def hash_value(value: Any) -> dict[str, str]:
    """``{"algorithm": "blake3", "value": <64 hex>}`` for ``value``."""
    return hash_object(digest(value))


# --- the slow path: an iterative encoder that never raises and has no depth limit -----------

def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


_EXACT: Final = frozenset({str, int, float, bool, type(None), dict, list, tuple})


def _honest_class(obj: Any) -> bool:
    """True unless ``obj.__class__`` raises or lies (a proxy): ``isinstance`` would trust it."""
    try:
        return obj.__class__ is type(obj)
    except Exception:
        return False


_RAW = 0  # a bytes chunk to append
_VAL = 1  # a value to encode
_LEAVE = 2  # a container is closed: forget its id


def _tag(value: Any) -> Any:
    """A JSON-able stand-in for a value orjson cannot write (or writes ambiguously)."""
    if type(value) is float:
        return non_finite_form(value)
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        # Decimal prints any int exactly; str() refuses past 4,300 digits (sys.int_max_str_digits).
        return {"$int": str(decimal.Decimal(int(value)))}
    return canonical_form(value)


def _safe_tag(value: Any) -> Any:
    """``_tag`` that never raises (a released memoryview, a hostile property, ...)."""
    try:
        return _tag(value)
    except Exception:
        return safe_repr_form(value)


def _str_json(text: str) -> bytes:
    """A string's JSON; one UTF-8 cannot carry (a lone surrogate, from ``os.fsdecode`` of
    undecodable bytes) is ``{"$str": <its text, escaped>}``, apart from the escaped text itself."""
    try:
        return _dumps(text)
    except TypeError:
        return _dumps({"$str": text.encode("utf-8", "backslashreplace").decode("ascii", "replace")})


def _key(key: Any) -> str:
    if isinstance(key, str):
        text: str = str.__str__(key)  # a subclass's __str__ is never called
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "$str:" + text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        return text
    # A key's form may hold dicts with keys of their own: bounded, as values are by the stack.
    depth = getattr(_key_depth, "n", 0)
    if depth >= MAX_KEY_DEPTH:
        return f"$key:$deep:{type(key).__module__}.{type(key).__qualname__}"
    _key_depth.n = depth + 1
    try:
        return "$key:" + _slow_canonical(key).decode("utf-8")
    finally:
        _key_depth.n = depth


#: Non-string keys inside non-string keys followed before the rest is named by type only.
MAX_KEY_DEPTH: Final = 16
_key_depth = threading.local()


def _slow_canonical(value: Any, memo: Memo | None = None) -> bytes:
    """The canonical JSON of anything, in pure Python; ``memo`` holds forms already computed."""
    forms: Memo = {} if memo is None else memo
    out: list[bytes] = []
    emit = out.append
    open_ids: list[int] = []  # ids of the containers on the current path, outermost first
    alive: list[Any] = []  # holds them, so a freed temporary's id is never reused meanwhile
    stack: list[tuple[int, Any]] = [(_VAL, value)]
    pop, push = stack.pop, stack.append
    while stack:
        kind, item = pop()
        if kind == _RAW:
            emit(item)
            continue
        if kind == _LEAVE:
            open_ids.pop()
            alive.pop()
            continue
        if type(item) not in _EXACT and not _honest_class(item):
            emit(_dumps(safe_repr_form(item), option=_SORT))
            continue
        if item is None or item is True or item is False or isinstance(item, str):
            emit(_dumps(item) if not isinstance(item, str) else _str_json(str.__str__(item)))
            continue
        if isinstance(item, int) and not isinstance(item, enum.Enum):
            if _INT_MIN <= item <= _INT_MAX:
                emit(str(int(item)).encode("ascii"))
            else:
                push((_VAL, _safe_tag(item)))
            continue
        if type(item) is float:  # a float subclass (numpy's float64, ...) has a rule of its own
            if math.isfinite(item):
                emit(_dumps(float(item)))
            else:
                push((_VAL, _safe_tag(item)))
            continue
        if isinstance(item, dict | list) or type(item) is tuple:  # a namedtuple has its rule
            ident = id(item)
            if ident in open_ids:
                depth = len(open_ids) - open_ids.index(ident)
                push((_VAL, {"$cycle": depth}))
                continue
            open_ids.append(ident)
            alive.append(item)
            push((_LEAVE, None))
            if isinstance(item, dict):
                # The underlying storage, as orjson reads it: an overridden items() is not called.
                # Sort by key only: values need not be comparable (or may raise when compared).
                pairs = sorted(((_key(k), v) for k, v in list(dict.items(item))), key=_first)
                push((_RAW, b"}"))
                for i in range(len(pairs) - 1, -1, -1):
                    k, v = pairs[i]
                    push((_VAL, v))
                    push((_RAW, (b"," if i else b"") + _dumps(k) + b":"))
                push((_RAW, b"{"))
            else:
                elements = list.copy(item) if isinstance(item, list) else list(tuple.__iter__(item))
                push((_RAW, b"]"))
                for i in range(len(elements) - 1, -1, -1):
                    push((_VAL, elements[i]))
                    if i:
                        push((_RAW, b","))
                push((_RAW, b"["))
            continue
        if isinstance(item, set | frozenset):
            emit(_dumps(_set_form(item)))
            continue
        # Something else: let orjson try its native types first (datetime, UUID, numpy, ...).
        if not isinstance(item, bytes | bytearray | memoryview | decimal.Decimal):
            try:
                emit(_dumps(item, option=_SORT))
                continue
            except Exception:
                pass
        # Objects can refer to themselves through their state: track them like containers.
        ident = id(item)
        if ident in open_ids:
            push((_VAL, {"$cycle": len(open_ids) - open_ids.index(ident)}))
            continue
        open_ids.append(ident)
        alive.append(item)
        push((_LEAVE, None))
        hit = forms.get(ident)
        push((_VAL, hit[1] if hit is not None and hit[0] is item else _safe_tag(item)))
    return b"".join(out)
