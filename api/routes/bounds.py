"""POST /v1/bounds: the product bound alone, from per-layer factors or from (factor, depth)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.compute import Deadline
from api.deps import ComputeDep, SettingsDep
from api.encode import bounds_response
from api.ingest.body import json_body
from api.openapi import request_body
from api.problems import problem_responses
from jacspec.models import BoundsRequest, BoundsResponse
from service.bounds import bound_from_factors, bound_from_power
from service.verdict import Thresholds

router = APIRouter(prefix="/v1", tags=["bounds"])


@router.post(
    "/bounds",
    response_model=BoundsResponse,
    summary="The product bound from factors",
    description="∏_{j=1}^{L} f_j with f_j = σ_j·γ_j, or f^L, carried as log10 so that no depth overflows.",
    openapi_extra=request_body(BoundsRequest),
    responses=problem_responses(400, 408, 413, 415, 422, 503),
)
async def create_bound(
    body: Annotated[BoundsRequest, Depends(json_body(BoundsRequest))],
    request: Request,
    settings: SettingsDep,
    compute: ComputeDep,
) -> Response:
    t = Thresholds(body.thresholds.vanishing_log10, body.thresholds.exploding_log10)
    if body.factors is not None:  # a sum over as many factors as the body holds: in a compute worker
        deadline = Deadline(settings.max_seconds, "JACSPEC_MAX_SECONDS", "fewer factors would fit")
        bound = await compute.run(bound_from_factors, (body.factors, t), deadline, request.receive)
    else:  # two numbers: at once
        assert body.factor is not None
        assert body.depth is not None
        bound = bound_from_power(body.factor, body.depth, t)
    return Response(bounds_response(bound, t).model_dump_json(), media_type="application/json")
