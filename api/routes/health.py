"""GET /healthz (the process answers) and GET /readyz (it has started and takes work).

Both tell, with JACSPEC_CLUSTER, whether the Dask scheduler is connected (``cluster``), and neither fails for it:
the synchronous routes do not use the cluster and jobs wait in the queue for it, so a replica without its cluster
still takes work, and a 503 from /readyz would have its load balancer send nothing to it (and, the cluster being
shared, to any replica) — watch ``cluster`` instead.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ClusterDep, ReadyDep
from jacspec import __version__
from jacspec.models import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness", response_model=Health, response_model_exclude_none=True)
async def healthz(cluster: ClusterDep) -> Health:
    return Health(status="ok", version=__version__, cluster=cluster)


@router.get("/readyz", summary="Readiness", responses={503: {"model": Health, "description": "Not started yet."}})
async def readyz(ready: ReadyDep, cluster: ClusterDep) -> JSONResponse:
    health = Health(status="ready" if ready else "not_ready", version=__version__, cluster=cluster)
    return JSONResponse(health.model_dump(exclude_none=True), status_code=200 if ready else 503)
