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
def serve(
    app: str, env: dict[str, str] | None = None, factory: bool = False, server: str = "uvicorn", root: Path = ROOT
) -> Iterator[tuple[str, int]]:
    """``uvicorn APP`` (``uvicorn --factory APP`` with ``factory``), or with ``server="granian"`` granian over
    HTTP/1.1 as ``python -m api`` runs it, from the tree ``root``, on a free loopback port, one worker, no access
    log, in the environment ``python -m api`` gives its server (BLAS on one thread) plus ``env``; yields (base URL,
    pid of the process that runs the app: granian's worker, not its supervisor)."""
    port = free_port()
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if server == "granian":
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--http", "1", *address, app]
    else:
        command = [sys.executable, "-m", "uvicorn", app, *address, "--no-access-log"]
    if factory:
        command.insert(-1 if server == "granian" else len(command), "--factory")
    environment = {**ONE_BLAS_THREAD, **os.environ, **(env or {})}
    process = subprocess.Popen(command, cwd=root, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, _app_pid(process.pid) if server == "granian" else process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # heavy work still in a worker thread: a thread cannot be interrupted
            process.kill()
            process.wait()


def _app_pid(pid: int) -> int:
    """The first child of process ``pid`` (granian's worker), from /proc (Linux)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0])


def peak_rss(pid: int) -> int:
    """VmHWM, the process's peak resident set, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")
