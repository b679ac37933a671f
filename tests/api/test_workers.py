"""Compute in worker processes: the server stays live while the heaviest admitted analyses run, a deadline stops
and replaces a worker, a client that goes away frees its worker, a worker's memory is bounded, a worker that dies
is replaced, and large payloads travel through shared memory that is always unlinked.

Nothing here asserts a duration: "answered before the heavy ones finished" is an order of events, and the limits
on how long a step may take (PATIENCE_S) only turn a hang into a failure.
"""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from safetensors.numpy import save as save_numpy

from api import compute, work
from api.compute import DEADLINE, MEMORY, WORKER_LOST, ComputePool, Deadline
from api.main import create_app
from api.problems import ProblemError
from api.settings import Settings
from api.worker import NICENESS
from bench.load import dense_solver, orthogonal_init, widest_admitted
from jacspec.models import AnalysisRequest
from service.analysis import Analysis
from tests.helpers import running_server, served

pytestmark = pytest.mark.anyio

PATIENCE_S = 60.0
FOREVER = Deadline(PATIENCE_S, "test")


@asynccontextmanager
async def started(pool: ComputePool) -> AsyncIterator[ComputePool]:
    """``pool`` with its workers started, and closed at the end."""
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


SMALL = {"network": {"activation": "tanh", "init": {"widths": [8, 8, 2], "scheme": "orthogonal"}}}
SHM = Path("/dev/shm")


HEAVY = widest_admitted(dense_solver, Settings())
"""The widest network the default limits admit under the dense solver: seconds of work, far more than the
deadlines below."""


def busy_workers(metrics: str) -> float:
    """The ``jacspec_compute_workers_busy`` gauge in a /metrics text."""
    line = next(line for line in metrics.splitlines() if line.startswith("jacspec_compute_workers_busy "))
    return float(line.split()[1])


def busy(app: Any) -> float:
    value = app.state.metrics.registry.get_sample_value("jacspec_compute_workers_busy")
    return 0.0 if value is None else float(value)


def worker_pids(pool: ComputePool) -> set[int | None]:
    return {each.process.pid for each in pool.idle}


def shared_blocks() -> set[str]:
    return {path.name for path in SHM.iterdir()} if SHM.is_dir() else set()


# ------------------------------------------------------------------ liveness (a real server)


async def test_healthz_and_a_small_analysis_are_answered_while_the_heaviest_admitted_analyses_run() -> None:
    """Two of the heaviest analyses the default limits admit (the widest network under the dense solver, the
    widest orthogonal draw) hold two workers; /healthz and a small analysis on the third are answered before
    either heavy one is done. The heavy ones are then abandoned, which frees their workers."""
    settings = Settings()
    heavy = [widest_admitted(dense_solver, settings), widest_admitted(orthogonal_init, settings)]
    order: list[str] = []
    with running_server(JACSPEC_COMPUTE_WORKERS="3") as url:
        async with httpx.AsyncClient(base_url=url, timeout=PATIENCE_S * 5) as client:
            with anyio.fail_after(PATIENCE_S * 2):
                async with anyio.create_task_group() as group:

                    async def post_heavy(body: dict[str, Any]) -> None:
                        async with httpx.AsyncClient(base_url=url, timeout=None) as own:
                            await own.post("/v1/analyses", json=body)
                        order.append("heavy")

                    for body in heavy:
                        group.start_soon(post_heavy, body)
                    while busy_workers((await client.get("/metrics")).text) < 2:
                        await anyio.sleep(0.05)
                    healthz = await client.get("/healthz")
                    order.append("healthz")
                    small = await client.post("/v1/analyses", json=SMALL)
                    order.append("small")
                    assert busy_workers((await client.get("/metrics")).text) == 2  # the heavy ones still compute
                    group.cancel_scope.cancel()  # their clients go away
                while busy_workers((await client.get("/metrics")).text) > 0:
                    await anyio.sleep(0.05)
    assert order == ["healthz", "small"]
    assert healthz.status_code == 200
    assert small.status_code == 200
    assert small.json()["summary"]["depth"] == 2


# ------------------------------------------------------------------ deadlines


