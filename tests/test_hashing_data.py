"""Data values hash by what they hold: pandas, numpy, Arrow, polars, pydantic, attrs and the rest.

Equal values hash equal (after copies, read-only use, pickling, in another process); a single
changed cell changes the hash. Hypothesis generates the frames and arrays; named tests pin the
regressions of issue 13.
"""

from __future__ import annotations

import collections
import dataclasses
import decimal
import enum
import functools
import os
import pathlib
import pickle
import subprocess
import sys
import threading
import types
from typing import Any

import attrs
import numpy as np
import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pydantic
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.extra import pandas as hpd

from tracekit.capture.canonical import register_canonical, reset_canonical
from tracekit.capture.hashing import _slow_canonical, canonical_json, hash_hex

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The child hashes pickled values with another hash seed: set order and addresses differ there.
CHILD = "import pickle, sys\nfrom tracekit.capture.hashing import hash_hex\n" \
        "for v in pickle.loads(sys.stdin.buffer.read()): print(hash_hex(v))\n"


def _hashes_in_child(values: list[Any], code: str = CHILD) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": "977"}
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(values), capture_output=True,
                          env=env, check=True, cwd=pathlib.Path(__file__).parent)  # it imports our classes
    return done.stdout.decode().split()


# --- strategies ---------------------------------------------------------------------------------

_DTYPES = st.sampled_from([
    np.dtype("int64"), np.dtype("int32"), np.dtype("uint8"), np.dtype("float64"), np.dtype("float32"),
    np.dtype("bool"), np.dtype("complex128"), np.dtype("<M8[ns]"), np.dtype("<m8[s]"), np.dtype("<U4"),
    np.dtype(">i4"), np.dtype(">f8"),
])
arrays = _DTYPES.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))

frames = hpd.data_frames(
    columns=[
        hpd.column("i", dtype=np.int64),
        hpd.column("f", dtype=np.float64),  # NaN and infinities included
        hpd.column("s", elements=st.text(max_size=5) | st.none()),
        hpd.column("b", dtype=bool),
        hpd.column("t", dtype="datetime64[ns]"),
    ],
    index=hpd.range_indexes(min_size=1, max_size=12),
)


def _other(value: Any, text: bool = False) -> Any:
    """A value of the same kind that is certainly different (missing values included)."""
    if text or isinstance(value, str):
        return "a" if value != "a" else "b"
    if isinstance(value, bool | np.bool_):
        return not value
    if isinstance(value, int | np.integer):
        return 0 if value != 0 else 1
    if isinstance(value, float | complex | np.inexact):
        return 0.5 if value != 0.5 else 1.5  # NaN != 0.5 too
    if isinstance(value, np.timedelta64):
        return np.timedelta64(0, "s") if value != np.timedelta64(0, "s") else np.timedelta64(1, "s")
    when = pd.Timestamp("2000-01-01")
    return when if pd.isna(value) or pd.Timestamp(value) != when else when + pd.Timedelta(1, "D")


# --- properties ---------------------------------------------------------------------------------


@PROPS
@given(frames)
def test_equal_frames_hash_equal_after_copies_pickles_and_use(df: pd.DataFrame) -> None:
    h = hash_hex(df)
    rebuilt = pd.DataFrame({c: df[c].tolist() for c in df.columns}).astype(df.dtypes.to_dict())
    assert hash_hex(df.copy()) == h
    assert hash_hex(pickle.loads(pickle.dumps(df))) == h
    assert hash_hex(rebuilt) == h
    repr(df)
    with np.errstate(all="ignore"):
        df.describe(include="all")  # fills caches
    _ = df["i"], df.iloc[0], df.T
    assert hash_hex(df) == h


@PROPS
@given(frames, st.data())
def test_one_changed_cell_changes_a_frames_hash(df: pd.DataFrame, data: st.DataObject) -> None:
    row = data.draw(st.integers(0, len(df) - 1))
    col = data.draw(st.sampled_from(list(df.columns)))
    changed = df.copy()
    changed.loc[changed.index[row], col] = _other(df[col].iloc[row], text=col == "s")
    assert hash_hex(changed) != hash_hex(df)


@PROPS
@given(arrays)
def test_equal_arrays_hash_equal_whatever_the_layout(a: np.ndarray[Any, Any]) -> None:
    h = hash_hex(a)
    assert hash_hex(a.copy()) == h
    assert hash_hex(a.copy(order="F")) == h  # memory layout is not the value
    assert hash_hex(a[::-1][::-1] if a.ndim else a) == h  # nor are strides
    assert hash_hex(pickle.loads(pickle.dumps(a))) == h
    swapped = a.astype(a.dtype.newbyteorder(">" if a.dtype.byteorder in "<=" else "<"))
    assert hash_hex(swapped) == h  # nor is the byte order


