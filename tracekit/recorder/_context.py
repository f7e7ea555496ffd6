"""Where the current step lives, so nested steps find their parent across threads and tasks."""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar
from typing import Any

__all__ = ["CURRENT_STEP_ID", "current_task", "execution_key", "get_ident", "get_running_loop"]

#: The step id of the innermost ``recorder.step()`` block; asyncio tasks inherit it.
CURRENT_STEP_ID: ContextVar[str | None] = ContextVar("tracekit_current_step", default=None)

# Bound once: the recorder's hot path inlines execution_key() with these.
get_running_loop = asyncio._get_running_loop
current_task = asyncio.current_task
get_ident = threading.get_ident


def execution_key() -> Any:
    """The asyncio task running now, or the thread id: what pairs a start with its end."""
    loop = get_running_loop()
    if loop is not None:
        task = current_task(loop)
        if task is not None:
            return task
    return get_ident()
