"""Fixtures shared by every test: the app in-process over ASGI (lifespan run), and a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from api.settings import Settings

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def app_client(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a fresh app made with ``Settings(**settings)``."""
    app = create_app(Settings(**settings))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jacspec.test") as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client() as c:
        yield c


@pytest.fixture
def make_client() -> ClientFactory:
    return app_client


ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@contextmanager
def running_server(**env: str) -> Iterator[str]:
    """`python -m api` (what `make serve` runs) on a free loopback port, with extra ``JACSPEC_*`` variables.

    Its stderr goes to a file, not a pipe: a pipe nobody reads fills up with logged tracebacks and then blocks
    the server.
    """
    port = _free_port()
    env = {**os.environ, **env, "JACSPEC_HOST": "127.0.0.1", "JACSPEC_PORT": str(port)}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, stderr=log)
        url = f"http://127.0.0.1:{port}"

        def why() -> str:
            log.seek(0)
            return f"the server did not start: {log.read().decode()[-2000:]}"

        try:
            wait_healthy(url, [process], why)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """`python -m api` with the default settings, for the whole session."""
    with running_server() as url:
        yield url
