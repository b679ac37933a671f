"""The report of a graph network, block by block (service.graph.network): for block j from cut t_a to cut t_b,

    jacobian_norm      = max_b ‖∂t_b/∂t_a‖₂                       (Lanczos on the Gram operator, below)
    backward_norm      = max_b ‖∂y/∂t_b‖₂,  y the output            (1 for the last block)
    gradient_norm      = (Σ_θ ‖∂ℓ/∂θ‖_F²)^½ over the block's parameters, ℓ = mean over probes and outputs of (y − y*)²
    jacobian_norm_bound = its nodes' Lipschitz bounds composed along the block's DAG (_block_bound; None where
                          one has none)

and the summary's input_norm = max_b ‖∂y/∂x‖₂, input_bound = ∏ of every block's bound. Each per-probe norm is
√λ_max of JᵀJ (or JJᵀ, the smaller side) by plain Lanczos in lockstep over the probes (service.lanczos), each Gram
product a VJP after a JVP through the block's nodes: no Jacobian is formed. The products run on all probes at once
(the linearisation holds every probe); a probe whose run has left the lockstep gets zero vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from service import lanczos
from service.advice import Suggestion
from service.errors import InvalidInputError
from service.graph.network import Block, Graph, Stretch, linearise, parameter_gradients, stretch
from service.graph.op import Array, Linearised
from service.progress import Counter, Progress
from service.spectral import DENSE_MAX_DIM, spectral_max
from service.spread import mapped
from service.survey import Survey, survey
from service.verdict import Thresholds, VerdictName, classify
from service.verdict import advise as advise_text


@dataclass(frozen=True)
class BlockReport:
    index: int
    nodes: tuple[str, ...]
    shape: tuple[int, int]
    """(output size, input size), each tensor flattened."""
    jacobian_norm_bound: float | None
    jacobian_norm: float | None
    backward_bound_log10: float | None
    backward_norm_log10: float | None
    gradient_norm_log10: float | None
    parameter_gradient_norms: dict[str, float | None]
    bound_notes: tuple[str, ...]
    flags: tuple[str, ...]


@dataclass(frozen=True)
class GraphSummary:
    depth: int
    input_bound_log10: float | None
    input_norm_log10: float | None
    verdict: VerdictName
    bound_verdict: VerdictName
    thresholds: Thresholds
    advice: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class GraphAnalysis:
    """A graph's report: its blocks, its summary, the survey of its every matrix and kernel (``service.survey``),
    and the work behind them (``weights``: the entries of those matrices and kernels)."""

    blocks: tuple[BlockReport, ...]
    summary: GraphSummary
    rtol: float
    probes: int
    matvecs: int
    output_width: int
    weights: int
    survey: Survey


@dataclass(frozen=True)
class _Bound:
    """A block's bound (None where a node has none), its nodes' notes on what their bounds rest on, its flags."""

    value: float | None
    notes: tuple[str, ...]
    flags: tuple[str, ...]


@dataclass
class _Norms:
    """Lanczos products counted over the analysis."""

    matvecs: int = 0


def analyse_graph(
    graph: Graph,
    x: Array,
    y: Array,
    rtol: float,
    thresholds: Thresholds,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> GraphAnalysis:
    """The report of ``graph`` on probes ``x`` (rows: each probe's input flattened) with MSE targets ``y`` (rows:
    the output flattened). ``progress(done, total)`` (``service.progress``) counts blocks measured, of all the
    graph's blocks.

    With an ``executor``, each block's Jacobian norm (and, for an output wider than DENSE_MAX_DIM, each backward
    norm's stretch) is one of its tasks, ``_stretch_norm`` of the stretch's own linearisations (``Stretch``: not
    the graph), and so is each matrix's survey (``service.survey.survey``); the rest runs in the calling thread,
    and the numbers are the same."""
    probes = len(x)
    lins, stop = linearise(graph, x.reshape(probes, *graph.shapes[0]))
    blocks = graph.blocks()
    bounds = [_block_bound(graph, block) for block in blocks]
    counter = _Norms()
    done = Counter(progress, len(blocks))
    stopped = None if stop is None else next(j for j, b in enumerate(blocks) if b.start <= stop < b.stop)
    if stopped is None:
        reports, input_norm = _measured(graph, lins, blocks, bounds, y, rtol, counter, done, executor)
    else:
        reports, input_norm = _unmeasured(graph, blocks, bounds, stopped), None
        done.step(len(blocks))
    summary = _summary(bounds, input_norm, stopped, thresholds, reports)
    matrices = {f"{node.id}.{name}": p for node in graph.nodes for name, p in node.op.parameters.items() if p.ndim >= 2}
    found = survey(matrices, where=("network", "graph"), executor=executor)
    weights = sum(p.size for p in matrices.values())
    return GraphAnalysis(
        tuple(reports), summary, rtol, probes, counter.matvecs, graph.size(graph.output), weights, found
    )


def _block_bound(graph: Graph, block: Block) -> _Bound:
    """A bound on ‖∂t_stop/∂t_start‖₂ from the nodes' Lipschitz bounds L_k, propagated through the block's DAG:
    B(t_start) = 1 and, for node k reading tensors i₁ … i_m,

        B(t_{k+1}) = L_k·(Σ_i B(t_i)²)^½     (‖J_k·[G_1; …; G_m]‖ ≤ ‖J_k‖·‖[G_1; …; G_m]‖),
        B(t_{k+1}) = Σ_i B(t_i)               for add (‖Σ_i G_i‖ ≤ Σ_i ‖G_i‖),

    the product of the L_k along a chain. None (flag no_global_bound) where a node has no bound; with the nodes'
    notes on what their bounds rest on."""
    bounds: dict[int, float | None] = {block.start: 1.0}
    notes, flags = [], []
    for k in range(block.start, block.stop):
        node = graph.nodes[k]
        if node.op.lipschitz_note is not None:
            notes.append(f"{node.id}: {node.op.lipschitz_note}")
        value, reads = node.op.lipschitz(), [bounds[i] for i in node.inputs]
        if value is None or any(read is None for read in reads):
            bounds[k + 1] = None
            continue
        known = [read for read in reads if read is not None]
        if node.op.name == "add":
            bounds[k + 1] = math.fsum(known)
        else:
            bounds[k + 1] = value * math.hypot(*known)  # no square to under- or overflow
    bound = bounds[block.stop]
    if bound is None:
        flags.append("no_global_bound")
    elif not math.isfinite(bound):
        bound = None
        flags.append("bound_overflow")
    return _Bound(bound, tuple(notes), tuple(flags))


def _suffix_log10(bounds: list[_Bound]) -> list[float | None]:
    """log10 ∏_{i>j} bound_i for each block j (0 for the last): None where a later bound is unknown or zero."""
    logs: list[float | None] = [0.0] * len(bounds)
    total: float | None = 0.0
    for j in range(len(bounds) - 1, 0, -1):
        value = bounds[j].value
        total = None if total is None or value is None or value == 0.0 else total + math.log10(value)
        logs[j - 1] = total
    return logs


def _measured(
    graph: Graph,
    lins: list[Linearised],
    blocks: list[Block],
    bounds: list[_Bound],
    y: Array,
    rtol: float,
    counter: _Norms,
    done: Counter,
    executor: Executor | None,
) -> tuple[list[BlockReport], float | None]:
    """Each block's report from the probes' linearisation, and log10 max_b ‖∂y/∂x‖₂ (None where 0); ``done``
    steps as each block's norm arrives."""
    cuts = [block.start for block in blocks]
    wide = graph.size(graph.output) > DENSE_MAX_DIM
    pieces = [stretch(graph, lins, block) for block in blocks]
    if wide:  # the backward norms by Lanczos on each stretch cut → output
        pieces += [stretch(graph, lins, Block(c, graph.output)) for c in cuts]
    measured = mapped(executor, _stretch_norm, pieces, [rtol] * len(pieces))
    output = lins[-1].output
    cotangent = 2.0 * (output - y.reshape(output.shape)) / output.size
    gradients = parameter_gradients(graph, lins, cotangent)
    backward = {} if wide else _dense_backward_norms(graph, lins, cuts, rtol, counter)
    norms = []
    for norm, matvecs in measured:
        norms.append(norm)
        counter.matvecs += matvecs
        if len(norms) <= len(blocks):
            done.step()
    if wide:
        backward = dict(zip(cuts, norms[len(blocks) :], strict=True))
    suffix = _suffix_log10(bounds)
    reports = []
    for j, block in enumerate(blocks):
        after = 1.0 if block.stop == graph.output else backward[block.stop]
        grads = _parameter_norms(graph, block, gradients)
        reports.append(_report(graph, j, block, bounds[j], suffix[j], norms[j], after, grads))
    whole = backward[0]
    return reports, (math.log10(whole) if whole is not None and whole > 0 else None)


