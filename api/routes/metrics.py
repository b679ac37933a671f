"""GET /metrics: the Prometheus metrics of ``api.metrics``, as Prometheus text or OpenMetrics (by ``Accept``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import MetricsDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Requests by route template and status, their latencies, compute-slot usage and the analysis work done, "
        "in the Prometheus text format (or OpenMetrics when `Accept` asks for it). Open like `/healthz`: keep it "
        "off the public side of a load balancer (deploy/nginx.conf does)."
    ),
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The metrics."}},
)
async def metrics(request: Request, registry: MetricsDep) -> Response:
    body, media_type = registry.exposition(request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": media_type})
