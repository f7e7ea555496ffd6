"""The package's shape as a spec: layers import only downwards, no cycles, small modules; and the
seams that replace private patching (registry snapshot/restore/reset, an injected sink, LogOnce,
phase forwarding)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest
from _support import load

import tracekit
from tracekit import CompositeObserver, NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit._guard import LogOnce, never_raises
from tracekit.registry import BUILTIN_CONTROL_FLOW, registry, reset

PACKAGE = Path(tracekit.__file__).parent

#: Bottom to top: a module imports only from its own layer or those below it.
LAYERS: list[tuple[str, ...]] = [
    ("tracekit._version", "tracekit._native", "tracekit._guard", "tracekit.registry", "tracekit._build_hook"),
    ("tracekit.observer", "tracekit.config"),
    ("tracekit.capture",),
    ("tracekit.errors",),
    ("tracekit.trace",),
    ("tracekit.recorder",),
    ("tracekit.export", "tracekit.replay"),
    ("tracekit.cli", "tracekit.report", "tracekit.__main__"),
    ("tracekit.adapters",),
]
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _layer(name: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("tracekit.") or m == "tracekit"}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


class TestLayout:
    def test_every_import_points_down_the_layers(self) -> None:
        modules = _modules()
        wrong = []
        for name, path in modules.items():
            if name == "tracekit":
                continue
            for imported in _imports(path):
                target = _resolve(imported, modules)
                if target in (None, "tracekit", name):
                    continue
                if _layer(target) > _layer(name):
                    wrong.append(f"{name} imports {target}")
        assert wrong == []

    def test_no_module_is_too_long(self) -> None:
        long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
        assert {n: c for n, c in long.items() if c > MAX_LINES} == {}

    def test_no_import_cycles(self) -> None:
        modules = _modules()
        faces = {n for n, p in modules.items() if p.name == "__init__.py"}
        graph = {
            n: {t for i in _imports(p) if (t := _resolve(i, modules)) and t != n and t not in faces}
            for n, p in modules.items()
        }
        seen: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(node: str, trail: list[str]) -> list[str] | None:
            seen[node] = 1
            for nxt in graph.get(node, ()):
                if seen.get(nxt) == 1:
                    return [*trail, node, nxt]
                if nxt not in seen and (found := visit(nxt, [*trail, node])):
                    return found
            seen[node] = 2
            return None

        for n in graph:
            if n not in seen:
                assert visit(n, []) is None


class TestRegistry:
    def test_snapshot_and_restore_undo_a_registration(self) -> None:
        class Flaky(Exception):
            pass

        before = registry.snapshot()
        tracekit.register_code(Flaky, "flaky")
        tracekit.register_control_flow(Flaky)
        assert registry.codes[Flaky] == "flaky" and Flaky in registry.control_flow
        registry.restore(before)
        assert Flaky not in registry.codes and Flaky not in registry.control_flow

    def test_reset_is_the_builtin_state(self) -> None:
        before = registry.snapshot()
        try:
            reset()
            assert registry.control_flow == BUILTIN_CONTROL_FLOW
            assert dict(registry.codes) == {} and dict(registry.hints) == {}
        finally:
            registry.restore(before)

    def test_tables_are_read_only(self) -> None:
        with pytest.raises(TypeError):
            registry.codes[KeyError] = "x"  # type: ignore[index]


class _ListSink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes, run: Any, *, private: bool) -> Path:
        self.writes.append(data)
        return Path("memory")


def test_an_injected_sink_gets_every_write(context: TraceContext) -> None:
    sink = _ListSink()
    rec = TraceRecorder(TraceConfig.from_env({}, mode="always"), context, sink=sink)
    with rec.run(), rec.step("a"):
        pass
    assert len(sink.writes) == 1 and b'"node_id": "a"' in sink.writes[0]
    assert rec.last_trace_path == Path("memory")
    assert not Path("trace.json").exists()


def test_a_failing_sink_is_logged_and_kept(context: TraceContext, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def write(self, data: bytes, run: Any, *, private: bool) -> Path:
            raise OSError(28, "No space left on device")

    rec = TraceRecorder(TraceConfig.from_env({}), context, sink=Broken())
    with pytest.raises(ValueError), rec.run(), rec.step("a"):
        raise ValueError("x")
    assert isinstance(rec.last_flush_error, OSError)
    assert "No space left" in caplog.text


class TestGuard:
    def test_log_once_logs_each_key_once(self, caplog: pytest.LogCaptureFixture) -> None:
        once = LogOnce()
        for _ in range(3):
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                once.warn("here", "tracekit: %s failed", "here")
                once.warn("there", "tracekit: %s failed", "there")
        assert [r.getMessage() for r in caplog.records] == ["tracekit: here failed", "tracekit: there failed"]

    def test_never_raises_reports_and_lets_control_flow_through(self) -> None:
        class Hook:
            def __init__(self) -> None:
                self.failed: list[str] = []

            def _guard_failed(self, where: str) -> None:
                self.failed.append(where)

            @never_raises("hook")
            def run(self, exc: BaseException) -> int:
                raise exc

        hook = Hook()
        assert hook.run(ValueError("x")) is None
        assert hook.failed == ["hook"]
        with pytest.raises(KeyboardInterrupt):
            hook.run(KeyboardInterrupt())


def test_composite_passes_phase_only_to_observers_that_take_it(
    context: TraceContext, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []

    class Plain:
        def on_node_start(self, event: NodeEvent) -> None: ...
        def on_node_end(self, event: NodeEvent, output: Any) -> None: ...
        def on_node_error(self, event: NodeEvent, error: BaseException) -> None:
            seen.append(("plain", type(error).__name__))
        def on_validation(self, event: NodeEvent, issues: Any) -> None: ...

    rec = TraceRecorder(TraceConfig.from_env({}), context)
    both = CompositeObserver([Plain(), rec])
    e = NodeEvent("n", "c", "run")
    with caplog.at_level(logging.WARNING, "tracekit"):
        both.on_node_start(e)
        both.on_node_error(e, ValueError("bad"), phase="setup")
    assert seen == [("plain", "ValueError")] and both.failures == 0
    assert load()["steps"][0]["error"]["details"]["phase"] == "setup"
