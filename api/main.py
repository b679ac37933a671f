"""The FastAPI application factory: ``python -m api`` serves it with granian (``uvicorn --factory
api.main:create_app`` serves it too, without the connection limits), or
``create_app(Settings(...))`` in tests. Importing this module builds nothing and starts nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import create_task_group, to_thread
from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from api import cors, explorer, openapi, problems
from api.auth import require_key
from api.budget import BodyBudgetMiddleware, ByteBudget
from api.compute import available_cores
from api.head import HeadMiddleware
from api.jobs.executor import Executor, LocalExecutor
from api.jobs.service import Jobs
from api.metrics import MeteredComputePool, Metrics, MetricsMiddleware
from api.problems import problem_responses
from api.request_id import RequestIdMiddleware
from api.routes import analyses, bounds, catalog, health, jobs, metrics, runs
from api.settings import Settings
from api.store.base import engine_for, migrate
from api.store.jobs import JobStore
from jacspec import __version__

DOCS_ASSETS_URL = "/static/docs"
"""Where /docs and /redoc load Swagger UI and ReDoc from: the ``fastapi-offline`` wheel's files, no CDN."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app with ``settings`` (by default read from the JACSPEC_* environment variables).

    Its lifespan migrates the database (JACSPEC_DATABASE_URL, in a thread), starts the compute workers, the jobs'
    executor (with JACSPEC_CLUSTER, its connection to the scheduler, kept in the background: the app starts even
    when the scheduler does not answer) and the job runners (``api.jobs``), and marks the app ready; at shutdown it
    stops the runners (a job still running goes back to the queue), the executor, the workers, and closes the
    metrics and the database's connections.
    """
    settings = settings or Settings()
    meters = Metrics()
    workers = compute_workers(settings)
    compute = MeteredComputePool(
        meters, workers, settings.queue_timeout, settings.queue_size, settings.worker_memory_bytes
    )

    engine = engine_for(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await to_thread.run_sync(migrate, settings.database_url, engine)
        await compute.start()
        async with app.state.jobs.executor.serving(), create_task_group() as background:
            background.start_soon(app.state.jobs.serve)
            app.state.ready = True
            try:
                yield
            finally:
                app.state.ready = False
                background.cancel_scope.cancel()
        await compute.close()
        meters.close()
        engine.dispose()

    app = FastAPIOffline(
        title="jacspec",
        version=__version__,
        description=openapi.DESCRIPTION,
        static_url=DOCS_ASSETS_URL,
        lifespan=lifespan,
        # No 307 from /v1/analyses/ to /v1/analyses: Starlette builds that URL from the Host header, which makes
        # it an open redirect; a path with a trailing slash is a 404 like any other unknown path.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = meters
    app.state.compute = compute
    app.state.engine = engine
    app.state.body_budget = ByteBudget(settings.body_budget_bytes)
    app.state.jobs = Jobs(app, settings, JobStore(engine, settings.job_lease_seconds), _executor(settings, compute))
    app.state.ready = False
    _include_routers(app, settings)
    problems.install(app)
    explorer.install(app)
    openapi.install(app)
    _add_middleware(app, settings)
    return app


def compute_workers(settings: Settings) -> int:
    """JACSPEC_COMPUTE_WORKERS (by default the available cores divided by JACSPEC_WORKERS), and at least one more
    than JACSPEC_JOB_RUNNERS when the jobs run here (no JACSPEC_CLUSTER): they share the workers with POST
    /v1/analyses, and a job (up to an hour) must never hold the last one."""
    workers = settings.compute_workers or max(1, available_cores() // settings.workers)
    local_runners = 0 if settings.cluster is not None else settings.job_runners
    return max(workers, local_runners + 1)


def _include_routers(app: FastAPI, settings: Settings) -> None:
    """The /v1 routers, behind the API-key check when JACSPEC_API_KEYS is set; health and metrics stay open."""
    guarded: dict[str, Any] = {}
    if settings.api_keys:
        guarded = {"dependencies": [Depends(require_key(settings.api_keys))], "responses": problem_responses(401)}
    for module in (analyses, bounds, catalog, jobs, runs):
        app.include_router(module.router, **guarded)
    app.include_router(health.router)
    app.include_router(metrics.router)


def _executor(settings: Settings, compute: MeteredComputePool) -> Executor:
    """Where jobs compute: this server's compute workers, or the Dask cluster JACSPEC_CLUSTER names
    (``api.jobs.dask``, imported only then: ``distributed`` is not loaded by a server without a cluster)."""
    if settings.cluster is not None:
        from api.jobs.dask import DaskExecutor

        return DaskExecutor(settings.cluster)
    return LocalExecutor(compute)


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """HEAD served as GET and the body budget innermost, so that the budget's 503s carry CORS headers, are counted
    and have a request id; CORS when JACSPEC_CORS_ORIGINS is set; the metrics around it; the request id outermost
    (the last added), so every answer has one."""
    app.add_middleware(HeadMiddleware)
    app.add_middleware(
        BodyBudgetMiddleware,
        budget=app.state.body_budget,
        max_body_bytes=settings.max_body_bytes,
        wait=settings.queue_timeout,
        keys=[key.get_secret_value().encode() for key in settings.api_keys],
    )
    if settings.cors_origins:
        cors.install(app, settings.cors_origins)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
