"""install_crash_handler(): traces survive unhandled exceptions and exits in the middle of a run.

The real hooks only fire in a dying interpreter, so the main cases run a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder, install_crash_handler
from tracekit.trace.schema import validate_document

PRELUDE = """
import sys, threading
from tracekit import NodeEvent, TraceContext, TraceRecorder, install_crash_handler
rec = TraceRecorder.from_env(TraceContext(pack_ref="p@1", flow_id="crashy", flow_version="1"))
def start(node):
    event = NodeEvent(node, "comp", "run", payload={"node": node})
    rec.on_node_start(event)
    return event
def done(node):
    rec.on_node_end(start(node), node.upper())
"""


def run_child(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    child_env.update({"TRACEKIT_TRACE_OUT": str(tmp_path / "trace.json"), **env})
    child_env = {k: v for k, v in child_env.items() if v}  # an empty value unsets a variable
    return subprocess.run(
        [sys.executable, str(script)], env=child_env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    assert validate_document(doc) == []
    return doc


def test_an_unhandled_exception_writes_a_failure_trace(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        install_crash_handler()
        done("extract")
        start("transform")
        raise RuntimeError("segment 7 is corrupt")
    """)
    assert proc.returncode == 1
    assert "RuntimeError: segment 7 is corrupt" in proc.stderr  # the previous hook still ran
    doc = load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    extract, transform = doc["steps"]
    assert extract["status"] == "completed"
    assert transform["status"] == "in_flight"
    assert transform["error"]["message"] == "segment 7 is corrupt"
    assert "Traceback" in transform["error"]["details"]["traceback"]


def test_a_normal_exit_with_an_unfinished_run_writes_its_current_state(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        install_crash_handler(rec)
        done("extract")
        start("load")
    """)
    assert proc.returncode == 0, proc.stderr
    doc = load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "in_progress"
    assert [(s["node_id"], s["status"]) for s in doc["steps"]] == [("extract", "completed"),
                                                                    ("load", "in_flight")]


def test_an_exception_in_a_thread_writes_a_failure_trace(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        install_crash_handler()
        def work():
            start("fetch")
            raise ConnectionResetError("peer went away")
        t = threading.Thread(target=work, name="fetcher")
        t.start(); t.join()
    """)
    assert proc.returncode == 0
    assert "Exception in thread fetcher" in proc.stderr  # threading's own hook still ran
    doc = load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "failure"
    (step,) = doc["steps"]
    assert (step["node_id"], step["error"]["code"]) == ("fetch", "connection")


def test_an_interrupt_is_written_as_cancelled(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        install_crash_handler()
        start("long")
        raise KeyboardInterrupt
    """, TRACEKIT_TRACE="always")
    assert proc.returncode != 0
    doc = load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "cancelled"
    assert doc["steps"][0]["error"]["code"] == "cancelled"


def test_a_finished_run_is_not_rewritten_by_a_later_crash(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        install_crash_handler()
        with rec.run():
            done("only")
        raise SystemError("after the run")
    """, TRACEKIT_TRACE="always")
    assert proc.returncode == 1
    doc = load(tmp_path / "trace.json")
    assert doc["run"]["outcome"] == "success"
    assert doc["errors"] == []


