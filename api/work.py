"""POST /v1/analyses's work: the request read and its size checked in the server, then one task that decodes,
builds and analyses in a compute worker (``api.compute``).

The task's functions (``analyse_json``, ``analyse_upload``) run in the worker process. A JSON body larger than
``api.compute.SHARED_BYTES`` reaches it as its raw bytes in shared memory, validated again there, rather than as
its parsed model pickled through the pipe; a .safetensors file that large reaches it the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from anyio import to_thread
from fastapi import Request

from api.compute import SHARED_BYTES, ComputePool, Deadline, sharing
from api.echo import echo
from api.ingest import safetensors
from api.ingest.body import INLINE_PARSE_BYTES, declared_length, media_type, read_body, require_json, validate_json
from api.ingest.decode import explicit_network, init_recipe, probe_spec, recurrent, safetensors_network
from api.ingest.multipart import read_parts
from api.problems import invalid
from api.settings import Settings
from api.sizes import checked_safetensors_size, checked_size, checked_survey_size
from api.worker import Shared, attached
from jacspec.models import AnalysisRequest, FieldError, Inputs, SafetensorsRequest
from jacspec.models import Network as NetworkModel
from jacspec.models import Options as OptionsModel
from service.advice import TRIALS
from service.analysis import Analysis, Options, analyse
from service.cost import WorkEstimate
from service.errors import InvalidInputError, Location
from service.network import Network, build_network
from service.probes import make_probes
from service.spectra import SpectrumMode
from service.survey import Skipped, Survey, survey
from service.verdict import Thresholds

ACCEPTED = "application/json, or multipart/form-data with a .safetensors file"


@dataclass(frozen=True)
class UploadSurvey:
    """The weight survey of an uploaded file, and the dtype of each of its tensors by name."""

    survey: Survey
    dtypes: dict[str, str]


Computed = tuple[Analysis, float]
"""The analysis, and the milliseconds that decoding or drawing the weights took."""
Surveyed = tuple[UploadSurvey, float]
"""An upload's survey, and the milliseconds that widening its tensors took."""


@dataclass(frozen=True)
class AnalysisWork:
    """A request read and checked: the worker computes ``function(source, *args)`` within ``deadline``, where
    ``source`` is ``payload`` (or, for large bytes, the shared-memory block holding them)."""

    function: Callable[..., Computed | Surveyed]
    payload: object
    args: tuple[Any, ...]
    deadline: Deadline


async def receive(request: Request, settings: Settings, compute: ComputePool) -> AnalysisWork:
    """Read the body (JSON, or multipart with a .safetensors file) and check its sizes; no array is made yet.

    A full queue refuses a body that may be large (``may_be_large``) before it is read, unless its Content-Length
    alone is over the limit: that one is a 413 (a 503 would only make the client retry it).
    """
    if may_be_large(request) and not declared_too_large(request, settings):
        compute.refuse_if_full()
    if media_type(request) == "multipart/form-data":
        return await _safetensors_work(request, settings)
    require_json(request, ACCEPTED)
    raw = await read_body(request, settings.max_body_bytes)
    body = await validate_json(request, AnalysisRequest, raw)
    trials = trials_left(checked_size(body, settings), settings)
    payload = raw if len(raw) > SHARED_BYTES else body
    return AnalysisWork(analyse_json, payload, (trials,), deadline(settings, body.options))


def trials_left(work: WorkEstimate, settings: Settings) -> int:
    """The suggested gain's trials (at most service.advice.TRIALS) that fit in JACSPEC_MAX_FLOPS beside the work."""
    return work.trials_within(settings.max_flops, TRIALS)


def deadline(settings: Settings, options: OptionsModel) -> Deadline:
    """JACSPEC_MAX_SECONDS, or options.max_seconds when it asks for less; with what would fit instead."""
    advice = "fewer probes (inputs.count), a larger options.rtol, no options.spectrum or a smaller network would fit"
    wanted = options.max_seconds
    if wanted is not None and wanted < settings.max_seconds:
        return Deadline(
            wanted,
            "options.max_seconds",
            f"{advice}, or a larger options.max_seconds (at most {settings.max_seconds:g}, JACSPEC_MAX_SECONDS)",
        )
    return Deadline(settings.max_seconds, "JACSPEC_MAX_SECONDS", advice)


async def run(
    pending: AnalysisWork, compute: ComputePool, request: Request
) -> tuple[Analysis | UploadSurvey, dict[str, float]]:
    """The analysis, and its timings in milliseconds: parse, decode, compute and their total. A client that
    disconnects meanwhile has its worker stopped (``request.receive`` is watched)."""
    started = time.perf_counter()
    async with sharing(pending.payload) as source:
        result, decode_ms = await compute.run(
            pending.function, (source, *pending.args), pending.deadline, request.receive
        )
    worker_ms = (time.perf_counter() - started) * 1e3
    decode_ms += getattr(request.state, "header_ms", 0.0)
    timings = {"parse": request.state.parse_ms, "decode": decode_ms, "compute": worker_ms - decode_ms}
    return result, {**timings, "total": sum(timings.values())}


def may_be_large(request: Request) -> bool:
    """Whether the body may be larger than INLINE_PARSE_BYTES (no Content-Length, or a larger one). A smaller one
    is read and checked even when the queue is full: a 413 or 422 is answered without a worker."""
    declared = declared_length(request)
    return declared is None or declared > INLINE_PARSE_BYTES


def declared_too_large(request: Request, settings: Settings) -> bool:
    """Whether the Content-Length alone exceeds JACSPEC_MAX_BODY_BYTES."""
    declared = declared_length(request)
    return declared is not None and declared > settings.max_body_bytes


