"""``recorder.step(...)``: a sync/async context manager and a decorator around one step.

The guarantee: every step that starts ends exactly once, as completed, failed or cancelled, on
every exit path, including an exception raised by the recorder's own bookkeeping. The step
keeps the outcome of its body: a recorder fault never hides a failure nor invents one; it is
noted in ``errors[]`` with code ``recorder_error`` and the phase in which it happened (``setup``
while starting the step, ``completion`` while ending it). A failure of the body itself has phase
``execution``. Control-flow signals (cancellation, interrupt, exit, generator close) end the step
``cancelled`` and are re-raised untouched.

Threading contract: a decorated function may be called from any number of threads and asyncio
tasks at once (each call is its own step). A :class:`StepScope` used as a context manager holds
one step, so one block at a time; make a new ``recorder.step(...)`` for each block.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import Token
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

from tracekit.errors import PHASES
from tracekit.observer import NodeEvent
from tracekit.recorder._context import CURRENT_STEP_ID
from tracekit.recorder.replayable import mark_step

if TYPE_CHECKING:
    from tracekit.trace.model import Step

__all__ = ["PHASES", "StepHost", "StepScope"]


class StepHost(Protocol):
    """What a :class:`StepScope` needs of its recorder (:class:`~tracekit.TraceRecorder` is one).

    The step-bookkeeping interface of the package: runners use the ``on_node_*`` callbacks.
    Every method may be called from any thread; none raises for a runner's mistake, but each
    may raise for a fault of tracekit's own, which the scope catches and notes.
    """

    @property
    def enabled(self) -> bool: ...

    def begin_step(self, event: NodeEvent) -> Step | None:
        """Build ``event``'s step and put it in flight (None when the recorder is disabled)."""
        ...

    def end_step(self, step: Step, output: Any = ...) -> None:
        """End ``step`` as completed, with ``output`` hashed if given."""
        ...

    def fail_scoped_step(self, step: Step, error: BaseException, phase: str) -> None:
        """End ``step`` as failed (or cancelled, for control flow) with ``error``."""
        ...

    def abandon_step(
        self, step: Step, bookkeeping: BaseException, phase: str, error: BaseException | None = None
    ) -> None:
        """End ``step`` with the least bookkeeping possible after ``bookkeeping`` failed."""
        ...

    def note_recorder_error(self, step: Step | None, bookkeeping: BaseException, phase: str) -> None:
        """Say in ``errors[]`` that tracekit's own bookkeeping failed."""
        ...

    def internal_error(self, where: str) -> None:
        """Count and log (once) a fault of tracekit's own."""
        ...

F = TypeVar("F", bound=Callable[..., Any])
_UNSET: Final[Any] = object()


def _placeholder(payload: Any) -> dict[str, str]:
    """What is hashed in place of an input that the recorder failed to hash at setup."""
    return {"$unhashed": f"{type(payload).__module__}.{type(payload).__qualname__}"}