def test_nothing_is_written_without_the_handler_or_after_uninstall(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        handle = install_crash_handler()
        handle.uninstall()
        assert sys.excepthook is sys.__excepthook__ and threading.excepthook is threading.__excepthook__
        start("x")
        raise RuntimeError("unrecorded")
    """)
    assert proc.returncode == 1
    assert "AssertionError" not in proc.stderr
    assert not (tmp_path / "trace.json").exists()


def test_in_process_hooks_chain_and_uninstall(context: TraceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: seen.append(f"sys:{e}"))
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(f"thread:{args.exc_value}"))
    rec = TraceRecorder(TraceConfig.from_env({}), context)
    other = TraceRecorder(TraceConfig.from_env({}, out="other.json"), context)
    handle = install_crash_handler(rec)
    try:
        rec.on_node_start(NodeEvent("a", "c", "run", payload=None))
        other.on_node_start(NodeEvent("b", "c", "run", payload=None))
        err = ValueError("boom")
        sys.excepthook(ValueError, err, None)
        assert seen == ["sys:boom"]
        assert handle.failure is err
        assert load(Path("trace.json"))["run"]["outcome"] == "failure"
        assert not Path("other.json").exists()  # only the recorders it was given

        t = threading.Thread(target=lambda: (_ for _ in ()).throw(SystemExit(0)))
        t.start()
        t.join()
        assert seen == ["sys:boom", "thread:0"]  # a thread's SystemExit is passed on, not recorded
    finally:
        handle.uninstall()
    assert not handle.installed
    sys.excepthook(ValueError, ValueError("later"), None)
    assert seen[-1] == "sys:later"
    handle.uninstall()  # idempotent


def test_bad_arguments(context: TraceContext) -> None:
    with pytest.raises(TypeError, match="expected TraceRecorder instances, got str"):
        install_crash_handler("trace.json")  # type: ignore[arg-type]


def test_a_crash_in_history_mode_writes_exactly_one_file(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        install_crash_handler()
        start("transform")
        raise RuntimeError("boom")
    """, TRACEKIT_TRACE_DIR=str(tmp_path / "history"), TRACEKIT_TRACE_OUT="")
    assert proc.returncode == 1
    (path,) = (tmp_path / "history").iterdir()  # the exit hook did not write the run again
    assert load(path)["run"]["outcome"] == "failure"


def test_sigterm_writes_the_unfinished_run_cancelled_and_still_terminates(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        import os, signal
        install_crash_handler(signals=(signal.SIGTERM,))
        done("extract")
        start("load")
        os.kill(os.getpid(), signal.SIGTERM)
        import time; time.sleep(5)
        print("not reached")
    """)
    assert proc.returncode == -15, proc.stderr
    assert "not reached" not in proc.stdout
    doc = load(tmp_path / "trace.json")  # on mode and no failure: written because terminated
    assert doc["run"]["outcome"] == "cancelled"
    extract, load_step = doc["steps"]
    assert extract["status"] == "completed"
    assert load_step["status"] == "in_flight"
    assert load_step["error"]["code"] == "cancelled"
    assert "SIGTERM" in load_step["error"]["message"]
    assert load_step["error"]["details"]["hints"]


def test_sigterm_is_passed_to_the_previous_handler(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        import os, signal
        def graceful(signum, frame):
            open("graceful", "w").write(str(signum))
            raise SystemExit(3)
        signal.signal(signal.SIGTERM, graceful)
        install_crash_handler(signals=(signal.SIGTERM,))
        start("work")
        os.kill(os.getpid(), signal.SIGTERM)
    """)
    assert proc.returncode == 3, proc.stderr
    assert (tmp_path / "graceful").read_text() == "15"
    assert load(tmp_path / "trace.json")["run"]["outcome"] == "cancelled"


def test_signals_are_opt_in(tmp_path: Path) -> None:
    proc = run_child(tmp_path, """
        import os, signal
        install_crash_handler()
        start("work")
        os.kill(os.getpid(), signal.SIGTERM)
    """)
    assert proc.returncode == -15
    assert not (tmp_path / "trace.json").exists()


def test_uninstall_restores_the_previous_signal_handler(context: TraceContext) -> None:
    import signal

    def mine(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGUSR1, mine)
    try:
        handle = install_crash_handler(TraceRecorder(TraceConfig.from_env({}), context),
                                       signals=(signal.SIGUSR1,))
        assert signal.getsignal(signal.SIGUSR1) != mine
        handle.uninstall()
        assert signal.getsignal(signal.SIGUSR1) == mine
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("pure", ["", "1"])
def test_at_exit_only_recorders_still_in_use_are_flushed(tmp_path: Path, pure: str) -> None:
    proc = run_child(tmp_path, f"""
        import gc
        gc.disable()  # what a collection at exit must not depend on
        install_crash_handler()
        def setup(out):
            from tracekit import TraceConfig
            r = TraceRecorder(TraceConfig.create(out=out), rec.context)
            r.on_node_start(NodeEvent("n", "comp", "run"))  # an unfinished run
            return r.on_node_start, r.on_node_end
        kept = setup({str(tmp_path / "kept.json")!r})  # only its callbacks are held: still in use
        setup({str(tmp_path / "dropped.json")!r})  # nothing holds it any more
    """, TRACEKIT_PURE_PYTHON=pure)
    assert proc.returncode == 0, proc.stderr
    assert load(tmp_path / "kept.json")["run"]["outcome"] == "in_progress"
    assert not (tmp_path / "dropped.json").exists()
