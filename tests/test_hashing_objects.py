"""Objects that are programs, not data: modules, functions, classes; and keys nested in keys.

Found by running the pytest plugin on attrs' own suite: a fixture parametrized with modules made
hashing walk every loaded module (GBs, then a crash). These hash by name, fast, in any process.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import pytest

from tracekit import hash_value


def helper(x: int) -> int:
    return x


class Widget:
    def method(self) -> None: ...


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (json, {"$module": "json"}),
        (helper, {"$callable": f"{__name__}:helper"}),
        (Widget, {"$callable": f"{__name__}:Widget"}),
        (Widget.method, {"$callable": f"{__name__}:Widget.method"}),
        (len, {"$callable": "builtins:len"}),
    ],
)
def test_code_objects_hash_as_their_names(value: object, form: object) -> None:
    assert hash_value(value) == hash_value(form)


def test_different_callables_and_bound_args_differ() -> None:
    assert hash_value(helper) != hash_value(Widget)
    assert hash_value(functools.partial(helper, 1)) != hash_value(functools.partial(helper, 2))


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_a_module_parameter_hashes_fast_in_a_fresh_process() -> None:
    done = _child(
        """
        import json, os, sys, time
        from tracekit import hash_value
        t = time.perf_counter()
        print(hash_value({"mod": json, "os": os, "sys": sys})["value"])
        print(time.perf_counter() - t < 1.0)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "True"


def test_keys_nested_in_keys_never_crash_the_process() -> None:
    done = _child(
        """
        from tracekit import hash_value

        class Key:
            def __init__(self, inner):
                self.d = {inner: 1} if inner is not None else {}
            def __hash__(self):
                return id(self)

        key = None
        for _ in range(3000):
            key = Key(key)
        a = hash_value({key: 1})
        print(a == hash_value({key: 1}))
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
