"""The per-layer report: bounds on the backpropagated gradient next to the true Jacobian and gradient norms.

For z_j = A_j a_{j−1} + b_j, a_j = S_j a_{j−1} + h_j(z_j) (S_j = 0 for a plain layer, I or a projection for a
residual one; A_j a matrix W_j or a convolution), the layer Jacobian is J_j = S_j + diag(h_j'(z_j)) A_j and

    ‖∂a_L/∂a_l‖₂ = ‖J_L ⋯ J_{l+1}‖₂ ≤ ∏_{j=l+1}^{L} (‖S_j‖₂ + σ_j·sup|h_j'|),    σ_j = ‖A_j‖₂,

which is the seed's ∏ σ_j·sup|h_j'| for plain layers. A recurrent network is its T steps unrolled (service.network).
The true products are accumulated once, from the output side, for every probe at a time (unless
service.cost.backward_by_chains finds Lanczos on the chains J_L ⋯ J_{j+1} cheaper, service.backward):
P_L = I, P_{j−1} = P_j·J_j, each rescaled by its largest entry with the scale kept in log10, so that no depth
overflows. The loss gradient ∂ℓ/∂A_j = δ_jᵀ a_{j−1}, with δ_j = ∂ℓ/∂z_j = g_j ⊙ h_j'(z_j) and g_j = ∂ℓ/∂a_j, is
backpropagated the same way: g_{j−1} = g_j S_j + δ_j A_j. Everything is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from service import pixels
from service.advice import TRIALS, Method, Suggestion, scaled_network, suggest
from service.backward import chain_backward_norms
from service.bounds import bound_from_factors
from service.conv import Conv2d
from service.cost import backward_by_chains
from service.errors import InvalidInputError, Location
from service.forward import (
    LOG10_2,
    Exponents,
    Forward,
    Stop,
    adjoint_scaled,
    combine,
    forward,
    normalise,
    row_exponents,
    scale_rows,
    shift_for,
)
from service.jacobian import jacobian_max, probe_chunk
from service.linear import Linear
from service.logscale import normal_or_none, plain
from service.meanfield import NetworkMeanField, network_meanfield
from service.network import Layer, Network
from service.progress import Counter, Progress
from service.recurrent import RecurrentReport, recurrent_report
from service.spectra import Spectra, SpectrumMode, spectra
from service.spectral import SpectralNorm, spectral_max, uses_dense
from service.spread import mapped
from service.verdict import MeanFieldAdvice, Thresholds, VerdictName, advise, classify, critical_gain

Array = NDArray[np.float64]
T = TypeVar("T")
R = TypeVar("R")

SPREAD_MIN_FLOPS = 2.0 * 512 * 512
"""The layers' norms go to the executor only when the median layer's product A·x costs this much (a 512 × 512
matrix). Below, a task is too short to pay for its hand-over and for the Python code its threads take turns
at. (api.work applies the same gate to a graph's blocks and a survey's matrices.)"""


@dataclass(frozen=True)
class Options:
    rtol: float = 1e-6
    thresholds: Thresholds = field(default_factory=Thresholds)
    spectrum: SpectrumMode = "none"
    """"summary" or "full": the weights' and the input–output Jacobian's singular-value spectra (service.spectra)."""
    trials: int = TRIALS
    """The most trial analyses the suggested gain may take (service.advice)."""


@dataclass(frozen=True)
class ConvDetails:
    """A convolution's kernel and its norms from the 2-D DFT (service.conv): ``fft_norm`` is exact for circular
    padding and an estimate for zeros, where ``padded_fft_norm`` bounds the operator's norm from above."""

    kernel_shape: tuple[int, ...]
    input_size: tuple[int, int]
    padding: str
    fft_norm: float
    padded_fft_norm: float | None
    weight_norm_method: str


@dataclass(frozen=True)
class LayerReport:
    index: int
    kind: str
    shape: tuple[int, int]
    activation: str
    weight_norm: float
    derivative_bound: float
    derivative_max: float | None
    skip_norm: float | None
    jacobian_norm_bound: float
    jacobian_norm: float | None
    backward_bound_log10: float | None
    backward_norm_log10: float | None
    gradient_norm_log10: float | None
    flags: tuple[str, ...]
    conv: ConvDetails | None = None

    @property
    def backward_bound(self) -> float | None:
        return _plain(self.backward_bound_log10, "backward_bound_zero" in self.flags)

    @property
    def backward_norm(self) -> float | None:
        return _plain(self.backward_norm_log10, "backward_norm_zero" in self.flags)

    @property
    def gradient_norm(self) -> float | None:
        return _plain(self.gradient_norm_log10, "gradient_zero" in self.flags)


