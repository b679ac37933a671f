"""Lanczos in lockstep (service.lanczos) against LAPACK's dense σ_max of each matrix, on the spectra of
test_spectral: random, low-rank, rank-one, ill-conditioned and clustered, in one stack and one by one."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from service import lanczos
from service.analysis import _jacobian_norms
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
    gram, size = lanczos.stack_gram(stack)
    values, products = lanczos.top_singular_values(gram, len(stack), size, rtol)
    assert values is not None
    np.testing.assert_allclose(values, expected, rtol=rtol, atol=0)
    assert np.all(values <= expected * (1 + ROUNDING))
    assert products > 0


def test_clustered_spectrum_is_refused_within_a_small_budget() -> None:
    """A top gap of 1e-9 is beyond 10 steps at rtol 1e-12: the lockstep road says so instead of answering."""
    stack, _ = _stack(["clustered", "gaussian"])
    gram, size = lanczos.stack_gram(stack)
    top, products = lanczos.top_eigenvalues(gram, len(stack), size, 1e-12, steps=10)
    assert top is None
    assert products == 2 * 2 * 10


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
def test_spectral_norms_of_a_large_stack(rtol: float) -> None:
    """spectral_norms takes the lockstep road for BATCH_MIN matrices or more, and is right for every kind,
    the clustered one included (solved one by one when the lockstep run does not converge)."""
    kinds = sorted(KINDS) * 2
    assert len(kinds) >= lanczos.BATCH_MIN
    stack, expected = _stack(kinds)
    values, products = spectral_norms(stack, rtol)
    np.testing.assert_allclose(values, expected, rtol=rtol, atol=0)
    assert products > 0


@pytest.mark.parametrize("shape", [SHAPE, SHAPE[::-1]], ids=["tall", "wide"])
def test_shared_weight_gram_is_the_probes_gram(shape: tuple[int, int]) -> None:
    """G_b x_b from two products with W equals (D_b W)ᵀ(D_b W) x_b (or the m × m side) formed explicitly."""
    rng = np.random.default_rng(3)
    w, d = rng.standard_normal(shape), rng.standard_normal((5, shape[0]))
    gram, size = lanczos.shared_weight_gram(w, d)
    x = rng.standard_normal((5, size))
    explicit, _ = lanczos.stack_gram(d[:, :, None] * w)
    np.testing.assert_allclose(gram(x), explicit(x), rtol=1e-12, atol=1e-12)


def test_jacobian_norms_of_many_probes_in_lockstep() -> None:
    """‖diag(d_b)·W‖₂ for 12 probes without forming the stack equals each probe's dense norm."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((320, 400)) / 20
    d = 1 - np.tanh(rng.standard_normal((12, 320))) ** 2
    norms, products = _jacobian_norms(d, w, 1e-10)
    expected = [np.linalg.norm(row[:, None] * w, 2) for row in d]
    np.testing.assert_allclose(norms, expected, rtol=1e-10, atol=0)
    assert products > 0


def test_the_basis_fits_its_memory_budget() -> None:
    """chunk_for keeps B·(steps + 1)·n float64s within BASIS_MAX_BYTES at any size."""
    for n in (300, 1024, 4096, 65536):
        assert lanczos.chunk_for(n) * (lanczos.steps_for(n) + 1) * n * 8 <= max(
            lanczos.BASIS_MAX_BYTES, (lanczos.steps_for(n) + 1) * n * 8
        )
