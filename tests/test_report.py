"""The HTML report: content, escaping, no network assets, and a real headless-browser render."""

from __future__ import annotations

import copy
import html
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from _export_traces import by_node, write_sample_trace
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tracekit.export import ExportError, to_chrome_trace, to_otlp_json
from tracekit.export.report import CONTENT_SECURITY_POLICY, render_report

HOSTILE = "<script>alert(1)</script>"
SHOT_SIZE = (1200, 800)


@pytest.fixture
def trace(tmp_path: Path) -> dict[str, Any]:
    return write_sample_trace(tmp_path)


def _row(page: str, node_id: str) -> str:
    """The timeline row of ``node_id`` (rows are one ``<div class="row ...">`` each)."""
    for chunk in page.split('<div class="row')[1:]:
        if f'title="{html.escape(node_id)} (step' in chunk:
            return chunk
    raise AssertionError(f"no timeline row for {node_id!r}")


def test_header_names_flow_pack_run_and_outcome(trace: dict[str, Any]) -> None:
    page = render_report(trace)
    assert page.startswith("<!DOCTYPE html>")
    for text in ("nightly", "etl@1.4.0", trace["run"]["id"], "failure", trace["run"]["started_at"]):
        assert text in page
    assert 'class="badge outcome-failure"' in page


def test_timeline_rows_nest_and_mark_failure_and_in_flight(trace: dict[str, Any]) -> None:
    page = render_report(trace)
    rows = re.findall(r'<div class="row[^"]*" id="step-\d+" data-step-id="([^"]+)">', page)
    ids = {s["step_id"]: s["node_id"] for s in trace["steps"]}
    order = [ids[r] for r in rows]
    assert len(order) == len(trace["steps"])
    # Parents come right before their children, indented one level deeper.
    assert order[order.index("load"):order.index("load") + 4] == ["load", "read", "parse", "check"]
    assert "padding-left:22px" in _row(page, "read") and "padding-left:36px" in _row(page, "parse")
    assert _row(page, "transform").startswith(' failing"')
    assert page.count('class="row failing"') == 1
    assert "FAILED" in _row(page, "transform")
    assert "IN FLIGHT" in _row(page, "publish") and "bar st-in_flight" in _row(page, "publish")


def test_bars_are_positioned_by_start_and_duration(trace: dict[str, Any]) -> None:
    page = render_report(trace)
    def geometry(node: str) -> tuple[float, float]:
        m = re.search(r'style="left:([\d.]+)%;width:([\d.]+)%"', _row(page, node))
        assert m is not None
        return float(m.group(1)), float(m.group(2))
    load, read, transform = geometry("load"), geometry("read"), geometry("transform")
    assert load[0] <= read[0] and read[0] + read[1] <= load[0] + load[1] + 0.01  # child inside parent
    assert transform[0] > load[0] + load[1]  # transform ran after load ended
    for node in by_node(trace):
        left, width = geometry(node)
        assert 0 <= left <= 100 and width > 0 and left + width <= 100.001


def test_error_chain_root_cause_last_hints_and_traceback(trace: dict[str, Any]) -> None:
    page = render_report(trace)
    failure = page.split('<div class="failure"', 1)[1]
    raised = failure.index("FetchError</code>: could not fetch &lt;input&gt;")
    root = failure.index("KeyError</code>: &#x27;bucket&#x27;")
    assert raised < root < failure.index("root cause")
    assert "Check that the upstream bucket exists." in failure
    assert re.search(r"<details><summary>Traceback</summary><pre>Traceback \(most recent", failure)
    # Runner-level errors and unfinished steps are listed too.
    assert "worker lost heartbeat" in page and "worker=w1" in page
    assert "<h2>Unfinished steps</h2>" in page


def test_failure_shows_the_captured_input_redacted(tmp_path: Path) -> None:
    page = render_report(write_sample_trace(tmp_path, capture=True))
    failure = page.split('<div class="failure"', 1)[1]
    assert "Input (captured, redacted)" in failure and "&quot;bucket&quot;: &quot;raw&quot;" in failure
    assert "hunter2" not in page
    assert "input hash <code>blake3:" in failure
    assert "Input (captured" not in render_report(write_sample_trace(tmp_path / "plain"))


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    doc = write_sample_trace(tmp_path, node_id=HOSTILE)
    doc["flow"]["id"] = HOSTILE
    doc["pack"]["pack_ref"] = '"><img src=x onerror=alert(2)>'
    doc["steps"][0]["step_id"] = "' onmouseover='alert(3)"
    doc["errors"][0]["message"] = "</table><script>alert(4)</script>"
    page = render_report(doc)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "onmouseover='" not in page
    assert html.escape(HOSTILE) in page
    # Every tag in the page is one the report writes itself.
    tags = set(re.findall(r"<([a-zA-Z0-9]+)", page))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "span", "dl", "dt",
                    "dd", "p", "div", "a", "b", "ol", "ul", "li", "code", "pre", "details", "summary",
                    "table", "thead", "tbody", "tr", "th", "td"}


