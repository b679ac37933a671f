"""POST /v1/analyses: the per-layer report of one network, sent as JSON or as a .safetensors upload."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from api import safetensors
from api.body import INLINE_PARSE_BYTES, declared_length, media_type, openapi_body, read_json, validate_json
from api.compute import INLINE_FLOPS
from api.decode import (
    explicit_network,
    init_recipe,
    probe_count,
    probe_spec,
    recurrent,
    safetensors_network,
    safetensors_widths,
)
from api.encode import analysis_report, report_json
from api.limits import check_analysis, check_size, probes_pointer, safetensors_meanfield_solves
from api.multipart import read_parts
from api.problems import invalid, problem_responses
from api.settings import Settings
from jacspec import __version__
from jacspec.models import AnalysisReport, AnalysisRequest, FieldError, Inputs, SafetensorsRequest
from jacspec.models import Network as NetworkModel
from jacspec.models import Options as OptionsModel
from service.analysis import Analysis, Options, analyse
from service.errors import InvalidInputError, Location
from service.network import Network, build_network
from service.probes import make_probes
from service.verdict import Thresholds

router = APIRouter(prefix="/v1", tags=["analyses"])


def _request_body() -> dict[str, Any]:
    """The JSON body, and the multipart one: a .safetensors file in `weights`, a SafetensorsRequest in `request`."""
    extra = openapi_body(AnalysisRequest)
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
    response_model=AnalysisReport,
    summary="Analyse a network",
    description=(
        "Per layer j: σ_j = ‖W_j‖₂, sup|h_j'|, the bound ∏_{i>j} σ_i·sup|h_i'| on ‖∂a_L/∂a_j‖ and the true norm "
        "(max over the probes), the true Jacobian norm and the loss gradient's norm, and the mean-field prediction "
        "(q*, χ₁, depth scale, critical σ_w); then a verdict and advice. With options.spectrum, the singular values "
        "of every weight and of each probe's input–output Jacobian, next to the free-probability prediction. "
        "Send the network as JSON, or its weights as a .safetensors file (a PyTorch state_dict) in the multipart "
        "part `weights` with the rest of the request in the JSON part `request`."
    ),
    openapi_extra=_request_body(),
    responses=problem_responses(400, 413, 415, 422, 503),
)
async def create_analysis(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if _may_be_large(request) and not _declared_too_large(request, settings):
        request.app.state.compute.refuse_if_full()
    inline = False
    layers = request.app.state.compute.layers
    if media_type(request) == "multipart/form-data":
        work = await _safetensors_work(request, settings, layers)
    else:
        body = await read_json(
            request, AnalysisRequest, "application/json, or multipart/form-data with a .safetensors file"
        )
        inline = check_analysis(body, settings) <= INLINE_FLOPS
        work = partial(_analyse, body, None if inline else layers)
    started = time.perf_counter()
    result, decode_ms = await request.app.state.compute.run(work, inline=inline)
    worker_ms = (time.perf_counter() - started) * 1e3
    parse_ms = request.state.parse_ms
    decode_ms += getattr(request.state, "header_ms", 0.0)
    timings = {"parse": parse_ms, "decode": decode_ms, "compute": worker_ms - decode_ms}
    report = analysis_report(result, __version__, {**timings, "total": sum(timings.values())})
    return Response(report_json(report), media_type="application/json", background=BackgroundTask(_release, work))


async def _release(*held: object) -> None:
    """Nothing: a background task given the request's work holds its body and weights until the answer is sent.

    Otherwise they are freed when the route returns, before a byte of the answer leaves: the 16 MiB body of a
    2048 × 2048 safetensors upload was measured taking 5 ms to free there (unmapping memory that was written).
    Async, so that Starlette runs it on the event loop rather than hopping to a thread to do nothing.
    """


def _may_be_large(request: Request) -> bool:
    """Whether the body may be larger than INLINE_PARSE_BYTES (no Content-Length, or a larger one). A full queue
    refuses such a request before its body is read; a smaller one is read, checked (a 413 is a 413) and, if its
    work is small, computed on the event loop, which needs no slot."""
    declared = declared_length(request)
    return declared is None or declared > INLINE_PARSE_BYTES


def _declared_too_large(request: Request, settings: Settings) -> bool:
    """Whether the Content-Length alone exceeds JACSPEC_MAX_BODY_BYTES: such a request is refused 413 before a
    byte of its body is read, full queue or not (a 503 would only make the client retry it)."""
    declared = declared_length(request)
    return declared is not None and declared > settings.max_body_bytes


def _analyse(body: AnalysisRequest, layers: Executor | None) -> tuple[Analysis, float]:
    """Decode, build and analyse: everything that allocates or computes, run in a worker thread (the layers'
    norms as tasks of ``layers``, the compute slots' shared pool)."""
    network = body.network
    if network.layers is not None:
        build = partial(explicit_network, network)
    elif network.recurrent is not None:
        build = partial(recurrent, network)
    else:
        build = partial(_drawn, network)
    return _run(build, body.inputs, body.options, layers)


def _drawn(network: NetworkModel) -> Network:
    return build_network(init_recipe(network))


def _run(
    build: Callable[[], Network],
    inputs: Inputs,
    options: OptionsModel,
    layers: Executor | None,
    inputs_at: Location = (),
) -> tuple[Analysis, float]:
    """The analysis of ``build()``, and the milliseconds that building (decoding or drawing the weights) took.

    Errors about the probes are located under ``inputs_at``.
    """
    started = time.perf_counter()
    network = build()
    decode_ms = (time.perf_counter() - started) * 1e3
    try:
        x, y = make_probes(probe_spec(inputs), network.input_width, network.widths[-1])
    except InvalidInputError as exc:
        raise InvalidInputError((*inputs_at, *exc.location), exc.message) from None
    t = options.thresholds
    thresholds = Thresholds(t.vanishing_log10, t.exploding_log10)
    service_options = Options(rtol=options.rtol, thresholds=thresholds, spectrum=options.spectrum)
    return analyse(network, x, y, service_options, layers), decode_ms


async def _safetensors_work(
    request: Request, settings: Settings, layers: Executor | None
) -> Callable[[], tuple[Analysis, float]]:
    """Read the multipart body and check the file's header and sizes; the arrays are made later, in the worker."""
    parts = await read_parts(request)
    upload = parts.get("weights")
    if upload is None or upload.filename is None:
        raise invalid(
            [FieldError(pointer="/weights", detail="a multipart file part `weights` (.safetensors) is required")]
        )
    part = parts.get("request")
    raw = b"{}" if part is None else bytes(part.data)
    spec = await validate_json(request, SafetensorsRequest, raw, where="/request")
    started = time.perf_counter()
    if safetensors.header_length(upload.data) <= INLINE_PARSE_BYTES:
        file = safetensors.parse(upload.data)
    else:
        file = await to_thread.run_sync(safetensors.parse, upload.data)
    request.state.header_ms = (time.perf_counter() - started) * 1e3
    prefixes = safetensors.layer_names(file, spec.network.layers)
    parameters = safetensors.parameter_count(file, prefixes)
    widths = safetensors_widths(file, prefixes)
    probes_at = probes_pointer(spec.inputs, where="/request")
    spectrum = spec.options.spectrum
    solves = safetensors_meanfield_solves(spec.network, len(prefixes))
    probes = probe_count(spec.inputs)
    check_size(widths, parameters, probes, settings, "/weights", probes_at, spectrum, "/request", solves)
    return partial(_analyse_safetensors, file, prefixes, spec, layers)


def _analyse_safetensors(
    file: safetensors.SafetensorsFile, prefixes: list[str], spec: SafetensorsRequest, layers: Executor | None
) -> tuple[Analysis, float]:
    build = partial(safetensors_network, file, prefixes, spec.network, layers)
    return _run(build, spec.inputs, spec.options, layers, inputs_at=("request",))
