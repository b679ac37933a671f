"""POST /v1/analyses's work: the request read and its size checked in the server, then one task that decodes,
builds and analyses in a compute worker (``api.compute``).

The task's functions (``analyse_json``, ``analyse_upload``) run in the worker process. A JSON body larger than
``api.compute.SHARED_BYTES`` reaches it as its raw bytes in shared memory, validated again there, rather than as
its parsed model pickled through the pipe; a .safetensors file that large reaches it the same way.

Within a cluster's job (``spreading``) the work's independent pieces go to the spread's executor: a chain's layer
norms (``service.analysis.analyse``), a graph's block norms and matrix surveys (``service.graph.analysis``), an
upload's weight survey (``service.survey.survey``) — each only when its pieces are large enough to pay for their
hand-over (the median piece's product with one vector at least the spread's min_flops, ``spread_executor``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from statistics import median
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import Request
from pydantic import BaseModel

from api.compute import SHARED_BYTES, ComputePool, Deadline, sharing
from api.echo import echo
from api.encode import EncodedReport, encoded_report, encoded_survey
from api.ingest import safetensors
from api.ingest.body import (
    INLINE_PARSE_BYTES,
    declared_length,
    media_type,
    read_body,
    require_json,
    validate_json,
    validated,
)
from api.ingest.decode import explicit_network, init_recipe, probe_spec, recurrent, safetensors_network
from api.ingest.graph import build, from_file, inline, shapes_only
from api.ingest.multipart import read_parts
from api.problems import invalid
from api.settings import Settings
from api.sizes import checked_graph_size, checked_safetensors_size, checked_size, checked_survey_size, node_costs
from api.worker import Progress, Shared, attached, tell
from jacspec import __version__
from jacspec.models import AnalysisRequest, FieldError, Inputs, SafetensorsRequest
from jacspec.models import Network as NetworkModel
from jacspec.models import Options as OptionsModel
from service.advice import TRIALS
from service.analysis import SPREAD_MIN_FLOPS, Analysis, Options, analyse
from service.cost import WorkEstimate
from service.errors import InvalidInputError, Location
from service.graph.analysis import GraphAnalysis, analyse_graph
from service.graph.network import Graph
from service.network import Network, build_network
from service.probes import make_probes
from service.spectra import SpectrumMode
from service.survey import Planned, Skipped, Survey, classify, survey
from service.verdict import Thresholds

T = TypeVar("T")

ACCEPTED = "application/json, or multipart/form-data with a .safetensors file"

Computed = tuple[Analysis | GraphAnalysis, float]
"""The analysis, and the milliseconds that decoding or drawing the weights took."""

Timings = dict[str, float]
"""Milliseconds by stage: parse, decode, compute, and their total."""


@dataclass(frozen=True)
class Spread:
    """Where the work's pieces go (a chain's layer norms, a graph's block norms, a survey's matrices: the service
    functions' ``executor``), and from which median flops per piece's product with one vector on
    (``spread_min_flops``; None: service.analysis.SPREAD_MIN_FLOPS)."""

    executor: Executor
    min_flops: float | None = None


_SPREAD: ContextVar[Spread | None] = ContextVar("jacspec_spread", default=None)
"""Set by a cluster's task around the work it runs (``spreading``); None in a compute worker of this server."""


@contextmanager
def spreading(spread: Spread) -> Iterator[None]:
    """Within the block (this thread's context), the work's pieces go to ``spread`` (see the module docstring)."""
    token = _SPREAD.set(spread)
    try:
        yield
    finally:
        _SPREAD.reset(token)


@dataclass(frozen=True)
class AnalysisWork:
    """A request read and checked: the worker computes ``function(source, *args)`` within ``deadline``, where
    ``source`` is ``payload`` (or, for large bytes, the shared-memory block holding them), and answers the
    report's JSON."""

    function: Callable[..., EncodedReport]
    payload: object
    args: tuple[Any, ...]
    deadline: Deadline
    seconds: float | None = None
    """The estimated seconds of one core the work takes (``service.cost``: flops × SECONDS_PER_FLOP), when known
    before the worker starts (not for a large JSON body, validated there)."""
    run: str | None = None
    """The request's ``run`` (its report is kept as a point of it), when the server has read it: a JSON body too
    large to validate here has it read after the analysis (``api.routes.analyses.run_of``)."""
    step: int | None = None


