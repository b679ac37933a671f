"""‖A‖₂ from service.spectral against LAPACK's dense σ_max (np.linalg.norm(A, 2)) on easy and hard spectra,
by dense SVD (small) and by Lanczos on the Gram operator (large)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from service import spectral
from service.spectral import DENSE_MAX_DIM, LANCZOS_MIN_RTOL, spectral_norm, spectral_norms

Array = NDArray[np.float64]

RTOLS = [1e-3, 1e-6, 1e-10]
ROUNDING = 1e-12
"""A Ritz value never exceeds λ_max (Rayleigh quotient), so σ may overshoot the dense value by rounding only."""
SMALL = (40, 30)
LARGE = (600, 700)
"""Smaller side 600 > DENSE_MAX_DIM (256): the Lanczos path."""


def _with_singular_values(rng: np.random.Generator, shape: tuple[int, int], s: Array) -> Array:
    """U·diag(s)·Vᵀ with Haar-ish orthonormal U (m × r), V (n × r), r = len(s)."""
    m, n = shape
    u, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    out: Array = (u * s) @ v.T
    return out


def _gaussian(rng: np.random.Generator, shape: tuple[int, int]) -> Array:
    out: Array = rng.standard_normal(shape)
    return out


def _low_rank(rng: np.random.Generator, shape: tuple[int, int]) -> Array:
    """Rank 5 with random factors."""
    out: Array = rng.standard_normal((shape[0], 5)) @ rng.standard_normal((5, shape[1]))
    return out


def _rank_one(rng: np.random.Generator, shape: tuple[int, int]) -> Array:
    return np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1]))


def _ill_conditioned(rng: np.random.Generator, shape: tuple[int, int]) -> Array:
    """Singular values logspace(0, −12): condition number 1e12."""
    return _with_singular_values(rng, shape, np.logspace(0.0, -12.0, min(shape)))


def _clustered(rng: np.random.Generator, shape: tuple[int, int]) -> Array:
    """Singular values 1 − 1e-9·k: the top gap is 1e-9 relative, the worst case for Lanczos."""
    return _with_singular_values(rng, shape, 1.0 - 1e-9 * np.arange(min(shape), dtype=np.float64))


KINDS: dict[str, Callable[[np.random.Generator, tuple[int, int]], Array]] = {
    "gaussian": _gaussian,
    "low_rank": _low_rank,
    "rank_one": _rank_one,
    "ill_conditioned": _ill_conditioned,
    "clustered": _clustered,
}

_CACHE: dict[tuple[str, tuple[int, int]], tuple[Array, float]] = {}


def _matrix(kind: str, shape: tuple[int, int]) -> tuple[Array, float]:
    """The matrix (seeded) and its dense reference ‖A‖₂, computed once per module run."""
    key = (kind, shape)
    if key not in _CACHE:
        a = KINDS[kind](np.random.default_rng(sorted(KINDS).index(kind)), shape)
        _CACHE[key] = (a, float(np.linalg.norm(a, 2)))
    return _CACHE[key]


@pytest.mark.parametrize("rtol", RTOLS)
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("shape", [SMALL, SMALL[::-1], LARGE], ids=["small_tall", "small_wide", "large"])
def test_spectral_norm_meets_rtol(shape: tuple[int, int], kind: str, rtol: float) -> None:
    """|σ̂ − σ_max| ≤ rtol·σ_max, and σ̂ ≤ σ_max (up to rounding) since a Ritz value cannot exceed λ_max."""
    a, expected = _matrix(kind, shape)
    got = spectral_norm(a, rtol)
    assert abs(got.value - expected) <= rtol * expected, f"{got.method}: {got.value!r} vs {expected!r}"
    assert got.value <= expected * (1.0 + ROUNDING)
    if min(shape) <= DENSE_MAX_DIM:
        assert got.method == "dense"
        assert got.matvecs == 0
    else:
        assert got.method in ("lanczos", "dense")


@pytest.mark.parametrize("rtol", RTOLS)
def test_large_random_matrix_uses_lanczos(rtol: float) -> None:
    """A 600×700 Gaussian matrix (well-separated top singular value) takes the Lanczos path, converges (no
    dense fallback) and counts its matrix-vector products; its transpose gives the same σ."""
    a, expected = _matrix("gaussian", LARGE)
    got = spectral_norm(a, rtol)
    assert got.method == "lanczos"
    assert got.matvecs > 0
    assert abs(got.value - expected) <= rtol * expected
    transposed = spectral_norm(np.ascontiguousarray(a.T), rtol)
    assert transposed.method == "lanczos"
    assert abs(transposed.value - expected) <= rtol * expected


def test_below_lanczos_min_rtol_uses_dense_svd() -> None:
    """An rtol below LANCZOS_MIN_RTOL is met by dense SVD even for a large matrix."""
    a, expected = _matrix("gaussian", LARGE)
    got = spectral_norm(a, LANCZOS_MIN_RTOL / 10)
    assert got.method == "dense"
    assert got.value == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("shape", [(3, 4), LARGE, (0, 5)])
def test_zero_matrix_has_norm_zero(shape: tuple[int, int]) -> None:
    """‖0‖₂ = 0 exactly, for any shape, including an empty one."""
    got = spectral_norm(np.zeros(shape), 1e-6)
    assert got.value == 0.0
    assert got.matvecs == 0


def test_scaling_is_homogeneous() -> None:
    """‖c·A‖₂ = |c|·‖A‖₂ for tiny and huge c (no under- or overflow in the method), to 1e-12."""
    a, expected = _matrix("gaussian", SMALL)
    for c in (1e-150, -3.0, 1e150):
        assert spectral_norm(c * a, 1e-10).value == pytest.approx(abs(c) * expected, rel=1e-12)


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
def test_spectral_norms_small_stack(rtol: float) -> None:
    """spectral_norms on a (k, m, n) stack equals the dense ‖A_k‖₂ of each matrix, zero matrices included."""
    rng = np.random.default_rng(42)
    stack = rng.standard_normal((6, 9, 5)) * np.array([1e-3, 1.0, 0.0, 7.0, 1e5, 0.5])[:, None, None]
    values, matvecs = spectral_norms(stack, rtol)
    expected = [float(np.linalg.norm(a, 2)) for a in stack]
    np.testing.assert_allclose(values, expected, rtol=rtol, atol=0)
    assert values[2] == 0.0
    assert matvecs == 0


def test_spectral_norms_large_stack_uses_lanczos() -> None:
    """On a stack of 600×700 matrices, each norm meets rtol, with the Lanczos matvecs counted."""
    a, ea = _matrix("gaussian", LARGE)
    b, eb = _matrix("low_rank", LARGE)
    values, matvecs = spectral_norms(np.stack([a, np.zeros(LARGE), b]), 1e-8)
    np.testing.assert_allclose(values, [ea, 0.0, eb], rtol=1e-8, atol=0)
    assert matvecs > 0


def test_spectral_norms_empty_stack() -> None:
    """No matrices: no norms."""
    values, matvecs = spectral_norms(np.zeros((0, 3, 4)), 1e-6)
    assert values.shape == (0,)
    assert matvecs == 0


@pytest.mark.parametrize("rtol", [1e-3, 1e-6])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_float32_path_meets_rtol(monkeypatch: pytest.MonkeyPatch, kind: str, rtol: float) -> None:
    """The float32 path (taken at any size here) is certified in float64 or handed on: either way rtol holds."""
    monkeypatch.setattr(spectral, "FLOAT32_MIN_DIM", 0)
    a, expected = _matrix(kind, LARGE)
    got = spectral_norm(a, rtol)
    assert abs(got.value - expected) <= rtol * expected, f"{got.method}: {got.value!r} vs {expected!r}"
    assert got.value <= expected * (1.0 + ROUNDING)


def _probe_stack(rng: np.random.Generator, probes: int, shape: tuple[int, int], spread: float) -> Array:
    """diag(d_b)·W for tanh-like derivative rows d_b: matrices alike, as a layer's probes make them (``spread``
    scales how far apart their norms lie)."""
    w = rng.standard_normal(shape) / np.sqrt(shape[1])
    d = 1 - np.tanh(spread * rng.standard_normal((probes, shape[0]))) ** 2
    out: Array = d[:, :, None] * w
    return out


def _dense_max(stack: Array, weights: Array) -> float:
    """The reference: every matrix's σ_max by LAPACK's SVD, weighted, the largest."""
    return max(float(wk * np.linalg.norm(a, 2)) for wk, a in zip(weights, stack, strict=True))


@pytest.mark.parametrize("shape", [(8, 8), (30, 12), (12, 30), (64, 64)])
@pytest.mark.parametrize("spread", [0.0, 0.01, 1.5])
@pytest.mark.parametrize("probes", [1, 4, 16])
def test_spectral_max_is_the_largest_norm(shape: tuple[int, int], spread: float, probes: int) -> None:
    """max_k σ_max(A_k) solving only some of the A_k equals the largest of all their dense SVD norms to 1e-13,
    for probes alike (spread 0: every matrix the same; 0.01: nearly tied), and far apart."""
    rng = np.random.default_rng(probes * 1000 + shape[0] * 10 + shape[1])
    stack = _probe_stack(rng, probes, shape, spread)
    value, matvecs = spectral.spectral_max(stack, 1e-6)
    assert value == pytest.approx(_dense_max(stack, np.ones(probes)), rel=1e-13)
    assert matvecs == 0


def test_spectral_max_weights_scales_and_zeros() -> None:
    """Weights of 0 (a dead probe) and of 2^±900, matrices of entries near 1e-150 and 1e150, and zero matrices:
    the weighted max is the dense one to 1e-13, with no overflow."""
    rng = np.random.default_rng(7)
    stack = _probe_stack(rng, 6, (20, 20), 1.0) * np.array([1e-150, 1.0, 0.0, 1e150, 3.0, 1.0])[:, None, None]
    for weights in (np.ones(6), np.array([1e150, 0.0, 1.0, 1e-150, 0.5, 2.0**-900])):
        with np.errstate(all="raise"):
            value, _ = spectral.spectral_max(stack, 1e-10, weights)
        assert value == pytest.approx(_dense_max(stack, weights), rel=1e-13)
    assert spectral.spectral_max(stack, 1e-6, np.zeros(6)) == (0.0, 0)
    assert spectral.spectral_max(np.zeros((0, 3, 3)), 1e-6) == (0.0, 0)


def test_gram_max_solves_one_gram_of_probes_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sixteen probes' Grams of one layer: one is solved, the other fifteen are ruled out by a Cholesky
    factorisation each; a Gram made the largest by a hair more is solved too, and is the answer."""
    rng = np.random.default_rng(3)
    stack = _probe_stack(rng, 16, (64, 64), 1.5)
    grams = stack @ stack.transpose(0, 2, 1)
    solved: list[int] = []
    top = spectral._top_eigenvalue

    def counted(gram: Array) -> float:
        solved.append(1)
        return top(gram)

    monkeypatch.setattr(spectral, "_top_eigenvalue", counted)
    norms = [float(np.linalg.norm(a, 2)) for a in stack]
    assert spectral.gram_max(grams, np.ones(16)) == pytest.approx(max(norms), rel=1e-13)
    assert len(solved) <= 2
    solved.clear()
    weights = np.ones(16)
    runner_up = int(np.argsort(norms)[-2])
    weights[runner_up] = max(norms) / norms[runner_up] * (1 + 1e-9)
    assert spectral.gram_max(grams, weights) == pytest.approx(max(norms) * (1 + 1e-9), rel=1e-13)
    assert len(solved) >= 2
