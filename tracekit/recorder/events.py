"""Runner-level error events (the envelope's ``errors[]``) and the run's record of failures.

Threading contract: any thread may emit; the run's list is guarded by the recorder's lock and
capped; subscribers of :attr:`errors` are called outside it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tracekit import errors as _errors
from tracekit.capture.coerce import capped_context, text
from tracekit.capture.redact import REDACTED, is_secret_key, redact
from tracekit.errors.events import SCOPES, ErrorEvent, Scope, json_context, json_tags
from tracekit.errors.text import cap_text, redact_text
from tracekit.recorder._state import RecorderState, log
from tracekit.trace.model import Step, rfc3339

__all__ = ["ErrorEvents"]


class ErrorEvents(RecorderState):
    """``emit_error`` and its bookkeeping, as part of :class:`~tracekit.recorder.TraceRecorder`."""

    if TYPE_CHECKING:
        def _node_failed(self) -> None: ...

    def _remember_error(self, error: BaseException) -> None:
        with self._lock:
            self._errors_seen.add(error)


    def _keep_error_event(self, event: ErrorEvent) -> None:
        """Add ``event`` to the run's ``errors[]`` (capped, dropped ones counted) and publish it."""
        with self._lock:
            if len(self._flow_errors) < self.config.max_errors:
                self._flow_errors.append(event)
            else:
                self._errors_dropped += 1
        self.errors.publish(event)

    def emit_error(
        self,
        scope: Scope = "runner",
        error: BaseException | None = None,
        *,
        message: str | None = None,
        code: str | None = None,
        node_id: str | None = None,
        step_id: str | None = None,
        tags: Mapping[str, object] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> ErrorEvent | None:
        """Record a runner-level failure that belongs to no node; never raises.

        It lands in the envelope's ``errors[]`` (capped by ``config.max_errors``), is published
        on :attr:`errors`, and counts as the run's first failure for flushing. Its message,
        tags and context are redacted (URL passwords, denylisted keys) even with capture off.
        """
        if not self._enabled:
            return None
        try:
            if scope not in SCOPES:
                self._count_misuse("invalid_scope")
                log.warning("tracekit: emit_error(scope=%r) is not one of %s; recorded as 'runner'",
                             scope, ", ".join(SCOPES))
                scope = "runner"
            record = None
            limit = self.config.max_detail_chars
            if error is not None:
                record = _errors.error_record(
                    error, code=code, max_chars=self.config.max_detail_chars
                )
                self._remember_error(error)
            event = ErrorEvent(
                scope=scope,
                time=rfc3339(time.time_ns()),
                code=code or (record["code"] if record else "flow_error"),
                message=cap_text(text(message), limit) if message
                else (record["message"] if record else "runner error"),
                node_id=node_id,
                step_id=step_id,
                tags=_safe_tags(tags, self.config.redact_keys, limit),
                context=_safe_context(context, self.config.redact_keys, self.config.max_capture_bytes),
                error=record,
            )
            self._keep_error_event(event)
            self._node_failed()
            return event
        except Exception:
            self._internal_error("emit_error")
            return None


    def note_recorder_error(self, step: Step | None, bookkeeping: BaseException, phase: str) -> None:
        """Say in ``errors[]`` that tracekit's own bookkeeping failed (it is not the run's failure)."""
        record = _errors.error_record(
            bookkeeping, phase=phase, code="recorder_error", max_chars=self.config.max_detail_chars
        )
        event = ErrorEvent(
            scope="runner",
            time=rfc3339(time.time_ns()),
            code="recorder_error",
            message=f"tracekit bookkeeping failed in step {phase}: {record['message']}",
            node_id=None if step is None else step.node_id,
            step_id=None if step is None else step.step_id,
            error=record,
        )
        self._keep_error_event(event)


# --- an error event's tags and context are redacted, whether or not inputs are captured --------


def _safe_tags(tags: Mapping[str, object] | None, extra: Iterable[str], limit: int) -> dict[str, str]:
    """Tags as strings, a denylisted key's value masked, every text redacted and capped."""
    return {
        cap_text(key, limit): REDACTED if is_secret_key(key, extra) else cap_text(value, limit)
        for key, value in json_tags(tags).items()
    }


def _safe_context(context: Mapping[str, Any] | None, extra: Iterable[str], limit: int) -> dict[str, Any]:
    """The context as JSON, capped (a marker when too big), denylisted keys masked at any
    depth and every string redacted (a connection string's password)."""
    capped = capped_context(json_context(context), limit)
    return {key: _redact_strings(value) for key, value in redact(capped, tuple(extra)).items()}


def _redact_strings(value: Any) -> Any:
    # redact() already cut the depth (to 64), so this walk is bounded too.
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redact_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item) for item in value]
    return value
