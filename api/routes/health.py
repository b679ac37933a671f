"""GET /healthz (the process answers) and GET /readyz (it has started and takes work)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ReadyDep
from jacspec import __version__
from jacspec.models import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    return Health(status="ok", version=__version__)


@router.get("/readyz", summary="Readiness", responses={503: {"model": Health, "description": "Not started yet."}})
async def readyz(ready: ReadyDep) -> JSONResponse:
    health = Health(status="ready" if ready else "not_ready", version=__version__)
    return JSONResponse(health.model_dump(), status_code=200 if ready else 503)
