"""The hashing canon: blake3 over orjson's sorted-keys JSON, and the documented fallbacks."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import uuid

import orjson
import pytest
from blake3 import blake3

from tracekit.capture.hashing import canonical_json, digest, hash_hex, hash_value


def _reference(value: object) -> str:
    return str(blake3(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest())


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        "",
        "héllo \u2603 \U0001f600",
        [],
        {},
        {"b": 1, "a": [1, 2, {"z": None, "y": "x"}]},
        {"Z": 1, "a": 2, "é": 3, "\uffff": 4},
        [[[[[1]]]]],
    ],
)
def test_json_native_values_hash_exactly_as_the_canon(value: object) -> None:
    assert canonical_json(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert hash_hex(value) == _reference(value)
    assert hash_value(value) == {"algorithm": "blake3", "value": _reference(value)}
    assert len(digest(value)) == 32


def test_key_order_does_not_matter() -> None:
    assert hash_hex({"a": 1, "b": 2}) == hash_hex({"b": 2, "a": 1})


def test_orjson_native_types_hash_as_orjson_writes_them() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    when = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
    ident = uuid.UUID(int=7)
    value = {"p": Point(1, 2), "when": when, "id": ident}
    assert hash_hex(value) == _reference(value)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (float("nan"), b'{"$float":"nan"}'),
        (float("inf"), b'{"$float":"inf"}'),
        (float("-inf"), b'{"$float":"-inf"}'),
        (2**64, b'{"$int":"18446744073709551616"}'),
        (-(2**63) - 1, b'{"$int":"-9223372036854775809"}'),
        (b"\x00\xff", b'{"$bytes":"AP8="}'),
        (bytearray(b"ab"), b'{"$bytes":"YWI="}'),
        (decimal.Decimal("1.10"), b'{"$decimal":"1.10"}'),
        (complex(1, -2), b'{"$complex":[1.0,-2.0]}'),
        ({3, 1, 2}, b'{"$set":[1,2,3]}'),
        ({1: "a", "b": 2}, b'{"$key:1":"a","b":2}'),
        ({"x": [float("nan"), None]}, b'{"x":[{"$float":"nan"},null]}'),
    ],
)
def test_non_native_values_follow_the_documented_rules(value: object, canonical: bytes) -> None:
    assert canonical_json(value) == canonical
    assert hash_hex(value) == blake3(canonical).hexdigest()


def test_nan_inf_and_none_hash_differently() -> None:
    hashes = {hash_hex(v) for v in (None, float("nan"), float("inf"), float("-inf"))}
    assert len(hashes) == 4


def test_cycles_hash_deterministically() -> None:
    a: list[object] = [1]
    a.append(a)
    d: dict[str, object] = {}
    d["self"] = d
    assert canonical_json(a) == b'[1,{"$cycle":1}]'
    assert canonical_json(d) == b'{"self":{"$cycle":1}}'
    assert hash_hex(a) == hash_hex(a)


def test_deep_nesting_beyond_orjson_limit_hashes_like_unlimited_orjson() -> None:
    value: list[object] = []
    for _ in range(5000):
        value = [value]
    data = canonical_json(value)
    assert data == b"[" * 5001 + b"]" * 5001


def test_arbitrary_objects_hash_by_state_and_never_by_address() -> None:
    class Thing:
        def __init__(self, n: int) -> None:
            self.n = n

    class Opaque:
        __slots__ = ()

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    assert canonical_json(Thing(1)) == canonical_json(Thing(1))
    assert canonical_json(Thing(1)) != canonical_json(Thing(2))
    assert b"0x?" in canonical_json(Opaque()) or b"Opaque" in canonical_json(Opaque())
    assert canonical_json(Opaque()) == canonical_json(Opaque())
    assert b"repr_error" in canonical_json(Hostile())


def test_generators_are_not_consumed() -> None:
    gen = (i for i in range(3))
    hash_hex(gen)
    assert list(gen) == [0, 1, 2]


def test_nan_is_told_apart_up_to_the_scan_limit_and_hashes_as_orjson_past_it() -> None:
    from tracekit.capture.hashing import NAN_SCAN_LIMIT

    small_nan = {"pad": "x" * 100, "v": float("nan")}
    small_none = {"pad": "x" * 100, "v": None}
    assert hash_hex(small_nan) != hash_hex(small_none)
    big_nan = {"pad": "x" * NAN_SCAN_LIMIT, "v": float("nan")}
    assert hash_hex(big_nan) == _reference(big_nan)  # documented: past the limit, NaN is null
