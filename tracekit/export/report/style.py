"""The report's stylesheet, inlined so the file needs nothing from the network."""

from __future__ import annotations

from typing import Final

__all__ = ["CSS"]

CSS: Final = """
:root { --fail: #c62828; --ok: #2e7d32; --flight: #f9a825; --cancel: #9e9e9e; --ink: #1d1d1f;
        --muted: #666; --line: #ddd; --bg-fail: #fdecea; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; padding: 20px 28px; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 24px 0 8px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
pre { background: #f3f3f3; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff;
         vertical-align: middle; }
.outcome-success, .st-completed { background: var(--ok); }
.outcome-failure, .st-failed { background: var(--fail); }
.outcome-cancelled, .st-cancelled { background: var(--cancel); }
.outcome-in_progress, .st-in_flight { background: var(--flight); color: #000; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; word-break: break-all; }
.warn { background: #fff8e1; border-left: 4px solid var(--flight); padding: 6px 10px; margin: 8px 0; }
.timeline { background: #fff; border: 1px solid var(--line); padding: 8px 0; }
.axis, .row { display: grid; grid-template-columns: 300px 1fr; align-items: center; }
.axis .track { height: 18px; border-bottom: 1px solid var(--line); }
.tick { position: absolute; top: 0; font-size: 11px; white-space: nowrap; color: var(--muted);
        transform: translateX(-50%); }
.tick:first-child { transform: none; } .tick.end { transform: translateX(-100%); font-weight: 600; }
.row { min-height: 22px; border-bottom: 1px solid #f0f0f0; }
.row.failing { background: var(--bg-fail); outline: 2px solid var(--fail); outline-offset: -2px; }
.label { padding: 0 8px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.track { position: relative; height: 16px; margin-right: 12px; }
.bar { position: absolute; top: 2px; height: 12px; min-width: 2px; border-radius: 2px; }
.bar.st-completed { background: #5c8fd6; }
.bar.st-in_flight { background: repeating-linear-gradient(45deg, var(--flight) 0 6px, #ffe082 6px 12px);
                    border-right: 3px dashed #000; }
.bar.never-ran { background: transparent; border: 1px dashed var(--fail); min-width: 8px; }
.sev-error { background: var(--fail); } .sev-warning { background: var(--flight); color: #000; }
.sev-info { background: #607d8b; } tr.issue-warning td { background: #fffbeb; }
tr.issue-error td { background: var(--bg-fail); }
ul.issues { margin: 4px 0; } ul.issues .badge { font-size: 11px; }
.flag { font-size: 11px; color: var(--muted); margin-left: 6px; }
.flag.failed { color: var(--fail); font-weight: 600; } .flag.in_flight { color: #8d6e00; font-weight: 600; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { text-align: left; border: 1px solid var(--line); padding: 3px 6px; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
tr.st-row-failed td { background: var(--bg-fail); }
.failure { background: #fff; border: 1px solid var(--fail); border-left: 6px solid var(--fail);
           padding: 8px 14px; margin: 10px 0; }
ol.chain li { margin: 4px 0; } .relation { color: var(--muted); font-size: 12px; }
.root { font-weight: 600; } .root-tag { color: var(--fail); font-size: 12px; margin-left: 6px; }
.empty { color: var(--muted); font-style: italic; }
"""
