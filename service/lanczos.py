"""Lanczos on many Gram operators at once: the top eigenvalue of every G_b, in lockstep, by block products.

For B operators G_b (the probes' Gram matrices), one step multiplies all B Lanczos vectors at once:
``gram(X, which)`` returns the rows G_b x_b of an array X whose rows are the vectors x_b of the runs b in
``which``. When the G_b share a weight — G_b = Wᵀ D_b² W for the per-probe Jacobians D_b W — that is two
matrix-matrix products with W for all probes, where B separate runs would read W 2B times over. A run that has
converged leaves the lockstep (``which`` loses it): each run costs its own steps.

Each run is plain Lanczos with full reorthogonalisation (twice, "twice is enough"), no restarts:

    β_k v_{k+1} = G v_k − α_k v_k − β_{k−1} v_{k−1},   α_k = v_kᵀ G v_k,

and T_k = tridiag(β, α, β). The top Ritz value θ of T_k, with eigenvector y, has residual
‖G V_k y − θ V_k y‖ = |β_k y_k| (y_k its last entry); a run has converged when that is ≤ tol·θ — ARPACK's own
criterion, under which an eigenvalue λ lies within tol·θ of θ. The tolerance on λ = σ² that gives σ = √θ to the
caller's rtol is ``eigen_tol(rtol)`` ≈ 2·rtol. A run whose β_k is 0 to rounding has found an invariant subspace:
its θ is exact and its later steps add only zeros to T.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import eigh_tridiagonal

Array = NDArray[np.float64]
Index = NDArray[np.intp]
Gram = Callable[[Array, Index], Array]
"""gram(X, which): the rows G_b x_i for the runs b = which[i] and the rows x_i of X."""

CHECK_EVERY = 4
"""Lanczos steps between convergence checks (each solves B tridiagonal eigenproblems for their top pair)."""
BATCH_MIN = 8
"""Stacks of at least this many operators are solved in lockstep; smaller ones one by one, where ARPACK (in
float32 for large operators) is faster."""
MAX_STEPS = 300
"""The steps a chunk of runs is planned for (chunk_for): at most this, and n/6. Runs that need more go on as
others leave and make room (capacity)."""
BREAKDOWN = 1e-13
"""β_k ≤ BREAKDOWN·max α: the run has found an invariant subspace (its residual is below any rtol Lanczos is
given, LANCZOS_MIN_RTOL = 1e-12). It goes on with zero vectors: normalising the rounding noise left in w would
start a new Krylov space that finds the top eigenvalue again, a ghost copy whose residual never converges."""
DGKS = 1 / np.sqrt(2)
"""A reorthogonalisation pass that leaves less than this share of w's norm is repeated (Daniel, Gragg,
Kaufman and Stewart, 1976)."""
BASIS_MAX_BYTES = 128 * 2**20
"""The Lanczos vectors kept for reorthogonalisation, B·(steps + 1)·n float64s, stay within this."""


START_SEED = 0x6A6163
"""The seed of the Lanczos start vectors. Not 0, the probes' default seed (``service.probes``): ``default_rng(0)``
would draw the start vectors equal to the default probes themselves, and where an op maps its input to a smaller
eigenvalue's subspace (layer_norm: x lies in the span of 1 and of x − mean, orthogonal to the top eigenvector of
JᵀJ) Lanczos from there never sees the top eigenvalue."""


def start_vectors(count: int, n: int) -> Array:
    """``count`` random unit vectors of ``n`` entries from ``default_rng(START_SEED)``, one per row."""
    v = np.random.default_rng(START_SEED).standard_normal((count, n))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def unit_scales(peaks: Array) -> Array:
    """Powers of two f with f·peak in [0.5, 1) (1 for a peak of 0): scaling by them is exact, and a matrix whose
    largest entry is about 1 forms Gram products that neither overflow nor lose digits to underflow, and meets
    ARPACK's relative stopping test (which turns absolute for eigenvalues below about 4e-11)."""
    _, exponents = np.frexp(peaks)
    # np.minimum/np.maximum, not np.clip: clip looks up the integer type's limits on every call.
    scales: Array = np.ldexp(1.0, np.minimum(np.maximum(-exponents, -1000), 1000))
    return scales


