"""POST /v1/analyses's work: the request read and its size checked, then one function that decodes, builds and
analyses.

It runs in a compute slot's worker thread, its layers' norms as tasks of the slots' layer pool; an analysis
estimated at most ``api.compute.INLINE_FLOPS`` runs on the event loop instead, without a slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

from anyio import to_thread
from fastapi import Request

from api.compute import INLINE_FLOPS, ComputeSlots
from api.echo import echo
from api.ingest import safetensors
from api.ingest.body import INLINE_PARSE_BYTES, declared_length, media_type, read_json, validate_json
from api.ingest.decode import explicit_network, init_recipe, probe_spec, recurrent, safetensors_network
from api.ingest.multipart import read_parts
from api.problems import invalid
from api.settings import Settings
from api.sizes import checked_safetensors_size, checked_size
from jacspec.models import AnalysisRequest, FieldError, Inputs, SafetensorsRequest
from jacspec.models import Network as NetworkModel
from jacspec.models import Options as OptionsModel
from service.analysis import Analysis, Options, analyse
from service.errors import InvalidInputError, Location
from service.network import Network, build_network
from service.probes import make_probes
from service.verdict import Thresholds

ACCEPTED = "application/json, or multipart/form-data with a .safetensors file"

Work = Callable[[], tuple[Analysis, float]]
"""The analysis, and the milliseconds that decoding or drawing the weights took."""


@dataclass(frozen=True)
class AnalysisWork:
    """A request read and checked: its ``work``, and whether it is small enough for the event loop."""

    work: Work
    inline: bool


async def receive(request: Request, settings: Settings, compute: ComputeSlots) -> AnalysisWork:
    """Read the body (JSON, or multipart with a .safetensors file) and check its sizes; no array is made yet.

    A full queue refuses a body that may be large (``may_be_large``) before it is read, unless its Content-Length
    alone is over the limit: that one is a 413 (a 503 would only make the client retry it).
    """
    if may_be_large(request) and not declared_too_large(request, settings):
        compute.refuse_if_full()
    if media_type(request) == "multipart/form-data":
        return AnalysisWork(await _safetensors_work(request, settings, compute.layers), inline=False)
    body = await read_json(request, AnalysisRequest, settings.max_body_bytes, ACCEPTED)
    size = checked_size(body, settings)
    inline = size.flops <= INLINE_FLOPS
    return AnalysisWork(partial(analyse_request, body, None if inline else compute.layers), inline)


async def run(pending: AnalysisWork, compute: ComputeSlots, request: Request) -> tuple[Analysis, dict[str, float]]:
    """The analysis, and its timings in milliseconds: parse, decode, compute and their total."""
    started = time.perf_counter()
    result, decode_ms = await compute.run(pending.work, inline=pending.inline)
    worker_ms = (time.perf_counter() - started) * 1e3
    decode_ms += getattr(request.state, "header_ms", 0.0)
    timings = {"parse": request.state.parse_ms, "decode": decode_ms, "compute": worker_ms - decode_ms}
    return result, {**timings, "total": sum(timings.values())}


def may_be_large(request: Request) -> bool:
    """Whether the body may be larger than INLINE_PARSE_BYTES (no Content-Length, or a larger one). A smaller one
    is read and checked even when the queue is full (a 413 is a 413) and, if its work is small, computed on the
    event loop, which needs no slot."""
    declared = declared_length(request)
    return declared is None or declared > INLINE_PARSE_BYTES


def declared_too_large(request: Request, settings: Settings) -> bool:
    """Whether the Content-Length alone exceeds JACSPEC_MAX_BODY_BYTES."""
    declared = declared_length(request)
    return declared is not None and declared > settings.max_body_bytes


def analyse_request(body: AnalysisRequest, layers: Executor | None) -> tuple[Analysis, float]:
    """Decode, build and analyse a JSON request: everything that allocates or computes (the layers' norms as tasks
    of ``layers``, the compute slots' shared pool, when given)."""
    network = body.network
    if network.layers is not None:
        build = partial(explicit_network, network)
    elif network.recurrent is not None:
        build = partial(recurrent, network)
    else:
        build = partial(_drawn, network)
    return _analysed(build, body.inputs, body.options, layers)


def _drawn(network: NetworkModel) -> Network:
    return build_network(init_recipe(network))


def _analysed(
    build: Callable[[], Network],
    inputs: Inputs,
    options: OptionsModel,
    layers: Executor | None,
    inputs_at: Location = (),
) -> tuple[Analysis, float]:
    """The analysis of ``build()``, and the milliseconds that building took; errors about the probes are located
    under ``inputs_at``."""
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


async def _safetensors_work(request: Request, settings: Settings, layers: Executor | None) -> Work:
    """Read the multipart body and check the file's header and sizes; the arrays are made later, by the work."""
    parts = await read_parts(request, settings.max_body_bytes)
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
    checked_safetensors_size(file, prefixes, spec, settings)
    return partial(analyse_safetensors, file, prefixes, spec, layers)


def analyse_safetensors(
    file: safetensors.SafetensorsFile, prefixes: list[str], spec: SafetensorsRequest, layers: Executor | None
) -> tuple[Analysis, float]:
    """Widen the uploaded tensors, build and analyse (the tensors widened as tasks of ``layers`` too)."""
    build = partial(safetensors_network, file, prefixes, spec.network, layers)
    try:
        return _analysed(build, spec.inputs, spec.options, layers, inputs_at=("request",))
    except InvalidInputError as exc:  # a layer's weight (its norm beyond float64): the tensor in the file
        if exc.location[:2] != ("network", "layers"):
            raise
        tensor = f"{prefixes[int(exc.location[2])]}.{exc.location[3]}"
        raise InvalidInputError(("weights",), f"tensor {echo(tensor)}: {exc.message}") from None
