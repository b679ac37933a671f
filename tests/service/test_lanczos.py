"""Lanczos in lockstep (service.lanczos) against LAPACK's dense σ_max of each matrix, on the spectra of
test_spectral: random, low-rank, rank-one, ill-conditioned and clustered, in one stack and one by one."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from service import lanczos
from service.jacobian import _lockstep_matrix_norms
from service.spectral import spectral_norms
from tests.service.test_spectral import KINDS, ROUNDING

Array = NDArray[np.float64]

SHAPE = (600, 560)
"""Smaller side 560 > DENSE_MAX_DIM: the Lanczos path of spectral_norms, with a budget of 93 steps."""


def _stack(kinds: list[str], shape: tuple[int, int] = SHAPE) -> tuple[Array, Array]:
    """One matrix of each kind (seeded) and their dense ‖A‖₂."""
    stack = np.stack([KINDS[kind](np.random.default_rng(i), shape) for i, kind in enumerate(kinds)])
    return stack, np.array([np.linalg.norm(a, 2) for a in stack])


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
@pytest.mark.parametrize("shape", [SHAPE, SHAPE[::-1]], ids=["tall", "wide"])
def test_lockstep_meets_rtol_on_every_kind(rtol: float, shape: tuple[int, int]) -> None:
    """Every matrix of a stack of every kind but the clustered one converges within the budget, to rtol."""
    kinds = [kind for kind in sorted(KINDS) if kind != "clustered"] * 2
    stack, expected = _stack(kinds, shape)
    gram, size, scales = lanczos.stack_gram(stack)
    values, products = lanczos.top_singular_values(gram, size, scales, rtol)
    assert not np.isnan(values).any()
    np.testing.assert_allclose(values, expected, rtol=rtol, atol=0)
    assert np.all(values <= expected * (1 + ROUNDING))
    assert products > 0


def test_clustered_spectrum_is_refused_within_a_small_budget() -> None:
    """A top gap of 1e-9 is beyond 10 steps at rtol 1e-12: the lockstep solver says so (NaN) instead of
    answering, for that run alone."""
    stack, _ = _stack(["clustered", "gaussian"])
    gram, size, _ = lanczos.stack_gram(stack)
    top, products = lanczos.top_eigenvalues(gram, len(stack), size, 1e-12, steps=10)
    assert np.isnan(top[0])
    assert 2 * 10 < products <= 2 * 2 * 10


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
def test_spectral_norms_of_a_large_stack(rtol: float) -> None:
    """spectral_norms solves in lockstep for BATCH_MIN matrices or more, and is right for every kind,
    the clustered one included (solved one by one when the lockstep run does not converge)."""
    kinds = sorted(KINDS) * 2
    assert len(kinds) >= lanczos.BATCH_MIN
    stack, expected = _stack(kinds)
    values, products = spectral_norms(stack, rtol)
    np.testing.assert_allclose(values, expected, rtol=rtol, atol=0)
    assert products > 0


@pytest.mark.parametrize("shape", [SHAPE, SHAPE[::-1]], ids=["tall", "wide"])
@pytest.mark.parametrize("size", [1.0, 1e200, 1e-200])
def test_gram_operators_are_the_probes_grams(shape: tuple[int, int], size: float) -> None:
    """shared_weight_gram and stack_gram apply f_b²·G_b with G_b = A_bᵀA_b (tall) or A_bA_bᵀ (wide) of
    A_b = diag(d_b)·W, formed here explicitly, for weights of any finite size."""
    rng = np.random.default_rng(3)
    w, d = rng.standard_normal(shape) * size, rng.standard_normal((5, shape[0]))
    x = rng.standard_normal((5, min(shape)))
    a = d[:, :, None] * (w / size)  # the explicit reference is formed at size 1, then scaled back
    at = a.transpose(0, 2, 1)
    expected = (at @ (a @ x[:, :, None]) if shape[0] >= shape[1] else a @ (at @ x[:, :, None]))[:, :, 0]
    for gram, n, scales in (lanczos.shared_weight_gram(w, d), lanczos.stack_gram(d[:, :, None] * w)):
        assert n == min(shape)
        got = gram(x, np.arange(5)) / (scales[:, None] * size) ** 2
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_jacobian_norms_of_many_probes_in_lockstep() -> None:
    """‖diag(d_b)·W‖₂ for 12 probes without forming the stack equals each probe's dense norm."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((320, 400)) / 20
    d = 1 - np.tanh(rng.standard_normal((12, 320))) ** 2
    norms, products = _lockstep_matrix_norms(w, d, 1e-10)
    assert not np.isnan(norms).any()
    expected = [np.linalg.norm(row[:, None] * w, 2) for row in d]
    np.testing.assert_allclose(norms, expected, rtol=1e-10, atol=0)
    assert products > 0


def test_the_basis_fits_its_memory_budget() -> None:
    """chunk_for keeps B·(steps + 1)·n float64s within BASIS_MAX_BYTES at any size."""
    for n in (300, 1024, 4096, 65536):
        assert lanczos.chunk_for(n) * (lanczos.steps_for(n) + 1) * n * 8 <= max(
            lanczos.BASIS_MAX_BYTES, (lanczos.steps_for(n) + 1) * n * 8
        )


@pytest.mark.parametrize("rtol", [1e-6, 1e-3, 0.1])
def test_eigen_tol_gives_sigma_to_rtol_at_both_ends(rtol: float) -> None:
    """An eigenvalue anywhere within eigen_tol(rtol)·θ of θ has its square root within rtol of √θ, and the worst
    case below θ is at rtol: the tolerance is as loose as it may be (closed form)."""
    theta, tol = 3.7, lanczos.eigen_tol(rtol)
    for lam in (theta * (1 - tol), theta * (1 + tol)):
        assert abs(np.sqrt(theta) - np.sqrt(lam)) <= rtol * np.sqrt(lam) * (1 + 1e-12)
    assert abs(np.sqrt(theta) - np.sqrt(theta * (1 - tol))) > 0.999 * rtol * np.sqrt(theta * (1 - tol))


@pytest.mark.parametrize("inside", [0.0, 1.0 - 1e-9])
def test_reorthogonalisation_leaves_rounding_only(inside: float) -> None:
    """w made orthogonal to 40 orthonormal vectors, whether almost none of w lies in their span (one pass) or
    almost all of it (cancellation: the DGKS second pass): what is left along them is rounding."""
    rng = np.random.default_rng(3)
    earlier = np.linalg.qr(rng.standard_normal((500, 40)))[0].T[None]  # (1, 40, 500), orthonormal rows
    along = earlier[0].T @ rng.standard_normal(40)
    across = rng.standard_normal(500)
    across -= earlier[0].T @ (earlier[0] @ across)
    w = (inside * along / np.linalg.norm(along) + (1 - inside) * across / np.linalg.norm(across))[None]
    expected = (1 - inside) * 1.0
    norm = lanczos._reorthogonalised(w, earlier)
    assert np.abs(earlier[0] @ w[0]).max() <= 1e-15 * norm[0]  # one pass would leave 1e-7 of it at 1 - 1e-9
    assert norm[0] == pytest.approx(np.linalg.norm(w[0]), rel=1e-15)
    assert norm[0] == pytest.approx(expected, rel=1e-6)
