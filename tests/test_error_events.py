"""Runner-level error events: errors[] in the envelope, capped, and the live ErrorChannel."""

from __future__ import annotations

import re
import threading
from typing import Any

import orjson
import pytest
from _support import load, make

from tracekit import ErrorChannel, ErrorEvent, TraceContext
from tracekit.trace.schema import validate_document

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")




class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


class NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr broke")


def test_an_error_event_lands_in_errors_and_on_the_channel(context: TraceContext) -> None:
    rec = make(context)
    seen: list[ErrorEvent] = []
    rec.errors.subscribe(seen.append)
    try:
        raise ConnectionRefusedError("broker down") from OSError("no route")
    except ConnectionRefusedError as err:
        event = rec.emit_error(
            "scheduler", err, tags={"queue": "etl", "worker": 3}, context={"pending": 12, "obj": Opaque()}
        )
    assert event is not None and seen == [event]
    assert rec.errors.snapshot() == [event]
    doc = load()  # the first failure of a run writes an intermediate trace
    assert doc["run"]["outcome"] == "in_progress"
    (e,) = doc["errors"]
    assert e["scope"] == "scheduler"
    assert RFC3339.match(e["time"])
    assert e["code"] == "connection"
    assert e["message"] == "broker down"
    assert e["tags"] == {"queue": "etl", "worker": "3"}
    assert e["context"] == {"pending": 12, "obj": "Opaque()"}
    assert [link["type"] for link in e["error"]["details"]["chain"]] == ["ConnectionRefusedError", "OSError"]
    assert e["error"]["details"]["hints"]
    assert doc["errors_dropped"] == 0


def test_an_event_without_an_exception(context: TraceContext) -> None:
    rec = make(context)
    event = rec.emit_error("runner", message="worker pool exhausted", code="infrastructure")
    assert event is not None
    assert (event.code, event.message, event.error) == ("infrastructure", "worker pool exhausted", None)
    event = rec.emit_error()
    assert event is not None and event.code == "flow_error"


def test_errors_are_capped_with_a_dropped_count(context: TraceContext) -> None:
    rec = make(context, max_errors=3)
    for i in range(10):
        rec.emit_error("runner", RuntimeError(f"e{i}"))
    doc = rec.snapshot()
    assert [e["message"] for e in doc["errors"]] == ["e0", "e1", "e2"]
    assert doc["errors_dropped"] == 7
    assert len(rec.errors) == 10  # the live channel sees every one


def test_hostile_tags_and_context_never_lose_the_event(context: TraceContext) -> None:
    rec = make(context)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    event = rec.emit_error(
        "runner",
        ValueError("v"),
        tags={"bad": NoRepr(), 7: "seven"},  # type: ignore[dict-item]
        context={"cycle": cyclic, "bytes": b"\x00", 1: {2: 3}, "norepr": NoRepr(), "ok": [1, 2]},  # type: ignore[dict-item]
    )
    assert event is not None
    doc = orjson.loads(orjson.dumps(rec.snapshot()))
    assert validate_document(doc) == []
    (e,) = doc["errors"]
    assert e["context"]["ok"] == [1, 2]
    assert e["context"]["1"] == {"2": 3}
    assert "repr raised" in e["context"]["norepr"]
    assert isinstance(e["context"]["cycle"], str)
    assert e["tags"]["7"] == "seven"
    assert e["tags"]["bad"] == "<NoRepr: str raised>"


def test_an_unknown_scope_is_recorded_as_runner_and_counted(context: TraceContext) -> None:
    rec = make(context)
    event = rec.emit_error("gpu", RuntimeError("x"))  # type: ignore[arg-type]
    assert event is not None and event.scope == "runner"
    assert rec.misuse["invalid_scope"] == 1


def test_subscribers_that_raise_or_re_emit_do_not_break_anything(context: TraceContext) -> None:
    rec = make(context)
    calls: list[str] = []

    def bad(event: ErrorEvent) -> None:
        raise RuntimeError("subscriber bug")

    def echo(event: ErrorEvent) -> None:
        calls.append(event.message)
        rec.emit_error("runner", message=f"echo of {event.message}")  # would recurse forever

    rec.errors.subscribe(bad)
    unsubscribe = rec.errors.subscribe(echo)
    assert rec.emit_error("runner", message="first") is not None
    assert calls == ["first"]
    assert [e.message for e in rec.errors.snapshot()] == ["first", "echo of first"]
    unsubscribe()
    rec.emit_error("runner", message="second")
    assert calls == ["first"]


def test_channel_drain_bounds_and_arguments() -> None:
    channel = ErrorChannel(maxlen=2)
    events = [ErrorEvent(scope="runner", time="2026-11-23T00:00:00.000000Z", code="c", message=str(i))
              for i in range(3)]
    for event in events:
        channel.publish(event)
    assert channel.snapshot() == events[1:]
    assert channel.dropped == 1
    assert channel.drain() == events[1:]
    assert len(channel) == 0
    with pytest.raises(ValueError, match=r"maxlen=0.*allowed: an integer >= 1"):
        ErrorChannel(maxlen=0)


def test_emitting_from_many_threads_keeps_every_event(context: TraceContext) -> None:
    rec = make(context, max_errors=1000)
    barrier = threading.Barrier(8)

    def emit(t: int) -> None:
        barrier.wait()
        for i in range(50):
            rec.emit_error("scheduler", message=f"{t}-{i}", tags={"thread": str(t)})

    threads = [threading.Thread(target=emit, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    messages = {e["message"] for e in rec.snapshot()["errors"]}
    assert messages == {f"{t}-{i}" for t in range(8) for i in range(50)}


def test_a_run_that_ends_without_error_keeps_its_events(context: TraceContext) -> None:
    rec = make(context)
    with rec.run():
        rec.emit_error("scheduler", TimeoutError("heartbeat missed"))
    doc = load()  # the run wrote at the event, so its end rewrites the same file
    assert doc["run"]["outcome"] == "success"
    assert [e["code"] for e in doc["errors"]] == ["timeout"]


def test_off_mode_emits_nothing(context: TraceContext) -> None:
    rec = make(context, mode="off")
    assert rec.emit_error("runner", RuntimeError("x")) is None
    assert len(rec.errors) == 0
