"""Error context: the chain, Traceable, codes, hints and control flow (tracekit.errors)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tracekit import Traceable, errors, register_code, register_control_flow, register_hint
from tracekit.errors import CODES, classify, error_record, hints_for, is_control_flow
from tracekit.registry import registry


@pytest.fixture(autouse=True)
def _clean_registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registrations made by a test do not leak into the next one."""
    state = registry.snapshot()
    yield
    registry.restore(state)


class StoreError(Exception):
    pass


def three_deep() -> BaseException:
    try:
        try:
            try:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "refused by db:5432")
            except ConnectionRefusedError as root:
                raise StoreError("could not load rows") from root
        except StoreError:
            raise RuntimeError("node 'load' failed")  # noqa: B904 - an implicit context on purpose
    except RuntimeError as top:
        return top


def test_three_deep_chain_keeps_the_root_cause_last() -> None:
    record = error_record(three_deep(), phase="execution")
    details = record["details"]
    assert record["message"] == "node 'load' failed"
    assert details["type"] == "RuntimeError"
    links = details["chain"]
    assert [link["type"] for link in links] == [
        "RuntimeError",
        f"{__name__}.StoreError",
        "ConnectionRefusedError",
    ]
    assert [link["relation"] for link in links] == ["raised", "context", "cause"]
    assert links[-1]["message"] == "[Errno 111] refused by db:5432"
    assert "could not load rows" in details["traceback"]
    assert details["traceback"].rstrip().endswith("RuntimeError: node 'load' failed")
    assert details["phase"] == "execution"
    # The root cause drives the hint even though the raised error is a plain RuntimeError.
    assert any("refused" in h for h in details["hints"])


def test_suppressed_context_is_not_followed() -> None:
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise ValueError("clean") from None
    except ValueError as err:
        links = error_record(err)["details"]["chain"]
    assert [link["type"] for link in links] == ["ValueError"]


def test_chain_loops_are_guarded() -> None:
    a, b = ValueError("a"), KeyError("b")
    a.__context__, b.__context__ = b, a
    links = error_record(a)["details"]["chain"]
    assert [link["message"] for link in links] == ["a", "'b'"]


def test_a_very_long_chain_is_bounded() -> None:
    err: BaseException = ValueError("0")
    for i in range(1, 200):
        nxt = ValueError(str(i))
        nxt.__cause__ = err
        err = nxt
    links = error_record(err)["details"]["chain"]
    assert len(links) == errors.MAX_CHAIN
    assert links[0]["message"] == "199"


class RenderError(Exception):
    def __init__(self, template: str, line: int) -> None:
        super().__init__(f"render failed: {template}")
        self.template, self.line = template, line

    def trace_format(self) -> str:
        return f"template {self.template}, line {self.line}: unknown variable 'user'"


class BrokenTraceable(Exception):
    def trace_format(self) -> str:
        raise LookupError("no template loaded")


def test_traceable_text_is_kept_in_details_trace() -> None:
    err = RenderError("mail.j2", 7)
    assert isinstance(err, Traceable)
    record = error_record(err)
    assert record["details"]["trace"] == "template mail.j2, line 7: unknown variable 'user'"
    assert record["details"]["chain"][0]["trace"] == record["details"]["trace"]


def test_a_failing_trace_format_is_recorded_never_raised() -> None:
    try:
        raise RuntimeError("outer") from BrokenTraceable("inner")
    except RuntimeError as err:
        record = error_record(err)
    assert "trace" not in record["details"]  # the raised error is not Traceable
    inner = record["details"]["chain"][1]
    assert inner["trace"] == "<trace_format() raised LookupError: no template loaded>"
    record = error_record(BrokenTraceable("direct"))
    assert record["details"]["trace"].startswith("<trace_format() raised LookupError")
    assert record["message"] == "direct"


