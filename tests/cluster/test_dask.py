"""Jobs on a real Dask cluster on loopback (a scheduler and two worker processes started here): a chain's, a
graph's and an uploaded file's weight survey report equals the synchronous route's (timings apart), their pieces
(a chain's layers' norms, a graph's blocks' and backward stretches' norms and its matrices' surveys, the file's
tensors' surveys) ran as tasks of their own on the cluster, progress reached the job, and a worker-side error —
also one raised in a piece's task on another worker — is the synchronous route's problem."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from distributed import Client
from fastapi import FastAPI
from safetensors.numpy import save

from api.compute import SHARED_BYTES
from api.jobs.dask import DaskExecutor, ScatteringExecutor
from bench._cluster import dask_cluster, finished_tasks, running_tasks
from tests.api.test_jobs import FINAL, LONG, MEDIUM, parsed_without_timings, submit, wait_for, without_timings
from tests.helpers import served

pytestmark = pytest.mark.anyio

CHAIN = {
    "network": {"activation": "tanh", "init": {"widths": [64] * 6, "scheme": "orthogonal", "seed": 3}},
    "inputs": {"count": 8},
    "options": {"spectrum": "summary"},
}


RNG = np.random.default_rng(11)
W1 = RNG.normal(0, 0.5, size=(4, 4))


def residual_graph(outputs: int) -> dict[str, Any]:
    """x → h = x + tanh(W1 x) → h viewed as 2 × 2 and flattened back → y = W2 h, W2 of ``outputs`` rows: four
    blocks, ``fc1 act res``, ``grid``, ``flat`` and ``fc2``."""
    w2 = np.random.default_rng(outputs).normal(0, 0.5, size=(outputs, 4))
    nodes = [
        {"id": "fc1", "op": "linear", "params": {"weight": {"shape": [4, 4], "data": W1.ravel().tolist()}}},
        {"id": "act", "op": "activation", "activation": "tanh"},
        {"id": "res", "op": "add", "inputs": ["input", "act"]},
        {"id": "grid", "op": "reshape", "shape": [2, 2]},
        {"id": "flat", "op": "flatten"},
        {"id": "fc2", "op": "linear", "params": {"weight": {"shape": [outputs, 4], "data": w2.ravel().tolist()}}},
    ]
    return {"network": {"graph": {"input_shape": [4], "nodes": nodes}}, "inputs": {"count": 5}}


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


async def test_a_json_body_validated_on_the_cluster_reports_what_the_synchronous_route_does(
    cluster_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """A JSON body over api.compute.SHARED_BYTES (whitespace): scattered as bytes, validated in the job's task,
    which tells the estimate (seconds_left) through the cluster's events."""
    _, client = cluster_app
    body = json.dumps(MEDIUM).encode() + b" " * SHARED_BYTES
    submitted = await client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    seen = []
    with anyio.fail_after(60.0):
        while (job := (await client.get(f"/v1/jobs/{job_id}")).json())["status"] not in FINAL:
            seen.append(job["progress"])
            await anyio.sleep(0.02)
    assert job["status"] == "succeeded", job
    synchronous = await client.post("/v1/analyses", json=MEDIUM)
    report = await client.get(f"/v1/jobs/{job_id}/report")
    assert without_timings(report.content) == without_timings(synchronous.content)
    told = [p for p in seen if p["total"] is not None and p["done"] < p["total"]]
    assert told, seen  # MEDIUM's stages take long enough to be seen under way
    assert all(p["seconds_left"] is not None for p in told), seen


@pytest.mark.parametrize("outputs", [2, 300])
async def test_a_graph_job_on_the_cluster_reports_what_the_synchronous_route_does(
    cluster_app: tuple[FastAPI, httpx.AsyncClient], outputs: int
) -> None:
    """Each block's Jacobian norm a task, and for an output wider than service.spectral.DENSE_MAX_DIM (256) each
    backward norm's stretch (cut → output) too; each matrix's survey a task."""
    app, client = cluster_app
    body = residual_graph(outputs)
    before = set(await _finished(app))
    job = await wait_for(client, await submit(client, body), FINAL)
    assert job["status"] == "succeeded", job
    synchronous = await client.post("/v1/analyses", json=body)
    assert synchronous.status_code == 200, synchronous.text
    report = await client.get(f"/v1/jobs/{job['id']}/report")
    assert parsed_without_timings(report.content) == parsed_without_timings(synchronous.content)
    assert without_timings(report.content) == without_timings(synchronous.content)

    ran = set(await _finished(app)) - before
    blocks = 4
    stretches = blocks + (blocks if outputs > 256 else 0)  # each block's start → the output
    assert sum(key.startswith("cluster_task-") for key in ran) == 1
    assert sum(key.startswith("_stretch_norm-") for key in ran) == stretches
    assert sum(key.startswith("matrix_survey-") for key in ran) == 2  # fc1.weight, fc2.weight
    assert job["progress"] == {**job["progress"], "unit": "blocks", "done": blocks, "total": blocks}


