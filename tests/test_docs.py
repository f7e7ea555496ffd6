"""The code in README.md and docs/ runs, and prints what the page says it prints.

Each ```python block of README.md and docs/**/*.md is written to a file in an empty temporary
directory and run there with this interpreter, as a reader would paste it; it must exit 0. A block
followed by a ```text block marked ``<!-- output -->`` must print that text, after times, hex ids
and hashes, durations and pids are normalised; a line ``...`` in the expected text stands for any
number of lines (trimmed output), and ``...`` within a line for any characters. HTML comments on
the lines right before a fence steer it:

- ``<!-- no-run -->``: not run (a fragment that needs the reader's own runner; used sparingly);
- ``<!-- requires: hamilton langgraph -->``: skipped when a module is missing (an extra not
  installed; CI installs them all);
- ``<!-- output -->``: the ```text block below is the output of the ```python block above.

Blocks do not share state: each one is a complete program.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parent.parent
TIMEOUT_S: Final = 180

_FENCE: Final = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)")
_MARKER: Final = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")

# What differs from one run to the next, and what each becomes before comparing.
_VOLATILE: Final = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), "<time>"),
    (re.compile(r"\b\d{8}-\d{6}\b"), "<stamp>"),
    (re.compile(r"\b[0-9a-f]{10,}\b"), "<hex>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:ns|µs|us|ms|s)\b"), "<dur>"),
    (re.compile(r"\bpid(['\"]?:? ?|=)\d+"), r"pid\1<n>"),
)


@dataclass(frozen=True)
class Block:
    """One fenced block of Python on a page, with what its markers say."""

    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    markers: frozenset[str]
    requires: tuple[str, ...]
    expected: str | None  # the text block marked <!-- output --> after it, if any

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class _Fence:
    line: int
    lang: str
    body: str
    markers: tuple[str, ...]
    end: int  # index of the closing fence line


def _fences(text: str) -> list[_Fence]:
    lines = text.splitlines()
    found: list[_Fence] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks = m["indent"], m["ticks"]
        markers: list[str] = []
        j = i - 1
        while j >= 0 and (mm := _MARKER.match(lines[j])):
            markers.insert(0, mm["body"])
            j -= 1
        body: list[str] = []
        k = i + 1
        while k < len(lines) and not lines[k].strip().startswith(ticks[0] * len(ticks)):
            line = lines[k]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            k += 1
        found.append(_Fence(i + 1, m["lang"].lower(), "\n".join(body) + "\n", tuple(markers), k))
        i = k + 1
    return found


def parse_page(page: Path, text: str) -> list[Block]:
    """The Python blocks of one page (the harness's own unit; tested below on a sample)."""
    fences = _fences(text)
    lines = text.splitlines()
    blocks: list[Block] = []
    for n, fence in enumerate(fences):
        if fence.lang not in ("python", "py"):
            continue
        expected = None
        following = fences[n + 1] if n + 1 < len(fences) else None
        if following is not None and "output" in following.markers and following.lang == "text":
            between = lines[fence.end + 1 : following.line - 1]
            if all(not ln.strip() or _MARKER.match(ln) for ln in between):
                expected = following.body
        requires: list[str] = []
        flags: set[str] = set()
        for marker in fence.markers:
            if marker.startswith("requires:"):
                requires.extend(marker.split(":", 1)[1].split())
            else:
                flags.add(marker)
        blocks.append(Block(page, fence.line, fence.body, frozenset(flags), tuple(requires), expected))
    return blocks


def normalise(text: str) -> str:
    out = []
    for line in text.splitlines():
        for pattern, replacement in _VOLATILE:
            line = pattern.sub(replacement, line)
        out.append(line.rstrip())
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` (both normalised); ``...`` matches any lines, or any characters."""
    parts = []
    for line in normalise(expected).splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*?".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.fullmatch("".join(parts), normalise(actual)) is not None


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks() -> list[Block]:
    return [b for page in _pages() for b in parse_page(page, page.read_text(encoding="utf-8"))]


BLOCKS: Final = _blocks()


@pytest.mark.parametrize("block", [b for b in BLOCKS if "no-run" not in b.markers], ids=lambda b: b.id)
def test_doc_block_runs(block: Block, tmp_path: Path) -> None:
    missing = [name for name in block.requires if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{block.id} needs {', '.join(missing)} (an extra that is not installed)")
    script = tmp_path / "snippet.py"
    script.write_text(block.code, encoding="utf-8")
    # A reader's shell: none of the developer's TRACEKIT_* settings, no colour, a fixed width.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(NO_COLOR="1", COLUMNS="100", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, f"{block.id} exited {done.returncode}:\n{done.stderr}"
    if block.expected is not None:
        assert matches(block.expected, done.stdout), (
            f"{block.id} printed something else than the page says.\n--- page\n{block.expected}"
            f"--- printed\n{done.stdout}"
        )


def test_every_page_has_its_blocks_found() -> None:
    # The pages that show code do show runnable code: a fence the parser missed would go untested.
    by_page = {b.page.name for b in BLOCKS if "no-run" not in b.markers}
    assert {"README.md", "getting-started.md", "writing-an-adapter.md", "concepts.md"} <= by_page
    assert sum("no-run" in b.markers for b in BLOCKS) <= len(BLOCKS) // 4  # sparingly


def _schema_fields(node: object) -> set[str]:
    """Every property name the schema defines, at any depth."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                found |= set(value)
            found |= _schema_fields(value)
    elif isinstance(node, list):
        for item in node:
            found |= _schema_fields(item)
    return found


def test_the_envelope_page_names_every_field_of_the_schema() -> None:
    schema = json.loads((ROOT / "schemas" / "trace-envelope.v1.schema.json").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "envelope.md").read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```", "", page, flags=re.M | re.S)  # code spans of the prose only
    named = {word for span in re.findall(r"`([^`]+)`", prose) for word in re.findall(r"\w+", span)}
    missing = sorted(_schema_fields(schema) - named)
    assert not missing, f"docs/envelope.md does not document: {', '.join(missing)}"


SAMPLE: Final = """\
# A page

```python
print("runs")
```

<!-- output -->
```text
runs
```

<!-- no-run -->
```python
my_runner.go()
```

<!-- requires: hamilton  langgraph -->
```python
import hamilton
```

```bash
echo not python
```

```python
print(1)
```
Some prose, then a text block that is not this block's output:

<!-- output -->
```text
2
```
"""


def test_parser_reads_markers_and_output_blocks() -> None:
    blocks = parse_page(ROOT / "docs" / "sample.md", SAMPLE)
    assert [b.line for b in blocks] == [3, 13, 18, 26]
    assert blocks[0].code == 'print("runs")\n' and blocks[0].expected == "runs\n"
    assert blocks[1].markers == {"no-run"} and blocks[1].expected is None
    assert blocks[2].requires == ("hamilton", "langgraph")
    assert blocks[3].expected is None  # prose between: not its output


def test_normalising_and_ellipsis_matching() -> None:
    printed = (
        "run 1b2818f16c54453a969668d389cacfdc at 2026-11-23T03:03:00.250000Z took 4.28 ms pid 4242\n"
        "a\nb\nc\nlast\n"
    )
    assert matches("run 0123456789abcdef0123 at 2026-01-01T00:00:00Z took 9 µs pid 1\n...\nlast\n", printed)
    assert not matches("run x\n...\nlast\n", printed)
    assert matches("run ... at ...\n...\nl...t\n", printed)
    assert not matches("run ... at ...\nlast\n", printed)
    assert not matches("run 0123456789abcdef0123 at 2026-01-01T00:00:00Z took 9 µs pid 1\nlast\n", printed)