@dataclass(frozen=True)
class Summary:
    depth: int
    input_bound_log10: float | None
    input_norm_log10: float | None
    rate_log10: float | None
    observed_rate_log10: float | None
    verdict: VerdictName
    bound_verdict: VerdictName
    thresholds: Thresholds
    gain: float | None
    suggested_gain: float | None
    """The gain (for explicit weights, the factor on every weight) that makes the true growth stable."""
    suggestion: Method | None
    suggested_growth_log10: float | None
    """The true growth with the suggested gain (None where it was not computed: mean_field, or no suggestion)."""
    bound_gain: float | None
    """The gain at which the bound grows by 1 per layer."""
    advice: str
    flags: tuple[str, ...]

    @property
    def input_bound(self) -> float | None:
        return _plain(self.input_bound_log10, "input_bound_zero" in self.flags)

    @property
    def input_norm(self) -> float | None:
        return _plain(self.input_norm_log10, "input_norm_zero" in self.flags)


def _plain(log10: float | None, zero: bool) -> float | None:
    """The plain value of a log10 field: 0 where the flags say the quantity is exactly zero."""
    return 0.0 if zero else plain(log10)


@dataclass(frozen=True)
class Methods:
    rtol: float
    probes: int
    dense_svd: int
    lanczos: int
    fft: int
    matvecs: int
    output_width: int
    backward_dense: bool
    """Whether every ‖∂a_L/∂a_j‖₂ came from the dense solver (n_L small), rather than from Lanczos to rtol."""


@dataclass(frozen=True)
class Analysis:
    layers: tuple[LayerReport, ...]
    summary: Summary
    methods: Methods
    meanfield: NetworkMeanField
    spectra: Spectra | None = None
    recurrent: RecurrentReport | None = None


