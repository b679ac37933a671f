"""A cluster that is not there, or goes away: real schedulers and workers on loopback (``bench._cluster``), started
and killed while the app runs. The app starts without its scheduler, answers the synchronous routes, keeps jobs
queued and says the cluster is disconnected; once a scheduler answers on that address the queued job runs. A
scheduler killed under a running job fails that job (``job-interrupted``), and the next job waits for the next
scheduler."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from api.jobs.dask import LOST, DaskExecutor
from api.main import create_app
from api.settings import Settings
from bench._cluster import dask_cluster
from jacspec import __version__
from jacspec.models.jobs import INTERRUPTED
from tests.api.test_jobs import FINAL, LONG, submit, wait_for, without_timings
from tests.cluster.test_dask import CHAIN
from tests.helpers import asgi_client, free_port

pytestmark = pytest.mark.anyio

WAIT_S = 60.0


@asynccontextmanager
async def cluster_on(port: int) -> AsyncIterator[str]:
    """A scheduler on ``port`` and one worker (``dask_cluster``, started and stopped in a thread: it blocks)."""
    with ExitStack() as stack:
        address = await anyio.to_thread.run_sync(stack.enter_context, dask_cluster(1, 2, port))
        try:
            yield address
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(stack.close)


def cluster_app(port: int, tmp_path: Path) -> FastAPI:
    """An app whose jobs run on the scheduler at ``port``, trying to reach it about every second."""
    address = f"tcp://127.0.0.1:{port}"
    app = create_app(
        Settings(cluster=address, database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}", compute_workers=1)
    )
    executor = app.state.jobs.executor
    assert isinstance(executor, DaskExecutor)
    executor.connect_timeout_s = 1.0
    executor.retry_max_s = 0.5
    return app


async def cluster_state(client: httpx.AsyncClient) -> str:
    """What /readyz (200) and /healthz (200) say of the cluster, the same."""
    ready, health = await client.get("/readyz"), await client.get("/healthz")
    assert ready.status_code == health.status_code == 200
    assert ready.json()["status"] == "ready"
    assert health.json()["status"] == "ok"
    assert ready.json()["cluster"] == health.json()["cluster"]
    return str(ready.json()["cluster"])


async def until_connected(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(WAIT_S):
        while await cluster_state(client) != "connected":
            await anyio.sleep(0.05)


async def still_queued(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job, after the runner has had many chances to claim it (a runner idles 0.5 s at most)."""
    await anyio.sleep(1.5)
    job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "queued", job
    assert job["started_at"] is None
    return job


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jacspec.jobs" and r.levelno == level]


async def succeeds_connected(client: httpx.AsyncClient, job_id: str, synchronous: bytes) -> None:
    """The job succeeds with the synchronous report (timings apart), and the app says the cluster is connected."""
    job = await wait_for(client, job_id, FINAL)
    assert job["status"] == "succeeded", job
    report = await client.get(f"/v1/jobs/{job_id}/report")
    assert without_timings(report.content) == without_timings(synchronous)
    assert await cluster_state(client) == "connected"


async def test_the_app_starts_without_its_scheduler_and_runs_the_queued_job_once_one_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jacspec.jobs")
    port = free_port()  # nothing listens there
    async with asgi_client(cluster_app(port, tmp_path)) as client:
        health = await client.get("/healthz")
        assert health.json() == {"status": "ok", "version": __version__, "cluster": "disconnected"}
        assert await cluster_state(client) == "disconnected"
        synchronous = await client.post("/v1/analyses", json=CHAIN)
        assert synchronous.status_code == 200
        job_id = await submit(client, CHAIN)
        await still_queued(client, job_id)
        with anyio.fail_after(WAIT_S):
            while len(messages(caplog, logging.DEBUG)) < 2:  # two attempts have failed, at least
                await anyio.sleep(0.05)
        assert await cluster_state(client) == "disconnected"

        async with cluster_on(port):
            await succeeds_connected(client, job_id, synchronous.content)
    unreachable = [m for m in messages(caplog, logging.WARNING) if m.startswith("cannot reach the Dask scheduler")]
    assert len(unreachable) == 1, messages(caplog, logging.WARNING)
    assert sum(m.startswith("connected to the Dask scheduler") for m in messages(caplog, logging.INFO)) == 1


async def test_a_lost_scheduler_fails_the_job_it_ran_and_the_next_job_waits_for_a_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jacspec.jobs")
    port = free_port()
    app = cluster_app(port, tmp_path)
    async with cluster_on(port), asgi_client(app) as client:
        await until_connected(client)
        doomed = await submit(client, LONG)
        deadline = time.monotonic() + WAIT_S
        while (job := (await client.get(f"/v1/jobs/{doomed}")).json())["progress"]["done"] == 0:
            assert time.monotonic() < deadline, job
            await anyio.sleep(0.05)
        _kill_cluster(await _cluster_pids(app))

        failed = await wait_for(client, doomed, FINAL)
        assert failed["status"] == "failed", failed
        assert failed["error"]["type"] == INTERRUPTED
        assert failed["error"]["status"] == 503
        assert failed["error"]["detail"] == LOST
        synchronous = await client.post("/v1/analyses", json=CHAIN)
        assert synchronous.status_code == 200
        assert await cluster_state(client) == "disconnected"
        later = await submit(client, CHAIN)
        await still_queued(client, later)

        async with cluster_on(port):
            await succeeds_connected(client, later, synchronous.content)
            lost = [m for m in messages(caplog, logging.WARNING) if m.startswith("lost the Dask scheduler")]
            assert len(lost) == 1, messages(caplog, logging.WARNING)


@pytest.mark.parametrize("address", ["127.0.0.1", "tcp://127.0.0.1", "nonsense://127.0.0.1:8786"])
def test_an_address_dask_cannot_read_stops_the_app_at_once(address: str) -> None:
    with pytest.raises(ValueError, match=r"port|scheme"):
        create_app(Settings(cluster=address))


async def _cluster_pids(app: FastAPI) -> list[int]:
    """The process ids of the scheduler and its workers."""
    client = app.state.jobs.executor.client
    workers: dict[str, int] = await client.run(os.getpid)
    scheduler: int = await client.run_on_scheduler(os.getpid)
    return [scheduler, *workers.values()]


def _kill_cluster(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
