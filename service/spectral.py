"""Spectral norms ‖A‖₂ = σ_max(A): a dense eigensolver for small matrices, Lanczos (ARPACK) for large ones.

Lanczos (ARPACK's implicitly restarted ``eigsh``) runs on the Gram operator G = AᵀA or AAᵀ, whichever is
smaller, and never forms it. ARPACK stops when the top Ritz pair (θ, v) has ‖Gv − θv‖ ≤ tol·θ; for symmetric G
an eigenvalue lies within that residual of θ, so |λ − θ| ≤ tol·θ, and σ = √θ meets the caller's ``rtol`` for
``tol = lanczos.eigen_tol(rtol)`` ≈ 2·rtol. (``scipy.sparse.linalg.svds`` would ask ARPACK for
tol², which stalls on clustered spectra.) Lanczos gets a budget of about min(m, n)/6 Gram products (4mn flops
each), a quarter of a dense SVD's ≈ (8/3)·n³; should ARPACK not converge within it — a spectrum clustered at
its top — the dense solver answers instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg.lapack import dpotrf, dsyevr
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from service import lanczos
from service.errors import InvalidInputError

Array = NDArray[np.float64]

DENSE_MAX_DIM = 256
"""Matrices whose smaller side is at most this are solved densely (see dense_norms): to full precision and at a
cost that does not depend on the spectrum. Larger ones go to Lanczos, with the dense solver as its fallback."""
FLOAT32_FLOOR = 8 * float(np.finfo(np.float32).eps)
"""Lanczos first runs in float32 when rtol ≥ this (9.5e-7, a tolerance of 1.9e-6 on λ = σ²): the float64
residual of a float32 Ritz vector, a few float32 epsilons, then usually certifies; should it not, float64 Lanczos
continues from its vector. Below this floor the float32 work would mostly be wasted."""
FLOAT32_MIN_DIM = 2048
"""…and when the Gram operator's size is at least this. Below it the float64 matrix stays in cache, its products
are nearly as fast, and the float32 path's fixed costs (the copy, ARPACK's eigenvector, the float64 check)
outweigh what it saves."""
FLOAT32_TOL = 0.5
"""The float32 run asks ARPACK for eigen_tol(rtol)·FLOAT32_TOL, leaving room for the rounding of its vector."""
POWER_STEPS = 3
"""Power steps that give gram_max the vector v of its Rayleigh-quotient lower bounds."""
POLISH_STEPS = 3
"""float64 power steps that may certify a float32 Ritz vector before float64 Lanczos takes over."""
RESTART_VECTORS = 20
"""ARPACK's ncv: the Lanczos basis kept between restarts."""
LANCZOS_MIN_RTOL = 1e-12
"""Below this rtol, Lanczos is not trusted to converge in floating point and the dense solver is used at any size."""


@dataclass(frozen=True)
class SpectralNorm:
    """σ_max of one matrix, with the method that gave it and the matrix-vector products it took."""

    value: float
    method: str
    matvecs: int


def uses_dense(shape: tuple[int, ...], rtol: float) -> bool:
    """Whether a matrix of this shape gets dense SVD rather than Lanczos at this rtol."""
    return min(shape) <= DENSE_MAX_DIM or rtol < LANCZOS_MIN_RTOL


def spectral_norm(a: Array, rtol: float) -> SpectralNorm:
    """σ_max(a) to relative accuracy ``rtol``."""
    if a.size == 0 or not a.any():
        return SpectralNorm(0.0, "zero", 0)
    if uses_dense(a.shape, rtol):
        return SpectralNorm(float(dense_norms(a[None])[0]), "dense", 0)
    return _lanczos(a, rtol)


def spectral_norms(stack: Array, rtol: float) -> tuple[Array, int]:
    """σ_max of each matrix ``stack[k]``, and the total matrix-vector products taken: densely, in lockstep
    (``service.lanczos``) for lanczos.BATCH_MIN matrices or more, else one by one (and so any matrix the lockstep
    run left unconverged)."""
    if stack.size == 0:
        return np.zeros(len(stack)), 0
    if uses_dense(stack.shape[1:], rtol):
        return dense_norms(stack), 0
    values, products = np.full(len(stack), np.nan), 0
    if len(stack) >= lanczos.BATCH_MIN:
        gram, size, scales = lanczos.stack_gram(stack)
        values, products = lanczos.top_singular_values(gram, size, scales, rtol)
    for k in np.flatnonzero(np.isnan(values)):
        norm = spectral_norm(stack[k], rtol)
        values[k], products = norm.value, products + norm.matvecs
    return values, products