def analyse(
    network: Network,
    x: Array,
    y: Array,
    options: Options,
    executor: Executor | None = None,
    progress: Progress | None = None,
    spread_min_flops: float | None = None,
) -> Analysis:
    """The full report for ``network`` on probes ``x`` (rows) with MSE targets ``y``.

    With an ``executor``, the layers' own norms — each weight's, and each layer's per-probe Jacobian norms — are
    computed as its tasks, spread over its threads (the rest runs in the calling thread), when the layers are
    large enough to pay for it (the median layer's flops per product at least ``spread_min_flops``, by default
    SPREAD_MIN_FLOPS); the numbers are the same. Each task is a module-level function of one layer's own
    arguments (its map, or its record and derivative rows), so that an executor of other machines (a Dask
    cluster's) ships that layer alone; a layer whose probes span several chunks of its method is one task per
    chunk (``_layer_jacobians``).

    ``progress(done, total)`` (``service.progress``) counts stages: the norm of each distinct weight (D of them),
    each layer's Jacobian norm (L), then the backward and gradient pass (1): total = D + L + 1.
    """
    layers, rtol = network.layers, options.rtol
    least = SPREAD_MIN_FLOPS if spread_min_flops is None else spread_min_flops
    if executor is not None and np.median([layer.weight.flops_per_apply for layer in layers]) < least:
        executor = None
    counter = Counter(progress, len(network.distinct_maps()) + len(layers) + 1)
    norms = _weight_norms(network, rtol, executor, counter)
    records = [_LayerRecord(layer, norms[id(layer.weight)], _skip_norm(layer, rtol)) for layer in layers]
    _check_norms_finite(network, records)
    bound = bound_from_factors([record.jacobian_norm_bound for record in records], options.thresholds)
    assert bound.suffix_log10 is not None
    for record, log10 in zip(records, bound.suffix_log10, strict=True):
        record.backward_bound_log10 = log10

    fwd = forward(network, x, [record.weight.value for record in records], [record.skip_norm for record in records])
    meanfield = network_meanfield(network, fwd.drive)
    matvecs = sum(norm.matvecs for norm in norms.values())
    valid = records[: len(fwd.derivatives)]  # the layers carried: before an overflow or underflow
    largest = _layer_jacobians(valid, fwd.derivatives[: len(valid)], rtol, executor, counter)
    counter.step(len(layers) - len(valid))  # the layers not carried have no Jacobian to measure
    for record, d, (norm, used) in zip(valid, fwd.derivatives, largest, strict=True):
        record.derivative_max = float(np.abs(d).max())
        record.jacobian_norm = norm
        matvecs += used
    input_norm: float | None = None
    if fwd.stop is None:
        weight_norms = [record.weight.value for record in records]
        last = records[-1].jacobian_norm or 0.0
        if pixels.uniform(layers):
            backward, input_norm, used = pixels.backward_norms(layers, fwd.derivatives, last)
        elif backward_by_chains(network.widths, x.shape[0], rtol):
            bounds = [(record.skip_norm or 0.0, record.weight.value) for record in records]
            backward, input_norm, used = chain_backward_norms(layers, fwd.derivatives, bounds, last, rtol)
        else:
            backward, input_norm, used = _backward_norms(network, fwd, last, rtol, weight_norms)
        matvecs += used
        gradient = _gradient_norms(network, fwd, y, weight_norms)
        for record, backward_log10, gradient_log10 in zip(records, backward, gradient, strict=True):
            record.backward_norm_log10 = backward_log10
            record.gradient_norm_log10 = gradient_log10

    counter.step()
    kind = "recurrent" if network.recurrent is not None else None
    reports = tuple(record.report(j + 1, kind, fwd.stop, fwd.reason) for j, record in enumerate(records))
    suggestion = _suggestion(network, x, input_norm, fwd, records, options, meanfield)
    summary = _summary(network, bound.log10, input_norm, fwd, options.thresholds, meanfield, suggestion)
    widths = network.widths
    methods = Methods(
        rtol=rtol,
        probes=x.shape[0],
        dense_svd=sum(w.method == "dense" for w in norms.values()),
        lanczos=sum(w.method == "lanczos" for w in norms.values()),
        fft=sum(w.method == "fft" for w in norms.values()),
        matvecs=matvecs,
        output_width=widths[-1],
        backward_dense=all(uses_dense((widths[-1], n), rtol) for n in widths[:-1]),
    )
    spectrum = None
    if options.spectrum != "none":
        spectrum = spectra(network, fwd.derivatives, meanfield, options.spectrum, fwd.reason or "overflow")
    recurrent = None if network.recurrent is None else recurrent_report(network, records[0].weight.value, rtol)
    return Analysis(reports, summary, methods, meanfield, spectrum, recurrent)


@dataclass
class _LayerRecord:
    """What analyse finds for one layer: its norms, known before any probe, then what the probes give (None past
    an overflow or underflow, and where a quantity is exactly zero)."""

    layer: Layer
    weight: SpectralNorm
    skip_norm: float | None
    backward_bound_log10: float | None = None
    derivative_max: float | None = None
    jacobian_norm: float | None = None
    backward_norm_log10: float | None = None
    gradient_norm_log10: float | None = None

    @property
    def jacobian_norm_bound(self) -> float:
        """‖S‖₂ + σ·sup|h'|: the layer's factor of the bound (σ·sup|h'| for a plain layer)."""
        return (self.skip_norm or 0.0) + self.weight.value * self.layer.activation.derivative_bound

    def jacobian(self, d: Array, rtol: float, probes: int | None = None) -> tuple[float, int]:
        """max_b ‖J_b‖₂ over the probes' derivative rows ``d``, and the matrix-vector products (service.jacobian;
        ``probes``: all the probes, of which ``d`` may be a part); for a plain layer with the identity activation
        J_b = A, whose norm σ is known: no products."""
        if self.layer.jacobian_is_weight:
            return self.weight.value, 0
        return jacobian_max(self.layer, d, rtol, self.weight.value, self.skip_norm, probes)

    def report(self, index: int, kind: str | None, stop: int | None, reason: Stop | None) -> LayerReport:
        """The layer's report; ``kind`` None: "conv2d" or "dense" by its map."""
        weight = self.layer.weight
        return LayerReport(
            index=index,
            kind=kind or ("conv2d" if isinstance(weight, Conv2d) else "dense"),
            shape=weight.shape,
            activation=self.layer.activation.name,
            weight_norm=self.weight.value,
            derivative_bound=self.layer.activation.derivative_bound,
            derivative_max=self.derivative_max,
            skip_norm=self.skip_norm,
            jacobian_norm_bound=self.jacobian_norm_bound,
            jacobian_norm=self.jacobian_norm,
            backward_bound_log10=self.backward_bound_log10,
            backward_norm_log10=self.backward_norm_log10,
            gradient_norm_log10=self.gradient_norm_log10,
            flags=self._flags(index - 1, stop, reason),
            conv=_conv_details(weight, self.weight),
        )

    def _flags(self, j: int, stop: int | None, reason: Stop | None) -> tuple[str, ...]:
        """Why a field is null or zero. Where the forward pass stopped (``reason``: its z overflowed, or underflowed
        where the activation cannot carry a scale) every true quantity is unknown — the layer is flagged with the
        reason, the earlier ones downstream_<reason>; otherwise null is an exact zero."""
        flags = []
        if self.weight.value == 0.0:
            flags.append("zero_weight")
        if self.derivative_max == 0.0:
            flags.append("dead")
        if self.backward_bound_log10 is None:
            flags.append("backward_bound_zero")
        if stop is not None:
            assert reason is not None
            flags.append(reason if j >= stop else f"downstream_{reason}")
            return tuple(flags)
        if self.backward_norm_log10 is None:
            flags.append("backward_norm_zero")
        if self.gradient_norm_log10 is None:
            flags.append("gradient_zero")
        return tuple(flags)