def analyse_json(source: AnalysisRequest | Shared | bytes, trials: int = TRIALS) -> Computed:
    """In a worker: the analysis of a JSON request, given as its model, or as its raw bytes in shared memory or
    through the pipe (when shared memory had no room), then validated again here, as the server did."""
    if isinstance(source, Shared):
        with attached(source) as view:
            source = bytes(view)
    if isinstance(source, bytes):
        source = AnalysisRequest.model_validate_json(source, strict=True)
    return analyse_request(source, trials)


def analyse_request(body: AnalysisRequest, trials: int = TRIALS) -> Computed:
    """Decode, build and analyse a JSON request: everything that allocates or computes."""
    network = body.network
    started = time.perf_counter()
    if network.layers is not None:
        built = explicit_network(network)
    elif network.recurrent is not None:
        built = recurrent(network)
    else:
        built = _drawn(network)
    decode_ms = (time.perf_counter() - started) * 1e3
    return _analysed(built, body.inputs, body.options, trials), decode_ms


def _drawn(network: NetworkModel) -> Network:
    return build_network(init_recipe(network))


def _analysed(
    network: Network, inputs: Inputs, options: OptionsModel, trials: int, inputs_at: Location = ()
) -> Analysis:
    """The analysis of ``network``; errors about the probes are located under ``inputs_at``."""
    try:
        x, y = make_probes(probe_spec(inputs), network.input_width, network.widths[-1])
    except InvalidInputError as exc:
        raise InvalidInputError((*inputs_at, *exc.location), exc.message) from None
    t = options.thresholds
    thresholds = Thresholds(t.vanishing_log10, t.exploding_log10)
    service_options = Options(rtol=options.rtol, thresholds=thresholds, spectrum=options.spectrum, trials=trials)
    return analyse(network, x, y, service_options)


async def _safetensors_work(request: Request, settings: Settings) -> AnalysisWork:
    """Read the multipart body and check the file's header and sizes; the arrays are made later, by the worker."""
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
        file = safetensors.parse(upload.data, any_dtype=True)
    else:
        file = await to_thread.run_sync(partial(safetensors.parse, upload.data, any_dtype=True))
    request.state.header_ms = (time.perf_counter() - started) * 1e3
    if safetensors.wants_survey(file, spec.survey, spec.network.layers):
        planned, skipped = safetensors.survey_plan(file)
        checked_survey_size(planned, skipped, spec.options.spectrum, settings)
        dtypes = {name: entry.dtype for name, entry in file.entries.items()}
        args = (tuple(p.name for p in planned), tuple(skipped), dtypes, spec.options.spectrum)
        return AnalysisWork(survey_upload, upload.data, args, deadline(settings, spec.options))
    safetensors.refuse_unread(file, spec.network.layers)
    prefixes = safetensors.layer_names(file, spec.network.layers)
    trials = trials_left(checked_safetensors_size(file, prefixes, spec, settings), settings)
    return AnalysisWork(analyse_upload, upload.data, (prefixes, spec, trials), deadline(settings, spec.options))


def analyse_upload(
    source: bytes | memoryview | Shared, prefixes: list[str], spec: SafetensorsRequest, trials: int = TRIALS
) -> Computed:
    """In a worker: read the uploaded file (from shared memory when large), widen its tensors, build, analyse.

    An error about a layer's weight found while analysing (its norm beyond float64) names the tensor in the file.
    """
    started = time.perf_counter()
    if isinstance(source, Shared):
        with attached(source) as view:
            network = _uploaded(view, prefixes, spec)
    else:
        network = _uploaded(source, prefixes, spec)
    decode_ms = (time.perf_counter() - started) * 1e3
    try:
        return _analysed(network, spec.inputs, spec.options, trials, inputs_at=("request",)), decode_ms
    except InvalidInputError as exc:
        if exc.location[:2] != ("network", "layers"):
            raise
        tensor = f"{prefixes[int(exc.location[2])]}.{exc.location[3]}"
        raise InvalidInputError(("weights",), f"tensor {echo(tensor)}: {exc.message}") from None


def _uploaded(blob: bytes | memoryview, prefixes: list[str], spec: SafetensorsRequest) -> Network:
    """The network of the file's tensors (copies: no view of ``blob`` outlives the call)."""
    return safetensors_network(safetensors.parse(blob, any_dtype=True), prefixes, spec.network)


def survey_upload(
    source: bytes | memoryview | Shared,
    names: tuple[str, ...],
    skipped: tuple[Skipped, ...],
    dtypes: dict[str, str],
    mode: SpectrumMode,
) -> Surveyed:
    """In a worker: the weight survey of the tensors ``names`` of the uploaded file (from shared memory when large),
    each widened in turn; an error about a tensor names it."""
    if isinstance(source, Shared):
        with attached(source) as view:
            return _surveyed(view, names, skipped, dtypes, mode)
    return _surveyed(source, names, skipped, dtypes, mode)


def _surveyed(
    blob: bytes | memoryview,
    names: tuple[str, ...],
    skipped: tuple[Skipped, ...],
    dtypes: dict[str, str],
    mode: SpectrumMode,
) -> Surveyed:
    """The survey of the file's tensors (copies: no view of ``blob`` outlives the call)."""
    seconds = [0.0]
    tensors = safetensors.LazyTensors(safetensors.parse(blob, any_dtype=True), names, seconds)
    try:
        found = survey(tensors, mode, skipped, where=("weights",))
    except InvalidInputError as exc:
        if len(exc.location) < 2:
            raise
        name = str(exc.location[1])
        raise InvalidInputError(("weights",), f"tensor {echo(name)}: {exc.message}") from None
    return UploadSurvey(found, dtypes), seconds[0] * 1e3