async def test_past_the_deadline_the_worker_is_replaced_and_the_answer_is_413() -> None:
    async with served(compute_workers=1, job_runners=0, max_seconds=0.5) as (app, client):
        before = worker_pids(app.state.compute)
        with anyio.fail_after(PATIENCE_S):
            late = await client.post("/v1/analyses", json=HEAVY)
            after = worker_pids(app.state.compute)
            small = await client.post("/v1/analyses", json=SMALL)
    assert late.status_code == 413
    assert late.headers["content-type"] == "application/problem+json"
    problem = late.json()
    assert problem["type"] == DEADLINE
    assert "0.5 s (JACSPEC_MAX_SECONDS)" in problem["detail"]
    assert "fewer probes" in problem["detail"]
    assert before.isdisjoint(after)  # the worker was killed and another took its place
    assert small.status_code == 200


async def test_options_max_seconds_lowers_the_deadline() -> None:
    body = {**HEAVY, "options": {**HEAVY["options"], "max_seconds": 0.3}}  # HEAVY's options are rtol alone
    async with served(compute_workers=1) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            late = await client.post("/v1/analyses", json=body)
    assert late.status_code == 413
    assert "0.3 s (options.max_seconds)" in late.json()["detail"]
    assert "JACSPEC_MAX_SECONDS" in late.json()["detail"]  # how far it may be raised