async def receive(request: Request, settings: Settings, compute: ComputePool | None) -> AnalysisWork:
    """Read the body (JSON, or multipart with a .safetensors file) and check its sizes; no array is made yet.

    A JSON body over SHARED_BYTES is not validated here but in the worker (``analyse_json``): its validation,
    whose time grows with the body, would hold the GIL beside the event loop. A full queue refuses a body that
    may be large (``may_be_large``) before it is read, unless its Content-Length alone is over the limit: that
    one is a 413 (a 503 would only make the client retry it). Without ``compute`` (a job's request, which waits
    for a worker however long it takes) nothing is refused for a full queue. ``settings`` holds the limits the
    request is checked against (``Settings.for_jobs()`` for a job).
    """
    if compute is not None and may_be_large(request) and not declared_too_large(request, settings):
        compute.refuse_if_full()
    if media_type(request) == "multipart/form-data":
        return await _safetensors_work(request, settings)
    require_json(request, ACCEPTED)
    raw = await read_body(request, settings.max_body_bytes)
    if len(raw) > SHARED_BYTES:
        request.state.parse_ms = 0.0
        return AnalysisWork(analyse_json, raw, (settings,), deadline(settings))
    body = await validate_json(request, AnalysisRequest, raw)
    work = checked_size(body, settings)
    trials = trials_left(work, settings)
    return AnalysisWork(
        analyse_model, body, (trials,), deadline(settings, body.options), work.seconds, body.run, body.step
    )


def trials_left(work: WorkEstimate, settings: Settings) -> int:
    """The suggested gain's trials (at most service.advice.TRIALS) that fit in JACSPEC_MAX_FLOPS beside the work."""
    return work.trials_within(settings.max_flops, TRIALS)


def deadline(settings: Settings, options: OptionsModel | None = None) -> Deadline:
    """JACSPEC_MAX_SECONDS, or options.max_seconds when it asks for less; with what would fit instead."""
    advice = "fewer probes (inputs.count), a larger options.rtol, no options.spectrum or a smaller network would fit"
    wanted = None if options is None else options.max_seconds
    if wanted is not None and wanted < settings.max_seconds:
        return Deadline(
            wanted,
            "options.max_seconds",
            f"{advice}, or a larger options.max_seconds (at most {settings.max_seconds:g}, {settings.seconds_limit})",
        )
    return Deadline(settings.max_seconds, settings.seconds_limit, advice)


class _RunFields(BaseModel):
    """A JSON body's top-level ``run`` and ``step`` alone (the worker has validated the whole body)."""

    run: str | None = None
    step: int | None = None


async def run_and_step(pending: AnalysisWork) -> tuple[str | None, int | None]:
    """The request's run and step: as the server read them, or, for a JSON body validated in the worker (given as
    its bytes), read from them in a thread (pydantic's parser skips everything else)."""
    if pending.function is not analyse_json or not isinstance(pending.payload, bytes):
        return pending.run, pending.step
    fields = await to_thread.run_sync(_RunFields.model_validate_json, pending.payload)
    return fields.run, fields.step


async def run(pending: AnalysisWork, compute: ComputePool, request: Request) -> bytes:
    """The report's JSON, computed and encoded in a worker. A client that disconnects meanwhile has its worker
    stopped (``request.receive`` is watched)."""
    server_ms = server_timings(request)
    async with sharing(pending.payload) as source:
        answer: EncodedReport = await compute.run(
            pending.function, (source, *pending.args, server_ms), pending.deadline, request.receive
        )
    return answer.json


def server_timings(request: Request) -> Timings:
    """The milliseconds the server spent on the request before its task: parsing, and a file header's decoding."""
    return {"parse": getattr(request.state, "parse_ms", 0.0), "decode": getattr(request.state, "header_ms", 0.0)}


PROGRESS_EVERY_S = 0.2
"""A task tells its progress at most this often (and always its last part)."""


def told_progress(unit: str) -> Callable[[int, int], None]:
    """In a worker: ``progress(done, total)`` for the service's functions, told to the server as
    ``api.worker.Progress`` in ``unit``, at most every PROGRESS_EVERY_S seconds and always when done == total."""
    last = [-math.inf]

    def progress(done: int, total: int) -> None:
        moment = time.monotonic()
        if done < total and moment - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = moment
        tell(Progress(done, total, unit))

    return progress


def may_be_large(request: Request) -> bool:
    """Whether the body may be larger than INLINE_PARSE_BYTES (no Content-Length, or a larger one). A smaller one
    is read and checked even when the queue is full: a 413 or 422 is answered without a worker."""
    declared = declared_length(request)
    return declared is None or declared > INLINE_PARSE_BYTES


def declared_too_large(request: Request, settings: Settings) -> bool:
    """Whether the Content-Length alone exceeds JACSPEC_MAX_BODY_BYTES."""
    declared = declared_length(request)
    return declared is not None and declared > settings.max_body_bytes