@PROPS
@given(arrays.filter(lambda a: a.size > 0), st.data())
def test_one_changed_element_changes_an_arrays_hash(a: np.ndarray[Any, Any], data: st.DataObject) -> None:
    flat = a.reshape(-1).copy()
    i = data.draw(st.integers(0, flat.size - 1))
    old = flat[i]
    new = np.array(_other(old.item() if a.dtype.kind not in "Mm" else old)).astype(a.dtype)[()]
    assert new != old
    flat[i] = new
    assert hash_hex(flat.reshape(a.shape)) != hash_hex(a)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames | arrays, min_size=6, max_size=6))
def test_data_values_hash_the_same_in_another_process(values: list[Any]) -> None:
    assert _hashes_in_child(values) == [hash_hex(v) for v in values]


@PROPS
@given(frames | arrays)
def test_the_pure_python_encoder_writes_the_same_bytes(value: Any) -> None:
    # orjson with the table as its default, and the encoder cycles and NaN need, agree.
    assert _slow_canonical({"v": value, "n": [value]}) == canonical_json({"v": value, "n": [value]})


# --- the regressions of issue 13 ----------------------------------------------------------------


def test_series_and_frames_with_different_values_hash_differently() -> None:
    assert hash_hex(pd.Series([7.0, 10.0, 8.0])) != hash_hex(pd.Series([6.44, 9.2, 7.36]))
    assert hash_hex(pd.DataFrame({"q": [1, 2]})) != hash_hex(pd.DataFrame({"q": [100, 200]}))


def test_a_series_hashes_the_same_after_repr_fills_its_cache() -> None:
    s = pd.Series([7.0, 10.0, 8.0], index=["a", "b", "c"], name="price")
    before = hash_hex(s)
    repr(s)
    s.sum()
    _ = s["b"], s.index.is_unique, s.values
    assert hash_hex(s) == before
    df = pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]})
    before = hash_hex(df)
    repr(df)
    _ = df["a"], df.values, df.dtypes
    assert hash_hex(df) == before == hash_hex(pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]}))


def test_pydantic_extras_are_part_of_the_hash() -> None:
    class Payment(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        currency: str = "EUR"

    assert hash_hex(Payment(amount=1)) != hash_hex(Payment(amount=1_000_000))  # type: ignore[call-arg]
    assert hash_hex(Payment(amount=1)) == hash_hex(Payment(amount=1))  # type: ignore[call-arg]
    form = orjson.loads(canonical_json(Payment(amount=1)))  # type: ignore[call-arg]
    name = f"{__name__}.{Payment.__qualname__}"
    assert form == {"$pydantic": name, "data": {"currency": "EUR", "amount": 1}}


def test_dtype_is_part_of_an_arrays_value() -> None:
    assert hash_hex(np.array([1, 2, 3], dtype=np.int32)) != hash_hex(np.array([1, 2, 3], dtype=np.int64))
    assert hash_hex(np.arange(6).reshape(2, 3)) != hash_hex(np.arange(6).reshape(3, 2))
    assert hash_hex(pd.Series([1, 2], dtype="int32")) != hash_hex(pd.Series([1, 2], dtype="int64"))
    assert hash_hex(np.int32(3)) != hash_hex(np.int64(3)) != hash_hex(3)


# --- pandas details -----------------------------------------------------------------------------


def test_frame_hash_covers_column_names_order_index_and_dtypes() -> None:
    base = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    variants = [
        pd.DataFrame({"b": [3, 4], "a": [1, 2]}),  # column order
        pd.DataFrame({"a": [1, 2], "c": [3, 4]}),  # a column name
        pd.DataFrame({"a": [1, 2], "b": [3, 4]}, index=[10, 11]),  # the index
        pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]}),  # a dtype
        pd.DataFrame({"a": [1, 2], "b": [3, 4]}).rename_axis("key"),  # the index name
    ]
    assert len({hash_hex(v) for v in [base, *variants]}) == len(variants) + 1