def _dense_backward_norms(
    graph: Graph, lins: list[Linearised], cuts: list[int], rtol: float, counter: _Norms
) -> dict[int, float | None]:
    """max_b ‖∂y/∂t_c‖₂ for each cut c of a narrow output (n_y ≤ DENSE_MAX_DIM) from the n_y rows of ∂y/∂t_c,
    pulled back together node by node (one VJP per output entry) and solved densely at each cut (a wider output's
    are the Lanczos norms of the stretches c → output, ``_stretch_norm``)."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            return _pulled_rows(graph, lins, set(cuts), rtol, counter)
    except _OverflowError:
        return dict.fromkeys(cuts)


def _pulled_rows(
    graph: Graph, lins: list[Linearised], cuts: set[int], rtol: float, counter: _Norms
) -> dict[int, float | None]:
    """The reverse sweep of the n_y unit cotangents e_i (every probe at once), node by node; at each cut c (once
    every node after it has been passed, its cotangents are complete) max_b ‖P_b‖₂ of the rows P_b = ∂y_b/∂t_c."""
    probes, width = len(lins[0].output), graph.size(graph.output)
    unit = np.eye(width)
    rows = [
        {graph.output: np.broadcast_to(unit[i], (probes, width)).reshape(probes, *graph.shapes[-1])}
        for i in range(width)
    ]
    found: dict[int, float | None] = {}
    for k in range(graph.output - 1, -1, -1):
        for row in rows:
            cotangent = row.pop(k + 1, None)
            if cotangent is None:
                continue
            for i, g in zip(graph.nodes[k].inputs, lins[k].vjp(np.ascontiguousarray(cotangent)), strict=True):
                row[i] = row[i] + g if i in row else g
        counter.matvecs += width * probes
        if k in cuts:
            stack = np.stack([row[k].reshape(probes, -1) for row in rows], axis=1)
            found[k] = float(spectral_max(_finite(stack), rtol)[0])
    return found


def _parameter_norms(graph: Graph, block: Block, gradients: dict[int, dict[str, Array]]) -> dict[str, float | None]:
    """‖∂ℓ/∂θ‖_F by ``<node id>.<name>`` for the block's parameters (None where not finite)."""
    found: dict[str, float | None] = {}
    for k in range(block.start, block.stop):
        node = graph.nodes[k]
        for name, value in gradients.get(k, {}).items():
            norm = float(np.linalg.norm(value))
            found[f"{node.id}.{name}"] = norm if math.isfinite(norm) else None
    return found