def analyse_json(source: Shared | bytes, settings: Settings, server_ms: Timings) -> EncodedReport:
    """In a worker: the report of a JSON body too large to validate in the server, given as its bytes in shared
    memory (or through the pipe, when shared memory had no room). It is validated and its size checked here as
    the server checks a smaller one (a 422 or 413 is raised as the server would raise it), and the server is told
    the request's own deadline (options.max_seconds), which may be tighter than the one it set, and the work's
    estimated seconds (a job's seconds_left)."""
    started = time.perf_counter()
    raw = _read(source, bytes)
    body = validated(AnalysisRequest, raw)
    del raw
    work = checked_size(body, settings)
    trials = trials_left(work, settings)
    tell(deadline(settings, body.options))
    tell(Progress(0, None, "stages" if body.network.graph is None else "blocks", work.seconds))  # a job's ETA
    parse_ms = server_ms["parse"] + (time.perf_counter() - started) * 1e3
    return analyse_model(body, trials, {**server_ms, "parse": parse_ms})


def analyse_model(body: AnalysisRequest, trials: int, server_ms: Timings) -> EncodedReport:
    """In a worker: the report of a validated JSON request, as JSON."""
    started = time.perf_counter()
    result, decode_ms = analyse_request(body, trials)
    return _encoded(result, server_ms, decode_ms, started)


def _encoded(result: Analysis | GraphAnalysis, server_ms: Timings, decode_ms: float, started: float) -> EncodedReport:
    """The report's JSON, timed (:func:`_timings`)."""
    return encoded_report(result, __version__, _timings(server_ms, decode_ms, started))


def _timings(server_ms: Timings, decode_ms: float, started: float) -> Timings:
    """The server's parse (and a file header's decode), then this worker's decode and compute (the rest of the time
    since ``started``), and their total."""
    compute_ms = (time.perf_counter() - started) * 1e3 - decode_ms
    timings = {"parse": server_ms["parse"], "decode": server_ms["decode"] + decode_ms, "compute": compute_ms}
    return {**timings, "total": sum(timings.values())}


def _read(source: bytes | memoryview | Shared, read: Callable[[bytes | memoryview], T]) -> T:
    """``read(the payload's bytes)``: mapped from shared memory for the call when they are there (``read`` must keep
    no view of them), else as they came through the pipe."""
    if isinstance(source, Shared):
        with attached(source) as view:
            return read(view)
    return read(source)


def analyse_request(body: AnalysisRequest, trials: int = TRIALS) -> Computed:
    """Decode, build and analyse a JSON request: everything that allocates or computes."""
    network = body.network
    started = time.perf_counter()
    if network.graph is not None:
        graph = build(network.graph, inline)
        return _graph_analysed(graph, body.inputs, body.options), (time.perf_counter() - started) * 1e3
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
    spread = _SPREAD.get()
    if spread is None:
        return analyse(network, x, y, service_options, progress=told_progress("stages"))
    return analyse(
        network,
        x,
        y,
        service_options,
        executor=spread.executor,
        progress=told_progress("stages"),
        spread_min_flops=spread.min_flops,
    )


def _graph_analysed(graph: Graph, inputs: Inputs, options: OptionsModel, inputs_at: Location = ()) -> GraphAnalysis:
    """The analysis of a graph network; errors about the probes are located under ``inputs_at``."""
    try:
        x, y = make_probes(probe_spec(inputs), graph.size(0), graph.size(graph.output))
    except InvalidInputError as exc:
        raise InvalidInputError((*inputs_at, *exc.location), exc.message) from None
    t = options.thresholds
    thresholds = Thresholds(t.vanishing_log10, t.exploding_log10)
    costs = node_costs(graph)
    blocks = [sum(cost.apply for cost in costs[block.start : block.stop]) for block in graph.blocks()]
    executor = spread_executor(blocks)
    return analyse_graph(graph, x, y, options.rtol, thresholds, progress=told_progress("blocks"), executor=executor)


def spread_executor(flops: Sequence[float]) -> Executor | None:
    """The executor of the spread this work runs in (``spreading``), when the median of ``flops`` — each task's
    product with one vector (a block's forward pass for one probe, a matrix's 2·m·n) — is at least its min_flops
    (None: service.analysis.SPREAD_MIN_FLOPS), as a chain's layers are spread; else None (no spread, or tasks too
    short to pay for their hand-over)."""
    spread = _SPREAD.get()
    if spread is None or not flops:
        return None
    least = SPREAD_MIN_FLOPS if spread.min_flops is None else spread.min_flops
    return spread.executor if median(flops) >= least else None


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
    graph = spec.network.graph
    if graph is not None:
        shapes = build(graph, shapes_only(file), UPLOAD_GRAPH)
        work = checked_graph_size(shapes, spec.inputs, spec.options, settings, "/request")
        return AnalysisWork(
            analyse_graph_upload,
            upload.data,
            (spec,),
            deadline(settings, spec.options),
            work.seconds,
            spec.run,
            spec.step,
        )
    if safetensors.wants_survey(file, spec.survey, spec.network.layers):
        planned, skipped = safetensors.survey_plan(file)
        estimate = checked_survey_size(planned, skipped, spec.options.spectrum, settings)
        dtypes = {name: entry.dtype for name, entry in file.entries.items()}
        args = (tuple(p.name for p in planned), tuple(skipped), dtypes, spec.options.spectrum)
        return AnalysisWork(
            survey_upload, upload.data, args, deadline(settings, spec.options), estimate.seconds, spec.run, spec.step
        )
    safetensors.refuse_unread(file, spec.network.layers)
    prefixes = safetensors.layer_names(file, spec.network.layers)
    work = checked_safetensors_size(file, prefixes, spec, settings)
    trials = trials_left(work, settings)
    return AnalysisWork(
        analyse_upload,
        upload.data,
        (prefixes, spec, trials),
        deadline(settings, spec.options),
        work.seconds,
        spec.run,
        spec.step,
    )