def test_missing_values_are_told_apart_and_every_nan_is_one_value() -> None:
    quiet = np.array([1.0, np.nan])
    other_nan = np.array([1.0, 0.0])
    other_nan.view(np.uint64)[1] = 0xFFF8_0000_0000_0001  # a NaN with other payload bits
    assert np.isnan(other_nan[1])
    assert hash_hex(quiet) == hash_hex(other_nan)
    assert hash_hex(pd.Series(quiet)) == hash_hex(pd.Series(other_nan))
    assert hash_hex(pd.Series([1.0, np.nan])) != hash_hex(pd.Series([1.0, 0.0]))
    assert hash_hex(pd.Series(["a", None], dtype=object)) != hash_hex(pd.Series(["a", np.nan], dtype=object))
    nat = pd.Series(pd.to_datetime(["2026-01-01", None]))
    assert hash_hex(nat) != hash_hex(pd.Series(pd.to_datetime(["2026-01-01", "1970-01-01"])))
    ints = pd.Series([1, None], dtype="Int64")
    assert hash_hex(ints) != hash_hex(pd.Series([1, 0], dtype="Int64"))
    big = pd.Series(["x"] * 100_000 + [None], dtype=object)  # past the NaN scan limit of JSON
    assert hash_hex(big) != hash_hex(pd.Series(["x"] * 100_000 + [np.nan], dtype=object))


def test_pandas_extension_dtypes_and_scalars() -> None:
    cats = pd.Series(["a", "b", "a"], dtype="category")
    assert hash_hex(cats) != hash_hex(pd.Series(["a", "b", "b"], dtype="category"))
    assert hash_hex(cats) != hash_hex(cats.cat.set_categories(["b", "a"]))  # other codes
    tz = pd.Series(pd.date_range("2026-01-01", periods=3, tz="UTC"))
    assert hash_hex(tz) != hash_hex(tz.dt.tz_convert("Europe/Oslo"))  # same instants, other zone
    strings = pd.Series(["x", "yy", None], dtype="string")
    assert hash_hex(strings) != hash_hex(pd.Series(["x", "y", "y"], dtype="string"))
    multi = pd.DataFrame({"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    assert hash_hex(multi) != hash_hex(multi.swaplevel())
    noon = pd.Timestamp("2026-01-01 12:00")
    assert canonical_json(noon) == orjson.dumps(noon.to_pydatetime())  # as the datetime it equals
    assert hash_hex(noon) != hash_hex(noon + pd.Timedelta(1, "ns"))
    assert len({hash_hex(v) for v in (pd.NaT, pd.NA, None, np.nan)}) == 4


def test_duplicate_column_labels_are_hashed_by_position() -> None:
    a = pd.DataFrame([[1, 2]], columns=["x", "x"])
    b = pd.DataFrame([[2, 1]], columns=["x", "x"])
    assert hash_hex(a) != hash_hex(b)


def test_a_40_mb_frame_hashes_its_buffers_not_its_cells() -> None:
    df = pd.DataFrame(np.random.default_rng(1).random((1_000_000, 5)))  # 40 MB of float64
    form = canonical_json(df)
    assert len(form) < 2_000  # a header and five digests, never a JSON of every cell
    changed = df.copy()
    changed.iloc[999_999, 4] += 1e-9
    assert hash_hex(changed) != hash_hex(df)


# --- numpy, Arrow, polars -----------------------------------------------------------------------


def test_numpy_structured_masked_and_object_arrays() -> None:
    rec = np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "<i4"), ("b", "<f8")])
    rec2 = rec.copy()
    rec2["b"][1] = 5.0
    assert hash_hex(rec) != hash_hex(rec2)
    masked = np.ma.array([1, 2, 3], mask=[0, 1, 0])
    assert hash_hex(masked) == hash_hex(np.ma.array([1, 99, 3], mask=[0, 1, 0]))  # hidden values
    assert hash_hex(masked) != hash_hex(np.ma.array([1, 2, 3], mask=[0, 0, 1]))
    objs = np.array([decimal.Decimal("1.1"), "x", None], dtype=object)
    assert hash_hex(objs) == hash_hex(objs.copy()) != hash_hex(np.array(["1.1", "x", None], dtype=object))


