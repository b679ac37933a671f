"""What an analysis will cost, known from the declared sizes alone, so that large work is refused before allocation.

A caller describes the request as a :class:`Declared`: its layers' ``LayerCost`` (``dense_layer``,
``conv2d_layer``, ``recurrent_layers``, ``init_layers``), the probes, ``rtol``, the spectrum asked for and the mean
field solves; ``estimate`` gives the parameters, the work and the size of the answer as one ``WorkEstimate``.

The work is counted in *flops*: the floating-point operations of a matrix-matrix product (BLAS gemm), the fastest
work there is. Every other kind of work — a matrix-vector product, which waits on memory; LAPACK's eigen, SVD, QR
and Cholesky solvers; drawing a random number; one numpy call's fixed cost — is counted as the gemm flops the same
time would buy, by the named weights below (measured in docs/performance.md). So an estimate is proportional to
the time the analysis takes on one core, ``SECONDS_PER_FLOP`` seconds per flop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import groupby, pairwise

from service.lanczos import BATCH_MIN, CHECK_EVERY
from service.spectral import DENSE_MAX_DIM, LANCZOS_MIN_RTOL

SECONDS_PER_FLOP = 3.2e-11
"""One core's seconds per flop of this module's estimates (one gemm flop); bench/estimate.py measures it."""
READ = 10.0
"""Reading one matrix entry from memory costs as much as this many gemm flops: a product of r rows with an m × n
matrix costs (2·r + READ)·m·n, so a matrix-vector product (r = 1) costs six times a gemm's flops."""
EIGH = 3.2
"""numpy's eigvalsh of a k × k symmetric matrix (LAPACK syevd, all eigenvalues): EIGH·k³ flops."""
CHOLESKY = 1.0
"""numpy's cholesky of a k × k matrix: CHOLESKY·k³ flops (gram_max's test that a probe cannot hold the max)."""
SVD = 4.6
"""LAPACK gesdd, values only, of an M × k matrix (M ≥ k): SVD·(4·M·k² − 4k³/3) flops (its own flop count,
weighted: bidiagonalisation is half matrix-vector work)."""
QR = 3.0
"""numpy's qr of an M × k matrix (geqrf, then orgqr forms Q): QR·(4·M·k² − 4k³/3) flops."""
NORMAL = 500.0
"""One standard normal drawn by numpy's Generator (ziggurat): as many flops."""
UNIFORM = 180.0
"""One uniform draw."""
ELEMENT = 50.0
"""One entry of an elementwise numpy operation (a product, a scaling, an activation): as many flops."""
DECODE_LIST = 1000.0
"""One weight given as a JSON number in nested lists, turned into float64 (a Python float each)."""
DECODE_BYTES = 50.0
"""One weight given as bytes (``b64`` or a .safetensors file), widened and checked finite."""
CALL = 2.0e5
"""One numpy or LAPACK call's fixed cost in a loop over probes (a few microseconds)."""
LAYER_OVERHEAD = 1e7
"""Each layer's fixed cost — a few dozen numpy and LAPACK calls — so that 100 000 layers of 1 × 1 are refused
like any other work that would take too long."""
PULL_PASSES = 6.0
"""The elementwise passes over each entry of the backward products B·n_L × n_j pulled through a layer
(service.analysis._pull: the derivatives' scaling, the rows' exponents and rescaling, which probes are alive)."""
TRIAL_LAYER = 2.5e6
"""Each layer's fixed cost in one trial of the suggested gain (its forward and backward numpy calls, about 70 µs)."""
PROBE_SPECTRUM = 2e6
"""Each probe's spectrum summarised in Python (its rank, moments and quantiles)."""
MEANFIELD_LAYER = 5e7
"""The mean-field solve of one layer's own statistics — q*, χ₁ and the critical σ_w, a few hundred Gaussian
expectations by quadrature and root finding. Explicit layers each have their own σ_w and σ_b; an init recipe's
or recurrent network's layers share theirs, solved once; linear, ReLU and leaky ReLU layers are closed forms: those
are not counted."""
HOMOGENEOUS = frozenset({"linear", "relu", "leaky_relu"})
"""Activations whose mean field is a closed form (positively homogeneous: E[h'(√q·z)²] does not depend on q)."""
LANCZOS_ROUNDS = 0.6
"""Lanczos takes about LANCZOS_ROUNDS·(2 + log10(1/rtol))·k^(1/3) products to converge on a k × k Gram operator
(a random matrix's top eigenvalues are k^(−2/3) apart), and at most k/3 (ARPACK's restarts)."""
OPERATOR_STEPS = 1.27
"""An operator's (a convolution's, a residual layer's) plain Lanczos takes OPERATOR_STEPS·(0.5 + log10(1/rtol))·k^0.2
steps on a Gram operator of size k (:func:`operator_steps`; at most k, a full basis). Fitted to 136 zero- and
circular-padded convolutions' per-probe Jacobians and kernels (1–16 channels, 3×3 and 5×5 kernels, 5×5 to 24×24
inputs, rtol 1e-2 to 1e-12, tanh, ReLU and identity derivatives): the median, with 0.88–1.82 from the 5th to the
95th percentile and 0.65–2.7 in all (docs/performance.md); a convolution's spectrum is not a random matrix's, and
LANCZOS_ROUNDS' form (2 + log10(1/rtol))·k^(1/3) spreads twice as wide on them. 1×1 kernels are solved pixel by
pixel (service.pixels), not by Lanczos."""
RITZ = 8.0 * CALL
"""One run's convergence check (its tridiagonal's top Ritz pair, scipy's eigh_tridiagonal), every CHECK_EVERY
steps."""
SUMMARY_VALUES = 7
"""The singular values a "summary" spectrum reports (service.spectra.QUANTILE_LEVELS)."""
RESPONSE_BASE = 2500
"""Bytes of an answer's summary, methods and meta."""
LAYER_BYTES = 750
"""Bytes of one layer's report (its norms, bounds, flags and mean field)."""
SPECTRUM_BYTES = 300
"""Bytes of one spectrum's fixed fields (a weight's or a probe's), besides its values."""
VALUE_BYTES = 24
"""Bytes of one singular value in a spectrum."""
CONV_ENTRY = 80.0
"""A convolution's output entry costs at least this many flops for each kernel offset (its products with few
channels run at the speed of memory, not of gemm)."""
BATCHED_EIGH = 1500.0
"""numpy's eigvalsh over a stack of small k × k matrices (service.pixels.small_norms): BATCHED_EIGH·k² +
BATCHED_MATRIX flops each (measured for k = 2–16: 0.4 µs at k = 2, 12 µs at k = 16)."""
BATCHED_MATRIX = 9e3
"""Each small matrix's share of a batched numpy call's fixed cost."""
BATCHED_PRODUCT = 7.0
"""A batched product of small matrices, (m × k)·(k × n) each: 500 + BATCHED_PRODUCT·m·k·n flops a matrix."""
DENSE_OPERATOR_MAX = 1 << 20
"""service.jacobian forms a convolution or residual layer with at most this many entries (its constant)."""


