"""Jobs on a real Dask cluster on loopback (a scheduler and two worker processes started here): a chain's report
equals the synchronous route's (timings apart), its layers' norms ran as tasks of their own on the cluster, its
progress reached the job, and a worker-side error is the synchronous route's problem."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from distributed import Client
from fastapi import FastAPI

from api.jobs.dask import DaskExecutor
from bench._cluster import dask_cluster, finished_tasks, running_tasks
from tests.api.test_jobs import FINAL, LONG, parsed_without_timings, submit, wait_for, without_timings
from tests.helpers import served

pytestmark = pytest.mark.anyio

CHAIN = {
    "network": {"activation": "tanh", "init": {"widths": [64] * 6, "scheme": "orthogonal", "seed": 3}},
    "inputs": {"count": 8},
    "options": {"spectrum": "summary"},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with dask_cluster(workers=2, nthreads=2) as address:
        yield address


@pytest.fixture
async def cluster_app(cluster: str, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    database = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    async with served(cluster=cluster, database_url=database, compute_workers=1) as (app, client):
        executor = app.state.jobs.executor
        assert isinstance(executor, DaskExecutor)
        executor.spread_min_flops = 0.0  # spread even this small chain's layers over the cluster
        with anyio.fail_after(60.0):
            await executor.ready()  # the client connects in the background once the app has started
        yield app, client


async def test_a_job_on_the_cluster_reports_what_the_synchronous_route_does(
    cluster: str, cluster_app: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    app, client = cluster_app
    before = set(await _finished(app))
    job = await wait_for(client, await submit(client, CHAIN), FINAL)
    assert job["status"] == "succeeded", job
    synchronous = await client.post("/v1/analyses", json=CHAIN)
    assert synchronous.status_code == 200
    report = await client.get(f"/v1/jobs/{job['id']}/report")
    assert parsed_without_timings(report.content) == parsed_without_timings(synchronous.content)
    assert without_timings(report.content) == without_timings(synchronous.content)

    ran = set(await _finished(app)) - before
    layers = len(CHAIN["network"]["init"]["widths"]) - 1  # type: ignore[index]
    assert sum(key.startswith("cluster_task-") for key in ran) == 1
    assert sum(key.startswith("_weight_norm-") for key in ran) == layers
    assert sum(key.startswith("_layer_jacobian-") for key in ran) == layers
    progress = job["progress"]
    assert progress["unit"] == "stages"
    assert 0 < progress["done"] == progress["total"] == 2 * layers + 1


async def test_a_failed_job_on_the_cluster_carries_the_synchronous_problem(
    cluster_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = cluster_app
    huge = [[1e308, 1e308], [1e308, 1e308]]  # σ beyond float64: refused by the numerics, on the cluster
    body = {"network": {"activation": "tanh", "layers": [{"weight": huge}, {"weight": [[1.0, 0.0]]}]}}
    synchronous = await client.post("/v1/analyses", json=body)
    assert synchronous.status_code == 422
    job = await wait_for(client, await submit(client, body), FINAL)
    assert job["status"] == "failed"
    expected: dict[str, Any] = synchronous.json()
    del expected["request_id"]
    assert job["error"] == expected
    assert job["error"]["errors"][0]["pointer"].startswith("/network/layers/0")


async def test_cancel_stops_the_work_on_the_cluster(cluster_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """A cancelled job's task stops at its next progress tick: no worker thread runs anything soon after, long
    before the chain (about forty seconds of one core) could have ended."""
    app, client = cluster_app
    job_id = await submit(client, LONG)
    deadline = time.monotonic() + 60.0
    while (job := (await client.get(f"/v1/jobs/{job_id}")).json())["progress"]["done"] == 0:
        assert time.monotonic() < deadline, job
        await anyio.sleep(0.05)
    assert sum((await _running(app)).values()) > 0
    cancelled = await client.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    deadline = time.monotonic() + 10.0
    while sum((running := await _running(app)).values()) > 0:
        assert time.monotonic() < deadline, running
        await anyio.sleep(0.1)
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "cancelled"
    follow = await wait_for(client, await submit(client, CHAIN), FINAL)
    assert follow["status"] == "succeeded"


async def _running(app: FastAPI) -> dict[str, int]:
    client: Client = app.state.jobs.executor.client
    counts: dict[str, int] = await client.run(running_tasks)
    return counts


async def _finished(app: FastAPI) -> list[str]:
    client: Client = app.state.jobs.executor.client
    keys: list[str] = await client.run_on_scheduler(finished_tasks)
    return keys
