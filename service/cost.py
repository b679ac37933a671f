"""What an analysis will cost, known from the widths alone, so that large work is refused before allocation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from service.spectral import DENSE_MAX_DIM

LANCZOS_PRODUCTS = 100
"""Gram products budgeted for one Lanczos norm (each 4·m·n flops); most converge in far fewer."""
LAYER_OVERHEAD = 1e6
"""Each layer's fixed cost — a few dozen numpy and LAPACK calls, about 0.2 ms — counted as the flops that time
would buy, so that 100 000 layers of 1 × 1 are refused like any other work that would take too long."""
SVD_FLOPS = 8.0
"""All singular values of an m × n matrix (LAPACK gesdd, values only) cost about SVD_FLOPS·m·n·min(m, n)."""
MEANFIELD_LAYER = 2.5e7
"""The mean-field solve of one layer's own statistics — q*, χ₁ and the critical σ_w, a few hundred Gaussian
expectations by quadrature and root finding, 1–10 ms — counted like LAYER_OVERHEAD as the flops that time would
buy. Explicit layers each have their own σ_w and σ_b; an init recipe's layers share theirs, solved once and cached,
and linear, ReLU and leaky ReLU layers are closed forms: those are not counted."""
HOMOGENEOUS = frozenset({"linear", "relu", "leaky_relu"})
"""Activations whose mean field is a closed form (positively homogeneous: E[h'(√q·z)²] does not depend on q)."""


def parameter_count(widths: Sequence[int], biases: bool) -> int:
    """Σ_j n_j·n_{j−1} (+ n_j for biases)."""
    return sum(n_in * n_out + (n_out if biases else 0) for n_in, n_out in pairwise(widths))


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


def dense_costs(widths: Sequence[int]) -> list[LayerCost]:
    """The layers of dense weights of shapes (n_j, n_{j−1})."""
    return [LayerCost(m, n, 2.0 * float(m) * float(n)) for n, m in pairwise(widths)]


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
    ``meanfield_layers`` (see :func:`meanfield_layers`).
    """
    n_out = widths[-1]
    total = 0.0
    for layer in dense_costs(widths) if layers is None else layers:
        small = min(layer.m, layer.n)
        products = 2.0 * (small if small <= DENSE_MAX_DIM else LANCZOS_PRODUCTS)
        norms = probes + (0 if layer.shared else 1)
        total += layer.apply * (probes * (3.0 + n_out) + norms * products) + LAYER_OVERHEAD
    if spectrum != "none":
        total += spectrum_flops(widths, probes, layers)
    return total + MEANFIELD_LAYER * meanfield_layers


def meanfield_layers(activations: Sequence[str], explicit: bool) -> int:
    """How many layers (named by their activations) need a mean-field solve of their own: for explicit weights
    those whose activation is not a closed form; for an init recipe none (its few distinct layers are cached)."""
    return sum(name not in HOMOGENEOUS for name in activations) if explicit else 0


def spectrum_flops(widths: Sequence[int], probes: int, layers: Sequence[LayerCost] | None = None) -> float:
    """The spectra's share of :func:`estimate_flops`: each distinct map's singular values (``LayerCost.svd``, by
    default its matrix's SVD), min(n_0, n_L) products with each map per probe, and each probe's Jacobian's SVD."""
    n_in, n_out = widths[0], widths[-1]
    narrow = float(min(n_in, n_out))
    total = SVD_FLOPS * probes * float(n_in) * float(n_out) * narrow
    for layer in dense_costs(widths) if layers is None else layers:
        if not layer.shared:
            dense_svd = SVD_FLOPS * float(layer.m) * float(layer.n) * min(layer.m, layer.n)
            total += dense_svd if layer.svd is None else layer.svd
        total += probes * narrow * layer.apply
    return total
