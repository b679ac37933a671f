"""What the tests share: the app in-process over ASGI, ``python -m api`` as a real process on a free loopback port,
and waiting, with a bound, for something to happen.

In-process, :func:`served` builds a fresh app with ``api.main.create_app`` and runs its lifespan around an httpx
client of it (so a 5xx surfaces as the exception behind it). Over real HTTP, :func:`running_server` starts what
``make serve`` runs and stops it with SIGTERM; :func:`start_server` starts one without waiting, for tests that start
several.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from fastapi import FastAPI

from api.compute import ComputePool, Worker
from api.main import create_app
from api.settings import Settings
from api.worker import Outcome, Task
from api.worker import run as run_task

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "http://jacspec.test"
"""The base URL of an in-process client (any host would do: nothing resolves it)."""
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
""":func:`app_client`, as the ``make_client`` fixture hands it out."""


# ------------------------------------------------------------------ in-process


@asynccontextmanager
async def asgi_client(app: FastAPI, *, raise_app_exceptions: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of ``app`` over ASGI, inside the app's lifespan (its startup before, its shutdown after).

    With ``raise_app_exceptions=False`` an exception in the app is answered 500, as a server would, instead of
    being raised in the test.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


@asynccontextmanager
async def served(**settings: object) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A fresh app made with ``Settings(**settings)``, and a client of it."""
    app = create_app(Settings(**settings))  # type: ignore[arg-type]
    async with asgi_client(app) as client:
        yield app, client


def compute_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the compute pool's tasks in a thread of the test process instead of a worker process, for the tests that
    monkeypatch the numerics (a worker would not see the patch). Only the worker's side changes: the task's
    outcome is what ``api.worker.run`` makes of it, as in a worker."""

    async def exchange(self: ComputePool, current: Worker, task: Task, noted: Callable[[Any], None]) -> Outcome:
        return await anyio.to_thread.run_sync(run_task, task)

    monkeypatch.setattr(ComputePool, "_exchange", exchange)


@asynccontextmanager
async def app_client(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app made with ``Settings(**settings)``."""
    async with served(**settings) as (_, client):
        yield client


# ------------------------------------------------------------------ real processes


def free_port() -> int:
    """A loopback TCP port that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Call ``read`` until ``done`` accepts what it returned or ``timeout`` seconds have passed; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a log file of JSON lines, parsed (a line still being written is left out)."""
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def wait_healthy(
    url: str, processes: Sequence[subprocess.Popen[bytes]], why: Callable[[], str], timeout: float = START_TIMEOUT_S
) -> None:
    """Return once ``url``/healthz answers 200; fail the test with ``why()`` if a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            pytest.fail(why())
        time.sleep(0.1)


def stop(*processes: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to every process still running, all at once, then SIGKILL to any not exited ``timeout`` s later."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass(frozen=True)
class Server:
    """A ``python -m api`` process started by :func:`start_server`, and the files its output goes to."""

    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, others: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """Return once the server answers /healthz; fail with its stderr if it (or one of ``others``) exits."""
        wait_healthy(self.url, [self.process, *others], lambda: f"the server did not start:\n{self.errors()}")

    def errors(self) -> str:
        """The end of what the server wrote to stderr (its log, unless a test asks for JSON logs on stdout)."""
        return self.stderr.read_text(errors="replace")[-3000:]


def start_server(logs: Path, name: str = "api", **env: str) -> Server:
    """Start ``python -m api`` (what ``make serve`` runs) on a free loopback port, without waiting for it.

    ``env`` adds or overrides ``JACSPEC_*`` variables; the server runs one worker unless it says otherwise. Output
    goes to ``logs/<name>.stdout`` and ``logs/<name>.stderr``, not to pipes: a pipe nobody reads fills up with
    logged tracebacks and then blocks the server.
    """
    port = free_port()
    environment = {**os.environ, "JACSPEC_WORKERS": "1", **env, "JACSPEC_HOST": "127.0.0.1", "JACSPEC_PORT": str(port)}
    out, err = logs / f"{name}.stdout", logs / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=ROOT, env=environment, stdout=stdout, stderr=stderr
        )
    return Server(process, port, out, err)


@contextmanager
def running_server(**env: str) -> Iterator[str]:
    """The URL of a ``python -m api`` started by :func:`start_server` and answering /healthz; stopped after."""
    with tempfile.TemporaryDirectory(prefix="jacspec-server-") as logs:
        server = start_server(Path(logs), **env)
        try:
            server.wait_healthy()
            yield server.url
        finally:
            stop(server.process)
