"""The envelope (``trace_version`` 1) and its JSON form.

A step is built in exactly one place (:class:`Step`) and turned into JSON in exactly one place
(:meth:`Step.to_json`); hex encoding, timestamps and JSON building are deferred to flush time so
the per-node cost stays close to the hashing itself.
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass
from typing import Any, Final, Literal

from tracekit.capture.hashing import hash_object, resolve_digest
from tracekit.capture.redact import Capture
from tracekit.observer import NodeEvent, ValidationIssue

__all__ = [
    "STATUSES",
    "TRACE_VERSION",
    "RunInfo",
    "Status",
    "Step",
    "TraceContext",
    "rfc3339",
]

TRACE_VERSION: Final = 1

Status = Literal["completed", "failed", "cancelled", "in_flight"]
STATUSES: Final = ("completed", "failed", "cancelled", "in_flight")
OUTCOMES: Final = ("success", "failure", "cancelled", "in_progress")


def rfc3339(epoch_ns: int) -> str:
    """RFC 3339 UTC with microseconds (truncated), e.g. ``2026-11-23T12:00:00.123456Z``."""
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    return f"{_second(seconds)}.{ns // 1_000:06d}Z"


@functools.lru_cache(maxsize=256)
def _second(epoch_s: int) -> str:
    # Steps of a flush share a few seconds: strftime was ~60% of a 10,000-step flush.
    return _dt.datetime.fromtimestamp(epoch_s, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """What is being run: the pack (a versioned bundle of flows) and the flow."""

    pack_ref: str
    flow_id: str
    flow_version: str
    resolved_digest: str | None = None
    runner_version: str | None = None


class Step:
    """One invocation of a node, in flight or finished.

    Mutable only until it is finished; after that the ring buffer owns it and nothing writes it.
    """

    __slots__ = (
        "attempt",
        "capture",
        "component_id",
        "ctx_key",
        "end_ns",
        "error",
        "given_id",
        "input_src",
        "issues",
        "node_id",
        "operation",
        "output_src",
        "parent_step_id",
        "seq",
        "start_ns",
        "state_delta_src",
        "status",
    )

    def __init__(
        self,
        seq: int,
        event: NodeEvent,
        parent_step_id: str | None,
        start_ns: int,
        input_src: bytes,
        capture: Capture | None,
        ctx_key: Any,
    ) -> None:
        # The event's fields are copied, never the event: it holds the payload, which the
        # ring buffer must not keep alive.
        self.seq = seq
        self.node_id = event.node_id
        self.component_id = event.component_id
        self.operation = event.operation
        self.given_id = event.step_id
        self.parent_step_id = parent_step_id
        self.attempt = event.attempt
        self.start_ns = start_ns
        self.input_src = input_src  # see tracekit.capture.hashing.hash_source
        self.capture = capture
        self.ctx_key = ctx_key
        self.end_ns = 0
        self.status: Status = "in_flight"
        self.output_src: bytes | None = None
        self.state_delta_src: bytes | None = None
        self.issues: list[ValidationIssue] | None = None
        self.error: dict[str, Any] | None = None

    @property
    def step_id(self) -> str:
        return self.given_id if self.given_id is not None else f"s{self.seq}"

    def to_json(self, wall_anchor_ns: int, perf_anchor_ns: int, now_perf_ns: int) -> dict[str, Any]:
        """The step's envelope form; in-flight steps report the time elapsed so far."""
        end = self.end_ns if self.status != "in_flight" else now_perf_ns
        duration_ns = max(0, end - self.start_ns)
        out: dict[str, Any] = {
            "step_id": self.step_id,
            "parent_step_id": self.parent_step_id,
            "node_id": self.node_id,
            "component_id": self.component_id,
            "operation": self.operation,
            "attempt": self.attempt,
            "status": self.status,
            "started_at": rfc3339(wall_anchor_ns + (self.start_ns - perf_anchor_ns)),
            "duration_ns": duration_ns,
            "duration_ms": duration_ns // 1_000_000,
            "input_hash": hash_object(resolve_digest(self.input_src)),
        }
        if self.output_src is not None:
            out["output_hash"] = hash_object(resolve_digest(self.output_src))
        if self.state_delta_src is not None:
            out["state_delta_hash"] = hash_object(resolve_digest(self.state_delta_src))
        if self.capture is not None:
            out["invocation_json"] = {
                "component_id": self.component_id,
                "operation": self.operation,
                "payload": self.capture.fragment(),
            }
            if self.capture.replay is not None:
                out["replay"] = self.capture.replay
        out["validation_issues"] = [
            {"code": i.code, "message": i.message, "path": i.path, "severity": i.severity}
            for i in (self.issues or ())
        ]
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class RunInfo:
    """The run a recorder is currently recording (explicit ``run()`` block or implicit)."""

    id: str
    wall_anchor_ns: int
    perf_anchor_ns: int
    explicit: bool
    outcome: str = "in_progress"
    finished_ns: int | None = None
    target: str | None = None  # the file this run writes, once chosen
    wrote: bool = False
    flushed_at_error: bool = False
    failed_flush_logged: bool = False
