"""service.survey: every matrix's σ_max, σ_min, ‖W‖_F and stable rank against numpy's dense SVD; the rest skipped."""

from __future__ import annotations

import numpy as np
import pytest

from service.cost import survey_estimate, survey_matrix_flops, svd_flops
from service.errors import InvalidInputError
from service.spectra import QUANTILE_LEVELS
from service.survey import Planned, Skipped, classify, plan, survey

RTOL = 1e-12
"""gesdd of the exactly scaled matrix against numpy's of the matrix itself: equal to a few ulps."""


def _reference(matrix: np.ndarray) -> tuple[float, float, float, float]:
    """σ_max, σ_min, ‖W‖_F and ‖W‖_F²/‖W‖₂² from numpy.linalg.svd and numpy.linalg.norm."""
    s = np.linalg.svd(matrix, compute_uv=False)
    frobenius = float(np.linalg.norm(matrix))
    return float(s[0]), float(s[-1]), frobenius, frobenius**2 / float(s[0]) ** 2


def test_matrices_and_kernels_match_the_dense_svd() -> None:
    rng = np.random.default_rng(3)
    named = {
        "embed.weight": rng.standard_normal((50, 8)),
        "fc.weight": rng.standard_normal((6, 9)) * 1e-3,
        "conv1d.weight": rng.standard_normal((4, 3, 5)),
        "conv2d.weight": rng.standard_normal((5, 2, 3, 3)) * 1e3,
    }
    found = survey(named)
    assert [w.name for w in found.weights] == list(named)
    for row in found.weights:
        tensor = named[row.name]
        matrix = tensor.reshape(tensor.shape[0], -1)
        assert row.matrix_shape == matrix.shape
        assert row.kind == ("matrix" if tensor.ndim == 2 else "kernel")
        top, bottom, frobenius, stable = _reference(matrix)
        assert row.sigma_max == pytest.approx(top, rel=RTOL)
        assert row.sigma_min == pytest.approx(bottom, rel=RTOL)
        assert row.frobenius_norm == pytest.approx(frobenius, rel=RTOL)
        assert row.stable_rank == pytest.approx(stable, rel=RTOL)
        assert row.rank == np.linalg.matrix_rank(matrix)
        assert row.singular_values == ()
    assert found.skipped == ()
    assert found.parameters == 50 * 8 + 6 * 9 + 4 * 15 + 5 * 18


def test_the_kernel_matrix_is_torch_flatten() -> None:
    """A conv2d kernel surveyed as torch.flatten(K, 1), by torch's own reshape and SVD."""
    torch = pytest.importorskip("torch")
    kernel = torch.randn(6, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    row = survey({"k": kernel.numpy()}).weights[0]
    s = torch.linalg.svdvals(torch.flatten(kernel, 1))
    assert row.matrix_shape == (6, 36)
    assert row.sigma_max == pytest.approx(float(s[0]), rel=RTOL)
    assert row.sigma_min == pytest.approx(float(s[-1]), rel=RTOL)


@pytest.mark.parametrize("mode", ["summary", "full"])
def test_singular_values_by_mode(mode: str) -> None:
    matrix = np.random.default_rng(1).standard_normal((7, 12))
    row = survey({"w": matrix}, mode=mode).weights[0]  # type: ignore[arg-type]
    s = np.linalg.svd(matrix, compute_uv=False)
    expected = s if mode == "full" else np.quantile(s, QUANTILE_LEVELS)
    assert np.allclose(row.singular_values, expected, rtol=RTOL, atol=0)


def test_vectors_scalars_empty_and_high_rank_tensors_are_skipped() -> None:
    named = {
        "norm.weight": np.ones(4),
        "scale": np.array(2.0),
        "empty.weight": np.zeros((0, 3)),
        "five.weight": np.ones((1, 1, 1, 1, 2)),
        "w": np.eye(2),
    }
    found = survey(named)
    assert [w.name for w in found.weights] == ["w"]
    reasons = {s.name: s.reason for s in found.skipped}
    assert set(reasons) == {"norm.weight", "scale", "empty.weight", "five.weight"}
    assert "vector" in reasons["norm.weight"]
    assert "scalar" in reasons["scale"]
    assert "dimension of 0" in reasons["empty.weight"]
    assert "5 dimensions" in reasons["five.weight"]


def test_zero_and_rank_deficient_matrices() -> None:
    found = survey({"zero": np.zeros((3, 2)), "low": np.outer([1.0, 2.0, 3.0], [1.0, -1.0])})
    zero, low = found.weights
    assert (zero.sigma_max, zero.sigma_min, zero.frobenius_norm, zero.stable_rank) == (0.0, 0.0, 0.0, None)
    assert zero.flags == ("zero",)
    assert low.flags == ("rank_deficient",)
    assert low.condition_number is None
    assert low.stable_rank == pytest.approx(1.0, rel=RTOL)  # rank one: ‖W‖_F = ‖W‖₂
    assert found.largest() is low
    assert found.least_stable_rank() is low


def test_extreme_scales_do_not_overflow_or_underflow() -> None:
    """Entries near float64's limits: the exact power-of-two scaling keeps every singular value (numpy's SVD of
    the matrix itself agrees; ‖W‖_F would overflow as √(Σ w²) unscaled)."""
    base = np.array([[3.0, 1.0], [0.5, 2.0]])
    for scale in (1e300, 1e-300):
        row = survey({"w": base * scale}).weights[0]
        s = np.linalg.svd(base, compute_uv=False) * scale
        assert row.sigma_max == pytest.approx(s[0], rel=RTOL)
        assert row.sigma_min == pytest.approx(s[-1], rel=RTOL)
        assert row.frobenius_norm == pytest.approx(np.linalg.norm(base) * scale, rel=RTOL)


def test_norms_beyond_float64_and_non_finite_entries_are_refused_by_name() -> None:
    with pytest.raises(InvalidInputError) as caught:
        survey({"big": np.full((4, 4), 1.5e308)}, where=("weights",))
    assert caught.value.location == ("weights", "big")
    assert "float64" in caught.value.message
    with pytest.raises(InvalidInputError) as caught:
        survey({"nan": np.array([[1.0, np.nan]])}, where=("weights",))
    assert caught.value.location == ("weights", "nan")


def test_plan_reads_shapes_only() -> None:
    planned, skipped = plan([("a", (3, 4)), ("b", (3,)), ("c", (2, 3, 1, 1))])
    assert planned == [Planned("a", (3, 4), (3, 4)), Planned("c", (2, 3, 1, 1), (2, 3))]
    assert [s.name for s in skipped] == ["b"]
    assert isinstance(classify("x", ()), Skipped)


def test_the_cost_counts_every_svd_and_every_value() -> None:
    """survey_estimate: the matrices' flops add up, each at least its gesdd count, and the answer grows by one value
    per singular value in "full"."""
    shapes = [(768, 3072), (30, 30)]
    estimate = survey_estimate(shapes, 2, 40, "none")
    assert estimate.flops == pytest.approx(sum(survey_matrix_flops(m, n) for m, n in shapes), rel=1e-15)
    assert all(survey_matrix_flops(m, n) > svd_flops(m, n) for m, n in shapes)
    assert svd_flops(768, 3072) == svd_flops(3072, 768)
    full = survey_estimate(shapes, 2, 40, "full")
    assert full.response_bytes - estimate.response_bytes == 24 * (768 + 30)
    assert estimate.parameters == 768 * 3072 + 900
