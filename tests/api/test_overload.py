"""Overload: with every compute slot held, a request waits at most JACSPEC_QUEUE_TIMEOUT in a queue of at most
JACSPEC_QUEUE_SIZE, then gets 503 problem+json with Retry-After. The slot is held by a job blocked on a
threading.Event, so nothing depends on timing but the (generous) limits on how long a test may take.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from api.compute import BUSY, ComputeSlots, available_cores
from api.main import create_app
from api.settings import Settings
from tests.helpers import served

pytestmark = pytest.mark.anyio

PATIENCE_S = 30.0
"""No step of these tests should come near this; it only turns a hang into a failure."""
FACTORS = {"factors": [0.5, 2.0, 1.5]}


@asynccontextmanager
async def slot_held(compute: ComputeSlots) -> AsyncIterator[None]:
    """One compute slot taken by a job that blocks until the block exits (then the job ends and frees it)."""
    started, release = threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(PATIENCE_S)

    async with anyio.create_task_group() as group:
        group.start_soon(compute.run, job)
        try:
            assert await anyio.to_thread.run_sync(started.wait, PATIENCE_S)
            yield
        finally:
            release.set()


async def test_503_with_retry_after_when_the_slot_stays_busy() -> None:
    async with served(compute_slots=1, queue_timeout=0.05) as (app, client):
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
    async with served(compute_slots=1, queue_timeout=2.5) as (app, _):
        assert app.state.compute.retry_after == 3


async def test_a_full_queue_is_refused_at_once() -> None:
    async with served(compute_slots=1, queue_timeout=600, queue_size=0) as (app, client):
        async with slot_held(app.state.compute):
            with anyio.fail_after(PATIENCE_S):  # far less than the 600 s it would wait if it queued
                response = await client.post("/v1/bounds", json=FACTORS)
        assert response.status_code == 503
        assert "retry-after" in response.headers
        assert "0 requests are waiting" in response.json()["detail"]


async def test_a_waiting_request_gets_the_slot_once_it_frees() -> None:
    async with served(compute_slots=1, queue_timeout=600, queue_size=1) as (app, client):
        compute: ComputeSlots = app.state.compute
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
    """An analysis too large to run on the loop (300-wide, estimated far over INLINE_FLOPS) waits for a slot."""
    body = {"network": {"activation": "tanh", "init": {"widths": [300, 300, 300], "scheme": "orthogonal"}}}
    async with served(compute_slots=1, queue_timeout=0.05) as (app, client):
        async with slot_held(app.state.compute):
            with anyio.fail_after(PATIENCE_S):
                response = await client.post("/v1/analyses", json=body)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"


def test_the_layer_pool_shares_the_cores_and_runs_from_start_to_close() -> None:
    slots = ComputeSlots(2)
    assert slots.layer_threads == available_cores()
    assert ComputeSlots(2, processes=10_000).layer_threads == 1
    assert slots.layers is None
    slots.start()
    try:
        assert slots.layers is not None
        together = threading.Barrier(slots.layer_threads, timeout=PATIENCE_S)

        def meet(_: int) -> str:
            together.wait()  # returns once layer_threads tasks wait at once
            return threading.current_thread().name

        names = list(slots.layers.map(meet, range(4 * slots.layer_threads)))
    finally:
        slots.close()
    assert len(set(names)) == slots.layer_threads  # every thread of the pool ran at once, and no other
    assert all(name.startswith("jacspec-layers") for name in names)
    assert slots.layers is None


async def test_the_lifespan_starts_and_stops_the_layer_pool() -> None:
    app = create_app(Settings())
    compute: ComputeSlots = app.state.compute
    assert compute.layers is None
    async with app.router.lifespan_context(app):
        pool = compute.layers
        assert pool is not None
        assert pool.submit(threading.current_thread).result().name.startswith("jacspec-layers")
    assert compute.layers is None
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(int)


async def test_slots_bound_concurrency() -> None:
    """Two slots: two jobs run at once, and a third waits until one of them ends."""
    compute = ComputeSlots(2, queue_timeout=600)
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(PATIENCE_S)
        with lock:
            running -= 1

    with anyio.fail_after(PATIENCE_S):
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(compute.run, job)
            while compute.limiter.statistics().tasks_waiting < 1 or running < 2:  # both jobs started, one queued
                await anyio.sleep(0.01)
            assert compute.limiter.borrowed_tokens == 2
            gate.set()
    assert peak == 2
    assert compute.limiter.borrowed_tokens == 0


async def test_a_full_queue_refuses_an_analysis_before_reading_its_body() -> None:
    """The 503 comes before the body is read: a request that can only be refused holds no body in memory."""
    read: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(100):
            read.append(i)
            yield b" " * 65536

    settings = {"compute_slots": 1, "queue_timeout": 600, "queue_size": 0}
    async with served(**settings) as (app, client), slot_held(app.state.compute):
        with anyio.fail_after(PATIENCE_S):
            response = await client.post("/v1/analyses", content=body(), headers={"content-type": "application/json"})
    assert response.status_code == 503
    assert len(read) < 100


async def test_inline_work_runs_on_the_loop_without_a_slot() -> None:
    """``inline=True`` computes on the calling thread (no hop) at once, even with every slot busy and the queue
    full; other work goes to a worker thread."""
    compute = ComputeSlots(1, queue_size=0)
    seen: list[int] = []

    def job() -> None:
        seen.append(threading.get_ident())

    with anyio.fail_after(PATIENCE_S):
        async with slot_held(compute):
            await compute.run(job, inline=True)
        await compute.run(job)
    assert seen[0] == threading.get_ident()
    assert seen[1] != threading.get_ident()
    assert compute.limiter.borrowed_tokens == 0


async def test_small_analyses_are_answered_while_heavy_ones_hold_every_slot() -> None:
    """A small init-recipe analysis is computed on the loop; with the slots held and the queue full it gets its
    report, and a network over the parameter limit still gets its 413 (not a 503 to retry)."""
    small = {"network": {"activation": "tanh", "init": {"widths": [8, 8, 2], "scheme": "orthogonal"}}}
    huge = {"network": {"activation": "tanh", "init": {"widths": [100_000, 100_000], "scheme": "orthogonal"}}}
    settings = {"compute_slots": 1, "queue_timeout": 600, "queue_size": 0}
    async with served(**settings) as (app, client), slot_held(app.state.compute):
        with anyio.fail_after(PATIENCE_S):
            answered = await client.post("/v1/analyses", json=small)
            refused = await client.post("/v1/analyses", json=huge)
    assert answered.status_code == 200
    assert answered.json()["summary"]["depth"] == 2
    assert refused.status_code == 413


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [("150000 100000", 1), ("400000 100000", 4), ("max 100000", None), ("garbage", None), (None, None)],
    ids=["1.5-cpus", "4-cpus", "no-quota", "unreadable", "absent"],
)
def test_available_cores_honour_a_cgroup_quota(tmp_path: Path, cpu_max: str | None, cap: int | None) -> None:
    """A container's CPU quota caps the cores the slots share out; without one, the process's affinity counts."""
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max + "\n")
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(path) == (affinity if cap is None else min(affinity, cap))
