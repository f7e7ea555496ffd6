"""``recorder.step(...)``: a sync/async context manager and a decorator around one step.

The guarantee: every step that starts ends exactly once, as completed, failed or cancelled, on
every exit path, including an exception raised by the recorder's own bookkeeping. The phase in
which a failure happened (setup, execution, completion) is kept in ``error.details.phase``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tracekit._context import CURRENT_STEP_ID
from tracekit.observer import NodeEvent

if TYPE_CHECKING:
    from tracekit.model import Step
    from tracekit.recorder import TraceRecorder

__all__ = ["PHASES", "StepScope"]

PHASES = ("setup", "execution", "completion")

F = TypeVar("F", bound=Callable[..., Any])
_UNSET: Any = object()


def _call_payload(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The arguments of a call, by parameter name when the signature allows it."""
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {"args": list(args), "kwargs": kwargs}


class StepScope:
    """One step. As a context manager it is used once; as a decorator, once per call.

    Inside the block, :meth:`set_output` records the step's output (hashed at the end).
    """

    __slots__ = (
        "_attempt",
        "_component_id",
        "_node_id",
        "_operation",
        "_output",
        "_parent_step_id",
        "_payload",
        "_payload_given",
        "_recorder",
        "_step",
        "_step_id",
        "_token",
    )

    def __init__(
        self,
        recorder: TraceRecorder,
        *,
        node_id: str | None,
        component_id: str | None,
        operation: str,
        payload: Any,
        payload_given: bool,
        step_id: str | None,
        parent_step_id: str | None,
        attempt: int,
    ) -> None:
        self._recorder = recorder
        self._node_id = node_id
        self._component_id = component_id
        self._operation = operation
        self._payload = payload
        self._payload_given = payload_given
        self._step_id = step_id
        self._parent_step_id = parent_step_id
        self._attempt = attempt
        self._output: Any = _UNSET
        self._step: Step | None = None
        self._token: Token[str | None] | None = None

    @property
    def step_id(self) -> str | None:
        """The id of the running step (None in off mode or before it starts)."""
        return None if self._step is None else self._step.step_id

    def set_output(self, output: Any) -> None:
        """Record ``output`` as the step's output (hashed when the step ends)."""
        self._output = output

    # --- context manager ----------------------------------------------------------------------

    def _enter(self) -> StepScope:
        if self._node_id is None:
            raise TypeError("recorder.step(): node_id is required when used as a context manager")
        recorder = self._recorder
        if not recorder.enabled:
            return self
        event = NodeEvent(
            node_id=self._node_id,
            component_id=self._component_id or self._node_id,
            operation=self._operation,
            payload=self._payload,
            step_id=self._step_id,
            parent_step_id=self._parent_step_id,
            attempt=self._attempt,
        )
        try:
            self._step = recorder._begin_step(event)
        except Exception:
            recorder._internal_error("step setup")
            self._step = None
            return self
        if self._step is not None:
            self._token = CURRENT_STEP_ID.set(self._step.step_id)
        return self

    def _exit(self, exc: BaseException | None) -> None:
        step = self._step
        if step is None:
            return
        self._step = None  # exactly once, even if this method is re-entered
        if self._token is not None:
            try:
                CURRENT_STEP_ID.reset(self._token)
            except ValueError:
                CURRENT_STEP_ID.set(step.parent_step_id)  # exited in another context
            self._token = None
        recorder = self._recorder
        try:
            if exc is None:
                recorder._end_step(step, self._output)
            else:
                recorder._fail_step(step, exc, "execution")
        except Exception as bookkeeping:
            recorder._internal_error("step completion")
            try:
                recorder._emergency_end(step, bookkeeping, "completion")
            except Exception:
                recorder._internal_error("step emergency end")

    def __enter__(self) -> StepScope:
        return self._enter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(exc)

    async def __aenter__(self) -> StepScope:
        return self._enter()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(exc)

    # --- decorator ----------------------------------------------------------------------------

    def _fresh(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepScope:
        return StepScope(
            self._recorder,
            node_id=self._node_id or getattr(func, "__qualname__", repr(func)),
            component_id=self._component_id or getattr(func, "__module__", None),
            operation=self._operation,
            payload=self._payload if self._payload_given else _call_payload(func, args, kwargs),
            payload_given=True,
            step_id=self._step_id,
            parent_step_id=self._parent_step_id,
            attempt=self._attempt,
        )

    def __call__(self, func: F) -> F:
        recorder = self._recorder
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not recorder.enabled:
                    return await func(*args, **kwargs)
                scope = self._fresh(func, args, kwargs)
                async with scope:
                    result = await func(*args, **kwargs)
                    scope.set_output(result)
                return result

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not recorder.enabled:
                return func(*args, **kwargs)
            scope = self._fresh(func, args, kwargs)
            with scope:
                result = func(*args, **kwargs)
                scope.set_output(result)
            return result

        return cast(F, wrapper)
