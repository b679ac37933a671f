"""What an analysis will cost, known from the declared sizes alone, so that large work is refused before allocation.

A caller describes the network as its layers' ``LayerCost`` (``dense_layer``, ``conv2d_layer``,
``recurrent_layers``, ``init_layers``) and the activations whose mean field is solved layer by layer; ``estimate``
gives the parameters and floating-point operations of the whole analysis as one ``WorkEstimate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from service.spectral import DENSE_MAX_DIM

LANCZOS_PRODUCTS = 100
"""Gram products budgeted for one Lanczos norm (each 4·m·n flops); most converge in far fewer."""
LAYER_OVERHEAD = 1e6
"""Each layer's fixed cost — a few dozen numpy and LAPACK calls — counted as the flops the same time would buy
(docs/performance.md), so that 100 000 layers of 1 × 1 are refused like any other work that would take too
long."""
SVD_FLOPS = 8.0
"""All singular values of an m × n matrix (LAPACK gesdd, values only) cost about SVD_FLOPS·m·n·min(m, n)."""
MEANFIELD_LAYER = 2.5e7
"""The mean-field solve of one layer's own statistics — q*, χ₁ and the critical σ_w, a few hundred Gaussian
expectations by quadrature and root finding — counted like LAYER_OVERHEAD as the flops the same time would buy.
Explicit layers each have their own σ_w and σ_b; an init recipe's layers share theirs, solved once and cached, and
linear, ReLU and leaky ReLU layers are closed forms: those are not counted."""
HOMOGENEOUS = frozenset({"linear", "relu", "leaky_relu"})
"""Activations whose mean field is a closed form (positively homogeneous: E[h'(√q·z)²] does not depend on q)."""


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
    matrix, 2·c_out·c_in·kh·kw·H·W for a convolution, plus a residual projection's), and whether its weight is
    shared with an earlier layer (a recurrent step: its norm is taken once)."""

    m: int
    n: int
    apply: float
    shared: bool = False
    svd: float | None = None
    """The flops of all the map's singular values, where they are not its matrix's SVD (SVD_FLOPS·m·n·min(m, n)):
    a circular convolution's, from the DFT of its kernel and H·W small SVDs."""
    parameters: int = 0
    """The layer's weights, kernels, biases and projections (none for a step that shares an earlier one's)."""


def dense_costs(widths: Sequence[int]) -> list[LayerCost]:
    """The layers of dense weights of shapes (n_j, n_{j−1}), without parameters."""
    return [LayerCost(m, n, 2.0 * flops_of(m) * flops_of(n)) for n, m in pairwise(widths)]


def dense_layer(m: int, n: int, *, projection: bool = False, parameters: int | None = None) -> LayerCost:
    """A dense m × n layer: a = 2·m·n (twice that with an m × n residual projection); its parameters m·n weights,
    as many again for a projection, and m biases, unless ``parameters`` gives their count."""
    count = m * n * (1 + projection) + m if parameters is None else parameters
    return LayerCost(m, n, 2.0 * flops_of(m) * flops_of(n) * (1 + projection), parameters=count)


def conv2d_layer(
    c_out: int, c_in: int, kernel: tuple[int, int], size: tuple[int, int], *, circular: bool, projection: bool
) -> LayerCost:
    """A convolution of a [c_out, c_in, kh, kw] kernel over H × W inputs: the map is (c_out·H·W) × (c_in·H·W),
    a = 2·c_out·c_in·kh·kw·H·W (+ 2·c_out·c_in·H·W for a 1 × 1 projection). With circular padding its singular
    values come from the kernel's DFT, c_out·c_in FFTs of H·W points (10·c_out·c_in·H·W·log2(H·W + 1) flops), and
    H·W SVDs of c_out × c_in."""
    pixels = size[0] * size[1]
    apply = 2.0 * flops_of(c_out * c_in * pixels * (kernel[0] * kernel[1] + projection))
    parameters = c_out * c_in * (kernel[0] * kernel[1] + projection) + c_out
    svd = None
    if circular:
        fft = 10.0 * flops_of(c_out * c_in) * math.log2(pixels + 1)
        svd = flops_of(pixels) * (fft + SVD_FLOPS * flops_of(c_out * c_in * min(c_out, c_in)))
    return LayerCost(c_out * pixels, c_in * pixels, apply, svd=svd, parameters=parameters)


def recurrent_layers(n: int, n_in: int, steps: int) -> list[LayerCost]:
    """T steps of h_t = φ(W h_{t−1} + U x_t + b) with W n × n and U n × n_in: each an n × n map (a = 2·n²), the
    later steps sharing the first's weight; the parameters n² + n·n_in + n."""
    apply = 2.0 * flops_of(n * n)
    first = LayerCost(n, n, apply, parameters=n * n + n * n_in + n)
    return [first, *(LayerCost(n, n, apply, shared=True) for _ in range(steps - 1))]


def init_layers(widths: Sequence[int], biases: bool) -> list[LayerCost]:
    """The dense layers of an init recipe of ``widths`` [n_0, …, n_L], with n_j biases each when ``biases``."""
    return [dense_layer(m, n, parameters=m * n + (m if biases else 0)) for n, m in pairwise(widths)]


@dataclass(frozen=True)
class WorkEstimate:
    """An analysis's size before it is run: the widths [n_0, …, n_L], parameters, probes and ``spectrum`` asked
    for, and the estimated floating-point operations with that spectrum (``flops``) and without any."""

    widths: tuple[int, ...]
    parameters: int
    probes: int
    spectrum: str
    flops: float
    flops_without_spectrum: float


def estimate(
    layers: Sequence[LayerCost], probes: int, spectrum: str = "none", meanfield_activations: Sequence[str] = ()
) -> WorkEstimate:
    """The work of analysing ``layers`` with ``probes`` probes: :func:`estimate_flops` with each of
    ``meanfield_activations`` (the activations of the layers whose mean field is solved on its own: explicit
    weights', not an init recipe's) that is not a closed form counted as one solve. A size beyond float64's range
    (or a zero-sized map of such a size) makes the flops infinite."""
    widths = (layers[0].n, *(layer.m for layer in layers))
    solves = meanfield_solves(meanfield_activations)
    without = _no_nan(estimate_flops(widths, probes, "none", solves, layers))
    flops = without if spectrum == "none" else _no_nan(estimate_flops(widths, probes, spectrum, solves, layers))
    parameters = sum(layer.parameters for layer in layers)
    return WorkEstimate(widths, parameters, probes, spectrum, flops, without)


def _no_nan(flops: float) -> float:
    """∞·0 (an infinite size times an empty one) counts as infinite work."""
    return math.inf if math.isnan(flops) else flops


def estimate_flops(
    widths: Sequence[int],
    probes: int,
    spectrum: str = "none",
    meanfield_layers: int = 0,
    layers: Sequence[LayerCost] | None = None,
) -> float:
    """Floating-point operations of the whole analysis, within a small factor.

    Per layer with B probes and output width n_L, in units of one product A·x (a flops): forward, adjoint and
    weight gradient 3·B·a; the backward product B·n_L·a; a norm ≈ 2·a·k with k = min(m, n) densely (min(m, n) ≤
    DENSE_MAX_DIM) or k = LANCZOS_PRODUCTS by Lanczos, and there are B + 1 of them (the weight, unless shared, and
    each probe's Jacobian); and LAYER_OVERHEAD. For a dense m × n layer (a = 2·m·n) that is 6·B·m·n + 2·B·n_L·m·n +
    (B + 1)·4·m·n·k. ``layers`` gives the layers' costs (by default dense layers of ``widths``). With a ``spectrum``
    ("summary" or "full"): every distinct map's SVD, SVD_FLOPS·m·n·min(m, n) (or ``LayerCost.svd``); each probe's
    input–output Jacobian, formed from its narrower end, B·min(n_0, n_L) products with each map (2·B·min(n_0, n_L)·
    m·n for a matrix), and its SVD, SVD_FLOPS·B·n_L·n_0·min(n_0, n_L). And MEANFIELD_LAYER for each of
    ``meanfield_layers`` (see :func:`meanfield_solves`).
    """
    n_out = widths[-1]
    total = 0.0
    for layer in dense_costs(widths) if layers is None else layers:
        small = min(layer.m, layer.n)
        products = 2.0 * (small if small <= DENSE_MAX_DIM else LANCZOS_PRODUCTS)
        norms = probes + (0 if layer.shared else 1)
        total += layer.apply * (probes * (3.0 + flops_of(n_out)) + norms * products) + LAYER_OVERHEAD
    if spectrum != "none":
        total += spectrum_flops(widths, probes, layers)
    return total + MEANFIELD_LAYER * meanfield_layers


def meanfield_solves(activations: Sequence[str]) -> int:
    """How many of the layers with weights of their own (named by their activations) need a mean-field solve: those
    whose activation is not a closed form. (An init recipe's few distinct layers are solved once and cached.)"""
    return sum(name not in HOMOGENEOUS for name in activations)


def spectrum_flops(widths: Sequence[int], probes: int, layers: Sequence[LayerCost] | None = None) -> float:
    """The spectra's share of :func:`estimate_flops`: each distinct map's singular values (``LayerCost.svd``, by
    default its matrix's SVD), min(n_0, n_L) products with each map per probe, and each probe's Jacobian's SVD."""
    n_in, n_out = widths[0], widths[-1]
    narrow = flops_of(min(n_in, n_out))
    total = SVD_FLOPS * probes * flops_of(n_in) * flops_of(n_out) * narrow
    for layer in dense_costs(widths) if layers is None else layers:
        if not layer.shared:
            dense_svd = SVD_FLOPS * flops_of(layer.m) * flops_of(layer.n) * flops_of(min(layer.m, layer.n))
            total += dense_svd if layer.svd is None else layer.svd
        total += probes * narrow * layer.apply
    return total
