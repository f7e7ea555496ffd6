"""Secrets: capture is off by default; when on, secret keys are masked at any depth, users can
extend the denylist and add a redactor; hashes always cover the original payload; trace files
holding captured inputs are private (0600)."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit.capture.hashing import hash_hex
from tracekit.capture.redact import DENYLIST, REDACTED
from tracekit.trace.schema import validate_document

SECRET = "s3cr3t-value"
# Every documented word, in the spellings real payloads use.
SECRET_KEYS = (
    "password", "Password", "PASSWORD", "user_password", "passwd", "db_passwd", "secret",
    "client_secret", "SecretKey", "token", "access_token", "X-Auth-Token", "refresh_token",
    "api_key", "API_KEY", "apikey", "ApiKey", "auth", "Authorization", "oauth_state", "cookie",
    "Set-Cookie", "session", "SESSION_ID", "sessionid", "credentials", "aws_credentials",
    "private_key", "PRIVATE_KEY",
)
PUBLIC_KEYS = ("user", "name", "count", "url", "region", "rows")


def _capture(tmp_path: Path, context: TraceContext, payload: Any, **overrides: Any) -> dict[str, Any]:
    """Record one step with ``payload`` and return the step as written."""
    out = tmp_path / "t.json"
    options: dict[str, Any] = {"mode": "always", "out": out, "capture_inputs": True, **overrides}
    rec = TraceRecorder(TraceConfig.create(**options), context)
    ev = NodeEvent("login", "auth.client", "call", payload=payload)
    rec.on_node_start(ev)
    rec.on_node_end(ev, "ok")
    assert rec.flush_buffer() == out
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    assert validate_document(doc) == []
    assert rec.misuse == {}
    (step,) = doc["steps"]
    return step


def _walk_keys(value: Any, found: dict[str, Any] | None = None) -> dict[str, Any]:
    found = {} if found is None else found
    if isinstance(value, dict):
        for k, v in value.items():
            found.setdefault(k, v)
            _walk_keys(v, found)
    elif isinstance(value, list):
        for v in value:
            _walk_keys(v, found)
    return found


def test_capture_is_off_by_default(tmp_path: Path, context: TraceContext) -> None:
    config = TraceConfig.from_env(mode="always", out=tmp_path / "t.json")
    assert config.capture_inputs is False
    rec = TraceRecorder(config, context)
    ev = NodeEvent("n", "c", "call", payload={"password": SECRET})
    rec.on_node_start(ev)
    rec.on_node_end(ev, None)
    rec.flush_buffer()
    data = (tmp_path / "t.json").read_bytes()
    assert b"invocation_json" not in data and SECRET.encode() not in data
    (step,) = orjson.loads(data)["steps"]
    assert step["input_hash"]["value"] == hash_hex({"password": SECRET})


def test_the_environment_turns_capture_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE_CAPTURE_INPUTS", "1")
    assert TraceConfig.from_env().capture_inputs is True


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_each_denylisted_key_is_masked(key: str, tmp_path: Path, context: TraceContext) -> None:
    step = _capture(tmp_path, context, {key: SECRET, "user": "ada"})
    assert step["invocation_json"]["payload"] == {key: REDACTED, "user": "ada"}


def test_secret_keys_at_any_depth_and_in_lists(tmp_path: Path, context: TraceContext) -> None:
    payload = {
        "user": "ada",
        "config": {"db": {"url": "postgres://db", "password": SECRET, "pool": [{"token": SECRET}]}},
        "headers": [["Authorization", "not a key"], {"Cookie": SECRET, "Accept": "json"}],
        "batches": ({"rows": 3, "api_key": SECRET}, {"rows": 4, "nested": [[{"session": SECRET}]]}),
        "api_keys": [SECRET, SECRET],  # the whole list sits under a secret key
    }
    step = _capture(tmp_path, context, payload)
    captured = step["invocation_json"]["payload"]
    assert SECRET not in orjson.dumps(captured).decode()
    keys = _walk_keys(captured)
    for k in ("password", "token", "Cookie", "api_key", "session", "api_keys"):
        assert keys[k] == REDACTED
    for k in ("user", "url", "rows", "Accept"):
        assert keys[k] != REDACTED
    assert captured["headers"][0] == ["Authorization", "not a key"]  # a value, not a key
    assert step["input_hash"]["value"] == hash_hex(payload)  # hashed before redaction


def test_denylist_holds_the_documented_words() -> None:
    for word in ("password", "passwd", "secret", "token", "api_key", "apikey", "auth", "cookie",
                 "session", "credential", "private_key"):
        assert word in DENYLIST


def test_secrets_inside_objects_are_masked(tmp_path: Path, context: TraceContext) -> None:
    @dataclasses.dataclass
    class Login:
        user: str
        password: str

    class Client:
        def __init__(self) -> None:
            self.endpoint = "https://api"
            self.api_key = SECRET

    class Slotted:
        __slots__ = ("name", "private_key")

        def __init__(self) -> None:
            self.name = "k"
            self.private_key = SECRET

    payload = {"login": Login("ada", SECRET), "client": Client(), "key": Slotted()}
    step = _capture(tmp_path, context, payload)
    text = orjson.dumps(step["invocation_json"]["payload"]).decode()
    assert SECRET not in text
    assert "ada" in text and "https://api" in text
    assert step["input_hash"]["value"] == hash_hex(payload)


def test_users_extend_the_denylist(tmp_path: Path, context: TraceContext) -> None:
    payload = {"ssn_last4": "1234", "IBAN": "DE89 3704", "Account": {"pin": "0000"}, "city": "Oslo"}
    step = _capture(tmp_path, context, payload, redact_keys=("iban", "PIN"))
    captured = step["invocation_json"]["payload"]
    assert captured["IBAN"] == REDACTED and captured["Account"]["pin"] == REDACTED
    assert captured["city"] == "Oslo"


def test_a_redactor_callback_runs_after_the_denylist(tmp_path: Path, context: TraceContext) -> None:
    seen: list[Any] = []

    def mask_emails(value: Any) -> Any:
        seen.append(value)
        if isinstance(value, dict):
            return {k: mask_emails(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask_emails(v) for v in value]
        return "[EMAIL]" if isinstance(value, str) and "@" in value else value

    payload = {"to": ["ada@example.com", "bob"], "password": SECRET, "body": "hi"}
    step = _capture(tmp_path, context, payload, redactor=mask_emails)
    assert step["invocation_json"]["payload"] == {
        "to": ["[EMAIL]", "bob"], "password": REDACTED, "body": "hi",
    }
    assert seen[0]["password"] == REDACTED  # the callback never sees the secret
    assert payload["password"] == SECRET  # the runner's payload is not touched
    assert step["input_hash"]["value"] == hash_hex(payload)


def test_a_failing_redactor_drops_the_capture_not_the_step(tmp_path: Path, context: TraceContext) -> None:
    def broken(value: Any) -> Any:
        raise RuntimeError("redactor bug " + SECRET)

    payload = {"user": "ada", "note": SECRET}
    step = _capture(tmp_path, context, payload, redactor=broken)
    assert step["invocation_json"]["payload"] == {"$capture_error": "RuntimeError"}
    assert step["input_hash"]["value"] == hash_hex(payload)


def test_hash_is_of_the_original_not_the_redacted_payload(tmp_path: Path, context: TraceContext) -> None:
    payload = {"password": SECRET, "n": 1}
    step = _capture(tmp_path, context, payload)
    assert step["input_hash"]["value"] == hash_hex(payload)
    assert step["input_hash"]["value"] != hash_hex(step["invocation_json"]["payload"])
    other = _capture(tmp_path, context, {"password": "another", "n": 1})
    assert other["invocation_json"]["payload"] == step["invocation_json"]["payload"]
    assert other["input_hash"] != step["input_hash"]  # same capture, different secret: told apart


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_files_with_captured_inputs_are_private(tmp_path: Path, context: TraceContext) -> None:
    _capture(tmp_path, context, {"password": SECRET})
    assert _mode(tmp_path / "t.json") == 0o600


@pytest.mark.usefixtures("umask_022")
def test_files_without_captured_inputs_are_0644(tmp_path: Path, context: TraceContext) -> None:
    _capture(tmp_path, context, {"password": SECRET}, capture_inputs=False)
    assert _mode(tmp_path / "t.json") == 0o644


@pytest.mark.usefixtures("umask_022")
def test_a_public_file_becomes_private_when_rewritten_with_captures(
    tmp_path: Path, context: TraceContext
) -> None:
    target = tmp_path / "t.json"
    target.write_text("{}")
    target.chmod(0o644)
    _capture(tmp_path, context, {"token": SECRET})
    assert _mode(target) == 0o600


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("capture", [True, False])
def test_history_files_get_the_same_modes(capture: bool, tmp_path: Path, context: TraceContext) -> None:
    rec = TraceRecorder(
        TraceConfig.create(mode="always", dir=tmp_path / "h", capture_inputs=capture), context
    )
    with rec.run():
        ev = NodeEvent("n", "c", "call", payload={"secret": SECRET})
        rec.on_node_start(ev)
        rec.on_node_end(ev, 1)
    (path,) = (tmp_path / "h").glob("*.json")
    assert _mode(path) == (0o600 if capture else 0o644)
    assert SECRET.encode() not in path.read_bytes()
