"""Spectral norms ‖A‖₂ = σ_max(A): dense SVD for small matrices, Lanczos (ARPACK) for large ones.

Lanczos (ARPACK's implicitly restarted ``eigsh``) runs on the Gram operator G = AᵀA or AAᵀ, whichever is
smaller, and never forms it. ARPACK stops when the top Ritz pair (θ, v) has ‖Gv − θv‖ ≤ tol·θ; for symmetric G
an eigenvalue lies within that residual of θ, so |λ − θ| ≤ tol·θ and σ = √θ has relative error ≤ tol/2:
asking for ``tol = rtol`` meets the caller's ``rtol`` on σ. (``scipy.sparse.linalg.svds`` would ask ARPACK for
tol², which stalls on clustered spectra.) Lanczos gets a budget of about min(m, n)/6 Gram products (4mn flops
each), a quarter of a dense SVD's ≈ (8/3)·n³; should ARPACK not converge within it — a spectrum clustered at
its top — dense SVD answers instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

Array = NDArray[np.float64]

DENSE_MAX_DIM = 512
"""Matrices whose smaller side is at most this use dense SVD (LAPACK gesdd): below it, dense SVD is no slower
than Lanczos on easy spectra and far faster on clustered ones."""
RESTART_VECTORS = 20
"""ARPACK's ncv: the Lanczos basis kept between restarts."""
LANCZOS_MIN_RTOL = 1e-12
"""Below this rtol, Lanczos is not trusted to converge in floating point and dense SVD is used at any size."""


@dataclass(frozen=True)
class SpectralNorm:
    """σ_max of one matrix, with the method that gave it and the matrix-vector products it took."""

    value: float
    method: str
    matvecs: int


def spectral_norm(a: Array, rtol: float) -> SpectralNorm:
    """σ_max(a) to relative accuracy ``rtol``."""
    if a.size == 0 or not a.any():
        return SpectralNorm(0.0, "zero", 0)
    if min(a.shape) <= DENSE_MAX_DIM or rtol < LANCZOS_MIN_RTOL:
        return SpectralNorm(float(np.linalg.svd(a, compute_uv=False)[0]), "dense_svd", 0)
    return _lanczos(a, rtol)


def spectral_norms(stack: Array, rtol: float) -> tuple[Array, int]:
    """σ_max of each matrix ``stack[k]``, and the total matrix-vector products taken."""
    if stack.size == 0:
        return np.zeros(len(stack)), 0
    if min(stack.shape[1:]) <= DENSE_MAX_DIM or rtol < LANCZOS_MIN_RTOL:
        return np.asarray(np.linalg.svd(stack, compute_uv=False)[:, 0], dtype=np.float64), 0
    norms = [spectral_norm(a, rtol) for a in stack]
    return np.array([n.value for n in norms]), sum(n.matvecs for n in norms)


def _lanczos(a: Array, rtol: float) -> SpectralNorm:
    counter = [0]
    left = a.T if a.shape[0] >= a.shape[1] else a

    def gram(x: Array) -> Array:
        counter[0] += 2
        return left @ (left.T @ x)

    n = left.shape[0]
    op = LinearOperator((n, n), matvec=gram, dtype=a.dtype)
    v0 = np.random.default_rng(0).standard_normal(n)
    try:
        theta = eigsh(
            op,
            k=1,
            which="LA",
            tol=rtol,
            v0=v0,
            ncv=min(RESTART_VECTORS, n),
            maxiter=max(2, n // (6 * RESTART_VECTORS)),
            return_eigenvectors=False,
        )
    except ArpackNoConvergence:
        return SpectralNorm(float(np.linalg.svd(a, compute_uv=False)[0]), "dense_svd", counter[0])
    return SpectralNorm(float(np.sqrt(max(float(theta[0]), 0.0))), "lanczos", counter[0])
