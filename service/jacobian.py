"""max_b ‖J_b‖₂ of one layer's per-probe Jacobians J_b = S + diag(d_b)·A, d_b = h'(z_b) the rows of ``d``.

S is absent for a plain layer, the identity or a projection for a residual one; A a matrix W or a convolution.
One method is chosen per layer (:func:`_method`), and every method runs the same loop (:func:`jacobian_max`):
the probes are taken a chunk at a time, each chunk solved together, and any probe of a chunk that Lanczos could
not certify within its basis solved again by itself.

=================  =====================================================  =========================================
method             when                                                   a chunk of probes
=================  =====================================================  =========================================
shared Gram        plain W, dense (``spectral.uses_dense``), m ≤ n        one Gram of W for all: gram_max
pixels             a 1×1 convolution, no skip, an identity or a 1×1      each pixel's block S + diag(d_b[:, p])·K:
                   projection (service.pixels)                            service.pixels.jacobian_max
stack              plain W, dense, m > n; a small convolution or          the matrices S + diag(d_b)·A formed:
                   residual layer (m·n ≤ DENSE_OPERATOR_MAX)              dense_max
matrix Lanczos     plain W, not dense                                     lockstep on diag(d_b)·W (from BATCH_MIN
                                                                          probes), else spectral_norm each
operator Lanczos   any other layer: A and S only ever applied             lockstep on the operators J_b, any
                                                                          number of probes
=================  =====================================================  =========================================

The dense methods solve only the probes that may hold the max (spectral.gram_max), the pixels method every block
at once; the Lanczos ones give every probe's norm, to ``rtol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from service import lanczos, pixels
from service.linear import Dense
from service.network import Layer
from service.spectral import SpectralNorm, dense_max, gram_max, operator_norm, spectral_norm, uses_dense

Array = NDArray[np.float64]
Operator = Callable[[Array], Array]
Chunk = Callable[[Array], tuple[Array, int]]
"""The norms of a chunk of probes (rows of d) — all of them, or for the dense methods only the largest, in an
array of one — NaN where Lanczos did not certify a probe, and the matrix-vector products taken."""

STACK_MAX_ENTRIES = 1 << 24
"""The dense methods form at most this many entries a chunk (128 MiB of float64)."""
DENSE_OPERATOR_MAX = 1 << 20
"""A convolution or residual layer small enough for the dense solver (uses_dense) is formed as a matrix when it
has at most this many entries (8 MiB); larger ones are only ever applied."""


@dataclass(frozen=True)
class _Method:
    """How one layer's probes are solved: ``chunk`` at a time, each chunk by ``together``; a chunk it could not
    certify probe by probe by ``alone`` (None for the dense methods, which certify every chunk)."""

    chunk: int
    together: Chunk | None
    alone: Callable[[Array], SpectralNorm] | None = None


def jacobian_max(
    layer: Layer, d: Array, rtol: float, weight_norm: float, skip_norm: float | None = None, probes: int | None = None
) -> tuple[float, int]:
    """max_b ‖S + diag(d_b)·A‖₂ over the probes b (rows of ``d``) to relative accuracy ``rtol``, and the
    matrix-vector products taken; ``weight_norm`` and ``skip_norm`` are ‖A‖₂ and ‖S‖₂ (None for a plain layer).

    ``probes``: the number of probes the method is chosen for (by default len(d)). A part of all the probes' rows,
    cut at a multiple of :func:`probe_chunk`, given ``probes`` = all of them, is solved chunk by chunk exactly as
    within the whole (each chunk's Lanczos runs start from the same rows of lanczos.start_vectors): its max and its
    products, the whole's max of the parts' and the sum of their products.
    """
    method = _method(layer, len(d) if probes is None else probes, rtol, weight_norm, skip_norm)
    best, matvecs = 0.0, 0
    for start in range(0, len(d), method.chunk):
        rows = d[start : start + method.chunk]
        values, used = (np.full(len(rows), np.nan), 0) if method.together is None else method.together(rows)
        matvecs += used
        for b in np.flatnonzero(np.isnan(values)):
            assert method.alone is not None, "only the Lanczos methods leave a probe uncertified"
            norm = method.alone(rows[b])
            values[b], matvecs = norm.value, matvecs + norm.matvecs
        best = max(best, float(values.max()))
    return best, matvecs


Kind = Literal["gram", "stack", "matrix", "pixels", "formed", "operator"]
"""The method of the table above: shared Gram, stack (of a plain dense W), matrix Lanczos, pixels, stack (of a
convolution or residual layer formed), operator Lanczos."""


def probe_chunk(layer: Layer, probes: int, rtol: float) -> int:
    """How many of ``probes`` probes :func:`jacobian_max` solves together, a chunk at a time."""
    return _chunk(layer, _kind(layer, rtol), probes)


def _kind(layer: Layer, rtol: float) -> Kind:
    """The method for this layer (see the table above)."""
    weight, skip = layer.weight, layer.skip
    dense = uses_dense(weight.shape, rtol)
    if skip is None and isinstance(weight, Dense):
        if dense:
            return "gram" if weight.shape[0] <= weight.shape[1] else "stack"
        return "matrix"
    if pixels.pixelwise(layer):
        return "pixels"
    if dense and weight.shape[0] * weight.shape[1] <= DENSE_OPERATOR_MAX:
        return "formed"
    return "operator"


def _chunk(layer: Layer, kind: Kind, probes: int) -> int:
    """The probes of a chunk: as many as STACK_MAX_ENTRIES allow for the dense methods (the Gram matrix is m × m,
    the stack's matrices m × n), as fit the Lanczos basis (lanczos.chunk_for) for lockstep Lanczos, all of them
    for the pixels and for matrix Lanczos below BATCH_MIN probes (each probe by itself)."""
    m, n = layer.weight.shape
    if kind == "gram":
        return max(1, STACK_MAX_ENTRIES // (m * m))
    if kind in ("stack", "formed"):
        return max(1, STACK_MAX_ENTRIES // (m * n))
    if kind == "pixels" or (kind == "matrix" and probes < lanczos.BATCH_MIN):
        return max(1, probes)
    return lanczos.chunk_for(min(m, n))


def _method(layer: Layer, probes: int, rtol: float, weight_norm: float, skip_norm: float | None) -> _Method:
    """The method for this layer and number of probes (see the table above)."""
    weight, skip = layer.weight, layer.skip
    kind = _kind(layer, rtol)
    chunk = _chunk(layer, kind, probes)
    if isinstance(weight, Dense) and kind in ("gram", "stack", "matrix"):
        w = weight.matrix
        if kind == "gram":
            return _Method(chunk, _shared_gram(w))
        if kind == "stack":
            return _Method(chunk, _stack(w, None))
        lockstep = probes >= lanczos.BATCH_MIN
        return _Method(chunk, _matrix_lockstep(w, rtol) if lockstep else None, _matrix_alone(w, rtol))
    if kind == "pixels":
        return _Method(chunk, lambda rows: (np.array([pixels.jacobian_max(layer, rows)]), 0))
    if kind == "formed":
        return _Method(chunk, _stack(weight.dense(), None if skip is None else skip.dense()))
    return _Method(chunk, _operator_lockstep(layer, rtol, weight_norm, skip_norm), _operator_alone(layer, rtol))


def _shared_gram(w: Array) -> Chunk:
    """Dense, for a wide or square W, from one Gram matrix of f_W·W: the probes' Gram matrices are
    (f_b d_b)(f_b d_b)ᵀ ⊙ (f_W W)(f_W W)ᵀ, with f the exact unit scales of lanczos.unit_scales."""
    f_w = float(lanczos.unit_scales(np.abs(w).max()))
    scaled = w * f_w
    gram = scaled @ scaled.T

    def together(rows: Array) -> tuple[Array, int]:
        f_d = lanczos.unit_scales(np.abs(rows).max(axis=1))
        part = rows * f_d[:, None]
        return np.array([gram_max(part[:, :, None] * gram * part[:, None, :], 1 / (f_w * f_d))]), 0

    return together


def _stack(matrix: Array, identity: Array | None) -> Chunk:
    """Dense, from the stack of I + diag(d_b)·M formed (no I when None)."""

    def together(rows: Array) -> tuple[Array, int]:
        stack = rows[:, :, None] * matrix
        if identity is not None:
            stack += identity
        return np.array([dense_max(stack, np.ones(len(stack)))]), 0

    return together


def _matrix_alone(w: Array, rtol: float) -> Callable[[Array], SpectralNorm]:
    """One probe's ‖diag(d_b)·W‖₂ by spectral_norm."""
    return lambda row: spectral_norm(row[:, None] * w, rtol)


def _matrix_lockstep(w: Array, rtol: float) -> Chunk:
    """‖diag(d_b)·W‖₂ of a chunk's probes by Lanczos on all of them at once (see _lockstep_matrix_norms)."""
    return lambda rows: _lockstep_matrix_norms(w, rows, rtol)


def _lockstep_matrix_norms(w: Array, rows: Array, rtol: float) -> tuple[Array, int]:
    """‖diag(d_b)·W‖₂ for the rows d_b of ``rows`` by lockstep Lanczos, with two products with W per step for
    all of them (never forming the stack of D_b W; lanczos.shared_weight_gram); NaN where one did not converge."""
    gram, size, scales = lanczos.shared_weight_gram(w, rows)
    return lanczos.top_singular_values(gram, size, scales, rtol)


def _operator_alone(layer: Layer, rtol: float) -> Callable[[Array], SpectralNorm]:
    """One probe's ‖J_b‖₂ by operator_norm on x ↦ J_b x and y ↦ J_bᵀ y."""
    return lambda row: operator_norm(*jacobian_operator(layer, row[None]), layer.weight.shape, rtol)


def _operator_lockstep(layer: Layer, rtol: float, weight_norm: float, skip_norm: float | None) -> Chunk:
    """‖J_b‖₂ of a chunk's probes by lockstep Lanczos on the Gram operators of f_b·J_b on the smaller side,
    (f J)ᵀ(f J) x = f·Jᵀ(J(f·x)), never formed; f_b is the power of two that brings the bound
    ‖S‖₂ + ‖A‖₂·max|d_b| on ‖J_b‖₂ near 1 (lanczos.unit_scales)."""
    m, n = layer.weight.shape

    def together(rows: Array) -> tuple[Array, int]:
        scales = lanczos.unit_scales((skip_norm or 0.0) + weight_norm * np.abs(rows).max(axis=1))

        def gram(x: Array, which: lanczos.Index) -> Array:
            forward, backward = jacobian_operator(layer, lanczos.runs(rows, which))
            f = lanczos.runs(scales, which)[:, None]
            return backward(forward(x * f)) * f if m >= n else forward(backward(x * f)) * f

        return lanczos.top_singular_values(gram, min(m, n), scales, rtol)

    return together


def jacobian_operator(layer: Layer, rows: Array) -> tuple[Operator, Operator]:
    """x ↦ J_b x = S x + d_b ⊙ A x and y ↦ J_bᵀ y = Sᵀ y + Aᵀ(d_b ⊙ y) on rows, for the rows d_b of ``rows``
    (one row: the same J for every vector)."""
    weight, skip = layer.weight, layer.skip

    def forward(x: Array) -> Array:
        out = weight.apply(x) * rows
        return out if skip is None else out + skip.apply(x)

    def backward(y: Array) -> Array:
        out = weight.adjoint(y * rows)
        return out if skip is None else out + skip.adjoint(y)

    return forward, backward
