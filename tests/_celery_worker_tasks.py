"""The Celery app that a real worker process runs for tests/test_adapter_celery_worker.py.

Not a test module: the worker imports it (``celery -A _celery_worker_tasks worker``), with the
broker URL and a directory for "task started" marks in the environment. It is instrumented the
way a user does it, at import, so ``TRACEKIT_TRACE*`` variables configure the recorders.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from celery import Celery

from tracekit.adapters.celery import instrument

BROKER = os.environ["TK_CELERY_BROKER"]
MARKS = Path(os.environ["TK_CELERY_MARKS"])

app = Celery("tk_worker", broker=BROKER, backend=BROKER)
app.conf.update(
    worker_prefetch_multiplier=1,  # a waiting task stays in the broker, not in a busy process
    broker_connection_retry_on_startup=True,
    result_expires=None,
)
tracing = instrument(app)


def _mark_started(task_id: str | None) -> None:
    # The test waits for this file before it signals the worker: the task is running then.
    (MARKS / f"{task_id}.started").touch()


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def boom(n: int) -> None:
    raise ValueError(f"bad input {n}")


@app.task(bind=True, time_limit=1)
def stuck_hard(self: Any, seconds: float) -> str:
    _mark_started(self.request.id)
    time.sleep(seconds)
    return "finished"


@app.task(bind=True, soft_time_limit=0.5)
def stuck_soft(self: Any, seconds: float) -> str:
    _mark_started(self.request.id)
    time.sleep(seconds)
    return "finished"


@app.task(bind=True, max_retries=1)
def fetch(self: Any, url: str) -> str:
    # Retry.exc made on the spot, outside any except block, as users write it.
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionRefusedError(111, f"Connection refused: {url}"), countdown=0)
    raise self.retry(exc=TimeoutError(f"timed out reading {url}"), countdown=0)


@app.task(bind=True)
def slow(self: Any, seconds: float) -> float:
    _mark_started(self.request.id)
    time.sleep(seconds)
    return seconds


@app.task(bind=True)
def killed(self: Any) -> None:
    # What the OOM killer does to a pool process: no exception, no signal handler, no cleanup.
    _mark_started(self.request.id)
    os.kill(os.getpid(), signal.SIGKILL)
