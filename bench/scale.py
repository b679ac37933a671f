"""A large analysis as a job, on this server's local compute pool and on a Dask cluster of one and of two worker
processes (started here, on loopback, in the same run), and the overhead of a job against POST /v1/analyses for a
small analysis.

    python -m bench.scale            (a 48-layer × 2048 orthogonal tanh chain, 4 probes)
    python -m bench.scale --quick    (12 × 1024)
    python -m bench.scale --scheme xavier_normal

Each app runs in this process over ASGI with its lifespan (a SQLite database in a temporary directory); a job is
timed from its POST /v1/jobs to the moment GET /v1/jobs/{id} shows it succeeded (polled every POLL_S). On the
cluster a chain's layers' norms are tasks of their own, spread over the workers' threads (one each, BLAS on one
thread), so two workers may compute two layers at once.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from api.jobs.dask import DaskExecutor
from api.main import create_app
from api.settings import Settings
from bench._cluster import dask_cluster
from bench._timing import table

POLL_S = 0.01
SMALL = {"network": {"activation": "tanh", "init": {"widths": [16] * 5, "scheme": "orthogonal", "seed": 1}}}
OVERHEAD_REPEATS = 10


def chain(width: int, depth: int, scheme: str = "orthogonal", probes: int = 4) -> dict[str, Any]:
    init = {"widths": [width] * (depth + 1), "scheme": scheme, "seed": 1}
    return {"network": {"activation": "tanh", "init": init}, "inputs": {"count": probes}}


@asynccontextmanager
async def app_client(directory: Path, cluster: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app (compute_workers=1, so one worker for the synchronous route and one for the job
    runner; jobs on ``cluster`` when given), inside its lifespan."""
    database = f"sqlite:///{directory / f'jobs-{time.monotonic_ns()}.sqlite3'}"
    settings = Settings(
        database_url=database,
        cluster=cluster,
        compute_workers=1,
        max_seconds=3600.0,
        max_parameters=300_000_000,  # 48 × 2048² weights: 201 M
        worker_memory_bytes=12 << 30,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        if isinstance(app.state.jobs.executor, DaskExecutor):
            app.state.jobs.executor.spread_min_flops = 0.0
            await app.state.jobs.executor.ready()  # connected in the background: not counted in a job's seconds
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=3600.0) as client:
            yield client


async def job_seconds(client: httpx.AsyncClient, body: dict[str, Any]) -> float:
    """Wall seconds from POST /v1/jobs to the job's success."""
    started = time.perf_counter()
    created = await client.post("/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    while True:
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] != "queued" and job["status"] != "running":
            assert job["status"] == "succeeded", job
            return time.perf_counter() - started
        await anyio.sleep(POLL_S)


async def sync_seconds(client: httpx.AsyncClient, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    answer = await client.post("/v1/analyses", json=body)
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - started


async def where(directory: Path, cluster: str | None, large: dict[str, Any]) -> tuple[float, float, float]:
    """The large job's seconds, and the small analysis's median seconds as a job and synchronously."""
    async with app_client(directory, cluster) as client:
        await job_seconds(client, SMALL)  # warm: the first task imports and connects
        large_s = await job_seconds(client, large)
        jobs = [await job_seconds(client, SMALL) for _ in range(OVERHEAD_REPEATS)]
        syncs = [await sync_seconds(client, SMALL) for _ in range(OVERHEAD_REPEATS)]
    return large_s, statistics.median(jobs), statistics.median(syncs)


def run(depth: int, width: int, scheme: str) -> None:
    large = chain(width, depth, scheme)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        rows.append(("local pool (1 worker)", *anyio.run(where, Path(directory), None, large)))
        for workers in (1, 2):
            with dask_cluster(workers=workers, nthreads=1) as address:
                found = anyio.run(where, Path(directory), address, large)
            rows.append((f"Dask, {workers} worker process{'es' if workers > 1 else ''}", *found))
    print(f"a job of a {depth}-layer × {width} {scheme} tanh chain (4 probes), and a small job's overhead")
    header = ["executor", "large job s", "small job ms", "small sync ms", "job overhead ms"]
    print(table(header, [(name, s, j * 1e3, q * 1e3, (j - q) * 1e3) for name, s, j, q in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 12-layer × 1024 chain instead of 48 × 2048")
    parser.add_argument("--scheme", default="orthogonal", help="the init scheme (xavier_normal: no dense-SVD fallback)")
    arguments = parser.parse_args()
    if arguments.quick:
        run(12, 1024, arguments.scheme)
    else:
        run(48, 2048, arguments.scheme)


if __name__ == "__main__":
    main()
