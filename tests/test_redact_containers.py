"""Redaction sees every container hashing walks, and frames are captured as bounded previews.

Each container kind holds a secret under a denylisted key (a mapping key, a field, a column
name); a real recorder with capture on writes the trace, and the secret must not be in the file
while the public values are, and the step's hash must still be that of the original payload.
"""

from __future__ import annotations

import collections
import dataclasses
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pydantic
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.capture.hashing import hash_value
from tracekit.capture.preview import PREVIEW_ROWS, PREVIEW_TEXT, Placement, placement
from tracekit.capture.redact import REDACTED, redact
from tracekit.trace.schema import validate_document

SECRET = "hunter2-secret-value"
PUBLIC = "ada-lovelace"

Login = collections.namedtuple("Login", "user password")


class TypedLogin(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    user: str


@dataclasses.dataclass
class DataLogin:
    user: str
    api_key: str


@attrs.define
class AttrsLogin:
    user: str
    token: str


@attrs.define(slots=False)
class AttrsDictLogin:
    user: str
    session_id: str


class Vault(Mapping[str, str]):
    """A Mapping that is no dict."""

    def __init__(self, **items: str) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Client:
    __slots__ = ("credentials", "user")

    def __init__(self) -> None:
        self.user = PUBLIC
        self.credentials = SECRET


CONTAINERS: dict[str, Any] = {
    "mappingproxy": types.MappingProxyType({"user": PUBLIC, "password": SECRET}),
    "custom_mapping": Vault(user=PUBLIC, secret=SECRET),
    "ordered_dict": collections.OrderedDict(user=PUBLIC, auth=SECRET),
    "chain_map": collections.ChainMap({"user": PUBLIC}, {"passwd": SECRET}),
    "namedtuple": Login(PUBLIC, SECRET),
    "dataclass": DataLogin(PUBLIC, SECRET),
    "attrs_slots": AttrsLogin(PUBLIC, SECRET),
    "attrs_dict": AttrsDictLogin(PUBLIC, SECRET),
    "pydantic_extra": TypedLogin(user=PUBLIC, password=SECRET),  # type: ignore[call-arg]
    "slotted_object": Client(),
    "nested": [{"deep": (Login(PUBLIC, SECRET),)}, frozenset({Login("x", SECRET)}),
               {"m": types.MappingProxyType({"cookie": SECRET})}],
    "pandas_frame": pd.DataFrame({"user": [PUBLIC, "bob"], "password": [SECRET, SECRET]}),
    "pandas_series": pd.Series([SECRET], name="api_token").to_frame().assign(user=PUBLIC),
    "pandas_index": pd.DataFrame({"user": [PUBLIC]}, index=pd.Index([SECRET], name="session")),
    "numpy_fields": np.array([(PUBLIC, SECRET)], dtype=[("user", "U20"), ("password", "U30")]),
    "arrow_table": pa.table({"user": [PUBLIC], "private_key": [SECRET]}),
    "arrow_struct": pa.table({"user": [PUBLIC], "login": [{"name": PUBLIC, "password": SECRET}]}),
    "polars_frame": pl.DataFrame({"user": [PUBLIC], "secret": [SECRET]}),
    "object_column": pd.DataFrame({"user": [PUBLIC], "meta": [{"token": SECRET}]}),
}


def _capture(tmp_path: Path, payload: Any) -> dict[str, Any]:
    out = tmp_path / "t.json"
    rec = TraceRecorder(TraceConfig.create(mode="always", out=out, capture_inputs=True),
                        TraceContext("p@1", "redact", "1"))
    ev = NodeEvent("load", "etl.load", "call", payload=payload)
    rec.on_node_start(ev)
    rec.on_node_end(ev, None)
    assert rec.flush_buffer() == out
    assert rec.misuse == {}
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    assert validate_document(doc) == []
    (step,) = doc["steps"]
    assert step["input_hash"] == hash_value(payload)  # the original, not the redacted copy
    return step


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_a_secret_in_each_container_kind_is_redacted(kind: str, tmp_path: Path) -> None:
    payload = {"value": CONTAINERS[kind]}
    step = _capture(tmp_path, payload)
    text = orjson.dumps(step["invocation_json"]["payload"]).decode()
    assert SECRET not in text
    assert REDACTED in text
    if kind != "nested" and "frame" not in kind:
        assert PUBLIC in text
    # The file too (tracebacks, previews, nothing else holds it).
    assert SECRET.encode() not in (tmp_path / "t.json").read_bytes()


def test_container_fields_are_kept_by_name() -> None:
    assert redact(Login(PUBLIC, SECRET)) == {"user": PUBLIC, "password": REDACTED}
    assert redact(types.MappingProxyType({"password": SECRET, "n": 1})) == {"password": REDACTED, "n": 1}
    assert redact(TypedLogin(user=PUBLIC, token=SECRET)) == {  # type: ignore[call-arg]
        "$pydantic": f"{__name__}.TypedLogin", "data": {"user": PUBLIC, "token": REDACTED},
    }


def test_a_frame_is_captured_as_schema_shape_and_first_rows(tmp_path: Path) -> None:
    df = pd.DataFrame({
        "id": range(1000),
        "password": [SECRET] * 1000,
        "note": ["x" * (PREVIEW_TEXT + 50)] * 1000,
        "when": pd.date_range("2026-01-01", periods=1000, freq="h"),
    })
    step = _capture(tmp_path, {"df": df})
    shown = step["invocation_json"]["payload"]["df"]
    assert shown["$preview"] == "pandas.DataFrame"
    assert shown["shape"] == [1000, 4]
    assert [c["name"] for c in shown["columns"]] == ["id", "password", "note", "when"]
    assert [c["dtype"] for c in shown["columns"]][:2] == ["int64", "str"]
    assert shown["truncated"] is True
    assert len(shown["rows"]) == PREVIEW_ROWS
    assert shown["rows"][0][:2] == [0, REDACTED]
    assert shown["rows"][0][2].endswith(f"... [{PREVIEW_TEXT + 50} characters]")
    assert shown["rows"][0][3] == "2026-01-01T00:00:00"
    assert shown["index"] == [0, 1, 2, 3, 4]
    text = orjson.dumps(shown).decode()
    assert "_mgr" not in text and "block" not in text.lower()  # never internal state


def test_a_small_frame_says_it_is_whole() -> None:
    shown = redact(pd.DataFrame({"a": [1, 2]}))
    assert shown["truncated"] is False
    assert shown["rows"] == [[1], [2]]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (pd.Series(range(100), name="n"), "pandas.Series"),
        (pd.Index(range(100)), "pandas.RangeIndex"),
        (np.arange(100).reshape(10, 10), "numpy.ndarray"),
        (pa.array(range(100)), "pyarrow.Int64Array"),
        (pa.chunked_array([range(50), range(50)]), "pyarrow.ChunkedArray"),
        (pa.table({"a": range(100)}), "pyarrow.Table"),
        (pa.record_batch({"a": range(100)}), "pyarrow.RecordBatch"),
        (pl.DataFrame({"a": range(100)}), "polars.DataFrame"),
        (pl.Series("a", range(100)), "polars.Series"),
    ],
)
def test_every_data_kind_is_a_bounded_preview(value: Any, kind: str, tmp_path: Path) -> None:
    assert placement(value) is Placement.PREVIEW
    step = _capture(tmp_path, {"v": value})
    shown = step["invocation_json"]["payload"]["v"]
    assert shown["$preview"] == kind
    assert shown["truncated"] is True
    assert len(orjson.dumps(shown)) < 1_000


def test_everything_else_is_inline() -> None:
    for value in ({"a": 1}, [1], Login("a", "b"), pd.Timestamp("2026-01-01"), np.int64(3), object()):
        assert placement(value) is Placement.INLINE
