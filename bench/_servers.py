"""Servers on loopback ports for the HTTP benchmarks: ours (``python -m api``) and a bare FastAPI baseline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from api.__main__ import ONE_BLAS_THREAD

ROOT = Path(__file__).resolve().parent.parent
JACSPEC = "api.main:create_app"
"""jacspec's app factory, as ``python -m api`` serves it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: str, env: dict[str, str] | None = None, factory: bool = False) -> Iterator[tuple[str, int]]:
    """``uvicorn APP`` (``uvicorn --factory APP`` with ``factory``) on a free loopback port, one worker, no access
    log, in the environment ``python -m api`` gives its server (BLAS on one thread) plus ``env``; yields (base URL,
    pid)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    if factory:
        command.append("--factory")
    environment = {**ONE_BLAS_THREAD, **os.environ, **(env or {})}
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # heavy work still in a worker thread: a thread cannot be interrupted
            process.kill()
            process.wait()


def peak_rss(pid: int) -> int:
    """VmHWM, the process's peak resident set, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")
