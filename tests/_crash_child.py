"""Child process for test_crash_kill.py: flush a large trace to one target, forever.

Usage: ``python _crash_child.py TARGET STEPS PAYLOAD_BYTES``. It prints ``ready`` once the ring
buffer is full and then rewrites TARGET as fast as it can until it is killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tracekit import NodeEvent, TraceConfig, TraceContext, TraceRecorder


def main() -> None:
    target, steps, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    config = TraceConfig.create(mode="always", out=target, buffer=steps, capture_inputs=True)
    rec = TraceRecorder(config, TraceContext(pack_ref="crash@1", flow_id="crash", flow_version="1"))
    blob = "x" * size
    for i in range(steps):
        ev = NodeEvent(f"n{i}", "comp", "call", payload={"i": i, "blob": blob})
        rec.on_node_start(ev)
        rec.on_node_end(ev, i)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        ev = NodeEvent("tick", "comp", "call", payload={"n": n, "blob": blob})
        rec.on_node_start(ev)
        rec.on_node_end(ev, n)
        rec.flush_buffer()


if __name__ == "__main__":
    main()
