"""OpenTelemetry, both ways: spans in as tracekit steps, tracekit steps out as spans.

* :class:`TracekitSpanProcessor` is an SDK span processor: every span of an OTel-instrumented
  runner becomes a step, and the end of a local root span ends the run (flushed per the mode).
* :class:`OTelObserver` is an :class:`~tracekit.observer.ExecutionObserver` that emits each
  step as a span into your ``TracerProvider``, so runs show up in the tracing backend you
  already use; combine it with the recorder through :class:`~tracekit.CompositeObserver`.

This module imports ``opentelemetry`` at import time; ``import tracekit`` never does.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Status, StatusCode, format_span_id

from tracekit._guard import LogOnce
from tracekit._version import __version__
from tracekit.capture.hashing import hash_hex
from tracekit.errors import is_control_flow
from tracekit.observer import NodeEvent, ValidationIssue
from tracekit.recorder._context import execution_key

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span as SdkSpan

    from tracekit.recorder import TraceRecorder

__all__ = [
    "COMPONENT_ATTRIBUTES",
    "DEFAULT_COMPONENT",
    "TRACER_NAME",
    "OTelObserver",
    "SpanError",
    "TracekitSpanProcessor",
    "span_error",
]

_log = logging.getLogger("tracekit")

#: Span attributes that name the component, first found wins; then the instrumentation scope.
COMPONENT_ATTRIBUTES: Final = ("code.namespace", "code.function.name")
#: component_id of a span with neither such an attribute nor an instrumentation scope.
DEFAULT_COMPONENT: Final = "opentelemetry"
#: The instrumentation scope of the spans :class:`OTelObserver` emits.
TRACER_NAME: Final = "tracekit"
_RESEND_COUNT: Final = "http.request.resend_count"  # semconv: retries of one request
_MAX_ERROR_CLASSES: Final = 256  # distinct exception.type names given their own class
_KIND_NAMES: Final = {kind: kind.name.lower() for kind in otel_trace.SpanKind}  # hot path: no enum work


# --- errors that exist only as span data -----------------------------------------------------


class SpanError(Exception):
    """A failure known only from span data: an ``exception`` event or an ERROR status.

    Its class is named after ``exception.type`` (see :func:`_error_class`), ``str()`` is
    ``exception.message``, and the original stack trace is kept as its ``trace_format()``
    (the envelope's ``error.details.trace``), since no Python traceback object survives a span.
    """

    def __init__(self, message: str, stacktrace: str | None = None) -> None:
        super().__init__(message)
        self.otel_message = message
        self.otel_stacktrace = stacktrace

    def __str__(self) -> str:
        return self.otel_message

    def trace_format(self) -> str:
        return self.otel_stacktrace or ""


_classes: dict[str, type[SpanError]] = {}
_classes_lock = threading.Lock()


def _error_class(type_name: str) -> type[SpanError]:
    """A :class:`SpanError` subclass whose qualified name is ``type_name``.

    A builtin name (``ValueError``) also subclasses that builtin, so codes and hints work as
    for the real error. Nothing is ever imported from a name a span carries.
    """
    with _classes_lock:
        found = _classes.get(type_name)
        if found is not None:
            return found
        if len(_classes) >= _MAX_ERROR_CLASSES:
            return SpanError
        module, _, name = type_name.rpartition(".")
        name = name or "SpanError"
        namespace = {"__module__": module or "builtins", "__qualname__": name}
        made: type[SpanError] = type(name, (SpanError,), namespace)
        builtin = getattr(builtins, name, None) if not module else None
        if (
            isinstance(builtin, type)
            and issubclass(builtin, BaseException)
            and not issubclass(builtin, BaseExceptionGroup)
        ):
            try:
                richer = type(name, (SpanError, builtin), namespace)
                richer("probe")  # constructors that need more than a message are not used
                made = richer
            except TypeError:  # a layout conflict, or a constructor needing more (UnicodeDecodeError)
                pass
        _classes[type_name] = made
        return made


def span_error(span: ReadableSpan) -> SpanError | None:
    """The failure a finished span reports, or ``None``.

    Every ``exception`` event becomes one error (the last is the one raised, earlier ones its
    context); an ERROR status without such an event gives a :class:`SpanError` with the status
    description.
    """
    error: SpanError | None = None
    for ev in span.events:
        if ev.name != "exception":
            continue
        attrs = ev.attributes or {}
        type_name = str(attrs.get("exception.type") or "SpanError")
        message = str(attrs.get("exception.message") or "")
        stack = attrs.get("exception.stacktrace")
        current = _error_class(type_name)(message, None if stack is None else str(stack))
        current.__context__ = error
        error = current
    if error is None and span.status.status_code is StatusCode.ERROR:
        error = SpanError(span.status.description or "span status ERROR")
    return error


# --- spans in: the span processor ------------------------------------------------------------


def _component(span: ReadableSpan, attrs: Mapping[str, Any]) -> str:
    for key in COMPONENT_ATTRIBUTES:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    scope = span.instrumentation_scope
    if scope is not None and scope.name:
        return scope.name
    return DEFAULT_COMPONENT


def _is_local_root(span: ReadableSpan) -> bool:
    parent = span.parent
    return parent is None or parent.is_remote


class TracekitSpanProcessor(SpanProcessor):
    """Turns the spans of any OTel-instrumented runner into tracekit steps.

    Mapping: span name -> ``node_id``; ``code.namespace`` (or the instrumentation scope) ->
    ``component_id``; span kind -> ``operation``; span id (hex) -> ``step_id``; parent span id
    -> ``parent_step_id``; attributes at start -> payload; attributes at end -> output; an
    ERROR status or an ``exception`` event -> a failed step whose error keeps
    ``exception.type``, ``exception.message`` and ``exception.stacktrace``. When a local root
    span (no parent, or a remote one) ends, the run ends: ``flush_error`` if it failed, else
    ``flush_success`` (turn off with ``flush_on_root_end=False``).

    Threading contract: ``on_start`` runs on the thread that starts the span and ``on_end`` on
    the thread that ends it; both are thread-safe, never raise, and block only for the
    recorder's flush (at a run's first failure and when a root span ends, per the mode).
    """

    def __init__(self, recorder: TraceRecorder, *, flush_on_root_end: bool = True) -> None:
        self.recorder = recorder
        self.flush_on_root_end = flush_on_root_end
        self._events: dict[int, NodeEvent] = {}
        self._lock = threading.Lock()
        self._logged = LogOnce()

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        if not self.recorder.enabled:
            return
        try:
            event = self._event(span)
            with self._lock:
                self._events[span.context.span_id] = event
            self.recorder.on_node_start(event)
        except Exception:
            self._failed("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if not self.recorder.enabled:
            return
        try:
            ctx = span.context
            if ctx is None:
                return
            with self._lock:
                event = self._events.pop(ctx.span_id, None)
            if event is None:  # started before this processor was added
                event = self._event(span)
            error = span_error(span)
            if error is None:
                attrs = dict(span.attributes or {})
                self.recorder.on_node_end(event, attrs or None)
            else:
                self.recorder.on_node_error(event, error)
            if self.flush_on_root_end and _is_local_root(span):
                if error is None:
                    self.recorder.flush_success()
                else:
                    self.recorder.flush_error(error)
        except Exception:
            self._failed("on_end")

    def shutdown(self) -> None:
        """Nothing to release: traces are written by the recorder as runs end."""
        with self._lock:
            self._events.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Spans become steps synchronously, so there is never anything left to flush."""
        return True

    def _event(self, span: ReadableSpan) -> NodeEvent:
        attrs = dict(span.attributes or {})
        ctx = span.context
        parent = span.parent
        attempt = 1
        resend = attrs.get(_RESEND_COUNT)
        if isinstance(resend, int) and not isinstance(resend, bool) and resend >= 0:
            attempt = resend + 1
        return NodeEvent(
            node_id=span.name or "span",
            component_id=_component(span, attrs),
            operation=_KIND_NAMES.get(span.kind, "internal"),
            payload=attrs,
            step_id=None if ctx is None else format_span_id(ctx.span_id),
            parent_step_id=None if parent is None else format_span_id(parent.span_id),
            attempt=attempt,
        )

    def _failed(self, where: str) -> None:
        self._logged.warn(where, "tracekit: span processor %s failed; the runner is unaffected", where)


