"""Hostile payloads and outputs: hashing never raises, is deterministic, and keeps the canon.

Property tests (hypothesis) generate thousands of values; named cases cover what generators
rarely reach. Every value also goes through a real recorder as payload and output, with capture
on, and the written trace must stay schema-valid with no internal error counted.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import pickle
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from _hostile_values import (
    BadEq,
    BadHash,
    BadRepr,
    Haunted,
    LyingDict,
    Opaque,
    Plain,
    Slotted,
    SubDict,
)
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder, ValidationIssue
from tracekit.capture.hashing import canonical_json, hash_hex
from tracekit.trace.schema import validate_document

CHILD = Path(__file__).with_name("_hostile_values.py")
STEPS_MUTATED = 100
FAST = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECORDED = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)

hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too
    | st.floats()  # NaN and infinities included
    | st.text()
    | st.binary(max_size=20)
    | st.decimals(allow_nan=False)
    | st.complex_numbers()
    | st.datetimes()
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.dates()
    | st.uuids()
    | st.builds(BadEq, st.integers(0, 5))
    | st.builds(Opaque)
    | st.builds(BadRepr)
    | st.frozensets(st.integers() | st.text(), max_size=4)
    | st.tuples(st.integers(), st.text())
)
leaves = (
    hashable_leaves
    | st.builds(bytearray, st.binary(max_size=10))
    | st.decimals()  # NaN decimals: unhashable when signalling, fine as values
    | st.builds(Plain, json_scalars, json_scalars)
    | st.builds(Slotted, json_scalars, json_scalars)
    | st.builds(BadHash, st.integers())
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashable_leaves, inner, max_size=4)  # non-string and mixed keys
        | st.dictionaries(st.text(), inner, max_size=4).map(SubDict)
        | st.dictionaries(st.text(), inner, max_size=4).map(LyingDict)
        | st.sets(st.integers() | st.text() | st.floats(), max_size=4)
        | st.builds(Plain, inner, inner)
    )


hostile_values = st.recursive(leaves, _containers, max_leaves=20)


# --- helpers ------------------------------------------------------------------------------------


def _reference(value: Any) -> str:
    return blake3(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _valid(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    return doc


def _record(tmp_path: Path, *values: Any) -> dict[str, Any]:
    """Each value as a payload, an output and a validation path; returns the written trace."""
    out = tmp_path / "hostile.json"
    rec = TraceRecorder(
        TraceConfig.create(mode="always", out=out, capture_inputs=True, buffer=len(values) + 1),
        TraceContext("p@1", "hostile", "1"),
    )
    for i, value in enumerate(values):
        ev = NodeEvent(f"n{i}", "comp", "call", payload=value)
        rec.on_node_start(ev)
        rec.on_validation(ev, [ValidationIssue("odd", "hostile value", path="/")])
        rec.on_node_end(ev, value)
    assert rec.flush_buffer() == out
    assert rec.misuse == {}, rec.misuse
    assert rec.last_flush_error is None
    return _valid(out)


def _hashes_in_child(values: list[Any]) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": "4242"}  # another hash seed: set order differs
    done = subprocess.run(
        [sys.executable, str(CHILD)], input=pickle.dumps(values), capture_output=True, env=env,
        check=True, cwd=CHILD.parent,
    )
    return done.stdout.decode().split()


# --- properties ---------------------------------------------------------------------------------


@FAST
@given(json_values)
def test_json_native_values_hash_exactly_as_orjson_writes_them(value: Any) -> None:
    assert canonical_json(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert hash_hex(value) == _reference(value)


@FAST
@given(hostile_values)
def test_hostile_values_hash_deterministically_without_raising(value: Any) -> None:
    first = hash_hex(value)
    assert first == hash_hex(value)
    assert len(first) == 64 and first == first.lower()
    assert blake3(canonical_json(value)).hexdigest() == first
    orjson.loads(canonical_json(value))  # the canonical form is JSON


@RECORDED
@given(st.lists(hostile_values, min_size=1, max_size=3))
def test_hostile_values_never_break_the_recorder_or_the_trace(
    tmp_path_factory: pytest.TempPathFactory, values: list[Any]
) -> None:
    doc = _record(tmp_path_factory.mktemp("h"), *values)
    steps = doc["steps"]
    assert len(steps) == len(values)
    for step, value in zip(steps, values, strict=True):
        assert step["input_hash"]["value"] == hash_hex(value)
        assert step["output_hash"]["value"] == hash_hex(value)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_values.filter(lambda v: not _unpicklable(v)), min_size=20, max_size=20))
def test_hashes_are_the_same_in_another_process(values: list[Any]) -> None:
    assert _hashes_in_child(values) == [hash_hex(v) for v in values]


def _unpicklable(value: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        return True
    return False


# --- named cases --------------------------------------------------------------------------------


def _self_list() -> list[Any]:
    a: list[Any] = [1, "x"]
    a.append(a)
    return a


def _self_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    d["nested"] = [d, {"back": d}]
    return d


def _deep_list(depth: int) -> list[Any]:
    v: list[Any] = [1]
    for _ in range(depth - 1):
        v = [v]
    return v


def _deep_dict(depth: int) -> dict[str, Any]:
    v: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        v = {"k": v}
    return v


def _gen() -> Iterator[int]:
    yield from range(3)


NAMED: dict[str, Any] = {
    "set": {3, 1, 2},
    "frozenset_of_mixed": frozenset({1, "1", 1.5, (1, 2)}),
    "bytes": b"\x00\xffbinary",
    "bytearray": bytearray(b"abc"),
    "memoryview": memoryview(b"view"),
    "datetime_naive": dt.datetime(2026, 11, 23, 12, 0, 0),
    "datetime_aware": dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC),
    "date": dt.date(2026, 11, 23),
    "decimal": decimal.Decimal("3.14159265358979323846264338327950288"),
    "decimal_nan": decimal.Decimal("NaN"),
    "uuid": uuid.UUID(int=7),
    "object_dict": Plain({"deep": [1, 2]}, Plain()),
    "object_slots": Slotted(1, [2]),
    "object_opaque": Opaque(),
    "self_list": _self_list(),
    "self_dict": _self_dict(),
    "int_2_64": 2**64,
    "int_below_min": -(2**63) - 1,
    "int_5000_digits": 10**5000,
    "nan": math.nan,
    "inf": math.inf,
    "minus_inf": -math.inf,
    "floats_in_list": [math.nan, math.inf, -math.inf, None],
    "int_keys": {1: "a", 2: "b"},
    "mixed_keys": {1: "int", "1": "str", None: "none", (1, 2): "tuple", 1.5: "float", b"k": "bytes"},
    "deep_list_5000": _deep_list(5000),
    "deep_dict_5000": _deep_dict(5000),
    "generator": _gen(),
    "bad_repr": BadRepr(),
    "bad_eq_key": {BadEq(1): "a", BadEq(2): "b"},
    "bad_eq_values": {"a": BadEq(1), "b": BadEq(1)},
    "bad_hash": BadHash(3),
    "dict_subclass": SubDict(a=1, b=[2]),
    "lying_dict": LyingDict(a=math.nan, b=None),
    "haunted": Haunted(),
    "haunted_in_list": [Haunted(), {"h": Haunted()}],
    "complex": complex(1, -2),
    "type": int,
    "function": len,
    "exception": ValueError("as a value"),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_hostile_values_hash_and_record(name: str, tmp_path: Path) -> None:
    value = NAMED[name]
    first = hash_hex(value)
    assert first == hash_hex(value)
    doc = _record(tmp_path, value)
    (step,) = doc["steps"]
    assert step["input_hash"]["value"] == first
    assert step["output_hash"]["value"] == first
    assert "invocation_json" in step


def test_named_hostile_values_hash_the_same_in_another_process() -> None:
    names = sorted(n for n in NAMED if not _unpicklable(NAMED[n]))
    assert len(names) > 25
    assert dict(zip(names, _hashes_in_child([NAMED[n] for n in names]), strict=True)) == {
        n: hash_hex(NAMED[n]) for n in names
    }


def test_nan_infinities_and_none_hash_differently() -> None:
    for wrap in (lambda v: v, lambda v: [v], lambda v: {"x": v}, lambda v: {"deep": [[v]]}):
        hashes = {hash_hex(wrap(v)) for v in (math.nan, math.inf, -math.inf, None)}
        assert len(hashes) == 4
    assert canonical_json(math.nan) == b'{"$float":"nan"}'
    assert canonical_json([-math.inf]) == b'[{"$float":"-inf"}]'


def test_5000_deep_nesting_hashes_as_orjson_would_write_it_without_a_limit() -> None:
    expected = b"[" * 5000 + b"1" + b"]" * 5000
    assert canonical_json(_deep_list(5000)) == expected
    assert hash_hex(_deep_list(5000)) == blake3(expected).hexdigest()
    expected_dict = b'{"k":' * 4999 + b'{"leaf":true}' + b"}" * 4999
    assert canonical_json(_deep_dict(5000)) == expected_dict


def test_huge_ints_are_exact_decimal_digits() -> None:
    assert canonical_json(10**5000) == b'{"$int":"1' + b"0" * 5000 + b'"}'
    assert canonical_json(2**64) == b'{"$int":"18446744073709551616"}'
    assert canonical_json(2**64 - 1) == b"18446744073709551615"


def test_generators_are_never_consumed() -> None:
    gen = _gen()
    hash_hex(gen)
    hash_hex({"g": gen})
    assert list(gen) == [0, 1, 2]


def test_cycles_are_marked_by_depth() -> None:
    assert canonical_json(_self_list()) == b'[1,"x",{"$cycle":1}]'
    d = _self_dict()
    assert canonical_json(d) == (
        b'{"name":"loop","nested":[{"$cycle":2},{"back":{"$cycle":3}}],"self":{"$cycle":1}}'
    )


def test_dict_subclasses_hash_their_stored_items() -> None:
    assert hash_hex(SubDict(a=1)) == hash_hex({"a": 1}) == _reference({"a": 1})
    assert hash_hex(LyingDict(a=1)) == hash_hex({"a": 1})
    assert hash_hex(LyingDict(a=math.nan)) == hash_hex({"a": math.nan}) != hash_hex({"a": None})


def test_objects_with_failing_repr_eq_and_hash() -> None:
    assert orjson.loads(canonical_json(BadRepr())) == {
        "$object": "_hostile_values.BadRepr", "repr_error": "RuntimeError",
    }
    # Equal keys after canonicalisation never make sorting compare the (raising) values.
    assert hash_hex({1: BadEq(1), "$key:1": BadEq(2)}) == hash_hex({1: BadEq(1), "$key:1": BadEq(2)})
    assert hash_hex(BadHash(1)) != hash_hex(BadHash(2))


def test_memory_addresses_are_masked() -> None:
    assert b"0x?" in canonical_json(Opaque())
    assert hash_hex(Opaque()) == hash_hex(Opaque())


def test_a_dict_mutated_by_another_thread_while_it_is_hashed(tmp_path: Path) -> None:
    shared: dict[Any, Any] = {i: [i, {"n": i}] for i in range(100)}  # int keys: the slow path
    stop = threading.Event()
    mutations = 0

    def mutate() -> None:
        nonlocal mutations
        i = 0
        while not stop.is_set():
            i += 1
            shared[1000 + i % 500] = {"x": i}
            shared.pop(1000 + (i * 7) % 500, None)
            mutations += 1
            time.sleep(0)  # let the hashing thread in between mutations, not only every 5 ms

    worker = threading.Thread(target=mutate)
    worker.start()
    try:
        out = tmp_path / "t.json"
        rec = TraceRecorder(
            TraceConfig.create(mode="always", out=out, capture_inputs=True, buffer=500),
            TraceContext("p@1", "mutated", "1"),
        )
        for i in range(STEPS_MUTATED):
            ev = NodeEvent("n", "c", "call", payload={"shared": shared, "i": i})
            rec.on_node_start(ev)
            rec.on_node_end(ev, shared)
            assert len(hash_hex(shared)) == 64
    finally:
        stop.set()
        worker.join()
    assert mutations > 0
    assert rec.misuse == {}
    assert rec.flush_buffer() == out
    assert len(_valid(out)["steps"]) == STEPS_MUTATED
    # Once the mutation stops, hashing is deterministic again.
    assert hash_hex(shared) == hash_hex(dict(shared))
