"""``--emit-test``: a self-contained pytest regression test from one step of a trace.

The test imports the node's callable from the user's code (as replay does), passes it the
captured input (a Python literal in the file, or side files next to it: ``<test>.input.json``,
and ``<test>.<param>.npy|.arrow`` for stored arrays and frames) and, for a node that had
completed, asserts the recorded output hash with ``tracekit.hash_value``. For a node that had
failed it simply calls it: red while the bug is there, green once it is fixed.
"""

from __future__ import annotations

import os
import pprint
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from tracekit.replay.plan import make_plan
from tracekit.trace import store

__all__ = ["MAX_LITERAL_CHARS", "EmitError", "Emitted", "emit_test"]

#: Inputs whose literal is longer go to a JSON side file next to the test.
MAX_LITERAL_CHARS: Final = 20_000


class EmitError(Exception):
    """The test cannot be written (the step cannot be replayed, or the file cannot be written)."""


@dataclass(slots=True)
class Emitted:
    test: Path
    step_id: str
    asserts: str
    side_files: list[str] = field(default_factory=list)


_TEMPLATE: Final = '''"""Regression test for node {node} (step {step_id}) of {trace}.

Emitted by `tracekit replay --emit-test`. It calls {callable_doc} on the input the trace captured;
{what}
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CALLABLE = {callable!r}
SOURCE_FILE = {source}
INPUT_FILE = {input_file!r}
STORED: dict[str, tuple[str, str]] = {stored!r}
EXPECTED_OUTPUT_HASH = {expected!r}
INPUT: Any = {literal}


def _callable() -> Any:
    module_name, _, qualname = CALLABLE.partition(":")
    if SOURCE_FILE is not None:
        sys.path.insert(0, str(SOURCE_FILE.parent))
        spec = importlib.util.spec_from_file_location("__tracekit_replay_main__", SOURCE_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["__tracekit_replay_main__"] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    while getattr(obj, "__tracekit_step__", False):
        obj = obj.__wrapped__  # the recorder.step layer: the test does not record
    return obj


def _input() -> Any:
    data = INPUT
    if INPUT_FILE is not None:
        import json

        data = json.loads((HERE / INPUT_FILE).read_text(encoding="utf-8"))
    for name, (file, kind) in STORED.items():
        path = HERE / file
        if file.endswith(".npy"):
            import numpy as np

            data[name] = np.load(path, allow_pickle=False)
        else:
            import pyarrow as pa

            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            data[name] = table.to_pandas() if kind == "pandas.DataFrame" else table
    return data


def _call(func: Any, kind: str, data: Any) -> Any:
    if kind == "args_kwargs":
        return func(*data.get("args", []), **data.get("kwargs", {{}}))
    params = inspect.signature(func).parameters
    args: list[Any] = []
    kwargs: dict[str, Any] = {{}}
    for name, value in data.items():
        p = params.get(name)
        if p is not None and p.kind is p.POSITIONAL_ONLY:
            args.append(value)
        elif p is not None and p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p is not None and p.kind is p.VAR_KEYWORD:
            kwargs.update(value)
        else:
            kwargs[name] = value
    return func(*args, **kwargs)


def {test_name}(monkeypatch: Any) -> None:
    monkeypatch.setenv("TRACEKIT_TRACE", "off")  # the node's own recorder records nothing here
    result = _call(_callable(), {args_kind!r}, _input())
{check}
'''

_CHECK_HASH: Final = '''    from tracekit import hash_value

    assert hash_value(result)["value"] == EXPECTED_OUTPUT_HASH, "the output differs from the recorded one"'''
_CHECK_NONE: Final = "    del result  # completing without the recorded error is the fix"


def _doc(text: str) -> str:
    """Text safe inside the test's docstring (names from the trace are data)."""
    return re.sub(r"[^\w .:<>()/@-]", "?", text)


def _ident(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_").lower() or "node"


def emit_test(doc: dict[str, Any], trace: Path, wanted: str | None, sets: list[str], target: Path) -> Emitted:
    """Write the regression test for one step of ``doc`` to ``target``."""
    plan = make_plan(doc, trace, wanted, sets)
    if plan.problems:
        reasons = "; ".join(f"{p.message} (fix: {p.fix})" for p in plan.problems)
        raise EmitError(f"cannot write a test for this step: {reasons}")
    if plan.args_kind not in ("params", "args_kwargs") or plan.callable is None:
        raise EmitError(f"cannot write a test for a step of kind {plan.args_kind!r}")
    step = plan.step
    raw_replay = step.get("replay")
    replay: dict[str, Any] = raw_replay if isinstance(raw_replay, dict) else {}
    raw_stored = replay.get("stored")
    stored_meta: dict[str, Any] = raw_stored if isinstance(raw_stored, dict) else {}
    stored_meta = {k: v for k, v in stored_meta.items() if k not in plan.set_paths}
    target = target.resolve()
    here = target.parent
    try:
        here.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmitError(f"cannot create {here}: {exc.strerror or exc}") from None
    side: list[str] = []
    stored: dict[str, tuple[str, str]] = {}
    source_dir = store.store_dir(trace.parent)
    for name, entry in stored_meta.items():
        file = f"{target.stem}.{_ident(str(name))}{Path(entry['file']).suffix}"
        shutil.copyfile(source_dir / entry["file"], here / file)
        os.chmod(here / file, 0o600)
        stored[str(name)] = (file, str(entry.get("type")))
        side.append(str(here / file))
    payload = plan.payload
    json_part = payload
    if isinstance(payload, dict):
        json_part = {k: v for k, v in payload.items() if k not in stored}
    literal = pprint.pformat(json_part, width=100, sort_dicts=False)
    input_file = None
    if len(literal) > MAX_LITERAL_CHARS:
        input_file = f"{target.stem}.input.json"
        (here / input_file).write_bytes(orjson.dumps(json_part, option=orjson.OPT_INDENT_2))
        side.append(str(here / input_file))
        literal = "None  # in INPUT_FILE"
    completed = step.get("status") == "completed" and isinstance(step.get("output_hash"), dict)
    expected = step["output_hash"].get("value") if completed else None
    what = ("it asserts the output hash the trace recorded." if completed else
            "it fails while the recorded failure still happens and passes once it is fixed.")
    if plan.source_file:
        rel = os.path.relpath(plan.source_file, here)
        source = f"(HERE / {rel!r}).resolve()"
    else:
        source = "None"
    text = _TEMPLATE.format(
        node=_doc(str(step.get("node_id"))), step_id=_doc(str(step.get("step_id"))),
        trace=_doc(trace.name), callable=plan.callable, what=what, source=source,
        input_file=input_file, stored=stored, expected=expected, literal=literal,
        callable_doc=_doc(plan.callable),
        test_name=f"test_replay_{_ident(str(step.get('node_id')))}", args_kind=plan.args_kind,
        check=_CHECK_HASH if completed else _CHECK_NONE,
    )
    try:
        target.write_text(text, encoding="utf-8")
        if plan.set_paths:
            os.chmod(target, 0o600)  # it holds the values given with --set (perhaps secrets)
    except OSError as exc:
        raise EmitError(f"cannot write {target}: {exc.strerror or exc}") from None
    return Emitted(
        test=target, step_id=str(step.get("step_id")), side_files=side,
        asserts=("asserts the recorded output hash" if completed
                 else "fails while the recorded failure happens"),
    )