# --- steps out: the observer -----------------------------------------------------------------


def _tracer(target: Any) -> otel_trace.Tracer:
    if target is None:
        return otel_trace.get_tracer(TRACER_NAME, __version__)
    if isinstance(target, otel_trace.Tracer):
        return target
    if isinstance(target, otel_trace.TracerProvider):
        return target.get_tracer(TRACER_NAME, __version__)
    raise TypeError(
        f"OTelObserver: got {type(target).__qualname__}, allowed: an opentelemetry TracerProvider, "
        "a Tracer, or None (the global provider)"
    )


def _qualname(error: BaseException) -> str:
    t = type(error)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class OTelObserver:
    """Emits every tracekit step as an OpenTelemetry span into a user's tracer.

    A span starts at ``on_node_start`` (its parent is the span of ``parent_step_id`` when that
    step is open here, else the current OTel context) and ends at ``on_node_end`` or
    ``on_node_error`` (status ERROR and the exception recorded; a control-flow error such as a
    cancellation is recorded with ``tracekit.status = "cancelled"`` and no ERROR status).
    Attributes: ``tracekit.step_id``, ``tracekit.component_id`` (also ``code.namespace``),
    ``tracekit.operation``, ``tracekit.attempt``, and, with ``hash_payloads=True`` (default),
    ``tracekit.input_hash`` / ``tracekit.output_hash``: the same blake3 hex as the trace.

    Threading contract: callbacks come from any thread or asyncio task; starts and ends are
    paired by ``step_id``, else by (task or thread, ``node_id``), as the recorder does. Every
    method is thread-safe and never raises into the runner.
    """

    def __init__(self, target: Any = None, *, hash_payloads: bool = True) -> None:
        self.tracer = _tracer(target)
        self.hash_payloads = hash_payloads
        self._open: dict[Any, list[otel_trace.Span]] = {}
        self._by_step: dict[str, otel_trace.Span] = {}
        self._lock = threading.Lock()
        self._logged = LogOnce()

    @staticmethod
    def _key(event: NodeEvent) -> Any:
        return event.step_id if event.step_id is not None else (execution_key(), event.node_id)

    def on_node_start(self, event: NodeEvent) -> None:
        try:
            self._start(event)
        except Exception:
            self._failed("on_node_start")

    def on_node_end(self, event: NodeEvent, output: Any) -> None:
        try:
            span = self._take(event)
            if span is None:
                return
            if self.hash_payloads:
                span.set_attribute("tracekit.output_hash", hash_hex(output))
            span.end()
        except Exception:
            self._failed("on_node_end")

    def on_node_error(self, event: NodeEvent, error: BaseException) -> None:
        try:
            span = self._take(event) or self._start(event, register=False)  # never lose a failure
            span.record_exception(error, escaped=True)
            if is_control_flow(error):
                span.set_attribute("tracekit.status", "cancelled")
            else:
                span.set_attribute("error.type", _qualname(error))
                span.set_attribute("tracekit.status", "failed")
                span.set_status(Status(StatusCode.ERROR, f"{_qualname(error)}: {error}"))
            span.end()
        except Exception:
            self._failed("on_node_error")

    def on_validation(self, event: NodeEvent, issues: Sequence[ValidationIssue]) -> None:
        try:
            with self._lock:
                bucket = self._open.get(self._key(event))
                span = bucket[-1] if bucket else None
            own = span is None
            if span is None:
                span = self._start(event, register=False)
            failed = False
            for issue in issues:
                failed = failed or issue.severity == "error"
                span.add_event("tracekit.validation", {
                    "code": issue.code, "message": issue.message, "path": issue.path or "",
                    "severity": issue.severity,
                })
            if own:  # validation of a node that is not running: a span of its own
                if failed:
                    span.set_status(Status(StatusCode.ERROR, "validation failed"))
                span.end()
        except Exception:
            self._failed("on_validation")

    def _attributes(self, event: NodeEvent) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "tracekit.node_id": event.node_id,
            "tracekit.component_id": event.component_id,
            "code.namespace": event.component_id,
            "tracekit.operation": event.operation,
            "tracekit.attempt": event.attempt,
        }
        if event.step_id is not None:
            attrs["tracekit.step_id"] = event.step_id
        if event.parent_step_id is not None:
            attrs["tracekit.parent_step_id"] = event.parent_step_id
        if self.hash_payloads:
            attrs["tracekit.input_hash"] = hash_hex(event.payload)
        return attrs

    def _parent(self, event: NodeEvent) -> otel_context.Context | None:
        if event.parent_step_id is None:
            return None
        with self._lock:
            parent = self._by_step.get(event.parent_step_id)
        return None if parent is None else otel_trace.set_span_in_context(parent)

    def _start(self, event: NodeEvent, *, register: bool = True) -> otel_trace.Span:
        span = self.tracer.start_span(event.node_id, context=self._parent(event),
                                      attributes=self._attributes(event))
        if not register:
            return span
        with self._lock:
            self._open.setdefault(self._key(event), []).append(span)
            if event.step_id is not None:
                self._by_step[event.step_id] = span
        return span

    def _take(self, event: NodeEvent) -> otel_trace.Span | None:
        key = self._key(event)
        with self._lock:
            bucket = self._open.get(key)
            if not bucket:
                return None
            span = bucket.pop()
            if not bucket:
                del self._open[key]
            if event.step_id is not None:
                self._by_step.pop(event.step_id, None)
            return span

    def _failed(self, where: str) -> None:
        self._logged.warn(where, "tracekit: OTelObserver.%s failed; the runner is unaffected", where)