def test_no_external_urls(trace: dict[str, Any]) -> None:
    doc = copy.deepcopy(trace)
    doc["steps"][0]["node_id"] = "see https://example.com/docs"  # text, never a link
    page = render_report(doc)
    assert not re.search(r"""\b(src|href|action|poster|data)\s*=\s*["']?\s*(https?:|//|file:)""", page, re.I)
    links = re.findall(r'href="([^"]*)"', page)
    assert links and all(h.startswith("#") for h in links)
    assert "src=" not in page and "@import" not in page and "url(" not in page
    assert f'content="{html.escape(CONTENT_SECURITY_POLICY)}"' in page


def test_success_trace_without_failure(tmp_path: Path) -> None:
    from tracekit import TraceContext, TraceRecorder

    out = tmp_path / "t.json"
    rec = TraceRecorder.from_env(TraceContext("p@1", "ok-flow", "1"), mode="always", out=str(out))
    with rec.run(), rec.step("only"):
        pass
    page = render_report(orjson.loads(out.read_bytes()))
    assert "No step failed." in page and "outcome-success" in page and 'class="row failing"' not in page


def test_cli_report(tmp_path: Path, trace: dict[str, Any]) -> None:
    from tracekit.cli import cli

    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "trace.json"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render_report(trace)
    default = CliRunner().invoke(cli, ["report", str(tmp_path / "trace.json")])
    assert default.exit_code == 0 and (tmp_path / "trace.html").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = CliRunner().invoke(cli, ["report", str(bad), "-o", str(out)])
    assert result.exit_code == 1 and "a trace is a JSON object" in result.output
    assert "Traceback" not in result.output


# --- a real browser -----------------------------------------------------------------------------


def _decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Width, height, unfiltered rows and bytes per pixel of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert header is not None
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    prev, rows = bytearray(stride), []
    for y in range(height):
        kind_of_filter = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind_of_filter == 1:
                line[i] = (line[i] + a) & 255
            elif kind_of_filter == 2:
                line[i] = (line[i] + b) & 255
            elif kind_of_filter == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind_of_filter == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium installed (apt-get install chromium)")


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, timeout=120, check=False)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    doc = write_sample_trace(tmp_path, node_id=HOSTILE)
    page = tmp_path / "report.html"
    page.write_text(render_report(doc), encoding="utf-8")
    url = page.as_uri()

    dom = _browser(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = dom.stdout.decode("utf-8")
    assert len(re.findall(r'<div class="bar st-', text)) == len(doc["steps"])
    assert 'class="bar st-failed"' in text and 'class="bar st-in_flight"' in text
    assert html.escape(HOSTILE) in text and "<script>" not in text  # still text after parsing
    assert "<title>tracekit: nightly (failure)</title>" in text

    shot = tmp_path / "shot.png"
    result = _browser(tmp_path, f"--screenshot={shot}", f"--window-size={SHOT_SIZE[0]},{SHOT_SIZE[1]}", url)
    assert result.returncode == 0 and shot.is_file(), result.stderr.decode(errors="replace")[-2000:]
    width, height, rows, bpp = _decode_png(shot.read_bytes())
    assert (width, height) == SHOT_SIZE
    pixels = [row[i:i + 3] for row in rows[::2] for i in range(0, len(row), bpp * 2)]
    counts = Counter(pixels)
    assert len(counts) > 50, "the screenshot is (nearly) blank"
    # The failure red of the highlighted row and its bar is on screen.
    assert any(r > 180 and g < 80 and b < 80 for r, g, b in counts)
    assert counts.most_common(1)[0][1] < 0.97 * len(pixels), "one colour fills the screenshot"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "message", "chain", "hints", "traceback", "details", "code", "exceptions",
                         "relation", "trace", "phase", "time", "tags", "error", "id", "pid", "dropped"]),
        inner, max_size=5),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(error=_json, errors=_json, run_extra=_json, flow=_json, buffer=_json)
def test_report_and_exports_never_crash_on_odd_values(
    error: Any, errors: Any, run_extra: Any, flow: Any, buffer: Any
) -> None:
    # What a hand-edited or foreign trace may hold where an object or list belongs.
    doc = {"trace_version": 1, "pack": {"pack_ref": "p"}, "flow": flow, "buffer": buffer,
           "run": {"id": "r", "outcome": "failure", "started_at": "2026-11-23T12:00:00Z", "x": run_extra},
           "steps": [{"node_id": "n", "status": "failed", "started_at": "2026-11-23T12:00:00.5Z",
                      "duration_ns": 10, "error": error}],
           "errors": errors, "errors_dropped": run_extra}
    for render in (render_report, to_chrome_trace, to_otlp_json):
        try:
            render(doc)
        except ExportError as exc:
            assert exc.pointer.startswith("/errors/")  # only a runner error's unreadable time