def _check_norms_finite(network: Network, records: list[_LayerRecord]) -> None:
    """InvalidInputError at the first weight (or projection) whose spectral norm exceeds float64's range (≈ 1.8e308):
    its entries are finite, but σ_j, reported as a number, cannot be. The location is the request's field of it."""
    for j, record in enumerate(records):
        where: Location = ("network", "recurrent") if network.recurrent is not None else ("network", "layers", j)
        name = "kernel" if isinstance(record.layer.weight, Conv2d) else "weight"
        for field_name, norm in ((name, record.weight.value), ("projection", record.skip_norm)):
            if norm is not None and not math.isfinite(norm):
                raise InvalidInputError(
                    (*where, field_name),
                    f"its spectral norm exceeds float64's range (about 1.8e308); scale the {field_name} down",
                )


def _skip_norm(layer: Layer, rtol: float) -> float | None:
    """‖S‖₂ of a residual layer's skip path; None for a plain layer."""
    return None if layer.skip is None else layer.skip.norm(rtol).value


def _weight_norms(
    network: Network, rtol: float, executor: Executor | None, counter: Counter | None = None
) -> dict[int, SpectralNorm]:
    """σ_j = ‖A_j‖₂ of every distinct map, by its id (a recurrent network's steps share theirs)."""
    distinct = network.distinct_maps()
    norms = _map(executor, _weight_norm, (list(distinct.values()), [rtol] * len(distinct)), counter)
    return dict(zip(distinct, norms, strict=True))


def _weight_norm(weight: Linear, rtol: float) -> SpectralNorm:
    """σ = ‖A‖₂ of one map (a task of ``_map``)."""
    return weight.norm(rtol)


def _layer_jacobians(
    records: list[_LayerRecord], derivatives: Sequence[Array], rtol: float, executor: Executor | None, counter: Counter
) -> list[tuple[float, int]]:
    """Each layer's max_b ‖J_b‖₂ over its derivative rows, and the products taken; ``counter`` steps once per
    layer. With an executor, a layer whose probes span several of its chunks (service.jacobian.probe_chunk) is
    split into tasks of one chunk each, whose maxima and products are the whole's (service.jacobian.jacobian_max:
    the method is the one for all the probes)."""
    parts = [
        _probe_parts(record, d, rtol, executor is not None) for record, d in zip(records, derivatives, strict=True)
    ]
    rows = [(record, part, len(d)) for record, d, cut in zip(records, derivatives, parts, strict=True) for part in cut]
    found = mapped(executor, _layer_jacobian, *zip(*rows, strict=True), [rtol] * len(rows)) if rows else iter(())
    largest = []
    for cut in parts:
        values = [next(found) for _ in cut]
        largest.append((max(value for value, _ in values), sum(used for _, used in values)))
        counter.step()
    return largest


