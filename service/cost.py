"""What an analysis will cost, known from the widths alone, so that large work is refused before allocation."""

from __future__ import annotations

from collections.abc import Sequence
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


def estimate_flops(widths: Sequence[int], probes: int, spectrum: str = "none", meanfield_layers: int = 0) -> float:
    """Floating-point operations of the whole analysis, within a small factor.

    Per layer of shape m × n with B probes and output width n_L: forward and gradient 6·B·m·n; the backward
    product 2·B·n_L·m·n; a norm costs ≈ 4·m·n·min(m, n) densely or 4·m·n·LANCZOS_PRODUCTS by Lanczos,
    and there are B + 1 of them (the weight and each probe's Jacobian); and LAYER_OVERHEAD. With a ``spectrum``
    ("summary" or "full"): every weight's SVD, SVD_FLOPS·m·n·min(m, n); each probe's input–output Jacobian, formed
    from its narrower end, 2·B·min(n_0, n_L)·m·n per layer, and its SVD, SVD_FLOPS·B·n_L·n_0·min(n_0, n_L).
    And MEANFIELD_LAYER for each of ``meanfield_layers`` (see :func:`meanfield_layers`).
    """
    n_out = widths[-1]
    total = 0.0
    for n_in, m in pairwise(widths):
        size = float(n_in) * float(m)
        small = min(n_in, m)
        per_norm = 4.0 * size * (small if small <= DENSE_MAX_DIM else LANCZOS_PRODUCTS)
        total += size * probes * (6.0 + 2.0 * n_out) + (probes + 1) * per_norm + LAYER_OVERHEAD
    if spectrum != "none":
        total += spectrum_flops(widths, probes)
    return total + MEANFIELD_LAYER * meanfield_layers


def meanfield_layers(activations: Sequence[str], explicit: bool) -> int:
    """How many layers (named by their activations) need a mean-field solve of their own: for explicit weights
    those whose activation is not a closed form; for an init recipe none (its few distinct layers are cached)."""
    return sum(name not in HOMOGENEOUS for name in activations) if explicit else 0


def spectrum_flops(widths: Sequence[int], probes: int) -> float:
    """The spectra's share of :func:`estimate_flops`."""
    n_in, n_out = widths[0], widths[-1]
    narrow = float(min(n_in, n_out))
    total = SVD_FLOPS * probes * float(n_in) * float(n_out) * narrow
    for fan_in, fan_out in pairwise(widths):
        size = float(fan_in) * float(fan_out)
        total += SVD_FLOPS * size * min(fan_in, fan_out) + 2.0 * probes * narrow * size
    return total