def _report(
    graph: Graph,
    j: int,
    block: Block,
    bound: _Bound,
    suffix: float | None,
    norm: float | None,
    backward: float | None,
    grads: dict[str, float | None],
) -> BlockReport:
    flags = list(bound.flags)
    values = list(grads.values())
    gradient: float | None = None
    if not values:
        flags.append("no_parameters")
    elif any(v is None for v in values):
        flags.append("gradient_overflow")
    else:
        total = math.sqrt(sum(v * v for v in values if v is not None))
        gradient = math.log10(total) if total > 0 else None
        if gradient is None:
            flags.append("gradient_zero")
    if suffix is None and block.stop != graph.output:
        flags.append("backward_bound_unknown")
    if backward == 0.0:
        flags.append("backward_norm_zero")
    if norm is None or backward is None:
        flags.append("norm_overflow")
    return BlockReport(
        index=j + 1,
        nodes=tuple(node.id for node in graph.nodes[block.start : block.stop]),
        shape=(graph.size(block.stop), graph.size(block.start)),
        jacobian_norm_bound=bound.value,
        jacobian_norm=norm,
        backward_bound_log10=suffix,
        backward_norm_log10=math.log10(backward) if backward is not None and backward > 0 else None,
        gradient_norm_log10=gradient,
        parameter_gradient_norms=grads,
        bound_notes=bound.notes,
        flags=tuple(flags),
    )