def _probe_parts(record: _LayerRecord, d: Array, rtol: float, split: bool) -> list[Array]:
    """The rows ``d`` whole, or (``split``) cut into the chunks the layer's method solves together."""
    if not split or record.layer.jacobian_is_weight:
        return [d]
    chunk = probe_chunk(record.layer, len(d), rtol)
    return [d[start : start + chunk] for start in range(0, len(d), chunk)]


def _layer_jacobian(record: _LayerRecord, d: Array, probes: int, rtol: float) -> tuple[float, int]:
    """One layer's max_b ‖J_b‖₂ over its derivative rows ``d``, a part of ``probes`` rows (a task of
    ``service.spread.mapped``: ``_LayerRecord.jacobian``)."""
    return record.jacobian(d, rtol, probes)


def _map(
    executor: Executor | None,
    function: Callable[..., R],
    arguments: tuple[Iterable[Any], ...],
    counter: Counter | None = None,
) -> list[R]:
    """``function(*row)`` of every row of ``arguments`` (zipped, the shortest bounding), in order: as the executor's
    tasks, or here one after another (``service.spread.mapped``); ``counter`` steps once per value received, in
    this thread."""
    found: list[R] = []
    for value in mapped(executor, function, *arguments):
        found.append(value)
        if counter is not None:
            counter.step()
    return found


def _conv_details(weight: Linear, norm: SpectralNorm) -> ConvDetails | None:
    if not isinstance(weight, Conv2d):
        return None
    padded = weight.padded_fft_norm() if weight.padding == "zeros" else None
    return ConvDetails(tuple(weight.kernel.shape), weight.size, weight.padding, weight.fft_norm(), padded, norm.method)


def _backward_norms(
    network: Network, fwd: Forward, last: float, rtol: float, weight_norms: list[float]
) -> tuple[list[float | None], float | None, int]:
    """log10 max_b ‖∂a_L/∂a_j‖₂ for j = 1..L (per layer) and for j = 0 (the input), and the matvecs taken.

    P (probes × n_L × n_j) holds ∂a_L/∂a_j divided by 2^scale[b], an integer per probe (exact: rescaling by a
    power of two rounds nothing, and no log is summed over the layers); one step is
    P ← P·(S_j + diag(h_j'(z_j))·A_j) (Layer.pull_back), P first shifted by the 2^s that brings ‖A_j‖₂·2^s near 1
    (service.forward.shift_for). The first step's max is ``last``, the last layer's Jacobian norm max_b ‖J_L‖₂.
    """
    layers = network.layers
    depth, probes = len(layers), fwd.derivatives[0].shape[0]
    if depth == 1:  # ∂a_1/∂a_0 is the layer's Jacobian, whose norm is ``last``: nothing to pull
        return [0.0], (math.log10(last) if last > 0 else None), 0
    p: Array | None = None  # the identity, before the last layer
    scale = np.zeros(probes, dtype=np.int64)
    logs: list[float | None] = [None] * depth
    logs[-1] = 0.0
    matvecs = 0
    for j in range(depth - 1, -1, -1):
        p, alive = _pull(layers[j], p, fwd.derivatives[j], scale, weight_norms[j])
        if j == depth - 1:
            value = math.log10(last) if last > 0 else None
        else:
            value, used = _log10_max(p, scale, alive, rtol)
            matvecs += used
        if j == 0:
            return logs, value, matvecs
        logs[j - 1] = value
    raise AssertionError("unreachable: a network has at least one layer")


def _pull(layer: Layer, p: Array | None, d: Array, scale: Exponents, norm: float) -> tuple[Array, Array]:
    """P·J_b for every probe (Layer.pull_back), P first shifted by the 2^s that brings ‖A‖₂·2^s = ``norm``·2^s near
    1 (service.forward.shift_for), then each probe's rows rescaled by a power of two kept in ``scale``; and which
    probes' products are not zero."""
    shift = 0 if p is None or layer.skip is not None else shift_for(norm)
    if shift:
        assert p is not None
        p = np.ldexp(p, shift)
        scale -= shift
    p = layer.pull_back(p, d)
    k = row_exponents(p)
    p = scale_rows(p, -k)
    scale += k
    return p, np.abs(p).max(axis=(1, 2)) > 0