def steps_for(n: int) -> int:
    """The Lanczos steps a chunk of runs on operators of size n is planned for (chunk_for)."""
    return max(2, min(n // 6, MAX_STEPS, n))


def chunk_for(n: int) -> int:
    """How many operators of size n run in lockstep, steps_for(n) steps each within BASIS_MAX_BYTES."""
    return max(1, BASIS_MAX_BYTES // (8 * n * (steps_for(n) + 1)))


def eigen_tol(rtol: float) -> float:
    """The relative tolerance t on an eigenvalue λ = σ² that gives σ to relative accuracy ``rtol``:

        |λ − θ| ≤ t·θ  ⇒  |√λ − √θ| ≤ rtol·√λ   for   t = 1 − (1 + rtol)⁻² = rtol·(2 + rtol)/(1 + rtol)².

    (λ = θ/(1 + rtol)² is the worst case below θ; above it, 1 − 1/√(1 + t) ≤ t/2 ≤ rtol.)"""
    return rtol * (2.0 + rtol) / (1.0 + rtol) ** 2


def top_singular_values(gram: Gram, n: int, scales: Array, rtol: float) -> tuple[Array, int]:
    """σ_max(A_b) = √λ_max(G_b)/f_b for Gram operators G_b of (f_b·A_b), of size n, to ``rtol``, and the
    matrix-vector products taken; NaN for a run that did not converge within its steps (see top_eigenvalues)."""
    top, products = top_eigenvalues(gram, len(scales), n, eigen_tol(rtol))
    return np.sqrt(top) / scales, products


def capacity(n: int, runs: int) -> int:
    """The Lanczos steps that ``runs`` runs on operators of size n may each keep within BASIS_MAX_BYTES, at most n
    (a full basis, exact up to rounding) and at least 2: runs·(steps + 1)·n float64s."""
    return max(2, min(n, BASIS_MAX_BYTES // (8 * n * max(runs, 1)) - 1))


def top_eigenvalues(gram: Gram, count: int, n: int, tol: float, steps: int | None = None) -> tuple[Array, int]:
    """λ_max of each of ``count`` n×n symmetric positive semi-definite G_b to ``tol``, NaN where a run did not
    converge, and the products taken (each G_b x_b counts as two matrix-vector products, with A_b and A_bᵀ).

    Each run stops when it has converged: its value is kept and it leaves the lockstep, so that the later steps
    multiply only the runs still going (``gram(X, which)`` gets the rows of the runs ``which``), and each run costs
    its own steps, not the slowest one's. A run goes on for at most ``steps`` steps (default n) and as many as its
    basis may hold within BASIS_MAX_BYTES (:func:`capacity`, which grows as runs leave); one that reaches its limit
    unconverged is NaN, for the caller to solve otherwise."""
    limit = n if steps is None else max(1, min(steps, n))
    active: Index = np.arange(count)
    values = np.full(count, np.nan)
    room = min(limit, capacity(n, count))
    basis = np.zeros((count, room, n))
    alpha, beta = np.zeros((count, room)), np.zeros((count, room))
    v = start_vectors(count, n)
    products, k = 0, 0
    while active.size and k < room:
        basis[:, k] = v
        w = gram(v, active)
        products += 2 * active.size
        alpha[:, k] = np.einsum("bn,bn->b", w, v)
        w -= alpha[:, k, None] * v
        if k > 0:
            w -= beta[:, k - 1, None] * basis[:, k - 1]
        beta[:, k] = _reorthogonalised(w, basis[:, : k + 1])
        broken = beta[:, k] <= BREAKDOWN * np.abs(alpha[:, : k + 1]).max(axis=1)
        v = np.where(broken[:, None], 0.0, w / np.where(broken, 1.0, beta[:, k])[:, None])
        k += 1
        if k % CHECK_EVERY and k < room:
            continue
        top, residual = _top_ritz(alpha[:, :k], beta[:, :k])
        done = residual <= tol * top
        if not done.any():
            continue
        values[active[done]] = np.maximum(top[done], 0.0)
        keep = ~done
        active, v = active[keep], v[keep]
        room = min(limit, max(room, capacity(n, active.size)))
        basis, alpha, beta = _kept(basis, keep, k, room), _kept(alpha, keep, k, room), _kept(beta, keep, k, room)
    return values, products


def _kept(array: Array, keep: NDArray[np.bool_], k: int, room: int) -> Array:
    """The runs ``keep`` of a per-run array of steps (its first k filled), in a new one with room for ``room``."""
    kept = np.zeros((int(keep.sum()), room, *array.shape[2:]))
    kept[:, :k] = array[keep, :k]
    return kept


def _reorthogonalised(w: Array, earlier: Array) -> Array:
    """‖w_b‖ after each row w_b of ``w`` is made orthogonal, in place, to the Lanczos vectors ``earlier[b]``.

    The three-term recurrence has taken out w's large components already; what is left along the earlier vectors
    is rounding, removed by one classical Gram–Schmidt pass. A second pass runs only where the first removed more
    than a 1 − 1/√2 share of the norm (the DGKS test ARPACK uses), where cancellation may have left some behind.
    """
    before = np.linalg.norm(w, axis=1)
    w -= _rows(earlier.transpose(0, 2, 1), _rows(earlier, w))
    after: Array = np.linalg.norm(w, axis=1)
    again = after < DGKS * before
    if again.any():
        w[again] -= _rows(earlier[again].transpose(0, 2, 1), _rows(earlier[again], w[again]))
        after[again] = np.linalg.norm(w[again], axis=1)
    return after


def _rows(stack: Array, x: Array) -> Array:
    """The rows M_b x_b for the matrices ``stack[b]`` and the rows x_b of ``x``."""
    rows: Array = np.matmul(stack, x[:, :, None])[:, :, 0]
    return rows


def _top_ritz(alpha: Array, beta: Array) -> tuple[Array, Array]:
    """Each run's top Ritz value θ and its residual |β_k y_k| (LAPACK's tridiagonal solver, top pair only)."""
    k = alpha.shape[1]
    top, residual = np.empty(len(alpha)), np.empty(len(alpha))
    for b in range(len(alpha)):
        values, vectors = eigh_tridiagonal(alpha[b], beta[b, :-1], select="i", select_range=(k - 1, k - 1))
        top[b], residual[b] = values[0], abs(beta[b, -1] * vectors[-1, 0])
    return top, residual


def runs(array: Array, which: Index) -> Array:
    """The rows ``which`` of a per-run array: the array itself while every run is going (no copy)."""
    return array if len(which) == len(array) else array[which]


def shared_weight_gram(w: Array, d: Array) -> tuple[Gram, int, Array]:
    """The Gram operators of f_b·A_b, A_b = diag(d_b)·W for the rows d_b of ``d``, on the smaller side; its size;
    and the unit scales f_b = f_W·f_d (see unit_scales), applied to the vectors, never copying W.

    G_b = Wᵀ D_b² W (n × n) for a tall W, D_b W Wᵀ D_b (m × m) for a wide one: two products with W for all b.
    """
    m, n = w.shape
    f_w, f_d = probe_scales(w, d)
    scaled = d * f_d[:, None]
    if m >= n:
        squared = scaled * scaled
        return (lambda x, b: (((x * f_w) @ w.T) * runs(squared, b)) @ w * f_w), n, f_w * f_d
    return (lambda x, b: (((x * runs(scaled, b)) @ w) * f_w) @ w.T * f_w * runs(scaled, b)), m, f_w * f_d


def probe_scales(w: Array, d: Array) -> tuple[float, Array]:
    """The unit scales of W and of each row d_b of ``d``: f_W·f_b·diag(d_b)·W has largest entries near 1."""
    return float(unit_scales(np.abs(w).max())), unit_scales(np.abs(d).max(axis=1))


def stack_gram(stack: Array) -> tuple[Gram, int, Array]:
    """The Gram operators of f_b·A_b for the matrices A_b = ``stack[b]`` on the smaller side, its size, and the
    unit scales f_b, applied to the vectors."""
    m, n = stack.shape[1:]
    transposed = stack.transpose(0, 2, 1)
    f = unit_scales(np.abs(stack).max(axis=(1, 2)))[:, None]
    if m >= n:
        return (lambda x, b: _rows(runs(transposed, b), _rows(runs(stack, b), x * f[b]) * f[b])), n, f[:, 0]
    return (lambda x, b: _rows(runs(stack, b), _rows(runs(transposed, b), x * f[b]) * f[b])), m, f[:, 0]
