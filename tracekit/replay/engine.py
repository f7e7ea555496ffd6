"""Re-running one node on its captured input, with recording off, and comparing with the trace.

Exit codes (shared with the docs): 1 the node still fails (same error type and message as
recorded, or not), 0 it now completes (for a node that had completed: does the output hash
match?), 2 it cannot be replayed (:class:`~tracekit.replay.plan.Problem` says why and the fix).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tracekit.capture.hashing import hash_value
from tracekit.errors import error_record
from tracekit.replay import target
from tracekit.replay.plan import Plan, Problem, make_plan

__all__ = ["EXIT_CANNOT", "EXIT_COMPLETES", "EXIT_FAILS", "Outcome", "call_args", "replay"]

EXIT_COMPLETES: Final = 0
EXIT_FAILS: Final = 1
EXIT_CANNOT: Final = 2
_HERE: Final = os.path.dirname(os.path.abspath(__file__))


@dataclass(slots=True)
class Outcome:
    plan: Plan
    exit: int
    problems: list[Problem] = field(default_factory=list)
    error: dict[str, Any] | None = None  # the replayed failure (error_record form)
    same_error: bool | None = None
    output_hash: str | None = None
    output_matches: bool | None = None

    @property
    def recorded_error(self) -> dict[str, Any] | None:
        err = self.plan.step.get("error")
        return err if isinstance(err, dict) else None

    def to_json(self) -> dict[str, Any]:
        step = self.plan.step
        status = {EXIT_COMPLETES: "completes", EXIT_FAILS: "still_fails"}.get(self.exit, "cannot_replay")
        rec = self.recorded_error
        return {
            "exit": self.exit,
            "status": status,
            "step": {"index": self.plan.index, "step_id": step.get("step_id"), "node_id": step.get("node_id"),
                     "recorded_status": step.get("status")},
            "callable": self.plan.callable,
            "source_file": self.plan.source_file,
            "set": self.plan.set_paths,
            "problems": [p.to_json() for p in self.problems],
            "error": None if self.error is None else {
                "type": self.error["details"].get("type"), "message": self.error["message"],
                "traceback": self.error["details"].get("traceback")},
            "recorded_error": None if rec is None else {
                "type": (rec.get("details") or {}).get("type"), "message": rec.get("message")},
            "same_error": self.same_error,
            "output_hash": self.output_hash,
            "recorded_output_hash": (step.get("output_hash") or {}).get("value")
            if isinstance(step.get("output_hash"), dict) else None,
            "output_matches": self.output_matches,
        }


@contextlib.contextmanager
def recording_off() -> Iterator[None]:
    """``TRACEKIT_TRACE=off`` while the node runs: a recorder the user's code makes records nothing."""
    old = os.environ.get("TRACEKIT_TRACE")
    os.environ["TRACEKIT_TRACE"] = "off"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TRACEKIT_TRACE", None)
        else:
            os.environ["TRACEKIT_TRACE"] = old


def call_args(func: Any, kind: str, payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments that pass ``payload`` back to ``func``.

    Raises TypeError when ``func`` no longer takes them (its signature changed).
    """
    if kind == "args_kwargs":
        if not isinstance(payload, dict):
            raise TypeError("the captured input is not {args, kwargs}")
        return list(payload.get("args") or []), dict(payload.get("kwargs") or {})
    if kind != "params" or not isinstance(payload, dict):
        raise TypeError(f"inputs of kind {kind!r} cannot be passed to a function")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return [], dict(payload)
    for name, value in payload.items():
        p = params.get(name)
        if p is None:
            kwargs[name] = value  # bind() below names it
        elif p.kind is p.POSITIONAL_ONLY:
            args.append(value)
        elif p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(value)
        else:
            kwargs[name] = value
    inspect.signature(func).bind(*args, **kwargs)
    return args, kwargs


def _run(func: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    if inspect.isgenerator(result):
        try:
            while True:
                next(result)
        except StopIteration as stop:
            return stop.value
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def replay(doc: dict[str, Any], trace_path: Path, wanted: str | None = None, sets: list[str] | None = None,
           *, plan: Plan | None = None) -> Outcome:
    """Replay one step of ``doc``; raises ReplayError only for a usage mistake (no such step)."""
    with recording_off():
        plan = plan or make_plan(doc, trace_path, wanted, sets or [])
        if plan.problems:
            return Outcome(plan, EXIT_CANNOT, list(plan.problems))
        if plan.args_kind == "pytest":
            return Outcome(plan, EXIT_CANNOT, [Problem(
                "unsupported", "pytest steps are replayed by pytest itself",
                f"run: pytest {plan.step.get('node_id')!s}")])
        assert plan.callable is not None
        try:
            func = target.resolve(plan.callable, plan.source_file)
        except target.NotImportable as exc:
            return Outcome(plan, EXIT_CANNOT, [exc.problem])
        try:
            args, kwargs = call_args(func, plan.args_kind or "", plan.payload)
        except TypeError as exc:
            return Outcome(plan, EXIT_CANNOT, [Problem(
                "signature_changed", f"{plan.callable} no longer takes the captured input: {exc}",
                "replay with the code that recorded the trace, or --set the new parameters")])
        try:
            result = _run(func, args, kwargs)
        except (Exception, SystemExit) as err:
            tb = err.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_HERE):
                tb = tb.tb_next  # the traceback starts in the user's code
            record = error_record(err.with_traceback(tb), phase="execution")
            out = Outcome(plan, EXIT_FAILS, error=record)
            rec = out.recorded_error
            if rec is not None:
                rec_type = (rec.get("details") or {}).get("type")
                same_type = rec_type == record["details"]["type"]
                out.same_error = same_type and rec.get("message") == record["message"]
            return out
    out = Outcome(plan, EXIT_COMPLETES)
    out.output_hash = hash_value(result)["value"]
    recorded = plan.step.get("output_hash")
    if plan.step.get("status") == "completed" and isinstance(recorded, dict):
        out.output_matches = recorded.get("value") == out.output_hash
    return out