def trial_growth(
    network: Network, x: Array, rtol: float, norms: Sequence[float], skip_norms: Sequence[float | None]
) -> float:
    """log10 max_b ‖∂a_L/∂a_0‖₂ on probes ``x`` alone, given the maps' norms: the forward pass and the backward
    product, no layer's own norms; −inf where it is exactly zero, +inf where the forward pass stops on an overflow
    (−inf on an underflow) (service.advice's trials)."""
    fwd = forward(network, x, norms, skip_norms)
    if fwd.reason is not None:
        return math.inf if fwd.reason == "overflow" else -math.inf
    p: Array | None = None
    scale = np.zeros(x.shape[0], dtype=np.int64)
    for layer, d, norm in zip(reversed(network.layers), reversed(fwd.derivatives), reversed(norms), strict=True):
        p, alive = _pull(layer, p, d, scale, norm)
    assert p is not None
    value, _ = _log10_max(p, scale, alive, rtol)
    return -math.inf if value is None else value


def _log10_max(p: Array, scale: Exponents, alive: Array, rtol: float) -> tuple[float | None, int]:
    """log10 max_b 2^scale[b]·‖P_b‖₂ over the probes ``alive`` (None when every such norm is 0), and the matvecs.

    The weights 2^(scale[b] − max scale) are at most 1, and 1 for a probe whose P_b, largest entry at least 1/2,
    has a norm of at least 1/2: one so small it underflows to 0 could not have held the max."""
    if not alive.any():
        return None, 0
    top = int(scale[alive].max())
    weights = np.zeros(len(scale))
    weights[alive] = scale_rows(np.ones(int(alive.sum())), scale[alive] - top)
    best, used = spectral_max(p, rtol, weights)
    return (top * LOG10_2 + math.log10(best) if best > 0 else None), used


def _gradient_norms(network: Network, fwd: Forward, y: Array, weight_norms: list[float]) -> list[float | None]:
    """log10 ‖∂ℓ/∂A_j‖_F (None where it is 0) for ℓ = mean over probes and outputs of (a_L − y)², by backprop.

    g_L = ∂ℓ/∂a_L = 2(a_L − y)/(count·n_L); δ_j = g_j ⊙ h_j'(z_j); ∂ℓ/∂W_j = δ_jᵀ a_{j−1} (a convolution's kernel
    gradient likewise, service.conv); g_{j−1} = δ_j A_j + g_j S_j. Like the activations (service.forward), g is
    carried as a mantissa row and a power-of-two exponent per probe, a_L − y formed at their common exponent: a
    gradient of 10^−180, or of 10^(10^6), is carried exactly even though its squared entries are no float64.
    """
    layers, acts, exps, ders = network.layers, fwd.mantissas, fwd.exponents, fwd.derivatives
    out = acts[-1]
    diff, ge = combine([(out, exps[-1]), (-y, np.zeros_like(exps[-1]))])
    g, ge = normalise(2.0 * diff / out.size, ge)
    logs: list[float | None] = [None] * len(layers)
    for j in range(len(layers) - 1, -1, -1):
        if not np.abs(g).max() > 0:
            return logs
        delta = g * ders[j]
        logs[j] = _log10_norm(layers[j].weight, delta, ge, acts[j], exps[j])
        if j > 0:
            terms = [adjoint_scaled(layers[j].weight, delta, ge, weight_norms[j])]
            skip = layers[j].skip
            if skip is not None:
                terms.append((skip.adjoint(g), ge))
            g, ge = normalise(*combine(terms))
    return logs


def _log10_norm(weight: Linear, delta: Array, de: Exponents, a: Array, ae: Exponents) -> float | None:
    """log10 ‖∂/∂θ Σ_b 2^{de_b + ae_b}·⟨δ_b, A_θ a_b⟩‖_F (δᵀa for a matrix): each probe's term weighted by
    2^(its exponent − the largest), δ and a normalised first and the gradient before its norm, so that no square
    underflows."""
    delta, de = normalise(delta, de)
    a, ae = normalise(a, ae)
    alive = (np.abs(delta).max(axis=1) > 0) & (np.abs(a).max(axis=1) > 0)
    if not alive.any():
        return None
    total = de + ae
    top = int(total[alive].max())
    weights = np.where(alive, scale_rows(np.ones(len(total)), total - top), 0.0)
    gradient = weight.kernel_gradient(delta * weights[:, None], a)
    peak = float(np.abs(gradient).max())
    if peak == 0.0:
        return None
    norm = float(np.linalg.norm(gradient / peak))
    return top * LOG10_2 + math.log10(peak) + math.log10(norm)


