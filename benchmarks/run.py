"""tracekit benchmarks: every figure is a ratio against a reference measured beside it, in one run.

Usage:  python benchmarks/run.py            # full run (about a minute), prints a Markdown table
        python benchmarks/run.py --quick    # smoke run for CI: tiny sizes, one repeat
        python benchmarks/run.py --json out.json

Each case alternates ours and the reference over several repeats and reports the median and the
best (min) ratio, so a noisy neighbour slows both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from blake3 import blake3

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder
from tracekit._native import PURE_PYTHON_ENV, built
from tracekit.capture.hashing import resolve_digest

CTX = TraceContext(pack_ref="bench@1", flow_id="bench", flow_version="1")
PAYLOAD = {"user_id": 12345, "items": [1, 2, 3, 4], "region": "eu-west-1", "flag": True, "ratio": 0.25}
OUTPUT = {"status": "ok", "rows": 42, "next": "stage-2", "elapsed": 0.0123, "tags": ["a", "b"]}
SORT = orjson.OPT_SORT_KEYS
PAYLOAD_ATTRS = {k: (v if not isinstance(v, list) else tuple(v)) for k, v in PAYLOAD.items()}


@dataclass
class Result:
    name: str
    unit: str  # what the ratio means
    median: float
    best: float
    target: str
    detail: str = ""


def timed(fn: Callable[[], None]) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def compare(ours: Callable[[], None], ref: Callable[[], None], repeats: int) -> list[tuple[float, float]]:
    """Alternate the two sides; return (ours, ref) seconds per repeat."""
    ours()
    ref()  # warm-up
    pairs = []
    for _ in range(repeats):
        a = timed(ours)
        b = timed(ref)
        pairs.append((a, b))
    return pairs


def ratios(pairs: list[tuple[float, float]], invert: bool = False) -> tuple[float, float]:
    rs = [(b / a) if invert else (a / b) for a, b in pairs]
    best = max(rs) if invert else min(rs)
    return statistics.median(rs), best


def recorder(tmp: Path, *, pure: bool = False, **overrides: Any) -> TraceRecorder:
    """A recorder writing under ``tmp``; ``pure`` forces the Python callbacks (no speedups)."""
    cfg = TraceConfig.from_env({}, out=tmp / "trace.json", **overrides)
    saved = os.environ.get(PURE_PYTHON_ENV)
    os.environ[PURE_PYTHON_ENV] = "1" if pure else "0"
    try:
        return TraceRecorder(cfg, CTX)
    finally:
        if saved is None:
            del os.environ[PURE_PYTHON_ENV]
        else:
            os.environ[PURE_PYTHON_ENV] = saved


def node_loop(rec: Any, n: int, payload: Any = PAYLOAD, output: Any = OUTPUT) -> Callable[[], None]:
    ev = NodeEvent(node_id="node", component_id="comp", operation="run", payload=payload)
    start, end = rec.on_node_start, rec.on_node_end

    def run() -> None:
        for _ in range(n):
            start(ev)
            end(ev, output)

    return run


def floor_loop(n: int, payload: Any = PAYLOAD, output: Any = OUTPUT) -> Callable[[], None]:
    dumps = orjson.dumps

    def run() -> None:
        for _ in range(n):
            blake3(dumps(payload, option=SORT)).hexdigest()
            blake3(dumps(output, option=SORT)).hexdigest()

    return run


def _path(pure: bool) -> str:
    return " [pure-Python callbacks]" if pure else ""


def bench_floor(tmp: Path, n: int, repeats: int, pure: bool = False) -> Result:
    rec = recorder(tmp, pure=pure)
    pairs = compare(node_loop(rec, n), floor_loop(n), repeats)
    med, best = ratios(pairs)
    us = statistics.median(a for a, _ in pairs) / n * 1e6
    floor_us = statistics.median(b for _, b in pairs) / n * 1e6
    return Result(f"node start+end vs hashing floor{_path(pure)}", "ours / floor (lower is better)",
                  med, best, "<= 1.5x (aim 1.0x)", f"{us:.2f} us per node, floor {floor_us:.2f} us")


def bench_floor_hashes_paid(tmp: Path, n: int, repeats: int) -> Result:
    """As bench_floor, but each node's deferred blake3 is paid too, as if every step were written."""
    rec = recorder(tmp)
    ev = NodeEvent(node_id="node", component_id="comp", operation="run", payload=PAYLOAD)
    start, end, ring = rec.on_node_start, rec.on_node_end, rec._ring

    def run() -> None:
        for _ in range(n):
            start(ev)
            end(ev, OUTPUT)
            step = ring[-1]
            resolve_digest(step.input_src).hex()
            resolve_digest(step.output_src).hex()

    pairs = compare(run, floor_loop(n), repeats)
    med, best = ratios(pairs)
    us = statistics.median(a for a, _ in pairs) / n * 1e6
    return Result("node start+end, its two blake3 paid too (every step written) vs hashing floor",
                  "ours / floor (lower is better)", med, best, "<= 1.5x (aim 1.0x)",
                  f"{us:.2f} us per node")