def flops_of(count: int) -> float:
    """A count of operations (or a size) as a float; beyond float64's range, infinite: a declared size may be any
    integer, and the work of an impossibly large network is refused like any other too large."""
    try:
        return float(count)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class LayerCost:
    """What a layer's work depends on: its map's shape (m, n), the flops of one product A·x (2·m·n for a
    matrix, 2·c_out·c_in·kh·kw·H·W for a convolution, plus a residual projection's), whether its weight is
    shared with an earlier layer (a recurrent step: its norm is taken once), and ``count``: this many such layers
    in a row."""

    m: int
    n: int
    apply: float
    shared: bool = False
    svd: float | None = None
    """The flops of all the map's singular values, where they are not its matrix's SVD: a circular convolution's,
    from the DFT of its kernel and H·W small SVDs (its norm comes from them too)."""
    parameters: int = 0
    """The layer's weights, kernels, biases and projections (none for a step that shares an earlier one's)."""
    matrix: bool = True
    """A plain matrix (no convolution, no skip path): its per-probe Jacobians are diag(d_b)·W."""
    draw: float = 0.0
    """The flops of drawing or decoding its parameters."""
    count: int = 1
    row: float | None = None
    """The flops one row of a product costs, where it is not ``apply`` (a convolution's, see conv2d_layer)."""
    fixed: float | None = None
    """The flops one product costs whatever its rows, where it is not reading a matrix once (READ/2·apply)."""
    identity: bool = False
    """A plain layer (no skip path) with the identity activation: every probe's Jacobian is the map itself, whose
    norm is the weight's, taken once (service.network.Layer.jacobian_is_weight)."""
    pixels: int = 0
    """P = H·W of a 1×1 convolution, whose norms come from its c_out × c_in blocks, one a pixel (service.pixels);
    0 for any other map."""

    def products(self, rows: float) -> float:
        """``rows`` products with the map, in one call."""
        row = self.apply if self.row is None else self.row
        fixed = READ / 2.0 * self.apply if self.fixed is None else self.fixed
        return row * rows + fixed


@lru_cache(maxsize=1024)
def dense_layer(
    m: int,
    n: int,
    *,
    projection: bool = False,
    parameters: int | None = None,
    decode: float = DECODE_LIST,
    identity: bool = False,
) -> LayerCost:
    """A dense m × n layer: a = 2·m·n (twice that with an m × n residual projection); its parameters m·n weights,
    as many again for a projection, and m biases, unless ``parameters`` gives their count; each decoded at
    ``decode`` flops; ``identity``: plain, with the identity activation (LayerCost.identity). (Cached: the layers
    of one shape are one object, made once.)"""
    count = m * n * (1 + projection) + m if parameters is None else parameters
    apply = 2.0 * flops_of(m) * flops_of(n) * (1 + projection)
    draw = decode * flops_of(count)
    return LayerCost(m, n, apply, parameters=count, matrix=not projection, draw=draw, identity=identity)


def conv2d_layer(
    c_out: int,
    c_in: int,
    kernel: tuple[int, int],
    size: tuple[int, int],
    *,
    circular: bool,
    projection: bool,
    decode: float = DECODE_LIST,
    identity: bool = False,
) -> LayerCost:
    """A convolution of a [c_out, c_in, kh, kw] kernel over H × W inputs: the map is (c_out·H·W) × (c_in·H·W),
    a = 2·c_out·c_in·kh·kw·H·W (+ 2·c_out·c_in·H·W for a 1 × 1 projection). With circular padding its singular
    values come from the kernel's DFT, c_out·c_in FFTs of H·W points (10·c_out·c_in·H·W·log2(H·W + 1) flops), and
    H·W SVDs of c_out × c_in. It is applied one kernel offset at a time, a product of c_out × c_in with c_in × H·W
    per row: each output entry costs at least CONV_ENTRY flops an offset, and each offset a call (CALL).
    ``identity``: plain, with the identity activation (LayerCost.identity)."""
    pixels = size[0] * size[1]
    apply = 2.0 * flops_of(c_out * c_in * pixels * (kernel[0] * kernel[1] + projection))
    parameters = c_out * c_in * (kernel[0] * kernel[1] + projection) + c_out
    svd = None
    if circular:
        fft = 10.0 * flops_of(c_out * c_in) * math.log2(pixels + 1)
        svd = flops_of(pixels) * (fft + svd_flops(c_out, c_in) + CALL)
    draw = decode * flops_of(parameters)
    offsets = kernel[0] * kernel[1] + projection
    row = flops_of(pixels) * (offsets * max(2.0 * c_out * c_in, CONV_ENTRY * c_out) + ELEMENT * (c_in + c_out))
    fixed = (offsets + 2) * CALL
    return LayerCost(
        c_out * pixels,
        c_in * pixels,
        apply,
        svd=svd,
        parameters=parameters,
        matrix=False,
        draw=draw,
        row=row,
        fixed=fixed,
        identity=identity,
        pixels=pixels if kernel == (1, 1) else 0,
    )