def _unmeasured(graph: Graph, blocks: list[Block], bounds: list[_Bound], stop: int) -> list[BlockReport]:
    """The blocks' bounds alone: the forward pass left float64's range in block ``stop``."""
    suffix = _suffix_log10(bounds)
    return [
        BlockReport(
            index=j + 1,
            nodes=tuple(node.id for node in graph.nodes[block.start : block.stop]),
            shape=(graph.size(block.stop), graph.size(block.start)),
            jacobian_norm_bound=bounds[j].value,
            jacobian_norm=None,
            backward_bound_log10=suffix[j],
            backward_norm_log10=None,
            gradient_norm_log10=None,
            parameter_gradient_norms={},
            bound_notes=bounds[j].notes,
            flags=(*bounds[j].flags, "overflow" if j >= stop else "downstream_overflow"),
        )
        for j, block in enumerate(blocks)
    ]


class _OverflowError(ArithmeticError):
    """A Jacobian product left float64's range."""


def _stretch_norm(piece: Stretch, rtol: float) -> tuple[float | None, int]:
    """max_b ‖J_b‖₂ of one stretch (see _lanczos_norm; None where a product leaves float64's range), and the
    Lanczos products taken: a task of the executor, whose products are added up by the caller."""
    counter = _Norms()
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            return _lanczos_norm(piece, rtol, counter), counter.matvecs
    except _OverflowError:
        return None, counter.matvecs


def _finite(values: Array) -> Array:
    if not np.all(np.isfinite(values)):
        raise _OverflowError
    return values


def _lanczos_norm(piece: Stretch, rtol: float, counter: _Norms) -> float:
    """max_b ‖J_b‖₂, J_b = ∂t_stop/∂t_start at probe b, to ``rtol``: Lanczos on f_b²·J_bᵀJ_b (or J_bJ_bᵀ, the
    smaller side), f_b the power of two that brings ‖J_b·x₀‖ near 1 for a random unit x₀ (J_b = 0 where that is 0,
    with probability 1)."""
    in_shape, out_shape = piece.start_shape, piece.lins[-1].output.shape[1:]
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    probes = len(piece.lins[0].output)

    def forward(v: Array) -> Array:
        return piece.jvp(v.reshape(probes, *in_shape)).reshape(probes, n_out)

    def backward(u: Array) -> Array:
        return piece.vjp(u.reshape(probes, *out_shape)).reshape(probes, n_in)

    first, second, size = (forward, backward, n_in) if n_in <= n_out else (backward, forward, n_out)
    start = lanczos.start_vectors(probes, size)
    peaks = _finite(np.linalg.norm(first(start), axis=1))
    counter.matvecs += probes
    alive = np.flatnonzero(peaks > 0)
    if alive.size == 0:
        return 0.0
    scales = lanczos.unit_scales(peaks[alive])

    def gram(rows: Array, which: lanczos.Index) -> Array:
        full = np.zeros((probes, size))
        f = scales[which][:, None]
        full[alive[which]] = rows * f
        return _finite(second(first(full))[alive[which]] * f)

    values, products = lanczos.top_singular_values(gram, size, scales, rtol)
    counter.matvecs += products
    for i in np.flatnonzero(np.isnan(values)):
        values[i] = _alone(gram, size, scales, int(i), rtol, counter)
    return float(values.max())