def _suggestion(
    network: Network,
    x: Array,
    norm_log10: float | None,
    fwd: Forward,
    records: Sequence[_LayerRecord],
    options: Options,
    meanfield: NetworkMeanField,
) -> Suggestion:
    """service.advice.suggest on the true growth (−inf for an exact zero or an underflow, +inf past an overflow);
    a trial at factor c has the maps' norms c·σ_j."""
    if fwd.reason is not None:
        growth = math.inf if fwd.reason == "overflow" else -math.inf
    else:
        growth = -math.inf if norm_log10 is None else norm_log10
    gain = 1.0 if network.gain is None else network.gain
    mean_field = None if meanfield.critical_gain is None else meanfield.critical_gain / gain
    norms = [record.weight.value for record in records]
    skips = [record.skip_norm for record in records]

    def trial(factor: float) -> float:
        scaled = [factor * norm for norm in norms]
        return trial_growth(scaled_network(network, factor), x, options.rtol, scaled, skips)

    return suggest(network, growth, options.thresholds, trial, mean_field, options.trials)


def _summary(
    network: Network,
    bound_log10: float | None,
    norm_log10: float | None,
    fwd: Forward,
    t: Thresholds,
    meanfield: NetworkMeanField,
    suggestion: Suggestion,
) -> Summary:
    depth = len(network.layers)
    rate = None if bound_log10 is None else bound_log10 / depth
    observed = None if norm_log10 is None else norm_log10 / depth
    bound_verdict = classify(bound_log10, t)
    # A forward pass that overflows float64 has exploded, one that underflows it (where an activation cannot carry
    # a scale) has vanished, whatever the gradients would have done.
    verdict: VerdictName = classify(norm_log10, t) if fwd.reason is None else _STOP_VERDICT[fwd.reason]
    gain = 1.0 if network.gain is None else network.gain
    # Scaling the weights cannot bring a residual layer's factor ‖S‖ + σ·sup|h'| to 1 from below ‖S‖.
    residual = any(layer.skip is not None for layer in network.layers)
    bound_gain = None if residual else critical_gain(gain, rate)
    suggested = None if suggestion.factor is None else normal_or_none(gain * suggestion.factor)
    flags: list[str] = [] if fwd.reason is None else [fwd.reason]
    if bound_log10 is None:
        flags.append("input_bound_zero")
    if norm_log10 is None and fwd.reason is None:
        flags.append("input_norm_zero")
    return Summary(
        depth=depth,
        input_bound_log10=bound_log10,
        input_norm_log10=norm_log10,
        rate_log10=rate,
        observed_rate_log10=observed,
        verdict=verdict,
        bound_verdict=bound_verdict,
        thresholds=t,
        gain=network.gain,
        suggested_gain=suggested,
        suggestion=suggestion.method if suggested is not None else None,
        suggested_growth_log10=suggestion.growth_log10 if suggested is not None else None,
        bound_gain=bound_gain,
        advice=advise(
            verdict,
            depth,
            norm_log10,
            network.gain,
            _stopped(fwd, "overflow"),
            _advice(meanfield),
            suggestion,
            suggested,
            underflow=_stopped(fwd, "underflow"),
        ),
        flags=tuple(flags),
    )


_STOP_VERDICT: dict[Stop, VerdictName] = {"overflow": "exploding", "underflow": "vanishing"}


def _stopped(fwd: Forward, reason: Stop) -> int | None:
    """The layer (0-based) where the forward pass stopped for ``reason``, else None."""
    return fwd.stop if fwd.reason == reason else None


def _advice(m: NetworkMeanField) -> MeanFieldAdvice | None:
    if not m.known:  # a layer out of range: the advice says nothing of the mean field
        return None
    return MeanFieldAdvice(m.predicted_growth_log10, m.chi1_geometric_mean, m.uniform, m.critical_gain)