def recurrent_layers(
    n: int, n_in: int, steps: int, scheme: str | None = None, biases: bool = False, identity: bool = False
) -> list[LayerCost]:
    """T steps of h_t = φ(W h_{t−1} + U x_t + b) with W n × n and U n × n_in: each an n × n map (a = 2·n²), the
    later steps sharing the first's weight; the parameters n² + n·n_in + n; drawn by ``scheme`` (None: decoded);
    ``identity``: φ is the identity (LayerCost.identity)."""
    apply = 2.0 * flops_of(n * n)
    if scheme is None:
        draw = DECODE_LIST * flops_of(n * n + n * n_in + n)
    else:
        draw = draw_flops(scheme, n, n) + draw_flops(scheme, n, n_in) + (NORMAL * flops_of(n) if biases else 0.0)
    first = LayerCost(n, n, apply, parameters=n * n + n * n_in + n, draw=draw, identity=identity)
    rest = [LayerCost(n, n, apply, shared=True, count=steps - 1, identity=identity)] if steps > 1 else []
    return [first, *rest]


def init_layers(
    widths: Sequence[int],
    biases: bool,
    scheme: str = "gaussian",
    identity: bool = False,
    output_identity: bool | None = None,
) -> list[LayerCost]:
    """The dense layers of an init recipe of ``widths`` [n_0, …, n_L], with n_j biases each when ``biases``, drawn
    by ``scheme``, with the identity activation where ``identity`` (the last layer: ``output_identity``, when
    given); a run of equal layers is one LayerCost with its count, and equal runs are one object."""
    made: dict[tuple[int, int, int, bool], LayerCost] = {}
    last = identity if output_identity is None else output_identity
    shapes = list(pairwise(widths))
    flagged = [(n, m, last if j == len(shapes) - 1 else identity) for j, (n, m) in enumerate(shapes)]
    layers = []
    for (n, m, linear), run in groupby(flagged):
        count = sum(1 for _ in run)
        layer = made.get((n, m, count, linear))
        if layer is None:
            draw = draw_flops(scheme, m, n) + (NORMAL * flops_of(m) if biases else 0.0)
            parameters = m * n + (m if biases else 0)
            apply = 2.0 * flops_of(m) * flops_of(n)
            cost = LayerCost(m, n, apply, parameters=parameters, draw=draw, count=count, identity=linear)
            layer = made[n, m, count, linear] = cost
        layers.append(layer)
    return layers


def draw_flops(scheme: str, m: int, n: int) -> float:
    """Drawing one m × n weight: NORMAL (or UNIFORM) flops an entry; an orthogonal one is the QR of a normal
    matrix, QR·(4·M·k² − 4k³/3) more with M = max(m, n), k = min(m, n), and its signs fixed."""
    entries = flops_of(m) * flops_of(n)
    if scheme == "orthogonal":
        return (NORMAL + ELEMENT) * entries + QR * _householder(m, n)
    return (UNIFORM if scheme.endswith("uniform") else NORMAL) * entries


def _householder(m: int, n: int) -> float:
    """4·M·k² − 4k³/3, M = max(m, n), k = min(m, n): the flops of a QR's factorisation and its Q (or of an SVD's
    bidiagonalisation)."""
    big, small = flops_of(max(m, n)), flops_of(min(m, n))
    return 4.0 * big * small * small - 4.0 * small**3 / 3.0


def svd_flops(m: int, n: int) -> float:
    """All singular values of an m × n matrix (gesdd, values only)."""
    return SVD * _householder(m, n)


@dataclass(frozen=True)
class Declared:
    """An analysis request's sizes: its layers, its probes (rows of length ``input_width``), ``rtol``,
    the spectrum asked for, its mean-field solves, and whether its depth is a free choice of the caller (an init
    recipe's widths, a recurrent network's steps) that a refusal may suggest to lower."""

    layers: tuple[LayerCost, ...]
    probes: int
    rtol: float = 1e-6
    spectrum: str = "none"
    meanfield: int = 0
    input_width: int | None = None
    scheme: str | None = None
    """The init scheme that draws the weights (None for explicit weights)."""
    resizable: bool = False
    widths: tuple[int, ...] | None = None
    """An init recipe's widths, and whether it draws biases: a refusal may suggest narrower layers."""
    biases: bool = False

    @property
    def depth(self) -> int:
        return sum(layer.count for layer in self.layers)


