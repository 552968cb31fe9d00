"""A real Chroma server for a test: ``chroma run`` on 127.0.0.1, a free port, a temp folder.

The server is the venv's own ``chroma`` executable (same chromadb version as the client). One
helper for every test that needs a server (test_chroma_server.py, test_faults.py,
test_scaled_stack.py), so they start, wait for and stop it the same way; the block's end
stops this server only (its own pid: SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HEARTBEAT_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
EXECUTABLE = Path(sys.executable).with_name("chroma")


@dataclass(frozen=True)
class ChromaServer:
    host: str
    port: int
    path: Path
    log: Path
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """What settings.py reads to use this server instead of the folder."""
        return {"LDP_CHROMA_HOST": self.host, "LDP_CHROMA_PORT": str(self.port)}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def heartbeat(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    try:
        with opener.open(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def chroma_server(
    data: Path, port: int | None = None, log: Path | None = None
) -> Iterator[ChromaServer]:
    """``chroma run --path data`` on 127.0.0.1:``port`` (free if None) until the block ends.

    The log is appended to (default ``chroma-<port>.log`` beside ``data``), so a test that
    restarts the server on the same port and folder keeps every start's output."""
    if not EXECUTABLE.exists():
        pytest.fail(f"the chroma server executable is missing: {EXECUTABLE} (pip install chromadb)")
    port = port or free_port()
    log = log or data.parent / f"chroma-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(EXECUTABLE), "run", "--path", str(data), "--host", "127.0.0.1"]
            + ["--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
    try:
        deadline = time.monotonic() + HEARTBEAT_TIMEOUT_S
        while not heartbeat(port):
            if process.poll() is not None:
                pytest.fail(f"chroma run exited with {process.returncode}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no Chroma heartbeat within {HEARTBEAT_TIMEOUT_S:.0f} s:\n{log_tail(log)}"
                )
            time.sleep(0.2)
        yield ChromaServer("127.0.0.1", port, data, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