@pytest.mark.parametrize("seconds", [0, -1, 1e6])
async def test_options_max_seconds_is_bounded(seconds: float) -> None:
    async with served() as (_, client):
        response = await client.post("/v1/analyses", json={**SMALL, "options": {"max_seconds": seconds}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/options/max_seconds"


# ------------------------------------------------------------------ disconnects


async def test_a_client_that_disconnects_frees_its_worker() -> None:
    """At the ASGI level: the body arrives, the analysis starts in the only worker, then ``receive`` says the
    client has gone. The app returns without waiting for the analysis, the worker is replaced, and the next
    request gets a worker."""
    app = create_app(Settings(compute_workers=1, job_runners=0))  # one worker: no job runner asks for another
    async with app.router.lifespan_context(app):
        pool: ComputePool = app.state.compute
        before = worker_pids(pool)
        gone = anyio.Event()
        body = httpx.Request("POST", "http://x/v1/analyses", json=HEAVY).content
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> MutableMapping[str, Any]:
            if messages:
                return messages.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/analyses",
            "raw_path": b"/v1/analyses",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        with anyio.fail_after(PATIENCE_S):
            async with anyio.create_task_group() as group:
                group.start_soon(app, scope, receive, send)
                while pool.limiter.borrowed_tokens < 1 or busy(app) < 1:
                    await anyio.sleep(0.01)
                gone.set()
            assert pool.limiter.borrowed_tokens == 0
            assert before.isdisjoint(worker_pids(pool))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
                small = await client.post("/v1/analyses", json=SMALL)
        assert small.status_code == 200
        assert sent[0]["status"] == 400  # nobody reads it; the logs and metrics do


# ------------------------------------------------------------------ memory and dying workers


def allocate(size: int) -> int:
    """In a worker: ``size`` bytes of float64 ones, touched; their count."""
    return int(np.ones(size // 8).size)


async def test_a_task_over_the_worker_memory_limit_is_413_and_the_worker_replaced() -> None:
    """512 MiB of address space (a quarter already the interpreter's) cannot hold 1 GiB of array: the MemoryError
    comes back as a 413 naming the setting, and the next task finds a fresh worker."""
    async with started(ComputePool(1, memory_bytes=2**29)) as pool:
        before = worker_pids(pool)
        with anyio.fail_after(PATIENCE_S):
            with pytest.raises(ProblemError) as raised:
                await pool.run(allocate, (2**30,), FOREVER)
            assert await pool.run(allocate, (2**20,), FOREVER) == 2**17
        assert before.isdisjoint(worker_pids(pool))
    problem = raised.value.problem
    assert problem.status == 413
    assert problem.type == MEMORY
    assert "JACSPEC_WORKER_MEMORY_BYTES" in str(problem.detail)


def die() -> None:
    """In a worker: be killed, as the OOM killer or a segfault would do it."""
    os.kill(os.getpid(), signal.SIGKILL)


async def test_a_worker_that_dies_is_replaced_and_its_request_answered_503() -> None:
    async with started(ComputePool(1)) as pool:
        with anyio.fail_after(PATIENCE_S):
            with pytest.raises(ProblemError) as raised:
                await pool.run(die, (), FOREVER)
            assert await pool.run(os.getpid, (), FOREVER) in worker_pids(pool)
    problem = raised.value.problem
    assert problem.status == 503
    assert problem.type == WORKER_LOST
    assert "signal 9" in str(problem.detail)
    assert raised.value.headers == {"Retry-After": "10"}


async def test_the_lifespan_starts_and_stops_the_workers() -> None:
    app = create_app(Settings(compute_workers=2))
    pool: ComputePool = app.state.compute
    assert pool.idle == []
    async with app.router.lifespan_context(app):
        processes = [each.process for each in pool.idle]
        assert len(processes) == 2
        assert all(process.is_alive() for process in processes)
        assert os.getpid() not in {process.pid for process in processes}
    assert not any(process.is_alive() for process in processes)
    assert pool.idle == []


# ------------------------------------------------------------------ shared memory


def _b64_layers(rng: np.random.Generator, n: int) -> dict[str, Any]:
    weight = rng.standard_normal((n, n)) / np.sqrt(n)
    tensor = {"shape": [n, n], "datatype": "FP64", "b64": base64.b64encode(weight.astype("<f8").tobytes()).decode()}
    return {"network": {"activation": "tanh", "layers": [{"weight": tensor}, {"weight": [[1.0] * n]}]}}


@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
async def test_messages_larger_than_the_pipe_buffer_pass_the_same_worker_again_under_uvloop() -> None:
    """uvloop, granian's event loop, leaves a descriptor it has waited on non-blocking: every later message through
    that worker's pipe larger than the pipe's buffer must still arrive whole (it used to fail half-sent with EAGAIN,
    the request never answered)."""
    payload = bytes(compute.SHARED_BYTES // 2)  # over the pipe's 64 KiB buffer, under shared memory's threshold
    async with started(ComputePool(1)) as pool:
        for _ in range(3):
            assert await pool.run(bytes, (payload,), FOREVER) == payload


@pytest.mark.parametrize("room", [True, False], ids=["shared-memory", "pipe"])
async def test_a_large_json_body_reaches_the_worker_and_gives_the_same_numbers(
    room: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body over SHARED_BYTES goes as raw bytes in shared memory, validated again in the worker; where /dev/shm
    has no room (writing past a full tmpfs, a container's 64 MiB default, is a SIGBUS), through the worker's pipe.
    Either way the report is the one computed in this process from the parsed body, and no block is left behind."""
    if not room:
        monkeypatch.setattr(compute, "room_in_shared_memory", lambda size: False)
    body = _b64_layers(np.random.default_rng(3), 500)
    content = httpx.Request("POST", "http://x", json=body).content
    assert len(content) > compute.SHARED_BYTES
    blocks = shared_blocks()
    async with served(compute_workers=1) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            response = await client.post("/v1/analyses", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    expected, _ = work.analyse_request(AnalysisRequest.model_validate_json(content, strict=True))
    assert isinstance(expected, Analysis)
    assert [layer["weight_norm"] for layer in response.json()["layers"]] == pytest.approx(
        [layer.weight_norm for layer in expected.layers], rel=1e-12
    )
    assert shared_blocks() <= blocks


async def test_a_large_upload_reaches_the_worker_through_shared_memory() -> None:
    rng = np.random.default_rng(4)
    weights = {"0.weight": rng.standard_normal((600, 600)), "1.weight": rng.standard_normal((1, 600))}
    blob = save_numpy(weights)
    assert len(blob) > compute.SHARED_BYTES
    blocks = shared_blocks()
    async with served(compute_workers=1) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            response = await client.post("/v1/analyses", files={"weights": ("w.safetensors", blob)})
    assert response.status_code == 200, response.text
    top = np.linalg.norm(weights["0.weight"], 2)
    assert response.json()["layers"][0]["weight_norm"] == pytest.approx(top, rel=1e-6)
    assert shared_blocks() <= blocks


async def test_shared_memory_is_unlinked_when_the_deadline_stops_the_worker() -> None:
    body = {**_b64_layers(np.random.default_rng(5), 1200), "options": {"rtol": 1e-13, "max_seconds": 0.01}}
    content = httpx.Request("POST", "http://x", json=body).content
    blocks = shared_blocks()
    async with served(compute_workers=1) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            late = await client.post("/v1/analyses", content=content, headers={"content-type": "application/json"})
    assert late.status_code == 413
    assert late.json()["type"] == DEADLINE
    assert shared_blocks() <= blocks


def _large(body: dict[str, Any]) -> bytes:
    """``body`` as JSON padded past SHARED_BYTES (by a large explicit layer), so that the server hands it to a
    worker unvalidated."""
    content = httpx.Request("POST", "http://x", json=body).content
    assert len(content) > compute.SHARED_BYTES
    return content


async def _post(content: bytes, monkeypatch: pytest.MonkeyPatch, **settings: object) -> httpx.Response:
    """POST ``content`` to a one-worker server (with ``settings``) whose own process may not validate an analysis
    request."""

    def not_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("a large body was validated in the server")

    monkeypatch.setattr(work, "validate_json", not_here)
    async with served(compute_workers=1, **settings) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            return await client.post("/v1/analyses", content=content, headers={"content-type": "application/json"})


async def test_a_large_body_with_a_bad_value_is_refused_by_the_worker_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = _b64_layers(np.random.default_rng(6), 500)
    body["network"]["layers"][1]["weight"][0][7] = "NaN"
    response = await _post(_large(body), monkeypatch)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["pointer"] == "/network/layers/1/weight/0/7"


async def test_a_large_body_over_the_work_limit_is_refused_413_by_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {**_b64_layers(np.random.default_rng(7), 500), "inputs": {"count": 4096}}
    response = await _post(_large(body), monkeypatch, max_flops=10**10)
    assert response.status_code == 413, response.text
    assert "/inputs/count" in response.json()["detail"], response.text


async def test_a_large_body_gets_its_own_deadline_from_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server sets JACSPEC_MAX_SECONDS; the worker, once it has read options.max_seconds, tells it the tighter
    deadline, which the 413 names."""
    body = {**_b64_layers(np.random.default_rng(8), 1200), "options": {"rtol": 1e-13, "max_seconds": 0.01}}
    response = await _post(_large(body), monkeypatch)
    assert response.status_code == 413, response.text
    assert response.json()["type"] == DEADLINE
    assert "within 0.01 s (options.max_seconds)" in response.json()["detail"]


def test_a_problem_raised_in_a_worker_reaches_the_server_whole() -> None:
    """ProblemError pickles as its problem and headers (a worker's 422 keeps its field errors)."""
    import pickle

    raised = ProblemError(
        413, "Content Too Large", "too much", type_=DEADLINE, errors=None, headers={"Retry-After": "1"}
    )
    again = pickle.loads(pickle.dumps(raised))
    assert isinstance(again, ProblemError)
    assert again.problem == raised.problem
    assert again.headers == {"Retry-After": "1"}


def blas_threads() -> list[int]:
    """In a worker: the thread counts of the BLAS libraries loaded (numpy's and scipy's)."""
    from threadpoolctl import threadpool_info

    return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})


async def test_workers_run_blas_on_one_thread_and_below_the_servers_priority() -> None:
    async with started(ComputePool(1)) as pool:
        with anyio.fail_after(PATIENCE_S):
            threads = await pool.run(blas_threads, (), FOREVER)
            niceness = await pool.run(os.nice, (0,), FOREVER)
    assert threads == [1]
    assert niceness == min(19, os.nice(0) + NICENESS)


def test_room_in_shared_memory_is_the_free_space_of_the_tmpfs(tmp_path: Path) -> None:
    stats = os.statvfs(tmp_path)
    free = stats.f_bavail * stats.f_frsize
    assert compute.room_in_shared_memory(1, tmp_path)
    assert not compute.room_in_shared_memory(free + 1, tmp_path)
    assert not compute.room_in_shared_memory(1, tmp_path / "absent")