def test_arrow_hashes_ignore_chunking_and_slicing_but_not_nulls() -> None:
    whole = pa.chunked_array([[1, 2, None, 4, 5]])
    split = pa.chunked_array([[1, 2], [None], [4, 5]])
    assert hash_hex(whole) == hash_hex(split)
    sliced = pa.array([0, 1, 2, None, 4, 5, 9]).slice(1, 5)
    assert hash_hex(sliced) == hash_hex(pa.array([1, 2, None, 4, 5]))
    assert hash_hex(pa.array([1, 2, None])) != hash_hex(pa.array([1, 2, 0]))
    text = pa.chunked_array([["ab", "c"], [None, "d"]])
    assert hash_hex(text) == hash_hex(pa.chunked_array([["ab"], ["c", None, "d"]]))
    assert hash_hex(pa.array(["ab", "c"])) != hash_hex(pa.array(["a", "bc"]))  # lengths count
    table = pa.table({"a": [1, 2], "s": ["x", "y"], "l": [[1], [2, 3]]})
    assert hash_hex(table) == hash_hex(pa.Table.from_batches(table.to_batches(max_chunksize=1)))
    assert hash_hex(table) != hash_hex(table.rename_columns(["a", "t", "l"]))
    assert hash_hex(table.to_batches()[0]) != hash_hex(table)  # a batch is not a table
    floats = pa.array([1.0, float("nan")])
    assert hash_hex(floats) == hash_hex(pa.array([1.0, float("nan")]))


def test_polars_frames_and_series() -> None:
    df = pl.DataFrame({"a": [1, None, 3], "s": ["x", None, "zz"], "c": ["u", "v", "u"]},
                      schema_overrides={"c": pl.Categorical})
    h = hash_hex(df)
    assert hash_hex(df.clone()) == h == hash_hex(pl.from_arrow(df.to_arrow()))
    assert hash_hex(df.with_columns(pl.col("a").fill_null(0))) != h
    assert hash_hex(df.with_columns(pl.col("s").fill_null(""))) != h
    assert hash_hex(df.rename({"s": "t"})) != h
    assert hash_hex(pl.Series("x", [1, 2])) != hash_hex(pl.Series("x", [1, 3]))
    assert hash_hex(pl.Series("x", [1, 2])) != hash_hex(pl.Series("y", [1, 2]))
    assert hash_hex(pl.Series("x", [1, 2], dtype=pl.Int32)) != hash_hex(pl.Series("x", [1, 2]))
    lazy = df.lazy().filter(pl.col("a") > 1)
    assert hash_hex(lazy) == hash_hex(df.lazy().filter(pl.col("a") > 1))
    assert hash_hex(lazy) != hash_hex(df.lazy().filter(pl.col("a") > 2))


# --- records, mappings and scalars --------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    _tag: str = "p"  # orjson alone would leave this field out
    note: str = dataclasses.field(default="", compare=False)


@attrs.define
class Slotted:
    a: int
    b: list[int] = attrs.Factory(list)
    seen: int = attrs.field(default=0, eq=False)


@attrs.define(slots=False)
class Dicted:
    a: int


class Pair(collections.abc.Mapping[str, int]):
    """A Mapping that is no dict."""

    def __init__(self, **kw: int) -> None:
        self._d = dict(kw)

    def __getitem__(self, k: str) -> int:
        return self._d[k]

    def __iter__(self) -> Any:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


NT = collections.namedtuple("NT", "a b")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_records_hash_as_their_fields() -> None:
    assert hash_hex(Point(1, "p")) != hash_hex(Point(1, "q"))
    assert hash_hex(Point(1, note="a")) == hash_hex(Point(1, note="b"))  # compare=False: not the value
    assert canonical_json(Point(1)) == b'{"_tag":"p","x":1}'
    assert hash_hex(Slotted(1, [2])) != hash_hex(Slotted(1, [3]))
    assert hash_hex(Slotted(1, seen=1)) == hash_hex(Slotted(1, seen=2))  # eq=False: not the value
    assert hash_hex(Dicted(1)) != hash_hex(Dicted(2))
    assert canonical_json(NT(1, 2)) == b'{"a":1,"b":2}'  # a namedtuple is its fields


def test_every_mapping_hashes_as_its_items() -> None:
    plain = {"a": 1, "b": [2]}
    for m in (types.MappingProxyType(plain), collections.OrderedDict(plain), collections.ChainMap(plain),
              collections.defaultdict(list, plain)):
        assert hash_hex(m) == hash_hex(plain)
    assert hash_hex(Pair(a=1)) == hash_hex({"a": 1}) != hash_hex(Pair(a=2))


def test_scalars_sets_and_paths() -> None:
    assert canonical_json(Color.RED) == b'"red"'
    assert canonical_json(decimal.Decimal("1.10")) == b'{"$decimal":"1.10"}'
    assert canonical_json(pathlib.Path("/tmp/x")) == b'{"$path":"/tmp/x"}'
    assert hash_hex({"b", "a", "c"}) == hash_hex({"c", "b", "a"}) == hash_hex(frozenset("abc"))
    assert canonical_json({(2, "b"), (1, "a")}) == b'{"$set":[[1,"a"],[2,"b"]]}'
    values = [{"s": {"x", "y", "z", "w"}}, frozenset({"é", "a", ("t", 1)}), Color.BLUE, Point(2), NT(1, "x"),
              Pair(k=1), pathlib.PurePosixPath("a/b"), decimal.Decimal("2")]
    assert _hashes_in_child(values) == [hash_hex(v) for v in values]