def _alone(gram: lanczos.Gram, size: int, scales: Array, run: int, rtol: float, counter: _Norms) -> float:
    """One probe's norm by a run of its own (a larger basis than the lockstep's); InvalidInputError at
    options.rtol where even that does not converge."""
    which = np.array([run])
    top, products = lanczos.top_eigenvalues(lambda x, _: gram(x, which), 1, size, lanczos.eigen_tol(rtol))
    counter.matvecs += products
    if np.isnan(top[0]):
        raise InvalidInputError(
            ("options", "rtol"),
            f"a block's Jacobian norm ({size} × {size} Gram operator) could not be certified to rtol {rtol:g} within "
            "the Lanczos budget; ask for a larger rtol",
        )
    return float(np.sqrt(top[0]) / scales[run])


def _summary(
    bounds: list[_Bound],
    input_norm: float | None,
    stopped: int | None,
    thresholds: Thresholds,
    reports: Sequence[BlockReport] = (),
) -> GraphSummary:
    """The verdict from the true growth ‖∂y/∂x‖ (exploding where the forward pass overflowed), the bound's verdict
    from ∏ of the blocks' bounds (exploding where one is unknown: no finite bound holds)."""
    flags: list[str] = [] if stopped is None else ["overflow"]
    values = [bound.value for bound in bounds]
    bound_log10: float | None = None
    if any(value is None for value in values):
        flags.append("input_bound_unknown")
        bound_verdict: VerdictName = "exploding"
    elif any(value == 0.0 for value in values):
        flags.append("input_bound_zero")
        bound_verdict = "vanishing"
    else:
        bound_log10 = sum(math.log10(value) for value in values if value is not None)
        bound_verdict = classify(bound_log10, thresholds)
    verdict: VerdictName = "exploding" if stopped is not None else classify(input_norm, thresholds)
    if stopped is None and input_norm is None:
        flags.append("input_norm_zero")
    return GraphSummary(
        depth=len(bounds),
        input_bound_log10=bound_log10,
        input_norm_log10=input_norm,
        verdict=verdict,
        bound_verdict=bound_verdict,
        thresholds=thresholds,
        advice=_advice(verdict, len(bounds), input_norm, stopped, _culprit(verdict, reports)),
        flags=tuple(flags),
    )


def _advice(
    verdict: VerdictName, depth: int, input_norm: float | None, stopped: int | None, culprit: BlockReport | None
) -> str:
    """service.verdict's two sentences, with the graph's remedy (no gain is searched for a graph): the block whose
    Jacobian norm is farthest from 1 in the verdict's direction, named with its nodes."""
    if verdict == "stable":
        suggestion = Suggestion(1.0, "unchanged", input_norm)
        return advise_text(verdict, depth, input_norm, None, stopped, None, suggestion, 1.0)
    where = "the blocks whose jacobian_norm is far from 1"
    if culprit is not None and culprit.jacobian_norm is not None:
        nodes = culprit.nodes[0] if len(culprit.nodes) == 1 else f"{culprit.nodes[0]} … {culprit.nodes[-1]}"
        norm = culprit.jacobian_norm
        where = f"block {culprit.index} ({nodes}), whose Jacobian norm {norm:.3g} is the farthest from 1"
    remedy = f"look first at {where}: at its normalisation, skip connections and weight scales"
    return advise_text(verdict, depth, input_norm, None, stopped, None, Suggestion(None, None, None, remedy), None)


def _culprit(verdict: VerdictName, reports: Sequence[BlockReport]) -> BlockReport | None:
    """The block of least Jacobian norm for a vanishing verdict, of greatest for an exploding one (None if none is
    known)."""
    known = [r for r in reports if r.jacobian_norm is not None]
    if verdict == "stable" or not known:
        return None
    pick = min if verdict == "vanishing" else max
    return pick(known, key=lambda r: r.jacobian_norm or 0.0)
