"""max_b ‖∂a_L/∂a_j‖₂ by Lanczos on the chains P_j = J_L ⋯ J_{j+1}, applied and never formed.

service.analysis accumulates P_j = P_{j+1}·J_{j+1} from the output side, n_L rows a probe pulled through every
layer; for a wide output that is B·n_L products per layer. Here each P_j is only ever applied: x ↦ P_j x is the
forward chain of Jacobian-vector products through layers j+1..L, y ↦ P_jᵀ y the chain of vector-Jacobian products
back, and lockstep Lanczos (service.lanczos) runs on the Gram operator of every probe's P_j at once, on its
smaller side. Its cost is about s·2·Σ_{i>j} B products per chain (s Lanczos steps), against the accumulated
products' B·n_L per layer: cheaper when s·L < n_L or so, which service.cost.backward_by_chains decides (and counts).

Each layer's factor is scaled exactly by g_i^b = lanczos.unit_scales(‖S_i‖₂ + σ_i·max|d_i^b|), a power of two
that brings the bound on ‖J_i^b‖₂ near 1, so that no chain overflows; the scales are taken out again in log10.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from service import lanczos
from service.jacobian import jacobian_operator
from service.network import Layer
from service.spectral import operator_norm

Array = NDArray[np.float64]
Operator = Callable[[Array], Array]


def chain_norms_log10(
    layers: Sequence[Layer], derivatives: Sequence[Array], bounds: Sequence[tuple[float, float]], rtol: float
) -> tuple[float | None, int]:
    """log10 max_b ‖J_L^b ⋯ J_1^b‖₂ for the chain ``layers`` (first to last) with the probes' derivative rows
    ``derivatives`` (one array per layer), to ``rtol``; None when it is 0 for every probe. ``bounds`` are the
    layers' (‖S_i‖₂, σ_i), ‖S_i‖₂ = 0 for a plain layer. Also the matrix-vector products taken, one row through one
    layer's Jacobian each."""
    probes = len(derivatives[0])
    logs = np.zeros(probes)
    scales = []
    for (skip, sigma), d in zip(bounds, derivatives, strict=True):
        g = lanczos.unit_scales(skip + sigma * np.abs(d).max(axis=1))
        scales.append(g)
        logs -= np.log10(g)
    n, m = layers[0].weight.shape[1], layers[-1].weight.shape[0]
    k = min(m, n)
    values = np.zeros(probes)
    matvecs = 0
    chunk = lanczos.chunk_for(k) if probes >= lanczos.BATCH_MIN else 1
    for start in range(0, probes, chunk):
        rows = slice(start, start + chunk)
        part, gains = [d[rows] for d in derivatives], [g[rows] for g in scales]
        found = np.full(len(part[0]), np.nan)
        if probes >= lanczos.BATCH_MIN:
            found, used = lanczos.top_singular_values(_gram(layers, part, gains, m, n), k, np.ones(len(found)), rtol)
            matvecs += used * len(layers)
        for b in np.flatnonzero(np.isnan(found)):
            one = slice(b, b + 1)
            apply, adjoint = _chain(layers, [d[one] for d in part], [g[one] for g in gains])
            norm = operator_norm(apply, adjoint, (m, n), rtol)
            found[b] = norm.value
            matvecs += norm.matvecs * len(layers)
        values[rows] = found
    alive = values > 0
    if not alive.any():
        return None, matvecs
    return float((np.log10(values[alive]) + logs[alive]).max()), matvecs


def _gram(
    layers: Sequence[Layer], derivatives: Sequence[Array], scales: Sequence[Array], m: int, n: int
) -> lanczos.Gram:
    """The Gram operators of the probes' chains on their smaller side, PᵀP (n ≤ m) or PPᵀ, for the runs asked."""

    def gram(x: Array, which: lanczos.Index) -> Array:
        d, g = [lanczos.runs(a, which) for a in derivatives], [lanczos.runs(a, which) for a in scales]
        forward, backward = _chain(layers, d, g)
        return backward(forward(x)) if m >= n else forward(backward(x))

    return gram


def _chain(layers: Sequence[Layer], derivatives: Sequence[Array], scales: Sequence[Array]) -> tuple[Operator, Operator]:
    """x ↦ (g_L J_L) ⋯ (g_1 J_1) x and y ↦ (g_1 J_1)ᵀ ⋯ (g_L J_L)ᵀ y on rows, one row a probe."""
    operators = [jacobian_operator(layer, d) for layer, d in zip(layers, derivatives, strict=True)]

    def forward(x: Array) -> Array:
        for (apply, _), g in zip(operators, scales, strict=True):
            x = apply(x) * g[:, None]
        return x

    def backward(y: Array) -> Array:
        for (_, adjoint), g in zip(reversed(operators), reversed(scales), strict=True):
            y = adjoint(y * g[:, None])
        return y

    return forward, backward


def chain_backward_norms(
    layers: Sequence[Layer],
    derivatives: Sequence[Array],
    bounds: Sequence[tuple[float, float]],
    last: float,
    rtol: float,
) -> tuple[list[float | None], float | None, int]:
    """service.analysis._backward_norms by chains: log10 max_b ‖∂a_L/∂a_j‖₂ for j = 1..L (per layer: 0 for the
    last, ``last`` — the last layer's Jacobian norm — for the one before) and for j = 0, and the matvecs."""
    depth = len(layers)
    logs: list[float | None] = [None] * depth
    logs[-1] = 0.0
    top = math.log10(last) if last > 0 else None
    if depth == 1:
        return logs, top, 0
    logs[-2] = top
    matvecs = 0
    for j in range(depth - 2, -1, -1):
        value, used = chain_norms_log10(layers[j:], derivatives[j:], bounds[j:], rtol)
        matvecs += used
        if j == 0:
            return logs, value, matvecs
        logs[j - 1] = value
    raise AssertionError("unreachable: the loop ends at j = 0")