UPLOAD_GRAPH: Location = ("request", "network", "graph")


def analyse_graph_upload(
    source: bytes | memoryview | Shared, spec: SafetensorsRequest, server_ms: Timings
) -> EncodedReport:
    """In a worker: the report of the upload analysed as ``spec.network.graph``, its params read from the file."""
    started = time.perf_counter()
    graph_spec = spec.network.graph
    assert graph_spec is not None

    def built(blob: bytes | memoryview) -> Graph:
        return build(graph_spec, from_file(safetensors.parse(blob, any_dtype=True)), UPLOAD_GRAPH)

    graph = _read(source, built)
    decode_ms = (time.perf_counter() - started) * 1e3
    result = _graph_analysed(graph, spec.inputs, spec.options, inputs_at=("request",))
    return _encoded(result, server_ms, decode_ms, started)


def analyse_upload(
    source: bytes | memoryview | Shared, prefixes: list[str], spec: SafetensorsRequest, trials: int, server_ms: Timings
) -> EncodedReport:
    """In a worker: read the uploaded file (from shared memory when large), widen its tensors, build, analyse, and
    answer the report's JSON.

    An error about a layer's weight found while analysing (its norm beyond float64) names the tensor in the file.
    """
    started = time.perf_counter()
    network = _read(source, lambda blob: _uploaded(blob, prefixes, spec))
    decode_ms = (time.perf_counter() - started) * 1e3
    try:
        result = _analysed(network, spec.inputs, spec.options, trials, inputs_at=("request",))
    except InvalidInputError as exc:
        if exc.location[:2] != ("network", "layers"):
            raise
        tensor = f"{prefixes[int(exc.location[2])]}.{exc.location[3]}"
        raise InvalidInputError(("weights",), f"tensor {echo(tensor)}: {exc.message}") from None
    return _encoded(result, server_ms, decode_ms, started)


def _uploaded(blob: bytes | memoryview, prefixes: list[str], spec: SafetensorsRequest) -> Network:
    """The network of the file's tensors (copies: no view of ``blob`` outlives the call)."""
    return safetensors_network(safetensors.parse(blob, any_dtype=True), prefixes, spec.network)


def survey_upload(
    source: bytes | memoryview | Shared,
    names: tuple[str, ...],
    skipped: tuple[Skipped, ...],
    dtypes: dict[str, str],
    mode: SpectrumMode,
    server_ms: Timings,
) -> EncodedReport:
    """In a worker: the weight survey's JSON of the tensors ``names`` of the uploaded file (from shared memory when
    large), each widened in turn; an error about a tensor names it."""
    started = time.perf_counter()
    found, decode_ms = _read(source, lambda blob: _surveyed(blob, names, skipped, mode))
    return encoded_survey(found, dtypes, __version__, _timings(server_ms, decode_ms, started))


def _surveyed(
    blob: bytes | memoryview, names: tuple[str, ...], skipped: tuple[Skipped, ...], mode: SpectrumMode
) -> tuple[Survey, float]:
    """The survey of the file's tensors (copies: no view of ``blob`` outlives the call), and the milliseconds that
    widening them took."""
    seconds = [0.0]
    file = safetensors.parse(blob, any_dtype=True)
    tensors = safetensors.LazyTensors(file, names, seconds)
    shapes = [classify(name, file.entries[name].shape) for name in names]
    executor = spread_executor([2.0 * math.prod(p.matrix_shape) for p in shapes if isinstance(p, Planned)])
    try:
        found = survey(tensors, mode, skipped, where=("weights",), progress=told_progress("tensors"), executor=executor)
    except InvalidInputError as exc:
        if len(exc.location) < 2:
            raise
        name = str(exc.location[1])
        raise InvalidInputError(("weights",), f"tensor {echo(name)}: {exc.message}") from None
    return found, seconds[0] * 1e3