def spectral_max(stack: Array, rtol: float, weights: Array | None = None) -> tuple[float, int]:
    """max_k weights[k]·σ_max(stack[k]) (weights 1 by default), and the matrix-vector products taken: densely by
    dense_max, which solves only the matrices that may hold the max; by Lanczos, every matrix (spectral_norms)."""
    if stack.size == 0:
        return 0.0, 0
    weights = np.ones(len(stack)) if weights is None else weights
    if uses_dense(stack.shape[1:], rtol):
        return dense_max(stack, weights), 0
    values, products = spectral_norms(stack, rtol)
    return float((weights * values).max()), products


def operator_norm(
    apply: Callable[[Array], Array], adjoint: Callable[[Array], Array], shape: tuple[int, int], rtol: float
) -> SpectralNorm:
    """σ_max of a matrix-free (m, n) operator A to relative accuracy ``rtol``: ``apply`` maps rows x_b to rows
    A·x_b, ``adjoint`` rows y_b to rows Aᵀ·y_b, each for any number of rows; A itself is never formed.

    Float64 Lanczos runs on the smaller Gram operator G = f²·AᵀA (n ≤ m) or f²·AAᵀ, to the tolerance
    t = lanczos.eigen_tol(rtol) on λ = σ², so that σ = √θ/f is within rtol of σ_max. The scale
    f = lanczos.unit_scales(‖A·x₀‖) for a random unit x₀ is a power of two (exact) that brings f·σ_max to order 1
    (‖A·x₀‖ ≤ σ_max, and is below it by about √n at most for all but unlucky x₀), where the relative test
    works; ``apply`` must not overflow on unit vectors. A·x₀ = 0 for a Gaussian x₀ means A = 0 (with
    probability 1).

    Plain Lanczos with full reorthogonalisation (lanczos.top_eigenvalues, no restarts) takes as many steps as
    BASIS_MAX_BYTES allows (all n of them for a Gram of size n < 4096, a full basis: exact to rounding), and
    stops as soon as it has converged; should it not converge, the rtol is refused (InvalidInputError at
    options.rtol): an unverified value is never returned. ``matvecs`` counts the products with A and Aᵀ, one row
    each.
    """
    m, n = shape
    size = min(m, n)
    if size == 0:
        return SpectralNorm(0.0, "zero", 0)
    first, second = (apply, adjoint) if m >= n else (adjoint, apply)
    start: Array = np.random.default_rng(0).standard_normal((1, size))
    start /= np.linalg.norm(start)
    peak = float(np.linalg.norm(first(start)))
    if peak == 0.0:
        return SpectralNorm(0.0, "zero", 1)
    f = float(lanczos.unit_scales(np.array([peak]))[0])
    steps = lanczos.capacity(size, 1)
    top, products = lanczos.top_eigenvalues(lambda x, _: second(first(x * f) * f), 1, size, lanczos.eigen_tol(rtol))
    if np.isnan(top[0]):
        raise InvalidInputError(
            ("options", "rtol"),
            f"the norm of a {m}×{n} operator could not be certified to rtol {rtol:g} within the Lanczos budget "
            f"({products + 1} products, a basis of {steps} vectors); ask for a larger rtol",
        )
    return SpectralNorm(float(np.sqrt(top[0])) / f, "lanczos", products + 1)


def dense_norms(stack: Array) -> Array:
    """σ_max of each ``stack[k]`` as √λ_max of its smaller Gram matrix AAᵀ or AᵀA (see gram_norms).

    The largest eigenvalue of a symmetric matrix is found to within a few ulps of ‖G‖ = σ_max², so σ_max keeps
    full relative precision. Each matrix is first scaled exactly by a power of two to a largest entry near 1
    (``lanczos.unit_scales``), so that its Gram matrix neither overflows nor underflows for any finite entries.
    """
    grams, f = _scaled_grams(stack)
    return gram_norms(grams) / f


def dense_max(stack: Array, weights: Array) -> float:
    """max_k weights[k]·σ_max(stack[k]), by gram_max on the Gram matrices of dense_norms."""
    grams, f = _scaled_grams(stack)
    return gram_max(grams, weights / f)