# --- unknown objects ----------------------------------------------------------------------------


class Service:
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}
        self.parent = None

    @functools.cached_property
    def expensive(self) -> int:
        return 42


class Tokens:
    __slots__ = ("__secret", "kind")

    def __init__(self, kind: str, secret: str) -> None:
        self.kind = kind
        self.__secret = secret


def test_the_fallback_never_sees_locks_caches_or_addresses() -> None:
    s = Service("https://db")
    before = hash_hex(s)
    assert canonical_json(s) == b'{"$object":"test_hashing_data.Service","state":{"parent":null,"url":"https://db"}}'
    s._lock.acquire()
    s._cache["k"] = 1
    _ = s.expensive
    assert hash_hex(s) == before
    assert hash_hex(Service("https://other")) != before
    assert hash_hex(Tokens("a", "x")) != hash_hex(Tokens("a", "y"))  # private slots are state
    assert hash_hex(threading.Lock()) == hash_hex(threading.Lock())
    locked = threading.Lock()
    locked.acquire()
    assert hash_hex(locked) == hash_hex(threading.Lock())
    made_there = "from tracekit.capture.hashing import hash_hex\nfrom test_hashing_data import Service\n" \
                 "print(hash_hex(Service('https://db')))\n"
    assert _hashes_in_child([], made_there) == [before]  # a lock does not pickle: made in the child


# --- the registry -------------------------------------------------------------------------------


class Money:
    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency, self._formatted = cents, currency, f"{cents / 100}"


class Euro(Money):
    pass


def test_users_register_their_own_forms_and_reset_restores_the_builtins() -> None:
    default = canonical_json(Money(100, "EUR"))
    try:
        register_canonical(Money, lambda m: {"$money": [m.cents, m.currency]})
        assert canonical_json(Money(100, "EUR")) == b'{"$money":[100,"EUR"]}'
        assert canonical_json(Euro(5, "EUR")) == b'{"$money":[5,"EUR"]}'  # subclasses too
        register_canonical(Euro, lambda m: {"$euro": m.cents})
        assert canonical_json(Euro(5, "EUR")) == b'{"$euro":5}'  # the nearest rule wins
        assert canonical_json([Money(1, "X"), {2}]) == b'[{"$money":[1,"X"]},{"$set":[2]}]'
        register_canonical(pd.DataFrame, lambda df: {"$rows": len(df)})  # beats the built-in
        assert canonical_json(pd.DataFrame({"a": [1, 2]})) == b'{"$rows":2}'

        def broken(m: Money) -> Any:
            raise RuntimeError("no")

        register_canonical(Money, broken)
        assert canonical_json(Money(1, "X")) == canonical_json(Money(1, "X"))  # the fallback
        assert b'"$object"' in canonical_json(Money(1, "X"))
    finally:
        reset_canonical()
    assert canonical_json(Money(100, "EUR")) == default
    assert b'"$pandas.DataFrame"' in canonical_json(pd.DataFrame({"a": [1, 2]}))


NATIVE = [str, int, bool, dict, list, float, tuple, set, Color, collections.OrderedDict]


@pytest.mark.parametrize("cls", NATIVE)
def test_types_orjson_writes_natively_cannot_be_registered(cls: type) -> None:
    with pytest.raises(TypeError, match=r"register_canonical: .* hashes as orjson writes it"):
        register_canonical(cls, repr)


def test_register_canonical_names_bad_arguments() -> None:
    with pytest.raises(TypeError, match="cls must be a class, got str"):
        register_canonical("Money", repr)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must be callable, got int"):
        register_canonical(Money, 3)  # type: ignore[arg-type]


def test_tracekit_imports_no_data_library() -> None:
    code = ("import sys, tracekit, tracekit.capture.redact\n"
            "from tracekit.capture.hashing import hash_hex\n"
            "hash_hex({'a': [1, 2.5, None], 'b': {3}, 'c': object()})\n"
            "libs = ('pandas', 'numpy', 'pyarrow', 'polars', 'pydantic', 'attrs')\n"
            "print(sorted(m for m in libs if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"


def test_the_hash_is_blake3_of_the_canonical_json() -> None:
    df = pd.DataFrame({"a": [1.5]})
    assert hash_hex(df) == blake3(canonical_json(df)).hexdigest()
