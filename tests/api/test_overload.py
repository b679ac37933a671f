"""Overload: with every compute worker held, a request waits at most JACSPEC_QUEUE_TIMEOUT in a queue of at most
JACSPEC_QUEUE_SIZE, then gets 503 problem+json with Retry-After. A worker is held by taking its token from the
pool's limiter, as a running task does, so nothing depends on timing but the (generous) limits on how long a test
may take.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from api.compute import BUSY, ComputePool, Deadline, available_cores
from tests.helpers import served

pytestmark = pytest.mark.anyio

PATIENCE_S = 30.0
"""No step of these tests should come near this; it only turns a hang into a failure."""
FACTORS = {"factors": [0.5, 2.0, 1.5]}
FOREVER = Deadline(PATIENCE_S, "test")


def wait_for(path: str) -> int:
    """In a worker: wait until the file ``path`` exists, then return the worker's process id."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return os.getpid()


@asynccontextmanager
async def slot_held(compute: ComputePool) -> AsyncIterator[None]:
    """Every compute worker busy with a task that waits until the block exits (a file that then appears)."""
    with tempfile.TemporaryDirectory() as directory:
        gate = Path(directory) / "gate"
        async with anyio.create_task_group() as group:
            for _ in range(compute.workers):
                group.start_soon(compute.run, wait_for, (str(gate),), FOREVER)
            while compute.limiter.borrowed_tokens < compute.workers:
                await anyio.sleep(0.01)
            try:
                yield
            finally:
                gate.touch()


async def test_503_with_retry_after_when_the_slot_stays_busy() -> None:
    async with served(compute_workers=1, queue_timeout=0.05) as (app, client):
        async with slot_held(app.state.compute):
            with anyio.fail_after(PATIENCE_S):
                response = await client.post("/v1/bounds", json=FACTORS)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        problem = response.json()
        assert problem["status"] == 503
        assert problem["type"] == BUSY
        assert "JACSPEC_QUEUE_TIMEOUT" in problem["detail"]
        assert problem["request_id"] == response.headers["x-request-id"]
        # The refused request left no token behind: the next one computes.
        assert app.state.compute.limiter.borrowed_tokens == 0
        assert (await client.post("/v1/bounds", json=FACTORS)).status_code == 200


async def test_retry_after_rounds_the_queue_timeout_up() -> None:
    async with served(compute_workers=1, queue_timeout=2.5) as (app, _):
        assert app.state.compute.retry_after == 3


async def test_a_full_queue_is_refused_at_once() -> None:
    async with served(compute_workers=1, queue_timeout=600, queue_size=0) as (app, client):
        async with slot_held(app.state.compute):
            with anyio.fail_after(PATIENCE_S):  # far less than the 600 s it would wait if it queued
                response = await client.post("/v1/bounds", json=FACTORS)
        assert response.status_code == 503
        assert "retry-after" in response.headers
        assert "0 requests are waiting" in response.json()["detail"]


async def test_a_waiting_request_gets_the_slot_once_it_frees() -> None:
    async with served(compute_workers=1, queue_timeout=600, queue_size=1) as (app, client):
        compute: ComputePool = app.state.compute
        responses: list[httpx.Response] = []

        async def post() -> None:
            responses.append(await client.post("/v1/bounds", json=FACTORS))

        with anyio.fail_after(PATIENCE_S):
            async with anyio.create_task_group() as group, slot_held(compute):  # the slot is freed first
                group.start_soon(post)
                while compute.limiter.statistics().tasks_waiting < 1:
                    await anyio.sleep(0.01)
                # The queue (one place) is full now: another request is refused at once.
                refused = await client.post("/v1/bounds", json=FACTORS)
                assert refused.status_code == 503
                assert responses == []
        assert [r.status_code for r in responses] == [200]
        assert responses[0].json()["verdict"] == "stable"
        assert compute.limiter.borrowed_tokens == 0


async def test_analyses_are_refused_too() -> None:
    """An analysis waits for a worker like any other task."""
    body = {"network": {"activation": "tanh", "init": {"widths": [300, 300, 300], "scheme": "orthogonal"}}}
    async with served(compute_workers=1, queue_timeout=0.05) as (app, client):
        async with slot_held(app.state.compute):
            with anyio.fail_after(PATIENCE_S):
                response = await client.post("/v1/analyses", json=body)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"


async def test_workers_bound_concurrency() -> None:
    """Two workers: two tasks run at once (each in a process of its own), and a third waits until one ends."""
    compute = ComputePool(2, queue_timeout=600)
    await compute.start()
    try:
        with anyio.fail_after(PATIENCE_S):
            with tempfile.TemporaryDirectory() as directory:
                gate = Path(directory) / "gate"
                pids: list[int] = []

                async def task() -> None:
                    pids.append(await compute.run(wait_for, (str(gate),), FOREVER))

                async with anyio.create_task_group() as group:
                    for _ in range(3):
                        group.start_soon(task)
                    while compute.limiter.statistics().tasks_waiting < 1:
                        await anyio.sleep(0.01)
                    assert compute.limiter.borrowed_tokens == 2
                    assert pids == []
                    gate.touch()
        assert len(pids) == 3
        assert len(set(pids)) == 2  # the two first ran at once, in two processes; the third in one of them
        assert os.getpid() not in pids
        assert compute.limiter.borrowed_tokens == 0
    finally:
        await compute.close()


async def test_a_full_queue_refuses_an_analysis_before_reading_its_body() -> None:
    """The 503 comes before the body is read: a request that can only be refused holds no body in memory."""
    read: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(100):
            read.append(i)
            yield b" " * 65536

    settings = {"compute_workers": 1, "queue_timeout": 600, "queue_size": 0}
    async with served(**settings) as (app, client), slot_held(app.state.compute):
        with anyio.fail_after(PATIENCE_S):
            response = await client.post("/v1/analyses", content=body(), headers={"content-type": "application/json"})
    assert response.status_code == 503
    assert len(read) < 100


async def test_with_every_worker_held_a_small_analysis_waits_and_an_oversized_one_is_413() -> None:
    """No analysis is computed in the server: with the workers held and the queue full a small one is refused 503
    (after its body was read and checked), while a network over the parameter limit still gets its 413 (not a 503
    to retry)."""
    small = {"network": {"activation": "tanh", "init": {"widths": [8, 8, 2], "scheme": "orthogonal"}}}
    huge = {"network": {"activation": "tanh", "init": {"widths": [100_000, 100_000], "scheme": "orthogonal"}}}
    settings = {"compute_workers": 1, "queue_timeout": 600, "queue_size": 0}
    async with served(**settings) as (app, client):
        async with slot_held(app.state.compute):
            with anyio.fail_after(PATIENCE_S):
                waiting = await client.post("/v1/analyses", json=small)
                refused = await client.post("/v1/analyses", json=huge)
        answered = await client.post("/v1/analyses", json=small)
    assert waiting.status_code == 503
    assert "retry-after" in waiting.headers
    assert refused.status_code == 413
    assert answered.status_code == 200
    assert answered.json()["summary"]["depth"] == 2


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [("150000 100000", 1), ("400000 100000", 4), ("max 100000", None), ("garbage", None), (None, None)],
    ids=["1.5-cpus", "4-cpus", "no-quota", "unreadable", "absent"],
)
def test_available_cores_honour_a_cgroup_quota(tmp_path: Path, cpu_max: str | None, cap: int | None) -> None:
    """A container's CPU quota caps the cores (the default number of workers); without one, the process's affinity
    counts."""
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max + "\n")
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(path) == (affinity if cap is None else min(affinity, cap))