async def test_an_upload_survey_job_on_the_cluster_reports_what_the_synchronous_route_does(
    cluster_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """A .safetensors file over api.compute.SHARED_BYTES (scattered to the cluster as the job's payload) that is
    no chain: its weight survey's rows each a task, the report the synchronous one."""
    app, client = cluster_app
    rng = np.random.default_rng(12)
    tensors = {f"encoder.{i}.attn.weight": rng.standard_normal((200, 300 + i)).astype(np.float32) for i in range(5)}
    tensors["encoder.conv.weight"] = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)  # no chain: a survey
    tensors["encoder.0.attn.bias"] = rng.standard_normal(200).astype(np.float32)  # set aside by the header
    blob = save(tensors)
    assert len(blob) > SHARED_BYTES
    files = {"weights": ("m.safetensors", blob, "application/octet-stream")}
    before = set(await _finished(app))
    submitted = await client.post("/v1/jobs", files=files)
    assert submitted.status_code == 202, submitted.text
    job = await wait_for(client, submitted.json()["id"], FINAL)
    assert job["status"] == "succeeded", job
    synchronous = await client.post("/v1/analyses", files=files)
    assert synchronous.status_code == 200, synchronous.text
    report = await client.get(f"/v1/jobs/{job['id']}/report")
    assert json.loads(report.content)["kind"] == "survey"
    assert without_timings(report.content) == without_timings(synchronous.content)

    ran = set(await _finished(app)) - before
    assert sum(key.startswith("cluster_task-") for key in ran) == 1
    assert sum(key.startswith("matrix_survey-") for key in ran) == 6
    assert job["progress"] == {**job["progress"], "unit": "tensors", "done": 6, "total": 6}


async def test_an_error_in_a_piece_on_the_cluster_is_the_synchronous_problem(
    cluster_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """A matrix whose entries are finite but whose norms are not (1e308 each): refused by its survey's task, on
    a worker, and the job fails with the synchronous route's problem (the error crossed the processes whole)."""
    app, client = cluster_app
    tensors = {"a.weight": np.ones((3, 3)), "b.weight": np.full((3, 3), 1e308), "c.weight": np.ones((2, 2, 3))}
    files = {"weights": ("m.safetensors", save(tensors), "application/octet-stream")}
    synchronous = await client.post("/v1/analyses", files=files)
    assert synchronous.status_code == 422, synchronous.text
    before = set(await _finished(app))
    submitted = await client.post("/v1/jobs", files=files)
    job = await wait_for(client, submitted.json()["id"], FINAL)
    assert job["status"] == "failed", job
    expected: dict[str, Any] = synchronous.json()
    del expected["request_id"]
    assert job["error"] == expected
    assert "b.weight" in job["error"]["errors"][0]["detail"]
    assert any(key.startswith("matrix_survey-") for key in set(await _finished(app)) - before)  # a.weight's


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


class _Scattered:
    """A stand-in for a scattered object's future (``_Client.scatter``)."""

    def __init__(self, value: object) -> None:
        self.value = value


class _Done:
    def __init__(self, value: object) -> None:
        self.value = value

    def result(self) -> object:
        return self.value


class _Client:
    """The calls ScatteringExecutor makes of a ``distributed.Client``, recorded; each task run here."""

    def __init__(self) -> None:
        self.scattered: list[list[object]] = []

    def get_executor(self, **kwargs: object) -> None:
        return None

    def scatter(self, values: list[object], hash: bool) -> list[_Scattered]:
        self.scattered.append(values)
        return [_Scattered(value) for value in values]

    def map(self, fn: Any, *columns: list[object], pure: bool) -> list[_Done]:
        rows = zip(*columns, strict=True)
        return [_Done(fn(*(a.value if isinstance(a, _Scattered) else a for a in row))) for row in rows]

    def cancel(self, futures: list[_Done]) -> None:
        pass


def test_each_distinct_object_is_scattered_once_and_plain_values_not_at_all() -> None:
    """A column of one object n times, the same object in another column, arrays, and plain values (numbers,
    strings, None, tuples of them): one scatter of the distinct objects that are not plain, in one call."""
    client = _Client()
    shared, a, b = np.ones(3), np.zeros(2), np.zeros(2)
    executor = ScatteringExecutor(client)  # type: ignore[arg-type]
    rows = list(
        executor.map(
            lambda s, x, r, w: (s is shared, float(x.sum()), r, w),
            [shared] * 4,
            [a, b, shared, a],
            [1e-6, 2, None, "x"],
            [("weights", 0), ("weights", 1), ("weights", 2), ("weights", 3)],
        )
    )
    assert rows == [
        (True, 0.0, 1e-6, ("weights", 0)),
        (True, 0.0, 2, ("weights", 1)),
        (True, 3.0, None, ("weights", 2)),
        (True, 0.0, "x", ("weights", 3)),
    ]
    assert len(client.scattered) == 1
    assert [id(value) for value in client.scattered[0]] == [id(shared), id(a), id(b)]