def _scaled_grams(stack: Array) -> tuple[Array, Array]:
    """The smaller Gram matrix of f_k·stack[k] for each k, and the powers of two f_k (lanczos.unit_scales) that
    bring each matrix's largest entry near 1."""
    m, n = stack.shape[1:]
    f = lanczos.unit_scales(np.abs(stack).max(axis=(1, 2)))
    scaled = stack * f[:, None, None]
    return (scaled @ scaled.transpose(0, 2, 1) if m <= n else scaled.transpose(0, 2, 1) @ scaled), f


def gram_max(grams: Array, weights: Array) -> float:
    """max_k weights[k]·√λ_max(grams[k]) over symmetric positive semi-definite ``grams``, solving as few as it can.

    Each Gram's largest diagonal entry and each Rayleigh quotient vᵀG_k v (‖v‖ = 1) are lower bounds on its
    λ_max, its trace an upper bound. The Gram with the largest weighted diagonal entry is solved first, and v is
    POWER_STEPS power steps of that Gram from the vector of ones (any unit v gives valid bounds; these only order
    the work). The others are taken in decreasing order of w_k·√(vᵀG_k v). One whose upper bound w_k·√tr G_k is
    below the best so far is skipped; one whose lower bound exceeds it is solved; any other is first tested by
    the Cholesky factorisation of τI − G_k with τ = (best/w_k)², which exists only if λ_max(G_k) < τ. Then G_k
    cannot hold the max and is not solved. (The factorisation's rounding, about n·eps·τ, is what such a skip may
    miss: the dense solver's own accuracy.) The answer is the eigensolver's for the Gram that holds the max, as
    gram_norms gives it.
    """
    live = weights > 0
    if not live.all():
        if not live.any():
            return 0.0
        grams, weights = grams[live], weights[live]
    # Bounds are compared as norms, w·√λ, not as w²·λ: the weights of scaled matrices may be 2^±1000.
    diagonals = np.diagonal(grams, axis1=1, axis2=2)
    upper = weights * np.sqrt(diagonals.sum(axis=1))
    first = int(np.argmax(weights * np.sqrt(diagonals.max(axis=1))))
    best = weights[first] * np.sqrt(_top_eigenvalue(grams[first]))
    v = _power_vector(grams[first])
    lower = weights * np.sqrt(np.maximum((grams @ v) @ v, 0.0))
    for k in np.argsort(-lower):
        if k == first or upper[k] <= best:
            continue
        if lower[k] <= best and _below(grams[k], (best / weights[k]) ** 2):
            continue
        best = max(best, weights[k] * np.sqrt(_top_eigenvalue(grams[k])))
    return float(best)


def _power_vector(gram: Array) -> Array:
    """A unit vector near G's top eigenvector: POWER_STEPS steps v ← Gv/‖Gv‖ from the vector of ones."""
    v: Array = np.full(len(gram), 1 / np.sqrt(len(gram)))
    for _ in range(POWER_STEPS):
        gv = gram @ v
        norm = float(np.linalg.norm(gv))
        if norm == 0.0:
            break
        v = gv / norm
    return v


def _below(gram: Array, tau: float) -> bool:
    """Whether τI − G has a Cholesky factorisation (LAPACK's potrf), i.e. is positive definite: λ_max(G) < τ."""
    shifted = -gram
    shifted.flat[:: len(gram) + 1] += tau
    _, info = dpotrf(shifted.T, lower=1, clean=0, overwrite_a=1)
    return bool(info == 0)


def gram_norms(grams: Array) -> Array:
    """√λ_max of each symmetric positive semi-definite ``grams[k]``: σ_max of A for the Gram matrix AAᵀ or AᵀA.

    LAPACK's syevr asked for the top eigenvalue alone (tridiagonal reduction, then bisection for that one, to
    eps·‖T‖ = eps·λ_max), rather than all of them (numpy's eigvalsh). It holds the GIL: the service runs analyses
    in worker processes of their own, where nothing else waits on the interpreter.
    """
    top: Array = np.sqrt([_top_eigenvalue(gram) for gram in grams])
    return top