class Hostile(Exception):
    """Everything a failure could do to break its own description."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    @property
    def hints(self) -> list[str]:
        raise AttributeError("no hints either")

    @property
    def code(self) -> str:
        raise OSError("nor a code")

    def trace_format(self) -> Any:
        return {"not": "a string", "obj": object}


def test_errors_that_cannot_describe_themselves_are_still_recorded() -> None:
    record = error_record(Hostile(object()))
    orjson.dumps(record)  # JSON-ready although the error and its args are not
    assert record["message"] == "<str() of Hostile raised RuntimeError>"
    assert record["code"] == "node_error"
    assert record["details"]["hints"] == []
    assert record["details"]["trace"].startswith("<trace_format() returned dict, not str>")


def test_task_group_failures_are_each_listed() -> None:
    async def fail(exc: BaseException) -> None:
        await asyncio.sleep(0)
        raise exc

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fail(ValueError("bad row 3")))
            tg.create_task(fail(TimeoutError("api slow")))

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(main())
    record = error_record(info.value)
    (link,) = record["details"]["chain"]
    assert link["type"] == "ExceptionGroup"
    members = {m["message"]: m for m in link["exceptions"]}
    assert set(members) == {"bad row 3", "api slow"}
    assert members["bad row 3"]["code"] == "validation"
    assert members["api slow"]["code"] == "timeout"
    assert members["api slow"]["chain"][0]["type"] == "TimeoutError"
    assert record["code"] == "node_error"  # mixed members: no single code
    assert "bad row 3" in record["details"]["traceback"]
    assert any("timed out" in h for h in record["details"]["hints"])


def test_a_group_whose_members_share_a_code_gets_it() -> None:
    group = ExceptionGroup("all slow", [TimeoutError("a"), concurrent.futures.TimeoutError("b")])
    assert classify(group) == "timeout"


def test_huge_nested_groups_stay_bounded() -> None:
    leaf = [ValueError(str(i)) for i in range(100)]
    group = ExceptionGroup("top", [ExceptionGroup(f"g{i}", leaf) for i in range(100)])
    record = error_record(group)
    link = record["details"]["chain"][0]
    assert link["exceptions_dropped"] == 100 - len(link["exceptions"])
    assert len(orjson.dumps(record)) < 2_000_000


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TimeoutError("t"), "timeout"),
        (asyncio.TimeoutError(), "timeout"),  # noqa: UP041 - the name users raise
        (concurrent.futures.TimeoutError(), "timeout"),
        (ConnectionResetError(), "connection"),
        (PermissionError(errno.EACCES, "denied"), "permission"),
        (FileNotFoundError(errno.ENOENT, "gone"), "not_found"),
        (KeyError("k"), "not_found"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), "serialization"),
        (ValueError("bad"), "validation"),
        (OSError(errno.ENOSPC, "No space left on device"), "io"),
        (MemoryError(), "infrastructure"),
        (ModuleNotFoundError("numpy"), "infrastructure"),
        (RuntimeError("x"), "node_error"),
        (asyncio.CancelledError(), "cancelled"),
        (KeyboardInterrupt(), "cancelled"),
        (SystemExit("bye"), "cancelled"),  # SystemExit.code is an exit status, not a trace code
    ],
)
def test_codes_are_chosen_from_the_exception_type(error: BaseException, code: str) -> None:
    assert code in CODES
    assert classify(error) == code
    assert error_record(error)["code"] == code


def test_json_errors_are_serialization() -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads("{")
    assert classify(info.value) == "serialization"
    with pytest.raises(orjson.JSONDecodeError) as info2:
        orjson.loads(b"[")
    assert classify(info2.value) == "serialization"


def test_third_party_errors_are_recognised_by_class_name() -> None:
    class ReadTimeout(Exception):  # like httpx.ReadTimeout
        pass

    class SoftTimeLimitExceeded(Exception):  # like celery's
        pass

    assert classify(ReadTimeout()) == "timeout"
    assert classify(SoftTimeLimitExceeded()) == "timeout"
    assert any("timed out" in h for h in hints_for(ReadTimeout()))


def test_a_code_attribute_overrides_everything_but_control_flow() -> None:
    class QuotaError(TimeoutError):
        code = "quota"

    err = ValueError("x")
    err.code = "bad_invoice"  # type: ignore[attr-defined]
    assert classify(QuotaError()) == "quota"
    assert classify(err) == "bad_invoice"
    register_code(QuotaError, "registered")
    assert classify(QuotaError()) == "quota"


def test_registered_codes_apply_to_subclasses_nearest_first() -> None:
    class DbError(Exception):
        pass

    class DbTimeout(DbError, TimeoutError):
        pass

    register_code(DbError, "database")
    assert classify(DbError()) == "database"
    assert classify(DbTimeout()) == "database"  # registration beats the built-in rules
    register_code(DbTimeout, "database_timeout")
    assert classify(DbTimeout()) == "database_timeout"


@pytest.mark.parametrize(
    ("error", "needle"),
    [
        (TimeoutError("t"), "timed out"),
        (concurrent.futures.TimeoutError(), "timed out"),
        (ConnectionResetError(), "connection failed"),
        (PermissionError(errno.EPERM, "no"), "Permission denied"),
        (KeyError("user_id"), "key is missing"),
        (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
        (FileNotFoundError(errno.ENOENT, "x"), "does not exist"),
        (asyncio.CancelledError(), "cancelled, not failed"),
    ],
)
def test_built_in_hints(error: BaseException, needle: str) -> None:
    assert any(needle in h for h in hints_for(error)), hints_for(error)


def test_hints_from_the_exception_and_the_registry_come_first() -> None:
    class PaymentError(Exception):
        hints = ("Check the payment provider's status page.",)

    class CardDeclined(PaymentError, KeyError):
        pass

    register_hint(PaymentError, "Retry with another card.")
    hints = hints_for(CardDeclined("card"))
    assert hints[:2] == ["Check the payment provider's status page.", "Retry with another card."]
    assert any("key is missing" in h for h in hints[2:])
    single = ValueError("v")
    single.hints = "Use ISO dates."  # type: ignore[attr-defined]
    assert hints_for(single) == ["Use ISO dates."]


def test_hints_are_unique() -> None:
    register_hint(TimeoutError, "Raise the timeout.", "Raise the timeout.")
    hints = hints_for(TimeoutError())
    assert len(hints) == len(set(hints))


def test_control_flow_types_and_registration() -> None:
    class Stop(Exception):
        pass

    for exc in (asyncio.CancelledError(), GeneratorExit(), KeyboardInterrupt(), SystemExit(0)):
        assert is_control_flow(exc)
    assert not is_control_flow(Stop())
    register_control_flow(Stop)
    assert is_control_flow(Stop())
    assert classify(Stop()) == "cancelled"
    assert is_control_flow(BaseExceptionGroup("stop", [KeyboardInterrupt(), Stop()]))
    assert not is_control_flow(BaseExceptionGroup("mixed", [KeyboardInterrupt(), ValueError()]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: register_code("ValueError", "x"), "exc_type must be an exception class"),  # type: ignore[arg-type]
        (lambda: register_code(ValueError, ""), "allowed: a non-empty string"),
        (lambda: register_hint(ValueError, 3), "allowed: a non-empty string"),  # type: ignore[arg-type]
        (lambda: register_control_flow(Exception), "too broad"),
        (lambda: register_control_flow(int), "exc_type must be an exception class"),  # type: ignore[arg-type]
    ],
)
def test_bad_registrations_get_clear_errors(call: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        call()


def test_long_messages_and_tracebacks_are_capped() -> None:
    err = ValueError("x" * 100_000)
    record = error_record(err, max_chars=1000)
    assert len(record["message"]) < 1100
    assert record["message"].endswith("[truncated: 100000 characters in all]")
    assert len(record["details"]["traceback"]) < 1100
