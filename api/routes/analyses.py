"""POST /v1/analyses: the per-layer report of one network."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.body import json_body, openapi_body
from api.decode import explicit_network, init_recipe, probe_spec
from api.encode import analysis_report
from api.limits import check_analysis
from api.problems import problem_responses
from jacspec import __version__
from jacspec.models import AnalysisReport, AnalysisRequest
from service.analysis import Analysis, Options, analyse
from service.network import build_network
from service.probes import make_probes
from service.verdict import Thresholds

router = APIRouter(prefix="/v1", tags=["analyses"])


@router.post(
    "/analyses",
    response_model=AnalysisReport,
    summary="Analyse a network",
    description=(
        "Per layer j: σ_j = ‖W_j‖₂, sup|h_j'|, the bound ∏_{i>j} σ_i·sup|h_i'| on ‖∂a_L/∂a_j‖ and the true norm "
        "(max over the probes), the true Jacobian norm and the loss gradient's norm; then a verdict and advice."
    ),
    openapi_extra=openapi_body(AnalysisRequest),
    responses=problem_responses(400, 413, 415, 422),
)
async def create_analysis(
    request: Request, body: Annotated[AnalysisRequest, Depends(json_body(AnalysisRequest))]
) -> Response:
    started = time.perf_counter()
    check_analysis(body, request.app.state.settings)
    result = await request.app.state.compute.run(lambda: _analyse(body))
    computed = time.perf_counter()
    timings = {
        "parse": request.state.parse_ms,
        "compute": (computed - started) * 1e3,
        "total": request.state.parse_ms + (computed - started) * 1e3,
    }
    report = analysis_report(result, __version__, timings)
    return Response(report.model_dump_json(), media_type="application/json")


def _analyse(body: AnalysisRequest) -> Analysis:
    """Decode, build and analyse: everything that allocates or computes, run in a worker thread."""
    network = (
        explicit_network(body.network) if body.network.layers is not None else build_network(init_recipe(body.network))
    )
    widths = network.widths
    x, y = make_probes(probe_spec(body.inputs), widths[0], widths[-1])
    t = body.options.thresholds
    options = Options(rtol=body.options.rtol, thresholds=Thresholds(t.vanishing_log10, t.exploding_log10))
    return analyse(network, x, y, options)
