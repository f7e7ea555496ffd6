"""Configuration: every variable, good and bad values, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracekit import ConfigError, TraceConfig, TraceMode


def cfg(**env: str) -> TraceConfig:
    return TraceConfig.from_env(env)


def test_defaults() -> None:
    c = cfg()
    assert c.mode is TraceMode.ON
    assert c.out == Path("trace.json")
    assert c.dir is None
    assert c.buffer == 20
    assert c.capture_inputs is False
    assert c.keep is None
    assert c.git_sha is None
    assert c.strict is False


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ("off", TraceMode.OFF),
        ("OFF", TraceMode.OFF),
        ("0", TraceMode.OFF),
        ("on", TraceMode.ON),
        ("On", TraceMode.ON),
        ("1", TraceMode.ON),
        ("always", TraceMode.ALWAYS),
        (" ALWAYS ", TraceMode.ALWAYS),
    ],
)
def test_trace_mode_values(raw: str, mode: TraceMode) -> None:
    assert cfg(TRACEKIT_TRACE=raw).mode is mode


@pytest.mark.parametrize(
    ("var", "raw", "allowed"),
    [
        ("TRACEKIT_TRACE", "sometimes", "off, on, always"),
        ("TRACEKIT_TRACE", "2", "off, on, always"),
        ("TRACEKIT_TRACE_BUFFER", "0", "integer >= 1"),
        ("TRACEKIT_TRACE_BUFFER", "-3", "integer >= 1"),
        ("TRACEKIT_TRACE_BUFFER", "ten", "integer >= 1"),
        ("TRACEKIT_TRACE_BUFFER", "1.5", "integer >= 1"),
        ("TRACEKIT_TRACE_KEEP", "0", "integer >= 1"),
        ("TRACEKIT_TRACE_KEEP", "many", "integer >= 1"),
        ("TRACEKIT_TRACE_CAPTURE_INPUTS", "maybe", "1, 0, true, false"),
    ],
)
def test_bad_values_name_the_variable_the_value_and_what_is_allowed(
    var: str, raw: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**{var: raw})
    message = str(info.value)
    assert var in message
    assert repr(raw) in message
    assert allowed in message


def test_every_variable_is_read() -> None:
    c = cfg(
        TRACEKIT_TRACE="always",
        TRACEKIT_TRACE_DIR="hist",
        TRACEKIT_TRACE_BUFFER="5",
        TRACEKIT_TRACE_CAPTURE_INPUTS="true",
        TRACEKIT_TRACE_KEEP="3",
        GIT_SHA="abc123",
    )
    assert (c.mode, c.dir, c.buffer, c.capture_inputs, c.keep, c.git_sha) == (
        TraceMode.ALWAYS,
        Path("hist"),
        5,
        True,
        3,
        "abc123",
    )
    assert cfg(TRACEKIT_TRACE_OUT="out/t.json").out == Path("out/t.json")


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("0", False), ("FALSE", False), ("yes", True)])
def test_capture_inputs_booleans(raw: str, value: bool) -> None:
    assert cfg(TRACEKIT_TRACE_CAPTURE_INPUTS=raw).capture_inputs is value


def test_git_sha_prefers_git_sha_over_github_sha() -> None:
    assert cfg(GITHUB_SHA="bbb", GIT_SHA="aaa").git_sha == "aaa"
    assert cfg(GITHUB_SHA="bbb").git_sha == "bbb"


def test_out_and_dir_together_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        cfg(TRACEKIT_TRACE_OUT="a.json", TRACEKIT_TRACE_DIR="hist")
    assert "TRACEKIT_TRACE_OUT" in str(info.value) and "TRACEKIT_TRACE_DIR" in str(info.value)


def test_explicit_overrides_beat_the_environment() -> None:
    env = {"TRACEKIT_TRACE": "off", "TRACEKIT_TRACE_BUFFER": "5", "TRACEKIT_TRACE_DIR": "hist"}
    c = TraceConfig.from_env(env, mode="always", buffer=7, out="x.json")
    assert (c.mode, c.buffer, c.out, c.dir) == (TraceMode.ALWAYS, 7, Path("x.json"), None)


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE_BUFFER", "9")
    assert TraceConfig.from_env().buffer == 9


def test_bad_overrides_are_named() -> None:
    with pytest.raises(ConfigError, match="buffer=0"):
        TraceConfig.from_env({}, buffer=0)
    with pytest.raises(ConfigError, match="unknown TraceConfig option"):
        TraceConfig.from_env({}, bufer=3)
    with pytest.raises(ConfigError, match="mode='loud'"):
        TraceConfig.from_env({}, mode="loud")
    with pytest.raises(ConfigError, match=r"out=.* and dir="):
        TraceConfig.from_env({}, out="a.json", dir="d")


class TestDirectConstruction:
    """``TraceConfig(...)`` built directly is checked as ``from_env`` checks (attrs-style)."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("mode", "on"),
            ("out", "trace.json"),
            ("dir", "traces"),
            ("buffer", 0),
            ("buffer", True),
            ("max_failures", -1),
            ("max_errors", "5"),
            ("keep", 0),
            ("capture_inputs", 1),
            ("strict", "yes"),
            ("git_sha", 123),
            ("redact_keys", ["password"]),
            ("redactor", "not callable"),
        ],
    )
    def test_a_bad_value_is_refused_naming_the_field(self, field: str, value: object) -> None:
        from tracekit import ConfigError, TraceConfig

        with pytest.raises(ConfigError, match=f"^{field}="):
            TraceConfig(**{field: value})  # type: ignore[arg-type]

    def test_the_defaults_are_valid(self) -> None:
        from tracekit import TraceConfig

        assert TraceConfig().describe()["max_failures"] == 100