def bench_otel(tmp: Path, n: int, repeats: int, pure: bool = False) -> list[Result]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    rec = recorder(tmp, pure=pure)

    def otel() -> None:
        for _ in range(n):
            span = tracer.start_span("node")
            span.end()
        exporter.clear()

    def otel_current() -> None:
        # What instrumented runners do: a current span carrying the node's attributes.
        for _ in range(n):
            with tracer.start_as_current_span("node", attributes=PAYLOAD_ATTRS):
                pass
        exporter.clear()

    pairs = compare(node_loop(rec, n), otel, repeats)
    med, best = ratios(pairs, invert=True)
    span_us = statistics.median(b for _, b in pairs) / n * 1e6
    bare = Result(f"node start+end vs OTel SDK span (start_span/end, no attributes){_path(pure)}",
                  "otel / ours (higher is better)", med, best, ">= 10x (aim 20x)",
                  f"span {span_us:.1f} us")
    if pure:
        return [bare]
    cmed, cbest = ratios(compare(node_loop(rec, n), otel_current, repeats), invert=True)
    return [
        bare,
        Result("node start+end vs OTel SDK span (start_as_current_span + 5 attributes)",
               "otel / ours (higher is better)", cmed, cbest, ">= 10x (aim 20x)"),
    ]


class Noop:
    def on_node_start(self, event: NodeEvent) -> None:
        pass

    def on_node_end(self, event: NodeEvent, output: Any) -> None:
        pass


def bench_off(tmp: Path, n: int, repeats: int) -> Result:
    rec = recorder(tmp, mode="off")
    med, best = ratios(compare(node_loop(rec, n), node_loop(Noop(), n), repeats))
    return Result("off mode vs no-op observer", "ours / no-op (lower is better)", med, best,
                  "<= 3x (aim 1.5x)")


