"""GET /healthz (the process answers) and GET /readyz (it has started and takes work).

Both tell, with JACSPEC_CLUSTER, whether the Dask scheduler is connected (``cluster``), and neither fails for it:
the synchronous routes do not use the cluster and jobs wait in the queue for it, so a replica without its cluster
still takes work, and a 503 from /readyz would have its load balancer send nothing to it (and, the cluster being
shared, to any replica) — watch ``cluster`` instead.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import ReadyDep
from api.jobs.executor import ClusterState
from api.jobs.service import Jobs
from jacspec import __version__
from jacspec.models import Health

router = APIRouter(tags=["health"])


def _cluster(request: Request) -> ClusterState | None:
    """The jobs' executor's ``cluster``: "connected", "disconnected", or None without a cluster."""
    jobs: Jobs = request.app.state.jobs
    return jobs.executor.cluster


@router.get("/healthz", summary="Liveness", response_model=Health, response_model_exclude_none=True)
async def healthz(request: Request) -> Health:
    return Health(status="ok", version=__version__, cluster=_cluster(request))


@router.get("/readyz", summary="Readiness", responses={503: {"model": Health, "description": "Not started yet."}})
async def readyz(request: Request, ready: ReadyDep) -> JSONResponse:
    health = Health(status="ready" if ready else "not_ready", version=__version__, cluster=_cluster(request))
    return JSONResponse(health.model_dump(exclude_none=True), status_code=200 if ready else 503)
