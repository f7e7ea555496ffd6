"""Secrets outside captured payloads: error text and error events are redacted, capture or not.

A URL's userinfo password is masked (the host is kept) in messages, chains, group members,
tracebacks and ``Traceable`` text; a denylisted key's value is masked in error events' tags and
context and in the text of ``details``. Every test reads the whole written file for the secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder, ValidationIssue
from tracekit.errors import error_record
from tracekit.errors.text import redact_text

URL = "postgres://app:s3cr3t@db.internal/orders"
SAFE_URL = "postgres://app:[REDACTED]@db.internal/orders"
SECRETS = (b"s3cr3t", b"hunter2", b"tok-123", b"k-456", b"abc.def.ghi")


def _recorder(tmp_path: Path, context: TraceContext, capture: bool) -> TraceRecorder:
    return TraceRecorder(
        TraceConfig.create(mode="always", out=tmp_path / "t.json", capture_inputs=capture), context
    )


def _written(tmp_path: Path) -> tuple[bytes, dict[str, Any]]:
    data = (tmp_path / "t.json").read_bytes()
    for secret in SECRETS:
        assert secret not in data, f"{secret!r} was written"
    doc: dict[str, Any] = orjson.loads(data)
    return data, doc


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        (f"cannot connect to {URL}", f"cannot connect to {SAFE_URL}"),
        ("redis://:s3cr3t@cache:6379/0", "redis://:[REDACTED]@cache:6379/0"),
        ("amqp://guest:p@ss@word@rabbit/vhost", "amqp://guest:[REDACTED]@rabbit/vhost"),
        ("https://user@example.com/x", "https://user@example.com/x"),  # no password: nothing to hide
        ("see https://example.com:8443/a?b=c", "see https://example.com:8443/a?b=c"),
        ("login(password='hunter2', user='bob')", "login(password='[REDACTED]', user='bob')"),
        ('{"api_key": "k-456", "n": 1}', '{"api_key": "[REDACTED]", "n": 1}'),
        ("GET /x?token=tok-123&page=2", "GET /x?token=[REDACTED]&page=2"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer [REDACTED]"),
        ("if token == expected:", "if token == expected:"),
        ("plain words: nothing secret here", "plain words: nothing secret here"),
    ],
)
def test_redact_text(text: str, safe: str) -> None:
    assert redact_text(text) == safe
    assert redact_text(safe) == safe  # redacting twice changes nothing


def test_redact_text_is_bounded_on_hostile_input() -> None:
    hostile = "a." * 200_000 + "b://" * 50_000 + "password=" * 50_000
    assert len(redact_text(hostile)) >= len(hostile) // 2  # returns (quickly), never raises


class LoginFailed(Exception):
    def trace_format(self) -> str:
        return f"connection {URL} refused; creds password=hunter2"


def _raise_chain() -> None:
    try:
        raise ConnectionError(f"could not reach {URL}")
    except ConnectionError as err:
        raise LoginFailed(f"login to {URL} failed with {{'password': 'hunter2'}}") from err


@pytest.mark.parametrize("capture", [False, True])
def test_error_text_is_redacted_everywhere_it_is_recorded(
    capture: bool, tmp_path: Path, context: TraceContext
) -> None:
    rec = _recorder(tmp_path, context, capture)
    with pytest.raises(ExceptionGroup), rec.run():
        ev = NodeEvent("connect", "db", "call", payload={"dsn": "db.internal"})
        rec.on_node_start(ev)
        try:
            _raise_chain()
        except LoginFailed as err:
            rec.on_node_error(ev, err)
        # A flow error (no node in flight) and a group of them, raised out of the run.
        raise ExceptionGroup(f"pipeline {URL} broke", [ValueError(f"member saw {URL}")])
    data, doc = _written(tmp_path)
    (step,) = doc["steps"]
    error = step["error"]
    assert SAFE_URL in error["message"] and "[REDACTED]" in error["message"]
    assert [SAFE_URL in link["message"] for link in error["details"]["chain"]] == [True, True]
    assert SAFE_URL in error["details"]["trace"]
    assert SAFE_URL in error["details"]["traceback"]
    (flow_error,) = doc["errors"]
    assert SAFE_URL in flow_error["message"]
    assert SAFE_URL in flow_error["error"]["details"]["chain"][0]["exceptions"][0]["message"]
    assert b"db.internal" in data  # the host is kept: it is what you need to debug


def test_error_events_tags_context_and_message_are_redacted_with_capture_off(
    tmp_path: Path, context: TraceContext
) -> None:
    rec = _recorder(tmp_path, context, capture=False)
    seen: list[Any] = []
    rec.errors.subscribe(seen.append)
    with rec.run():
        event = rec.emit_error(
            "scheduler",
            message=f"queue {URL} unavailable",
            tags={"api_key": "k-456", "queue": "orders", "Session-Token": "tok-123", "dsn": URL},
            context={
                "db": {"host": "db.internal", "password": "hunter2"},
                "headers": [{"Authorization": "Bearer abc.def.ghi"}],
                "attempts": 3,
                "note": f"retrying {URL}",
            },
        )
    assert event is not None
    _, doc = _written(tmp_path)
    (written,) = doc["errors"]
    assert written["message"] == f"queue {SAFE_URL} unavailable"
    assert written["tags"] == {"api_key": "[REDACTED]", "queue": "orders", "Session-Token": "[REDACTED]",
                               "dsn": SAFE_URL}
    assert written["context"] == {
        "db": {"host": "db.internal", "password": "[REDACTED]"},
        "headers": [{"Authorization": "[REDACTED]"}],
        "attempts": 3,
        "note": f"retrying {SAFE_URL}",
    }
    # What subscribers and the in-memory channel see is the redacted event too.
    assert seen == [event] and event.to_json()["context"] == written["context"]


def test_extra_redact_keys_apply_to_error_events(tmp_path: Path, context: TraceContext) -> None:
    rec = TraceRecorder(TraceConfig.create(mode="always", out=tmp_path / "t.json", redact_keys=["tenant"]),
                        context)
    with rec.run():
        rec.emit_error("runner", tags={"tenant_id": "acme"}, context={"tenant": "acme"})
    (written,) = orjson.loads((tmp_path / "t.json").read_bytes())["errors"]
    assert written["tags"] == {"tenant_id": "[REDACTED]"} and written["context"] == {"tenant": "[REDACTED]"}


def test_validation_messages_are_redacted(tmp_path: Path, context: TraceContext) -> None:
    rec = _recorder(tmp_path, context, capture=False)
    with rec.run():
        ev = NodeEvent("check", "db", "validate", payload=None)
        rec.on_validation(ev, [ValidationIssue("bad_dsn", f"{URL} is not reachable")])
    _, doc = _written(tmp_path)
    (step,) = doc["steps"]
    assert step["validation_issues"][0]["message"] == f"{SAFE_URL} is not reachable"
    assert SAFE_URL in step["error"]["message"]


def test_error_record_details_pass_the_key_denylist() -> None:
    try:
        raise RuntimeError("config was {'user': 'bob', 'password': 'hunter2', 'secret': 'k-456'}")
    except RuntimeError as err:
        record = error_record(err)
    text = orjson.dumps(record)
    assert b"hunter2" not in text and b"k-456" not in text and b"bob" in text


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED]"),
        ("a basic configuration error", "a basic configuration error"),
        ("invalid token provided for user", "invalid token provided for user"),
        ("headers={'X-Api-Key': 'k-456'}", "headers={'X-Api-Key': '[REDACTED]'}"),
    ],
)
def test_redact_text_more(text: str, safe: str) -> None:
    assert redact_text(text) == safe
    assert redact_text(safe) == safe
