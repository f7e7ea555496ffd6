"""Exports to Chrome Trace Event Format and OTLP/JSON, of traces the real recorder wrote."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from _export_traces import by_node, write_sample_trace
from click.testing import CliRunner
from google.protobuf import json_format  # opentelemetry-proto, in the dev extra
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tracekit.export import ExportError, to_chrome_trace, to_otlp_json
from tracekit.export._timeline import parse_time_ns
from tracekit.export.otlp import STATUS_CODE_ERROR, trace_id_for
from tracekit.export.report import render_report

EPS = 1e-6  # microsecond floats carry nanoseconds to 3 decimals


@pytest.fixture
def trace(tmp_path: Path) -> dict[str, Any]:
    return write_sample_trace(tmp_path)


def _x_events(chrome: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in chrome["traceEvents"] if e["ph"] == "X"}


def _inside(child: dict[str, Any], parent: dict[str, Any]) -> bool:
    return (parent["ts"] - EPS <= child["ts"]
            and child["ts"] + child["dur"] <= parent["ts"] + parent["dur"] + EPS)


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["ts"] < b["ts"] + b["dur"] and b["ts"] < a["ts"] + a["dur"]


# --- the sample trace is what the tests think it is --------------------------------------------


def test_sample_trace_has_every_shape(trace: dict[str, Any]) -> None:
    steps = by_node(trace)
    assert trace["run"]["outcome"] == "failure"
    assert steps["parse"]["parent_step_id"] == steps["read"]["step_id"]
    assert steps["shard_a"]["parent_step_id"] == steps["fan_out"]["step_id"]
    assert steps["publish"]["status"] == "in_flight"
    assert steps["transform"]["status"] == "failed"
    assert trace["errors"][0]["scope"] == "scheduler"


# --- Chrome Trace Event Format ------------------------------------------------------------------


def test_chrome_events_are_well_formed(trace: dict[str, Any]) -> None:
    chrome = to_chrome_trace(trace)
    orjson.dumps(chrome)  # JSON-ready
    assert chrome["displayTimeUnit"] in ("ms", "ns")
    xs = [e for e in chrome["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == len(trace["steps"])
    for e in xs:
        assert e["ts"] >= 0 and e["dur"] >= 0
        assert e["pid"] == trace["run"]["pid"]
        assert isinstance(e["tid"], int) and e["tid"] >= 1
        step = next(s for s in trace["steps"] if s["step_id"] == e["args"]["step_id"])
        assert e["dur"] == pytest.approx(step["duration_ns"] / 1000, abs=EPS)
        assert e["args"]["input_hash"] == "blake3:" + step["input_hash"]["value"]
        assert e["args"]["status"] == step["status"]


def test_chrome_lanes_nest_strictly(trace: dict[str, Any]) -> None:
    # Perfetto and chrome://tracing need the X events of one lane to be disjoint or nested.
    xs = [e for e in to_chrome_trace(trace)["traceEvents"] if e["ph"] == "X"]
    for a in xs:
        for b in xs:
            if a is b or a["tid"] != b["tid"] or not _overlap(a, b):
                continue
            assert _inside(a, b) or _inside(b, a), (a["name"], b["name"])


def test_chrome_children_nest_in_their_parents(trace: dict[str, Any]) -> None:
    x = _x_events(to_chrome_trace(trace))
    for child, parent in [("read", "load"), ("parse", "read"), ("check", "load"),
                          ("shard_a", "fan_out"), ("shard_b", "fan_out")]:
        assert _inside(x[child], x[parent]), (child, parent)
    # Sequential children share their parent's lane, so the viewer draws them nested.
    assert x["read"]["tid"] == x["load"]["tid"] == x["parse"]["tid"] == x["check"]["tid"]


def test_chrome_concurrent_steps_get_separate_lanes(trace: dict[str, Any]) -> None:
    x = _x_events(to_chrome_trace(trace))
    for a, b in [("thread_0", "thread_1"), ("shard_a", "shard_b")]:
        assert _overlap(x[a], x[b]), "the fixture makes them overlap"
        assert x[a]["tid"] != x[b]["tid"]
    # One of the two concurrent children still sits on the parent's lane.
    assert x["fan_out"]["tid"] in (x["shard_a"]["tid"], x["shard_b"]["tid"])


def test_chrome_marks_failure_and_in_flight(trace: dict[str, Any]) -> None:
    chrome = to_chrome_trace(trace)
    x = _x_events(chrome)
    failed = x["transform"]
    assert failed["cname"] == "terrible"
    assert failed["args"]["error_message"] == "could not fetch <input>"
    instants = [e for e in chrome["traceEvents"] if e["ph"] == "i"]
    at_failure = [e for e in instants if e["args"].get("step_id") == failed["args"]["step_id"]]
    assert len(at_failure) == 1
    mark = at_failure[0]
    assert mark["tid"] == failed["tid"] and mark["s"] == "t"
    assert mark["ts"] == pytest.approx(failed["ts"] + failed["dur"], abs=EPS)
    assert mark["args"]["type"].endswith("FetchError")
    assert "cname" not in x["load"]
    assert x["publish"]["cname"] == "yellow" and x["publish"]["args"]["status"] == "in_flight"
    runner = [e for e in instants if e["s"] == "p"]
    assert [e["args"]["message"] for e in runner] == ["worker lost heartbeat"]


def test_chrome_metadata_names_process_and_lanes(trace: dict[str, Any]) -> None:
    chrome = to_chrome_trace(trace)
    meta = [e for e in chrome["traceEvents"] if e["ph"] == "M"]
    process = next(e for e in meta if e["name"] == "process_name")
    assert "nightly" in process["args"]["name"] and trace["run"]["id"] in process["args"]["name"]
    named = {e["tid"] for e in meta if e["name"] == "thread_name"}
    used = {e["tid"] for e in chrome["traceEvents"] if e["ph"] in ("X", "i")}
    assert used <= named
    assert chrome["otherData"]["id"] == trace["run"]["id"]


def _envelope(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"trace_version": 1, "pack": {"pack_ref": "p"}, "flow": {"id": "f", "version": "1"},
            "run": {"id": "r1", "outcome": "success", "started_at": "2026-11-23T12:00:00.000000Z",
                    "pid": 7},
            "steps": steps}


def _step(step_id: str, start_us: int, dur_ns: int, parent: str | None = None) -> dict[str, Any]:
    return {"step_id": step_id, "parent_step_id": parent, "node_id": step_id, "component_id": "c",
            "operation": "call", "status": "completed",
            "started_at": f"2026-11-23T12:00:00.{start_us:06d}Z", "duration_ns": dur_ns,
            "duration_ms": dur_ns // 1_000_000, "input_hash": {"algorithm": "blake3", "value": "0" * 64},
            "validation_issues": []}


def test_chrome_child_outliving_its_parent_leaves_the_lane() -> None:
    # A step that spawned a thread can end before its child: drawing the child on the parent's
    # lane would break the lane's nesting, so it moves to a lane of its own.
    env = _envelope([_step("p", 0, 1_000_000), _step("c", 500, 5_000_000, parent="p")])
    x = _x_events(to_chrome_trace(env))
    assert x["c"]["tid"] != x["p"]["tid"]


def test_chrome_clamps_microsecond_rounding_into_the_parent() -> None:
    # Times are written to the microsecond, so a child can seem to start 1 µs before its parent.
    env = _envelope([_step("p", 10, 1_000_000), _step("c", 9, 1_000_500, parent="p")])
    x = _x_events(to_chrome_trace(env))
    assert x["c"]["tid"] == x["p"]["tid"]
    assert _inside(x["c"], x["p"])


def test_seed_format_trace_is_laid_out_end_to_end() -> None:
    # The seed recorder wrote no run, step ids or start times: steps follow one another.
    steps = [{k: v for k, v in _step(n, 0, 2_000_000).items()
              if k not in ("step_id", "parent_step_id", "started_at", "duration_ns", "status")}
             for n in ("a", "b")]
    env = {"trace_version": 1, "pack": {"pack_ref": "p"}, "flow": {"id": "f", "version": "1"},
           "steps": steps}
    x = _x_events(to_chrome_trace(env))
    assert x["a"]["ts"] == 0 and x["b"]["ts"] == pytest.approx(2000)
    assert "estimated" in x["b"]["args"]["timing"]
    otlp = to_otlp_json(env)
    assert len(otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]) == 3


@pytest.mark.parametrize(
    ("mutate", "pointer", "words"),
    [
        (lambda e: e.update(steps={"a": 1}), "/steps", "JSON array"),
        (lambda e: e["steps"][0].update(started_at="yesterday"), "/steps/0/started_at", "RFC 3339"),
        (lambda e: e["steps"][0].update(duration_ns=-5), "/steps/0/duration_ns", "integer >= 0"),
        (lambda e: e["steps"][0].update(status="paused"), "/steps/0/status", "in_flight"),
        (lambda e: e["run"].update(started_at="2026-13-40T00:00:00Z"), "/run/started_at", "RFC 3339"),
    ],
)
def test_malformed_envelope_names_the_field(mutate: Any, pointer: str, words: str) -> None:
    env = _envelope([_step("a", 0, 10)])
    mutate(env)
    for export in (to_chrome_trace, to_otlp_json):
        with pytest.raises(ExportError) as info:
            export(env)
        assert info.value.pointer == pointer
        assert words in str(info.value)


def test_time_parsing_is_exact_to_the_nanosecond() -> None:
    assert parse_time_ns("1970-01-01T00:00:01.000000001Z", "/t") == 1_000_000_001
    assert parse_time_ns("1970-01-01T02:00:00+02:00", "/t") == 0


# --- OTLP/JSON ----------------------------------------------------------------------------------


def _parse_with_protobuf(otlp: dict[str, Any]) -> Any:
    """Parse with the real opentelemetry-proto classes (strict: unknown fields are errors).

    OTLP/JSON writes ids in hex where the generic protobuf mapping expects base64; convert
    exactly those fields, nothing else.
    """
    doc = copy.deepcopy(otlp)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.Parse(orjson.dumps(doc), trace_service_pb2.ExportTraceServiceRequest())


def test_otlp_parses_as_export_trace_service_request(trace: dict[str, Any]) -> None:
    otlp = to_otlp_json(trace)
    request = _parse_with_protobuf(otlp)
    spans = request.resource_spans[0].scope_spans[0].spans
    assert len(spans) == len(trace["steps"]) + 1  # the run's root span, then one per step
    raw = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for parsed, written in zip(spans, raw, strict=True):
        assert parsed.trace_id == bytes.fromhex(written["traceId"]) and len(parsed.trace_id) == 16
        assert parsed.span_id == bytes.fromhex(written["spanId"]) and len(parsed.span_id) == 8
        assert parsed.start_time_unix_nano == int(written["startTimeUnixNano"])
        assert parsed.end_time_unix_nano >= parsed.start_time_unix_nano
    resource = {a.key: a.value for a in request.resource_spans[0].resource.attributes}
    assert resource["service.name"].string_value == "nightly"
    assert resource["process.pid"].int_value == trace["run"]["pid"]


def test_otlp_parent_links_follow_parent_step_ids(trace: dict[str, Any]) -> None:
    spans = to_otlp_json(trace)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    root, steps = spans[0], spans[1:]
    assert "parentSpanId" not in root
    assert root["traceId"] == trace["run"]["id"]  # the run id is a UUID in hex: kept as it is
    by_step = {}
    for span in steps:
        attrs = {a["key"]: a["value"] for a in span["attributes"]}
        by_step[attrs["tracekit.step_id"]["stringValue"]] = span
    assert len({s["spanId"] for s in spans}) == len(spans)
    for step in trace["steps"]:
        span = by_step[step["step_id"]]
        assert span["name"] == step["node_id"]
        assert span["traceId"] == root["traceId"]
        assert int(span["startTimeUnixNano"]) == parse_time_ns(step["started_at"], "")
        assert int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"]) == step["duration_ns"]
        expected = by_step[step["parent_step_id"]]["spanId"] if step["parent_step_id"] else root["spanId"]
        assert span["parentSpanId"] == expected


def test_otlp_failed_step_has_error_status_and_exception_event(trace: dict[str, Any]) -> None:
    request = _parse_with_protobuf(to_otlp_json(trace))
    spans = {s.name: s for s in request.resource_spans[0].scope_spans[0].spans}
    failed = spans["transform"]
    assert failed.status.code == STATUS_CODE_ERROR
    assert failed.status.message == "could not fetch <input>"
    (event,) = [e for e in failed.events if e.name == "exception"]
    attrs = {a.key: a.value for a in event.attributes}
    assert attrs["exception.type"].string_value.endswith("FetchError")
    assert attrs["exception.message"].string_value == "could not fetch <input>"
    assert "KeyError" in attrs["exception.stacktrace"].string_value
    assert attrs["tracekit.error.root_cause"].string_value == "KeyError: 'bucket'"
    hints = [v.string_value for v in attrs["tracekit.error.hints"].array_value.values]
    assert "Check that the upstream bucket exists." in hints
    ok = {a.key: a.value for a in spans["load"].attributes}
    assert ok["tracekit.status"].string_value == "completed"
    assert ok["tracekit.attempt"].int_value == 1
    output_hash = by_node(trace)["load"]["output_hash"]["value"]
    assert ok["tracekit.output_hash"].string_value == "blake3:" + output_hash
    assert spans["load"].status.code == 0
    assert spans["nightly"].status.code == STATUS_CODE_ERROR  # the run's root span
    runner_events = [e for e in spans["nightly"].events if e.name == "exception"]
    assert len(runner_events) == 1


def test_otlp_ids_are_deterministic(trace: dict[str, Any]) -> None:
    assert to_otlp_json(trace) == to_otlp_json(copy.deepcopy(trace))
    other = copy.deepcopy(trace)
    other["run"]["id"] = "run-42"
    a = to_otlp_json(trace)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    b = to_otlp_json(other)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert b[0]["traceId"] == trace_id_for("run-42") != a[0]["traceId"]
    assert len(b[0]["traceId"]) == 32 and int(b[0]["traceId"], 16)
    assert {s["spanId"] for s in a}.isdisjoint(s["spanId"] for s in b)


def test_otlp_keeps_span_ids_recorded_from_opentelemetry() -> None:
    parent_id, child_id = "00f067aa0ba902b7", "53995c3f42cd8ad8"
    env = _envelope([_step(parent_id, 0, 2_000_000), _step(child_id, 10, 1_000, parent=parent_id),
                     _step("s3", 20, 1_000, parent=child_id)])
    spans = {s["name"]: s for s in to_otlp_json(env)["resourceSpans"][0]["scopeSpans"][0]["spans"]}
    assert spans[parent_id]["spanId"] == parent_id
    assert spans[child_id]["spanId"] == child_id and spans[child_id]["parentSpanId"] == parent_id
    assert spans["s3"]["parentSpanId"] == child_id and len(spans["s3"]["spanId"]) == 16


# --- the command line ---------------------------------------------------------------------------


def _invoke(args: list[str]) -> Any:
    from tracekit.cli import cli

    return CliRunner().invoke(cli, args)


@pytest.fixture
def trace_file(tmp_path: Path, trace: dict[str, Any]) -> Path:
    return tmp_path / "trace.json"


@pytest.mark.parametrize("fmt", ["chrome", "otlp"])
def test_cli_export_writes_the_file(trace_file: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out" / f"{fmt}.json"
    result = _invoke(["export", str(trace_file), "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = orjson.loads(out.read_bytes())
    expected = {"chrome": to_chrome_trace, "otlp": to_otlp_json}[fmt](orjson.loads(trace_file.read_bytes()))
    assert written == expected
    assert not [p for p in out.parent.iterdir() if p != out]  # no temporary file left behind


def test_cli_export_to_stdout(trace_file: Path) -> None:
    result = _invoke(["export", str(trace_file), "-f", "otlp", "-o", "-"])
    assert result.exit_code == 0
    assert orjson.loads(result.stdout)["resourceSpans"]


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (None, 2, "no such file"),
        (b"", 1, "empty file"),
        (b'{"steps": [', 1, "truncated"),
        (b'{"trace_version": 1}', 1, "not a valid trace"),
    ],
)
def test_cli_export_bad_input(tmp_path: Path, content: bytes | None, code: int, words: str) -> None:
    path = tmp_path / "in.json"
    if content is not None:
        path.write_bytes(content)
    result = _invoke(["export", str(path), "-f", "chrome", "-o", str(tmp_path / "o.json")])
    assert result.exit_code == code
    assert words in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.json").exists()


def test_cli_export_usage_errors(trace_file: Path) -> None:
    assert _invoke(["export", str(trace_file), "-f", "zipkin"]).exit_code == 2
    missing = _invoke(["export", str(trace_file)])
    assert missing.exit_code == 2 and "--format" in missing.output


def test_cli_export_unwritable_output(trace_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracekit.cli.export as cli_export

    def refuse(target: Path, data: bytes, *, mode: int = 0o644) -> None:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(cli_export, "atomic_write", refuse)
    result = _invoke(["export", str(trace_file), "-f", "chrome", "-o", "x.json"])
    assert result.exit_code == 2
    assert "cannot write" in result.output and "Permission denied" in result.output
    assert "Traceback" not in result.output


# --- any shape of steps -------------------------------------------------------------------------

_intervals = st.lists(
    st.tuples(st.integers(0, 2_000), st.integers(0, 3_000_000), st.integers(-1, 30)),
    min_size=1, max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_intervals)
def test_lanes_nest_for_any_steps(raw: list[tuple[int, int, int]]) -> None:
    # Random starts (µs), durations (ns) and parent links (possibly dangling or cyclic).
    steps = [_step(f"s{i}", start, dur, parent=f"s{p}" if p >= 0 else None)
             for i, (start, dur, p) in enumerate(raw)]
    env = _envelope(steps)
    chrome = to_chrome_trace(env)
    xs = [e for e in chrome["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == len(steps)
    for a in xs:
        assert a["ts"] >= 0 and a["dur"] >= 0
        for b in xs:
            if a is not b and a["tid"] == b["tid"] and _overlap(a, b):
                assert _inside(a, b) or _inside(b, a)
    spans = to_otlp_json(env)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len({s["spanId"] for s in spans}) == len(spans) == len(steps) + 1
    known = {s["spanId"] for s in spans}
    assert all(s["parentSpanId"] in known for s in spans[1:])
    assert render_report(env).count('<div class="bar st-') == len(steps)