@dataclass(frozen=True)
class WorkEstimate:
    """An analysis's size before it is run: the widths [n_0, …, n_L], parameters, probes and ``spectrum`` asked
    for, the estimated flops with that spectrum (``flops``) and without any, and the answer's bytes."""

    widths: tuple[int, ...]
    parameters: int
    probes: int
    spectrum: str
    flops: float
    flops_without_spectrum: float
    response_bytes: int
    depth: int
    trial_flops: float = 0.0
    """One trial of the suggested gain's search (:func:`trial_flops`); the trials are not in ``flops``: they take
    what the limit leaves (:meth:`trials_within`)."""

    @property
    def seconds(self) -> float:
        """The estimate in seconds of one core (SECONDS_PER_FLOP)."""
        return self.flops * SECONDS_PER_FLOP

    def trials_within(self, limit: float, most: int) -> int:
        """How many trials (at most ``most``) fit in ``limit`` flops besides the analysis itself."""
        room = limit - self.flops
        if room <= 0 or not math.isfinite(room) or not math.isfinite(self.trial_flops):
            return 0
        return most if self.trial_flops <= 0 else min(most, int(room // self.trial_flops))


def estimate(declared: Declared) -> WorkEstimate:
    """The work of an analysis (see :func:`estimate_flops`) and the size of its answer (:func:`response_bytes`).
    A size beyond float64's range (or a zero-sized map of such a size) makes the flops infinite."""
    layers = declared.layers
    without = estimate_flops(replace(declared, spectrum="none"))
    flops = without if declared.spectrum == "none" else estimate_flops(declared)
    widths = (layers[0].n, *(layer.m for layer in layers for _ in range(layer.count)))
    parameters = sum(layer.parameters * layer.count for layer in layers)
    return WorkEstimate(
        widths,
        parameters,
        declared.probes,
        declared.spectrum,
        flops,
        without,
        response_bytes(declared),
        len(widths) - 1,
        trial_flops(declared),
    )


def minimum(depth: int) -> tuple[float, int]:
    """The least flops and answer bytes of any network of ``depth`` layers: checked before the layers are read."""
    return flops_of(depth) * LAYER_OVERHEAD, RESPONSE_BASE + depth * LAYER_BYTES


def response_bytes(declared: Declared) -> int:
    """The answer's bytes: RESPONSE_BASE, LAYER_BYTES a layer, and with a spectrum each layer's weight spectrum and
    each probe's Jacobian spectrum, SPECTRUM_BYTES + VALUE_BYTES a value (SUMMARY_VALUES of them in "summary",
    min(m, n) — min(n_0, n_L) for a probe — in "full"). Python ints: never an overflow."""
    depth = declared.depth
    total = RESPONSE_BASE + depth * LAYER_BYTES
    if declared.spectrum == "none":
        return total
    full = declared.spectrum == "full"
    for layer in declared.layers:
        values = min(layer.m, layer.n) if full else SUMMARY_VALUES
        total += layer.count * (SPECTRUM_BYTES + VALUE_BYTES * values)
    n_in, n_out = declared.layers[0].n, declared.layers[-1].m
    values = min(n_in, n_out) if full else SUMMARY_VALUES
    return total + declared.probes * (SPECTRUM_BYTES + VALUE_BYTES * values)


def estimate_flops(declared: Declared) -> float:
    """The flops of the whole analysis: the sum, over the layers, of

    - drawing or decoding its parameters (``LayerCost.draw``) and LAYER_OVERHEAD;
    - the products with B probes: forward, adjoint, weight gradient and the backward pull of n_L rows per probe,
      (3 + n_L)·B rows (:func:`products`);
    - the weight's norm (unless shared) and each probe's Jacobian norm max_b ‖S + diag(d_b)·A‖₂, densely where
      ``spectral.uses_dense`` says so (a Gram matrix and its eigenvalues, :func:`_dense_norms`), else by Lanczos
      (:func:`_lanczos`) — but for a plain layer with the identity activation (``LayerCost.identity``), whose
      J_b = A has the weight's norm, taken once;
    - the norms of the backward products ∂a_L/∂a_j, B matrices of n_L × n_j (each read by each product), for
      every layer but the last (:func:`_backward_norm`);

    and the probes drawn, MEANFIELD_LAYER per mean-field solve, and the spectrum (:func:`spectrum_flops`).
    """
    layers, probes, rtol = declared.layers, declared.probes, declared.rtol
    n_out = layers[-1].m
    total = NORMAL * flops_of(probes) * (flops_of(declared.input_width or layers[0].n) + flops_of(n_out))
    widths = (layers[0].n, *(layer.m for layer in layers for _ in range(layer.count)))
    if pixel_uniform(layers):
        for layer in layers:
            total += (layer.draw + _layer_flops(layer, probes, 0, rtol)) * flops_of(layer.count)
        total += pixel_backward(layers, probes)
    elif backward_by_chains(widths, probes, rtol):
        for layer in layers:
            total += (layer.draw + _layer_flops(layer, probes, 0, rtol)) * flops_of(layer.count)
        total += _chain_backward(layers, probes, rtol)
    else:
        total += _accumulated_backward(layers, probes, n_out, rtol)
    total += MEANFIELD_LAYER * flops_of(declared.meanfield)
    if declared.spectrum != "none":
        total += spectrum_flops(declared)
    return math.inf if math.isnan(total) else total


CHAIN_MAX_DEPTH = 1000
"""Deeper networks always accumulate the backward products (their chains would cost depth² products)."""


def _accumulated_backward(layers: Sequence[LayerCost], probes: int, n_out: int, rtol: float) -> float:
    """Every layer's work, its draw, and the backward pull of n_L rows per probe with its norms (the accumulated
    products P_j, service.analysis._backward_norms)."""
    total = 0.0
    memo: dict[int, float] = {}  # by the layer object: equal runs of a request are one object (api.sizes)
    for layer in layers:
        run = memo.get(id(layer))
        if run is None:
            layer_flops = _layer_flops(layer, probes, n_out, rtol) + _backward_norm(layer, probes, n_out, rtol)
            run = memo[id(layer)] = (layer.draw + layer_flops) * flops_of(layer.count)
        total += run
    # the last layer's backward norm is its Jacobian's, known already; its backward pull is none in a network of
    # one layer, else for a matrix its rows scaled, B·m·n entries, not B·n_L products (a convolution's is B·n_L
    # rows through its adjoint, as counted)
    last, b = layers[-1], flops_of(probes)
    total -= _backward_norm(last, probes, n_out, rtol)
    pull = b * flops_of(n_out) * (last.row or last.apply)
    if sum(layer.count for layer in layers) == 1:
        return total - pull - ELEMENT * PULL_PASSES * b * flops_of(n_out) * flops_of(last.n)
    if last.row is None:
        total += ELEMENT * b * flops_of(last.m) * flops_of(last.n) - pull
    return total


def trial_flops(declared: Declared) -> float:
    """One trial of service.advice's search (service.analysis.trial_growth): each layer's forward product with B
    rows, its activation and derivative, and the backward pull of n_L rows a probe, then the input's backward norm
    over B matrices of n_L × n_0, with PULL_PASSES elementwise passes over each pulled entry; TRIAL_LAYER a layer for
    its numpy calls."""
    layers, probes = declared.layers, declared.probes
    n_out, b = layers[-1].m, flops_of(probes)
    total = _backward_norm(layers[0], probes, n_out, declared.rtol)
    memo: dict[int, float] = {}
    for layer in layers:
        run = memo.get(id(layer))
        if run is None:
            rows = layer.products(b) + layer.products(b * flops_of(n_out)) + ELEMENT * 3.0 * b * flops_of(layer.m)
            rows += ELEMENT * PULL_PASSES * b * flops_of(n_out) * flops_of(layer.n)
            run = memo[id(layer)] = (rows + TRIAL_LAYER) * flops_of(layer.count)
        total += run
    return math.inf if math.isnan(total) else total


def products(apply: float, rows: float) -> float:
    """``rows`` products with a map of ``apply`` flops a row: (2·r + READ)·m·n for a matrix."""
    return apply * (rows + READ / 2.0)


def uses_dense(k: int, rtol: float) -> bool:
    """service.spectral.uses_dense by the smaller side k."""
    return k <= DENSE_MAX_DIM or rtol < LANCZOS_MIN_RTOL


def _layer_flops(layer: LayerCost, probes: int, n_out: int, rtol: float) -> float:
    """One layer's work without its draw, backward norm and spectrum (see :func:`estimate_flops`)."""
    b = flops_of(probes)
    k = min(layer.m, layer.n)
    total = LAYER_OVERHEAD + layer.products((3.0 + flops_of(n_out)) * b) + ELEMENT * 3.0 * b * flops_of(layer.m)
    total += ELEMENT * PULL_PASSES * b * flops_of(n_out) * flops_of(layer.n)
    if not layer.shared:
        total += _weight_norm(layer, k, rtol)
    return total if layer.identity else total + _jacobian_norms(layer, k, probes, rtol)


def _backward_norm(layer: LayerCost, probes: int, n_out: int, rtol: float) -> float:
    """max_b ‖∂a_L/∂a_{j−1}‖₂ over B matrices of n_L × n (service.analysis._log10_max): densely, or by Lanczos on the
    stack, which reads each matrix in each product."""
    backward = min(n_out, layer.n)
    stack = 2.0 * flops_of(n_out) * flops_of(layer.n)
    if uses_dense(backward, rtol):
        b = flops_of(probes)
        return b * (stack * backward + ELEMENT * stack) + _gram_max(probes, backward)
    return _lanczos_many(lambda rows: rows * products(stack, 1.0), backward, probes, rtol)


def backward_by_chains(widths: Sequence[int], probes: int, rtol: float) -> bool:
    """Whether the true backward norms come from Lanczos on the chains P_j = J_L ⋯ J_{j+1} (service.backward)
    rather than from the products P_j accumulated from the output side (service.analysis): with at least BATCH_MIN
    probes, every P_j too large for the dense solver, and the chains' Gram products, s_j·2·Σ_{i>j} (2B + READ)·m_i·n_i
    (s_j = lanczos_products(min(n_L, n_j), rtol)), fewer flops than the accumulated products' 2·B·n_L·m_i·n_i a
    layer with their Lanczos, s_j·2·B·(2 + READ)·n_L·n_j. Sizes only (``widths`` [n_0, …, n_L]), so that the
    analysis and this estimate take the same path; never beyond CHAIN_MAX_DEPTH layers."""
    depth, n_out, b = len(widths) - 1, widths[-1], flops_of(probes)
    if (
        not 2 <= depth <= CHAIN_MAX_DEPTH
        or probes < BATCH_MIN
        or any(uses_dense(min(n_out, n), rtol) for n in widths[:-2])
    ):
        return False
    chains = accumulated = suffix = 0.0
    for j in range(depth - 1, -1, -1):
        layer = flops_of(widths[j + 1]) * flops_of(widths[j])
        suffix += layer
        if j == depth - 1:
            continue
        steps = lanczos_products(min(n_out, widths[j]), rtol)
        chains += steps * 2.0 * (2.0 * b + READ) * suffix
        accumulated += 2.0 * b * flops_of(n_out) * layer + steps * 2.0 * b * (2.0 + READ) * n_out * widths[j]
    return chains < accumulated


def _chain_backward(layers: Sequence[LayerCost], probes: int, rtol: float) -> float:
    """The backward norms by chains (backward_by_chains): for each j < L − 1, Lanczos on the B operators
    J_L ⋯ J_{j+1} of min(n_L, n_j), each product one row through each layer (LayerCost.products) and its
    derivative scaling twice, in lockstep (:func:`_chain_lanczos`)."""
    expanded = [layer for layer in layers for _ in range(layer.count)]
    n_out = expanded[-1].m
    row = fixed = 0.0
    total = 0.0
    operator = False
    for j in range(len(expanded) - 1, -1, -1):
        layer = expanded[j]
        row += (layer.row or layer.apply) + 2.0 * ELEMENT * flops_of(layer.m)
        fixed += layer.products(0.0) + CALL
        if j == len(expanded) - 1:
            continue
        operator = operator or not layer.matrix
        total += _chain_lanczos(_affine(row, fixed), min(n_out, layer.n), probes, rtol, operator)
    return total


CHAIN_STEPS = 1.0
"""The chains' lockstep Lanczos is counted at this many times lanczos_products(k, rtol) Gram products (at most
k): a 10-layer, 1024-wide ReLU network's chains converged in about 0.65 times (bench/sizes.py's largest
cases; bench/estimate.py measures the rest). Each run counts its own steps (it leaves the lockstep when it has
converged), so the mean is counted, not the slowest run's."""


def _chain_lanczos(cost: Callable[[float], float], k: int, probes: int, rtol: float, operator: bool) -> float:
    """One chain's B norms by lockstep Lanczos (:func:`_lockstep`) of CHAIN_STEPS·lanczos_products(k) steps (of
    operator_steps(k) where the chain holds an operator, a convolution's or a residual layer's), each product two
    passes through the chain (``cost`` of B rows each)."""
    steps = operator_steps(k, rtol) if operator else CHAIN_STEPS * lanczos_products(k, rtol, restarts=False)
    return _lockstep(cost, k, probes, steps)


def _affine(row: float, fixed: float) -> Callable[[float], float]:
    """The cost of a product as a function of its rows: ``row`` flops a row and ``fixed`` whatever the rows."""
    return lambda rows: row * rows + fixed


def _weight_norm(layer: LayerCost, k: int, rtol: float) -> float:
    """σ_max of the map: from its DFT (circular), densely (a Gram matrix, formed first for an operator), or by
    Lanczos."""
    if layer.svd is not None:
        return layer.svd
    if layer.pixels:
        return CALL + _small_norms(1.0, layer.m // layer.pixels, layer.n // layer.pixels)
    if uses_dense(k, rtol):
        formed = 0.0 if layer.matrix else layer.products(flops_of(k))
        return formed + layer.apply * flops_of(k) + EIGH * flops_of(k) ** 3
    if layer.matrix:
        return _lanczos(layer.products, k, rtol)
    return _lanczos_many(layer.products, k, 1, rtol, operator=True)


def _jacobian_norms(layer: LayerCost, k: int, probes: int, rtol: float) -> float:
    """max_b ‖J_b‖₂ over the probes, by service.jacobian's method for the layer: dense from one shared Gram
    matrix (m ≤ n) or from the stack of formed J_b; else Lanczos, in lockstep from BATCH_MIN probes."""
    b, m, n = flops_of(probes), flops_of(layer.m), flops_of(layer.n)
    if layer.pixels:
        blocks = b * flops_of(layer.pixels)
        c_out, c_in = layer.m // layer.pixels, layer.n // layer.pixels
        return 2.0 * ELEMENT * blocks * c_out * c_in + _small_norms(blocks, c_out, c_in)
    small = layer.matrix or m * n <= DENSE_OPERATOR_MAX
    if uses_dense(k, rtol) and small:
        if layer.matrix and layer.m <= layer.n:
            formed = 2.0 * m * m * n + 3.0 * ELEMENT * b * m * m
        else:
            operator = 0.0 if layer.matrix else layer.products(flops_of(k))
            formed = operator + b * (ELEMENT * m * n + layer.apply * flops_of(k))
        return formed + _gram_max(probes, k)
    return _lanczos_many(layer.products, k, probes, rtol, operator=not layer.matrix)


def _small_norms(count: float, m: int, n: int) -> float:
    """σ_max of ``count`` small m × n matrices at once (service.pixels.small_norms): their scaling, Gram products
    and batched eigensolver."""
    k = flops_of(min(m, n))
    size = flops_of(m) * flops_of(n)
    return count * (2.0 * ELEMENT * size + 500.0 + BATCHED_PRODUCT * size * k + BATCHED_MATRIX + BATCHED_EIGH * k * k)


def pixel_backward(layers: Sequence[LayerCost], probes: int) -> float:
    """The backward norms of 1×1 convolutions over the same P pixels (service.pixels.backward_norms): for each
    j < L − 1 the blocks of J_{j+1} formed and multiplied into the product of B·P blocks of c_L × c_{j+1}, which
    is rescaled and solved (:func:`_small_norms`); None unless every layer is such a convolution with one P."""
    expanded = [layer for layer in layers for _ in range(layer.count)]
    p = expanded[0].pixels
    blocks = flops_of(probes) * flops_of(p)
    c_out = expanded[-1].m // p
    total = 2.0 * ELEMENT * blocks * c_out * (expanded[-1].n // p)
    for layer in expanded[:-1]:
        c_mid, c_in = layer.m // p, layer.n // p
        formed = 2.0 * ELEMENT * blocks * c_mid * c_in + blocks * (500.0 + BATCHED_PRODUCT * c_out * c_mid * c_in)
        total += formed + 2.0 * ELEMENT * blocks * c_out * c_in + _small_norms(blocks, c_out, c_in) + CALL
    return total


def pixel_uniform(layers: Sequence[LayerCost]) -> bool:
    """Whether every layer is a 1×1 convolution over the same P pixels (service.pixels.uniform)."""
    return all(layer.pixels for layer in layers) and len({layer.pixels for layer in layers}) == 1


def _gram_max(probes: int, k: int) -> float:
    """spectral.gram_max on B Gram matrices of k × k: one solved (EIGH·k³), each other tested by its Rayleigh
    quotient and a Cholesky factorisation (CHOLESKY·k³), each a few calls."""
    size = flops_of(k)
    return EIGH * size**3 + flops_of(probes - 1) * (CHOLESKY * size**3 + READ * size**2) + flops_of(probes) * CALL


def lanczos_products(k: int, rtol: float, restarts: bool = True) -> float:
    """The Gram products Lanczos takes on a k × k operator (LANCZOS_ROUNDS): at most k/3 with ARPACK's restarts
    (``restarts``), k for plain Lanczos (a full basis)."""
    rounds: float = LANCZOS_ROUNDS * (2.0 + math.log10(1.0 / rtol)) * flops_of(k) ** (1.0 / 3.0)
    return min(rounds, flops_of(k) / 3.0 + 2.0 if restarts else flops_of(k))


def operator_steps(k: int, rtol: float) -> float:
    """The steps plain Lanczos takes on an operator's Gram of size k (OPERATOR_STEPS), at most k."""
    steps: float = OPERATOR_STEPS * (0.5 + math.log10(1.0 / rtol)) * flops_of(k) ** 0.2
    return min(steps, flops_of(k))


def _lanczos(cost: Callable[[float], float], k: int, rtol: float) -> float:
    """One Lanczos norm by ARPACK (service.spectral.spectral_norm): its Gram products (lanczos_products), each two
    matrix-vector products, and a call each."""
    steps = lanczos_products(k, rtol)
    return steps * (2.0 * cost(1.0) + CALL)


def _lanczos_many(cost: Callable[[float], float], k: int, probes: int, rtol: float, operator: bool = False) -> float:
    """B probes' norms by Lanczos: for matrices one by one (ARPACK, :func:`_lanczos`) below BATCH_MIN, else in
    lockstep (service.lanczos, :func:`_lockstep`) for lanczos_products(k, rtol) steps each; for an operator always
    in lockstep, for operator_steps(k, rtol) steps."""
    if operator:
        return _lockstep(cost, k, probes, operator_steps(k, rtol))
    if probes < BATCH_MIN:
        return flops_of(probes) * _lanczos(cost, k, rtol)
    return _lockstep(cost, k, probes, lanczos_products(k, rtol, restarts=False))


def _lockstep(cost: Callable[[float], float], k: int, probes: int, steps: float) -> float:
    """B runs of plain Lanczos on operators of size k (service.lanczos.top_eigenvalues), ``steps`` each (at most
    k): each step two products of the B rows (``cost`` of B rows), a reorthogonalisation against the earlier
    vectors (4·B·k flops a vector, read twice: READ·B·k·steps² in all), a call a run, and every CHECK_EVERY steps
    each run's Ritz pair (RITZ). A run leaves the lockstep when it converges, so B runs of s steps each cost
    about what this counts whether they converge together or not."""
    b = flops_of(probes)
    steps = min(steps, flops_of(k))
    return steps * (2.0 * cost(b) + b * (CALL + RITZ / CHECK_EVERY)) + READ * b * flops_of(k) * steps * steps


def spectrum_flops(declared: Declared) -> float:
    """The spectra's share of :func:`estimate_flops`: each distinct map's singular values (``LayerCost.svd``, else
    its matrix's SVD, formed first for an operator), the probes' Jacobians formed from their narrower end
    (B·min(n_0, n_L) rows through each map), their SVDs, and PROBE_SPECTRUM a probe."""
    layers, probes = declared.layers, declared.probes
    n_in, n_out = layers[0].n, layers[-1].m
    narrow = flops_of(min(n_in, n_out))
    b = flops_of(probes)
    total = b * (svd_flops(n_in, n_out) + PROBE_SPECTRUM)
    memo: dict[int, float] = {}
    for layer in layers:
        run = memo.get(id(layer))
        if run is None:
            run = memo[id(layer)] = _layer_spectrum(layer, b * narrow)
        total += run
    return total


def _layer_spectrum(layer: LayerCost, rows: float) -> float:
    """One run of layers' share of spectrum_flops: ``rows`` rows through each map, and each distinct map's SVD."""
    total = flops_of(layer.count) * (layer.products(rows) + ELEMENT * rows * flops_of(layer.m))
    if layer.shared:
        return total
    if layer.svd is not None:
        return total + layer.svd
    formed = 0.0 if layer.matrix else products(layer.apply, flops_of(min(layer.m, layer.n)))
    return total + flops_of(layer.count) * (formed + svd_flops(layer.m, layer.n))


def meanfield_solves(activations: Iterable[str]) -> int:
    """How many of the layers with weights of their own (named by their activations) need a mean-field solve: those
    whose activation is not a closed form."""
    return sum(name not in HOMOGENEOUS for name in activations)


@dataclass(frozen=True)
class Change:
    """A change to a request that would make it fit: ``what`` it changes ("spectrum", "rtol", "scheme", "probes",
    "width" or "depth"), to ``value``, and the estimate with it."""

    what: str
    value: str | float | int
    work: WorkEstimate


BISECT_MAX_RUNS = 256
"""changes_that_fit tries a Gaussian init and bisects (for the most probes, the widest layers, the most layers)
only for requests of at most this many runs of layers, whose layers it makes anew for each estimate."""
RTOLS = (1e-12, 1e-9, 1e-6, 1e-4, 1e-2)
"""The rtols a refusal may suggest: the smallest of them above the request's that fits."""


def changes_that_fit(declared: Declared, fits: Callable[[WorkEstimate], bool]) -> list[Change]:
    """Each single change that would make ``declared`` fit, the least change of each kind: a smaller spectrum, the
    smallest larger rtol, a Gaussian init instead of an orthogonal one, the most probes, the widest layers (an init
    recipe's widths capped), the most layers (when the depth is the caller's choice). Each is one estimate (a
    bisection's few for probes, widths and depth); beyond BISECT_MAX_RUNS runs of layers, only the spectrum and
    rtol are tried."""
    found: list[Change] = []
    smaller = {"full": ("summary", "none"), "summary": ("none",)}.get(declared.spectrum, ())
    for spectrum in smaller:
        if _try(found, fits, "spectrum", spectrum, replace(declared, spectrum=spectrum)):
            break
    for rtol in (r for r in RTOLS if r > declared.rtol):
        if _try(found, fits, "rtol", rtol, replace(declared, rtol=rtol)):
            break
    if len(declared.layers) > BISECT_MAX_RUNS:
        return found
    if declared.scheme == "orthogonal":
        gaussian = [replace(layer, draw=_redrawn(layer)) for layer in declared.layers]
        _try(found, fits, "scheme", "gaussian", replace(declared, layers=tuple(gaussian), scheme="gaussian"))
    most = _largest(declared.probes - 1, lambda b: replace(declared, probes=b), fits)
    if most is not None:
        found.append(Change("probes", most[0], most[1]))
    if declared.widths is not None and declared.scheme is not None:
        widest = _largest(max(declared.widths) - 1, lambda w: _capped(declared, w), fits)
        if widest is not None:
            found.append(Change("width", widest[0], widest[1]))
    if declared.resizable:
        deepest = _largest(declared.depth - 1, lambda d: _first_layers(declared, d), fits)
        if deepest is not None:
            found.append(Change("depth", deepest[0], deepest[1]))
    return found


@lru_cache(maxsize=4096)
def _redrawn(layer: LayerCost) -> float:
    """A drawn layer's draw with its weight Gaussian rather than orthogonal."""
    if layer.shared or layer.draw == 0.0:
        return layer.draw
    return layer.draw - draw_flops("orthogonal", layer.m, layer.n) + draw_flops("gaussian", layer.m, layer.n)


def _try(found: list[Change], fits: Callable[[WorkEstimate], bool], what: str, value: str | float, d: Declared) -> bool:
    work = estimate(d)
    if fits(work):
        found.append(Change(what, value, work))
        return True
    return False


def _largest(
    top: int, make: Callable[[int], Declared], fits: Callable[[WorkEstimate], bool]
) -> tuple[int, WorkEstimate] | None:
    """The largest count in [1, top] whose request fits, by bisection (the estimate grows with the count); None if
    not even 1 does."""
    if top < 1:
        return None
    low = estimate(make(1))
    if not fits(low):
        return None
    best, lo, hi = (1, low), 1, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        work = estimate(make(mid))
        if fits(work):
            best, lo = (mid, work), mid
        else:
            hi = mid - 1
    return best


def _capped(declared: Declared, width: int) -> Declared:
    """An init recipe's request with every width above ``width`` lowered to it."""
    assert declared.widths is not None
    assert declared.scheme is not None
    widths = [min(w, width) for w in declared.widths]
    identity, output = declared.layers[0].identity, declared.layers[-1].identity
    layers = init_layers(widths, declared.biases, declared.scheme, identity, output)
    return replace(declared, layers=tuple(layers), widths=None)


def _first_layers(declared: Declared, depth: int) -> Declared:
    """The request with its first ``depth`` layers only."""
    kept: list[LayerCost] = []
    left = depth
    for layer in declared.layers:
        if left <= 0:
            break
        kept.append(replace(layer, count=min(layer.count, left)))
        left -= layer.count
    return replace(declared, layers=tuple(kept))


NODE_CALLS = 12
"""numpy calls of one graph node's linearisation, JVP or VJP (each CALL flops): a graph of many small nodes costs
its Python and numpy overhead."""


GRAM_PASSES = 4.0
"""A Gram product of a graph stretch, a JVP then a VJP, costs this many forward passes of it (a VJP costs about
two: an op's backward forms its parameters' cotangents too, attention's and the recurrent ops')."""


@dataclass(frozen=True)
class NodeCost:
    """One graph node's work for one probe: ``apply`` flops of its forward pass (its JVP costs as much, its VJP
    with the parameters' cotangents twice as much), and its parameter entries."""

    apply: float
    parameters: int


def node_apply_flops(op: str, parameters: int, input_sizes: Sequence[int], output_size: int, rows: int) -> float:
    """A graph node's forward flops for one probe: 2·rows·(parameter entries) for an op whose weights act on
    ``rows`` rows (linear: the rows of its input; conv1d/conv2d: the output positions, each reading c_in/g·k
    entries per output channel; a recurrent op: its steps), attention besides 4·T²·d for the scores and their mix;
    a pool POOL_TAPS entries read per output entry; every op besides ELEMENT flops per entry it reads and writes."""
    entries = ELEMENT * (sum(flops_of(n) for n in input_sizes) + flops_of(output_size))
    if op in ("linear", "rnn", "lstm", "gru", "conv1d", "conv2d"):
        return entries + 2.0 * flops_of(rows) * flops_of(parameters)
    if op == "attention":
        width = flops_of(output_size) / max(1, rows)
        return entries + 2.0 * flops_of(rows) * flops_of(parameters) + 4.0 * flops_of(rows) ** 2 * width
    if op in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"):
        return entries + ELEMENT * POOL_TAPS * flops_of(output_size)
    return entries


POOL_TAPS = 9
"""The entries a pool reads per output entry, counted as for a 3 × 3 window."""


def graph_flops(
    nodes: Sequence[NodeCost], blocks: Sequence[tuple[int, int, int, int]], probes: int, rtol: float
) -> float:
    """The work of a graph's analysis on B probes. ``blocks``: (first node, end node, input size, output size).

    The linearisation (every node once, B probes), the loss gradient's reverse sweep (2×), Lanczos on each block's
    Gram operator (:func:`_stretch_lanczos`), and the backward norms: for an output of n_y ≤ DENSE_MAX_DIM entries
    n_y reverse sweeps and, at each cut of size n_c, the B Gram matrices P_b·P_bᵀ (2·n_y²·n_c flops each) and
    their top eigenvalues; for a wider one Lanczos on each stretch block end → output and on the whole graph."""
    b = flops_of(probes)

    def sweep(first: int, end: int) -> float:
        return sum(node.apply * b + NODE_CALLS * CALL for node in nodes[first:end])

    total = 3.0 * sweep(0, len(nodes))
    if not blocks:
        return total
    n_y = blocks[-1][3]
    total += sum(
        _stretch_lanczos(GRAM_PASSES * sweep(first, end), min(n_in, n_out), b, rtol)
        for first, end, n_in, n_out in blocks
    )
    if n_y <= DENSE_MAX_DIM:
        cuts = [n_in for _, _, n_in, _ in blocks]
        rows = flops_of(n_y)
        total += rows * 2.0 * sweep(0, len(nodes))
        total += sum(b * (2.0 * rows * rows * flops_of(n) + EIGH * rows**3) for n in cuts)
        return total
    stretches = [(end, len(nodes), n) for _, end, _, n in blocks[:-1]] + [(0, len(nodes), blocks[0][2])]
    return total + sum(
        _stretch_lanczos(GRAM_PASSES * sweep(first, end), min(n, n_y), b, rtol) for first, end, n in stretches
    )


def _stretch_lanczos(gram: float, k: int, b: float, rtol: float) -> float:
    """Plain Lanczos in lockstep on B Gram operators of size k, each product costing ``gram`` for all B:
    min(k, lanczos_products(k, rtol)) steps, with the reorthogonalisation and convergence checks of
    :func:`_lockstep`."""
    steps = min(flops_of(k), lanczos_products(k, rtol, restarts=False))
    return steps * gram + READ * b * flops_of(k) * steps * steps + b * (CALL + RITZ / CHECK_EVERY) * steps


SURVEY_CALLS = 12
"""The numpy and LAPACK calls of one matrix's survey (service.survey.matrix_survey), CALL each."""
SURVEY_ROW_BYTES = 450
"""Bytes of one surveyed matrix's row in the answer, besides its name and singular values."""
SKIPPED_ROW_BYTES = 200
"""Bytes of one skipped tensor's row, besides its name."""


@dataclass(frozen=True)
class SurveyEstimate:
    """A weight survey's size before it is run: the matrices' entries, the flops and the answer's bytes."""

    parameters: int
    flops: float
    response_bytes: int

    @property
    def seconds(self) -> float:
        return self.flops * SECONDS_PER_FLOP


def survey_matrix_flops(m: int, n: int, decode: float = DECODE_BYTES) -> float:
    """One m × n matrix surveyed (service.survey.matrix_survey): its entries decoded (``decode`` each), its largest
    |entry| and its exact scaling (2·ELEMENT an entry), all its singular values (gesdd, :func:`svd_flops`, the
    O(m·n·min(m, n)) that dominates), and SURVEY_CALLS calls."""
    entries = flops_of(m) * flops_of(n)
    return (decode + 2.0 * ELEMENT) * entries + svd_flops(m, n) + SURVEY_CALLS * CALL


def survey_estimate(
    matrices: Sequence[tuple[int, int]], skipped: int, name_bytes: int, spectrum: str = "none"
) -> SurveyEstimate:
    """The survey of ``matrices`` [m, n] with ``skipped`` tensors listed and ``name_bytes`` bytes of names in all:
    the flops of each matrix (:func:`survey_matrix_flops`) and the answer, RESPONSE_BASE, SURVEY_ROW_BYTES a matrix,
    SKIPPED_ROW_BYTES a skipped tensor, the names, and VALUE_BYTES a singular value reported (SUMMARY_VALUES a
    matrix in "summary", min(m, n) in "full")."""
    flops = sum((survey_matrix_flops(m, n) for m, n in matrices), 0.0)
    values = 0
    if spectrum != "none":
        values = sum(min(m, n) if spectrum == "full" else SUMMARY_VALUES for m, n in matrices)
    size = RESPONSE_BASE + SURVEY_ROW_BYTES * len(matrices) + SKIPPED_ROW_BYTES * skipped + name_bytes
    return SurveyEstimate(sum(m * n for m, n in matrices), flops, size + VALUE_BYTES * values)
