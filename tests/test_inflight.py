"""The in-flight table: one entry per key, a stack when a key is started again before it ends."""

from __future__ import annotations

from tracekit import NodeEvent
from tracekit.recorder.inflight import InFlight, Stack
from tracekit.trace.model import Step


def _step(seq: int, node: str = "n") -> Step:
    event = NodeEvent(node_id=node, component_id="c", operation="run", payload=None)
    return Step(seq, event, None, seq, b"null", None, None)


def _start(table: InFlight, key: object, step: Step) -> None:
    held = table.setdefault(key, step)
    if held is not step:
        table.push(key, held, step)


def test_a_key_started_twice_ends_newest_first_then_frees_the_key() -> None:
    table = InFlight()
    a, b, c = _step(1), _step(2), _step(3)
    for s in (a, b, c):
        _start(table, "k", s)
    assert type(table["k"]) is Stack
    assert table.peek("k") is c
    assert table.take("k", table.pop("k", None)) is c
    assert table.pop_step("k") is b
    assert table["k"] is a  # back to a plain entry
    assert table.pop_step("k") is a
    assert table == {}
    assert table.pop_step("k") is None


def test_remove_takes_out_the_given_step_even_from_the_middle_of_a_stack() -> None:
    table = InFlight()
    a, b, c = _step(1), _step(2), _step(3)
    for s in (a, b, c):
        _start(table, "k", s)
    table.remove("k", b)
    assert table.steps() == [a, c]
    table.remove("k", c)
    assert table["k"] is a
    table.remove("k", _step(9))  # not there: nothing happens
    table.remove("k", a)
    assert table == {}


def test_steps_lists_everything_oldest_first_and_drop_oldest_counts_stacked_steps() -> None:
    table = InFlight()
    old1, old2, mid, new = _step(1, "x"), _step(2, "x"), _step(3, "y"), _step(4, "z")
    for key, s in (("x", old1), ("y", mid), ("x", old2), ("z", new)):
        _start(table, key, s)
    assert table.steps() == [old1, old2, mid, new]
    assert table.drop_oldest(1) == 2  # key "x" held two steps
    assert table.steps() == [mid, new]
