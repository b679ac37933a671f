"""POST /v1/analyses: the per-layer report of one network, sent as JSON or as a .safetensors upload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from api import work
from api.deps import ComputeDep, EngineDep, SettingsDep
from api.openapi import request_body
from api.owner import OwnerDep
from api.problems import problem_responses
from api.routes.runs import keep_point
from jacspec.models import AnalysisReport, AnalysisRequest, SurveyReport

router = APIRouter(prefix="/v1", tags=["analyses"])


def _request_body() -> dict[str, Any]:
    """The JSON body, and the multipart one: a .safetensors file in `weights`, a SafetensorsRequest in `request`."""
    extra = request_body(AnalysisRequest)
    extra["requestBody"]["content"]["multipart/form-data"] = {
        "schema": {
            "type": "object",
            "required": ["weights"],
            "properties": {
                "weights": {"type": "string", "format": "binary", "description": "A .safetensors file."},
                "request": {"$ref": "#/components/schemas/SafetensorsRequest"},
            },
        },
        "encoding": {"request": {"contentType": "application/json"}},
    }
    return extra


@router.post(
    "/analyses",
    response_model=AnalysisReport | SurveyReport,
    summary="Analyse a network",
    description=(
        "Per layer j: σ_j = ‖W_j‖₂, sup|h_j'|, the bound ∏_{i>j} σ_i·sup|h_i'| on ‖∂a_L/∂a_j‖ and the true norm "
        "(max over the probes), the true Jacobian norm and the loss gradient's norm, and the mean-field prediction "
        "(q*, χ₁, depth scale, critical σ_w); then a verdict and advice. With options.spectrum, the singular values "
        "of every weight and of each probe's input–output Jacobian, next to the free-probability prediction. "
        "Send the network as JSON, or its weights as a .safetensors file (a PyTorch state_dict) in the multipart "
        "part `weights` with the rest of the request in the JSON part `request`. "
        'An upload gets the weight survey instead (a SurveyReport, `kind` "survey"): every 2-D tensor and every '
        "3-D or 4-D convolution kernel (as the matrix [c_out, c_in·k…]) with its σ_max, σ_min, Frobenius norm, "
        "stable rank ‖W‖_F²/‖W‖₂², rank and condition number, every other tensor listed as skipped with why — when "
        'the request part says `"survey": true`, or when it names no `network.layers` and the file is not a chain '
        "(some tensor is not named `P.weight` or `P.bias`, or some `P.weight` is not a matrix) yet some "
        '`P.weight` is a matrix. `"survey": false` always asks for the analysis of the chain.'
    ),
    openapi_extra=_request_body(),
    responses=problem_responses(400, 408, 413, 415, 422, 503),
)
async def create_analysis(
    request: Request, settings: SettingsDep, compute: ComputeDep, engine: EngineDep, owner: OwnerDep
) -> Response:
    pending = await work.receive(request, settings, compute)
    answer = await work.run(pending, compute, request)
    headers: dict[str, str] = {}
    run, step = await work.run_and_step(pending)
    if run is not None:
        await keep_point(engine, owner, run, step, answer, headers)
    return Response(
        answer, media_type="application/json", headers=headers, background=BackgroundTask(_release, pending)
    )


async def _release(*held: object) -> None:
    """Nothing: a background task given the request's pending work holds its body and weights until the answer is sent,
    rather than freeing them when the route returns, before a byte of the answer leaves. Async, so that Starlette
    runs it on the event loop rather than hopping to a thread to do nothing."""