def _top_eigenvalue(gram: Array) -> float:
    """λ_max ≥ 0 of a symmetric positive semi-definite ``gram`` by syevr (numpy's eigvalsh should syevr fail)."""
    n = len(gram)
    # gram.T: the same symmetric matrix, Fortran-ordered, so LAPACK reads it without a copy.
    values, _, _, _, info = dsyevr(gram.T, compute_v=0, range="I", il=n, iu=n)
    top = float(values[0]) if info == 0 else float(np.linalg.eigvalsh(gram)[-1])
    return max(top, 0.0)


def _lanczos(a: Array, rtol: float) -> SpectralNorm:
    """Lanczos on G = AᵀA (or AAᵀ) of f·A, f = lanczos.unit_scales(max|a_ij|): first in float32 where rtol
    allows (see FLOAT32_FLOOR), certified in float64.

    The float32 run (half the memory traffic of every product) gives a Ritz vector v; in float64,
    θ = vᵀGv and r = ‖Gv − θv‖ with ‖v‖ = 1. When r ≤ t·θ, t = eigen_tol(rtol) — ARPACK's own criterion — √θ/f
    is the answer;
    otherwise v takes a power step (v ← Gv/‖Gv‖, which damps the float32 rounding) and is checked again, up to
    POLISH_STEPS times, before float64 Lanczos continues from it.
    """
    left = a.T if a.shape[0] >= a.shape[1] else a
    n = left.shape[0]
    f = float(lanczos.unit_scales(np.abs(left).max()))
    counter = [0]

    def gram64(x: NDArray[np.floating]) -> NDArray[np.floating]:
        counter[0] += 2
        product: NDArray[np.floating] = left @ ((left.T @ (x * f)) * f)
        return product

    tol = lanczos.eigen_tol(rtol)
    start: Array = np.random.default_rng(0).standard_normal((n,))
    if rtol >= FLOAT32_FLOOR and n >= FLOAT32_MIN_DIM:
        left32 = np.empty(left.shape, np.float32, order="F" if left.flags.f_contiguous else "C")
        np.multiply(left, f, out=left32, casting="same_kind")  # one pass: scaled in float64, stored as float32

        def gram32(x: NDArray[np.floating]) -> NDArray[np.floating]:
            counter[0] += 2
            return left32 @ (left32.T @ x)

        found = _arpack(gram32, n, np.float32, tol * FLOAT32_TOL, start, vectors=True)
        if found is not None and found[1] is not None:
            v: Array = found[1]
            for _ in range(POLISH_STEPS):
                v, theta, residual = _rayleigh(gram64, v)
                if theta > 0 and residual <= tol * theta:
                    return SpectralNorm(float(np.sqrt(theta)) / f, "lanczos", counter[0])
            start = v
    found = _arpack(gram64, n, np.float64, tol, start, vectors=False)
    if found is None:
        return SpectralNorm(float(dense_norms(a[None])[0]), "dense", counter[0])
    return SpectralNorm(float(np.sqrt(max(found[0], 0.0))) / f, "lanczos", counter[0])


Operator = Callable[[NDArray[np.floating]], NDArray[np.floating]]


def _rayleigh(gram: Operator, v: Array) -> tuple[Array, float, float]:
    """One float64 power step: (Gv/‖Gv‖, θ = vᵀGv, ‖Gv − θv‖) for unit v; the step damps float32 rounding."""
    v = v / np.linalg.norm(v)
    gv = gram(v)
    theta = float(v @ gv)
    residual = float(np.linalg.norm(gv - theta * v))
    return gv / np.linalg.norm(gv), theta, residual


def _arpack(
    gram: Operator, n: int, dtype: type[np.floating], tol: float, start: Array, *, vectors: bool
) -> tuple[float, Array | None] | None:
    """ARPACK's top eigenvalue of the n × n operator ``gram`` in ``dtype``, with its vector only when asked (the
    vector makes every product slower); None if it does not converge within the budget."""
    op = LinearOperator((n, n), matvec=gram, dtype=dtype)
    try:
        found = eigsh(
            op,
            k=1,
            which="LA",
            tol=tol,
            v0=start.astype(dtype),
            ncv=min(RESTART_VECTORS, n),
            maxiter=max(2, n // (6 * RESTART_VECTORS)),
            return_eigenvectors=vectors,
        )
    except ArpackNoConvergence:
        return None
    if vectors:
        values, eigenvectors = found
        return float(values[0]), np.asarray(eigenvectors[:, 0], dtype=np.float64)
    return float(found[0]), None
