"""A throwaway Redis server for tests: Debian's ``redis-server`` on 127.0.0.1, a free port, no disk.

``.ci/run`` installs ``redis-server`` in CI; elsewhere a test that needs it is skipped with a
message saying how to install it. Outside CI nothing else is required: the server is started
here and stopped when the test session is done.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_or_skip", "start_redis"]

_READY_TIMEOUT_S = 15.0
_PORT_TRIES = 5


@dataclass
class RedisServer:
    """A running ``redis-server``; :meth:`url` gives a database of it to a client."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def redis_or_skip() -> str:
    """The path of ``redis-server``; skips the test when it is not installed (fails in CI)."""
    found = shutil.which("redis-server")
    if found is None:
        message = ("redis-server is not installed (Debian: apt-get install redis-server); "
                   "the real-worker Celery tests need it and .ci/run installs it in CI")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(workdir: Path) -> RedisServer:
    """Start ``redis-server`` on 127.0.0.1 with persistence off; returns once it answers PING."""
    binary = redis_or_skip()
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(_PORT_TRIES):
        port = _free_port()
        log = workdir / f"redis-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(workdir)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        server = RedisServer(process, port, log)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _answers_ping(port):
                return server
            time.sleep(0.02)
        server.stop()
        # The port may have been taken between choosing and binding it: try another one.
        if attempt == _PORT_TRIES - 1:
            raise RuntimeError(f"redis-server did not start; its log:\n{log.read_text(errors='replace')}")
    raise AssertionError("unreachable")