class StepScope:
    """One step. As a context manager it is used once at a time; as a decorator, once per call.

    Inside the block, :meth:`set_output` records the step's output (hashed at the end).
    """

    __slots__ = (
        "_attempt",
        "_bind_context",
        "_component_id",
        "_func",
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
        recorder: StepHost,
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
        for name, value in (
            ("node_id", node_id),
            ("component_id", component_id),
            ("step_id", step_id),
            ("parent_step_id", parent_step_id),
        ):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"recorder.step(): {name}={value!r} is not allowed; allowed: a non-empty str")
        if not isinstance(operation, str) or not operation:
            raise TypeError(
                f"recorder.step(): operation={operation!r} is not allowed; allowed: a non-empty str"
            )
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"recorder.step(): attempt={attempt!r} is not allowed; allowed: an integer >= 1")
        self._recorder = recorder
        self._node_id = node_id
        self._component_id = component_id
        self._operation = operation
        self._payload = payload
        self._payload_given = payload_given
        self._step_id = step_id
        self._parent_step_id = parent_step_id
        self._attempt = attempt
        self._bind_context = True
        self._output: Any = _UNSET
        self._step: Step | None = None
        self._token: Token[str | None] | None = None
        self._func: tuple[Any, str] | None = None  # (function, args_kind) of a decorated call

    @property
    def step_id(self) -> str | None:
        """The id of the running step (None in off mode or outside the block)."""
        return None if self._step is None else self._step.step_id

    @property
    def attempt(self) -> int:
        return self._attempt

    def set_output(self, output: Any) -> None:
        """Record ``output`` as the step's output (hashed when the step ends)."""
        self._output = output

    # --- context manager ----------------------------------------------------------------------

    def _event(self, payload: Any) -> NodeEvent:
        node_id = cast(str, self._node_id)
        return NodeEvent(
            node_id=node_id,
            component_id=self._component_id or node_id,
            operation=self._operation,
            payload=payload,
            step_id=self._step_id,
            parent_step_id=self._parent_step_id,
            attempt=self._attempt,
        )

    def _enter(self) -> StepScope:
        if self._node_id is None:
            raise TypeError("recorder.step(): node_id is required when used as a context manager")
        if self._step is not None:
            raise RuntimeError(
                f"recorder.step({self._node_id!r}) is already in use by a block; "
                "make a new recorder.step(...) for each block"
            )
        recorder = self._recorder
        if not recorder.enabled:
            return self
        self._output = _UNSET
        try:
            self._step = recorder.begin_step(self._event(self._payload))
        except Exception as setup_fault:
            recorder.internal_error("step setup")
            self._step = self._fallback_start(setup_fault)
        if self._func is not None and self._step is not None and self._step.capture is not None:
            mark_step(recorder, self._step, self._func[0], self._payload, self._func[1])
        if self._step is not None and self._bind_context:
            self._token = CURRENT_STEP_ID.set(self._step.step_id)
        return self

    def _fallback_start(self, fault: Exception) -> Step | None:
        """Start the step on a placeholder input after starting it normally failed."""
        recorder = self._recorder
        try:
            step = recorder.begin_step(self._event(_placeholder(self._payload)))
        except Exception:
            recorder.internal_error("step setup fallback")
            step = None
        try:
            recorder.note_recorder_error(step, fault, "setup")
        except Exception:
            recorder.internal_error("step setup note")
        return step

    def _exit(self, exc: BaseException | None) -> None:
        step = self._step
        if step is None:
            return
        self._step = None  # exactly once, even if this method is re-entered
        token, self._token = self._token, None
        if token is not None:
            try:
                CURRENT_STEP_ID.reset(token)
            except (ValueError, RuntimeError):
                CURRENT_STEP_ID.set(step.parent_step_id)  # exited in another context
        recorder = self._recorder
        try:
            if exc is None and self._output is _UNSET:
                recorder.end_step(step)  # no output was set: no output hash, rather than a made-up one
            elif exc is None:
                recorder.end_step(step, self._output)
            else:
                recorder.fail_scoped_step(step, exc, "execution")
        except BaseException as fault:
            # Even an interrupt landing in our bookkeeping must not leave the step open.
            if isinstance(fault, Exception):
                recorder.internal_error("step completion")
            try:
                recorder.abandon_step(step, fault, "completion", exc)
            except Exception:
                recorder.internal_error("step emergency end")
            if not isinstance(fault, Exception):
                raise

    def __enter__(self) -> StepScope:
        return self._enter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(exc)

    async def __aenter__(self) -> StepScope:
        return self._enter()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(exc)

    # --- decorator ----------------------------------------------------------------------------

    def _fresh(self, func: Callable[..., Any], sig: inspect.Signature | None,
               args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepScope | None:
        """A new scope for one call, or None (the call then runs unrecorded) if that fails."""
        try:
            kind: str | None = None
            if self._payload_given:
                payload = self._payload
            else:
                payload, kind = {"args": list(args), "kwargs": kwargs}, "args_kwargs"
                if sig is not None:
                    with contextlib.suppress(TypeError):  # a bad call: the function will say so
                        payload, kind = dict(sig.bind(*args, **kwargs).arguments), "params"
            scope = StepScope(
                self._recorder,
                node_id=self._node_id or getattr(func, "__qualname__", None) or repr(func),
                component_id=self._component_id or getattr(func, "__module__", None),
                operation=self._operation,
                payload=payload,
                payload_given=True,
                step_id=self._step_id,
                parent_step_id=self._parent_step_id,
                attempt=self._attempt,
            )
            if kind is not None:
                scope._func = (func, kind)
        except Exception:
            self._recorder.internal_error("step decorator")
            return None
        return scope

    def __call__(self, func: F) -> F:
        """Record every call of ``func`` (sync, async, generator or async generator) as a step.

        The return value is the step's output and is returned unchanged. A generator's step spans
        its whole iteration and ends cancelled if the consumer closes it early.
        """
        if not callable(func):
            raise TypeError(f"recorder.step() decorates a function, got {type(func).__name__}")
        try:
            sig: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None
        if inspect.isasyncgenfunction(func):
            wrapper = self._wrap_async_gen(func, sig)
        elif inspect.isgeneratorfunction(func):
            wrapper = self._wrap_gen(func, sig)
        elif inspect.iscoroutinefunction(func):
            wrapper = self._wrap_async(func, sig)
        else:
            wrapper = self._wrap_sync(func, sig)
        wrapper.__tracekit_step__ = True  # type: ignore[attr-defined]  # replay calls past this layer
        return cast(F, wrapper)

    def _wrap_sync(self, func: Callable[..., Any], sig: inspect.Signature | None) -> Callable[..., Any]:
        recorder = self._recorder

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = self._fresh(func, sig, args, kwargs) if recorder.enabled else None
            if scope is None:
                return func(*args, **kwargs)
            with scope:
                result = func(*args, **kwargs)
                scope.set_output(result)
            return result

        return wrapper

    def _wrap_async(self, func: Callable[..., Any], sig: inspect.Signature | None) -> Callable[..., Any]:
        recorder = self._recorder

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = self._fresh(func, sig, args, kwargs) if recorder.enabled else None
            if scope is None:
                return await func(*args, **kwargs)
            async with scope:
                result = await func(*args, **kwargs)
                scope.set_output(result)
            return result

        return wrapper

    def _wrap_gen(self, func: Callable[..., Any], sig: inspect.Signature | None) -> Callable[..., Any]:
        recorder = self._recorder

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            scope = self._fresh(func, sig, args, kwargs) if recorder.enabled else None
            if scope is None:
                return (yield from func(*args, **kwargs))
            # The consumer runs between yields in the same context: binding the current step
            # there would make the consumer's own steps children of this one.
            scope._bind_context = False
            with scope:
                result = yield from func(*args, **kwargs)
                scope.set_output(result)
            return result

        return wrapper

    def _wrap_async_gen(self, func: Callable[..., Any], sig: inspect.Signature | None) -> Callable[..., Any]:
        recorder = self._recorder

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            scope = self._fresh(func, sig, args, kwargs) if recorder.enabled else None
            agen = func(*args, **kwargs)
            if scope is None:
                async for item in agen:
                    yield item
                return
            scope._bind_context = False
            async with scope:
                try:
                    sent = None
                    while True:
                        sent = yield await agen.asend(sent)
                except StopAsyncIteration:
                    pass
                finally:
                    await agen.aclose()

        return wrapper
