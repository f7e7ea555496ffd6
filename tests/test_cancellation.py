"""Control-flow signals end steps ``cancelled``, are re-raised untouched, and fail no run."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from _support import load, make

from tracekit import NodeEvent, TraceContext, register_control_flow
from tracekit.registry import registry


@pytest.fixture(autouse=True)
def _clean_control_flow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    state = registry.snapshot()
    yield
    registry.restore(state)




def test_task_cancel_ends_an_in_flight_async_step_cancelled(context: TraceContext) -> None:
    rec = make(context, mode="always")
    started = asyncio.Event()

    async def worker() -> None:
        async with rec.step("wait_for_upstream"):
            started.set()
            await asyncio.Event().wait()  # never set: only cancellation ends it

    async def main() -> None:
        async with rec.run():
            task = asyncio.create_task(worker())
            await started.wait()
            assert [s.node_id for s in rec.in_flight()] == ["wait_for_upstream"]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()  # re-raised untouched: the task really is cancelled

    asyncio.run(main())
    doc = load()
    assert doc["run"]["outcome"] == "success"  # a cancelled step does not fail the run
    (step,) = doc["steps"]
    assert step["status"] == "cancelled"
    assert step["error"]["code"] == "cancelled"
    assert step["error"]["details"]["type"] == "asyncio.exceptions.CancelledError"


def test_a_cancellation_alone_writes_no_trace_in_on_mode(context: TraceContext) -> None:
    rec = make(context)

    @rec.step("poll")
    async def poll() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        with rec.run():
            task = asyncio.create_task(poll())
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert not Path("trace.json").exists()
    assert rec.misuse == {}


@pytest.mark.parametrize("signal", [KeyboardInterrupt(), SystemExit(3)])
def test_interrupt_and_exit_end_the_step_and_the_run_cancelled(
    context: TraceContext, signal: BaseException
) -> None:
    rec = make(context, mode="always")
    with pytest.raises(type(signal)) as info, rec.run(), rec.step("long"):
        raise signal
    assert info.value is signal
    doc = load()
    assert doc["run"]["outcome"] == "cancelled"
    (step,) = doc["steps"]
    assert (step["status"], step["error"]["code"]) == ("cancelled", "cancelled")


def test_generator_exit_inside_a_step_is_a_cancellation(context: TraceContext) -> None:
    rec = make(context)

    def numbers() -> Generator[int, None, None]:
        with rec.step("numbers"):
            yield 1
            yield 2

    gen = numbers()
    assert next(gen) == 1
    gen.close()
    (step,) = rec.snapshot()["steps"]
    assert step["status"] == "cancelled"
    assert step["error"]["details"]["type"] == "GeneratorExit"


def test_user_control_flow_types(context: TraceContext) -> None:
    class SkipNode(Exception):
        """A runner's 'skip this node' signal."""

    register_control_flow(SkipNode)
    rec = make(context)
    with rec.run():
        with pytest.raises(SkipNode), rec.step("optional"):
            raise SkipNode()
        event = NodeEvent("other", "comp", "run", payload=None)
        rec.on_node_start(event)
        rec.on_node_error(event, SkipNode())
        statuses = [s["status"] for s in rec.snapshot()["steps"]]
    assert statuses == ["cancelled", "cancelled"]
    assert not Path("trace.json").exists()  # nothing failed


def test_task_group_failure_cancels_siblings(context: TraceContext) -> None:
    rec = make(context)

    async def child(name: str, fail: bool) -> None:
        async with rec.step(name):
            await asyncio.sleep(0)
            if fail:
                raise ConnectionResetError("peer reset")
            await asyncio.sleep(10)

    async def main() -> None:
        async with rec.step("parent"), asyncio.TaskGroup() as tg:
            tg.create_task(child("ok", False))
            tg.create_task(child("bad", True))

    with pytest.raises(ExceptionGroup):
        asyncio.run(main())
    by_node = {s["node_id"]: s for s in rec.snapshot()["steps"]}
    assert by_node["bad"]["status"] == "failed"
    assert by_node["bad"]["error"]["code"] == "connection"
    assert by_node["ok"]["status"] == "cancelled"
    assert by_node["parent"]["status"] == "failed"
    group = by_node["parent"]["error"]["details"]["chain"][0]
    assert [m["type"] for m in group["exceptions"]] == ["ConnectionResetError"]
    assert by_node["ok"]["parent_step_id"] == by_node["parent"]["step_id"]