def bench_large(tmp: Path, size: int, repeats: int) -> Result:
    blob = {"rows": ["x" * 100 for _ in range(size // 110)]}
    raw_bytes = len(orjson.dumps(blob))
    rec = recorder(tmp)
    n = max(5, 2_000_000 // size)
    ours = node_loop(rec, n, payload=blob, output=None)
    ref = floor_loop(n, payload=blob, output=None)
    med, best = ratios(compare(ours, ref, repeats), invert=True)
    shown = f"{raw_bytes / 1e6:.1f} MB" if raw_bytes >= 100_000 else f"{raw_bytes / 1e3:.0f} kB"
    return Result(f"{shown} payload throughput vs raw orjson+blake3", "ours / raw throughput", med,
                  best, ">= 0.85 (aim 0.95)")


def rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def bench_memory(tmp: Path, big: int) -> Result:
    code = f"""
import gc, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from run import recorder, node_loop, rss_kib
from pathlib import Path
rec = recorder(Path({str(tmp)!r}))
node_loop(rec, 10_000)(); gc.collect(); a = rss_kib()
node_loop(rec, {big} - 10_000)(); gc.collect(); b = rss_kib()
print(a, b)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    a, b = map(int, out.split())
    growth_mb = (b - a) / 1024
    return Result(f"RSS growth, 10k -> {big // 1000}k nodes (buffer 20)", "MB", growth_mb, growth_mb,
                  "<= 2 MB", f"{a / 1024:.1f} MB -> {b / 1024:.1f} MB")


def bench_error_memory(tmp: Path, big: int) -> Result:
    """A worker that reports node errors and never uses run(): what it holds must stay bounded."""
    code = f"""
import gc, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from run import recorder, rss_kib
from pathlib import Path
from tracekit import NodeEvent
rec = recorder(Path({str(tmp)!r}))
def errors(n):
    for i in range(n):
        e = NodeEvent(node_id=f"task{{i % 50}}", component_id="tasks", operation="run", payload={{"i": i}})
        rec.on_node_start(e)
        rec.on_node_error(e, ValueError(f"error {{i}}"))
errors(10_000); gc.collect(); a = rss_kib()
errors({big} - 10_000); gc.collect(); b = rss_kib()
print(a, b)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    a, b = map(int, out.split())
    growth_mb = (b - a) / 1024
    return Result(f"RSS growth, 10k -> {big // 1000}k node errors without run()", "MB", growth_mb,
                  growth_mb, "flat (<= 2 MB)", f"{a / 1024:.1f} MB -> {b / 1024:.1f} MB")


def bench_flush(tmp: Path, repeats: int) -> list[Result]:
    results = []
    times: dict[int, float] = {}
    for steps in (20, 10_000):
        rec = recorder(tmp, buffer=steps, mode="always")
        node_loop(rec, steps)()
        data = orjson.dumps(rec.snapshot(), option=orjson.OPT_INDENT_2)
        raw_path = tmp / "raw.json"

        def raw_write(data: bytes = data, raw_path: Path = raw_path) -> None:
            with open(raw_path, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

        def flush(rec: TraceRecorder = rec) -> None:
            rec.flush_buffer()

        pairs = compare(flush, raw_write, repeats)
        med, best = ratios(pairs)
        times[steps] = statistics.median(a for a, _ in pairs)
        results.append(Result(f"flush of a {steps:,}-step trace vs plain write+fsync of its bytes",
                              "ours / plain write", med, best, "report",
                              f"{times[steps] * 1e3:.2f} ms, {len(data) / 1e3:.0f} kB"))
    results.append(Result("flush growth 20 -> 10,000 steps", "time ratio (500x the steps)",
                          times[10_000] / times[20], times[10_000] / times[20], "report (linear or better)"))
    return results


def bench_threads(tmp: Path, n: int, repeats: int) -> Result:
    rec = recorder(tmp)
    per = n // 4

    def four() -> None:
        threads = [threading.Thread(target=node_loop(rec, per)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    med, best = ratios(compare(four, node_loop(rec, per * 4), repeats))
    return Result("4 threads vs 1 thread, same total work", "4T / 1T time (GIL-bound: ~1x)", med, best,
                  "no collapse (<= 1.5x)")


def bench_capture(tmp: Path, n: int, repeats: int) -> Result:
    on = recorder(tmp, capture_inputs=True)
    off = recorder(tmp)
    med, best = ratios(compare(node_loop(on, n), node_loop(off, n), repeats))
    return Result("capture on (redacted) vs capture off", "on / off", med, best, "report")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    n, repeats, big, size = (2_000, 1, 30_000, 100_000) if args.quick else (50_000, 7, 300_000, 1_000_000)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results.append(bench_floor(tmp, n, repeats))
        results.append(bench_floor_hashes_paid(tmp, n, repeats))
        try:
            results.extend(bench_otel(tmp, n, repeats))
        except ImportError:
            print("(opentelemetry-sdk not installed: OTel comparison skipped)", file=sys.stderr)
        if built() is not None:  # the same two figures where the extension is not built
            results.append(bench_floor(tmp, n, repeats, pure=True))
            with contextlib.suppress(ImportError):
                results.extend(bench_otel(tmp, n, repeats, pure=True))
        results.append(bench_off(tmp, n * 4, repeats))
        results.append(bench_large(tmp, 20_000, repeats))  # hashed at once, NaN-scanned
        results.append(bench_large(tmp, size, repeats))
        results.append(bench_memory(tmp, big))
        results.append(bench_error_memory(tmp, big // 3))
        results.extend(bench_flush(tmp, repeats))
        results.append(bench_threads(tmp, n, repeats))
        results.append(bench_capture(tmp, n, repeats))
    print(f"tracekit benchmarks, {time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cores{' (quick)' if args.quick else ''}; "
          f"callbacks: {'compiled (tracekit._speedups)' if built() else 'pure Python (not built)'}\n")
    print("| case | ratio | median | best | target | detail |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.unit} | {r.median:.2f} | {r.best:.2f} | {r.target} | {r.detail} |")
    if args.json:
        args.json.write_bytes(orjson.dumps([r.__dict__ for r in results], option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
