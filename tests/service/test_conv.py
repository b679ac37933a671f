"""service.conv against computations that share none of its code: the operator matrix built by plain loops from
the definition, scipy.signal.correlate2d and np.roll (PyTorch's semantics, torch itself not needed), LAPACK's SVD
of the explicit matrix; and service.spectral.operator_norm against np.linalg.norm(A, 2)."""

from __future__ import annotations

from functools import cache
from itertools import product

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from scipy.signal import correlate2d

from service import conv, lanczos
from service.conv import Conv2d, Padding
from service.errors import InvalidInputError
from service.spectral import operator_norm

Array = NDArray[np.float64]

EXACT = 1e-12
"""Relative error allowed where only rounding separates two computations of the same sums."""
SVD = 1e-10
"""The issue's requirement for FFT singular values against the explicit matrix's."""
RITZ = 1e-12
"""A Ritz value never exceeds λ_max, so a Lanczos σ may overshoot the dense one by rounding only."""

Case = tuple[int, int, int, int, int, int]
CASES: list[Case] = [(3, 2, 3, 3, 5, 6), (3, 2, 2, 2, 5, 6), (2, 3, 2, 3, 4, 5), (2, 2, 4, 1, 4, 3), (2, 2, 5, 3, 3, 2)]
"""(c_out, c_in, kh, kw, H, W): odd square, even square, and rectangular kernels (kh ≠ kw, one of them even,
one as tall as the input, and one larger than it both ways)."""
PADDINGS: list[Padding] = ["circular", "zeros"]


def _explicit(kernel: Array, size: tuple[int, int], padding: Padding) -> Array:
    """M[(o, y, x), (i, y', x')] from out[o, y, x] = Σ K[o, i, p, q]·in[i, y + p − top, x + q − left], by loops."""
    c_out, c_in, kh, kw = kernel.shape
    height, width = size
    top, left = (kh - 1) // 2, (kw - 1) // 2
    matrix = np.zeros((c_out * height * width, c_in * height * width))
    for o, y, x, i, p, q in product(range(c_out), range(height), range(width), range(c_in), range(kh), range(kw)):
        row, col = y + p - top, x + q - left
        if padding == "circular":
            row, col = row % height, col % width
        elif not (0 <= row < height and 0 <= col < width):
            continue
        matrix[(o * height + y) * width + x, (i * height + row) * width + col] += kernel[o, i, p, q]
    return matrix


@cache
def _case(case: Case, padding: Padding) -> tuple[Conv2d, Array]:
    """A layer with a Gaussian kernel (seeded by the case) and its explicit matrix."""
    c_out, c_in, kh, kw, height, width = case
    kernel = np.random.default_rng(sum(case)).standard_normal((c_out, c_in, kh, kw))
    return Conv2d(kernel, (height, width), padding), _explicit(kernel, (height, width), padding)


def _close(actual: Array, expected: NDArray[np.floating], rtol: float) -> None:
    """Every entry within rtol of the largest |expected|."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * float(np.abs(expected).max()))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("case", CASES)
def test_apply_and_adjoint_are_the_explicit_matrix(case: Case, padding: Padding) -> None:
    layer, matrix = _case(case, padding)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, matrix.shape[1])), rng.standard_normal((4, matrix.shape[0]))
    assert layer.shape == matrix.shape
    _close(layer.apply(x), x @ matrix.T, EXACT)
    _close(layer.adjoint(y), y @ matrix, EXACT)
    _close(layer.apply(x[:1]), x[:1] @ matrix.T, EXACT)
    _close(layer.adjoint(y[:1]), y[:1] @ matrix, EXACT)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("case", CASES)
def test_dense_is_the_explicit_matrix(case: Case, padding: Padding, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly — each entry is one kernel entry times 1 plus zeros — but where a circular kernel larger than the
    input sums several entries into one, in another order (then to rounding). Also when built in blocks of a few
    rows."""
    layer, matrix = _case(case, padding)
    wraps = padding == "circular" and (case[2] > case[4] or case[3] > case[5])
    _close(layer.dense(), matrix, EXACT if wraps else 0.0)
    monkeypatch.setattr(conv, "DENSE_CHUNK", 7 * max(matrix.shape))
    _close(layer.dense(), matrix, EXACT if wraps else 0.0)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("kh", "kw"), [(3, 3), (5, 5), (3, 5), (1, 3)])
def test_odd_kernels_match_scipy_correlate2d(kh: int, kw: int, padding: Padding) -> None:
    """For odd k, padding="same" is torch's padding=k//2, and scipy's correlate2d(mode="same") centres the same
    way: out[o] = Σ_i correlate2d(in[i], K[o, i], boundary="wrap" | "fill")."""
    rng = np.random.default_rng(2)
    kernel, images = rng.standard_normal((3, 2, kh, kw)), rng.standard_normal((2, 7, 6))
    boundary = "wrap" if padding == "circular" else "fill"
    expected = np.stack(
        [sum(correlate2d(images[i], kernel[o, i], mode="same", boundary=boundary) for i in range(2)) for o in range(3)]
    )
    actual = Conv2d(kernel, (7, 6), padding).apply(images.reshape(1, -1))
    _close(actual, expected.reshape(1, -1), EXACT)


@pytest.mark.parametrize(("kh", "kw"), [(3, 3), (5, 3), (1, 1)])
def test_circular_odd_kernels_match_np_roll(kh: int, kw: int) -> None:
    """torch.nn.Conv2d(padding=(kh//2, kw//2), padding_mode="circular"):
    out[o] = Σ_{i,p,q} K[o, i, p, q]·roll(in[i], (kh//2 − p, kw//2 − q)), as roll(a, s)[y] = a[y − s]."""
    rng = np.random.default_rng(3)
    kernel, images = rng.standard_normal((4, 3, kh, kw)), rng.standard_normal((2, 3, 6, 8))
    expected = np.zeros((2, 4, 6, 8))
    for o, i, p, q in product(range(4), range(3), range(kh), range(kw)):
        shifted = np.roll(images[:, i], (kh // 2 - p, kw // 2 - q), axis=(1, 2))
        expected[:, o] += kernel[o, i, p, q] * shifted
    actual = Conv2d(kernel, (6, 8), "circular").apply(images.reshape(2, -1))
    _close(actual, expected.reshape(2, -1), EXACT)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("case", CASES)
def test_kernel_gradient_is_the_explicit_derivative(case: Case, padding: Padding) -> None:
    """A_K is linear in K, so ∂/∂K[k] Σ_b δ_bᵀ·M(K)·a_b = Σ_b δ_bᵀ·M(e_k)·a_b exactly, e_k the k-th unit kernel."""
    layer, matrix = _case(case, padding)
    rng = np.random.default_rng(4)
    delta, a = rng.standard_normal((3, matrix.shape[0])), rng.standard_normal((3, matrix.shape[1]))
    expected = np.zeros(layer.kernel.shape)
    for k in np.ndindex(layer.kernel.shape):
        unit = np.zeros(layer.kernel.shape)
        unit[k] = 1.0
        expected[k] = np.einsum("bm,mn,bn->", delta, _explicit(unit, layer.size, padding), a)
    _close(layer.kernel_gradient(delta, a), expected, EXACT)


@pytest.mark.parametrize("case", CASES)
def test_fft_singular_values_are_the_explicit_matrix_s(case: Case) -> None:
    layer, matrix = _case(case, "circular")
    expected = np.linalg.svd(matrix, compute_uv=False)
    _close(layer.frequency_singular_values(), expected, SVD)


@pytest.mark.parametrize(("c_out", "c_in"), [(12, 12), (5, 16), (16, 5), (1, 1)])
def test_fft_norm_is_the_largest_frequency_singular_value(c_out: int, c_in: int) -> None:
    """The Gram path of fft_norm (half the spectrum, top eigenvalue) against the full batched SVD, to 1e-13."""
    kernel = np.random.default_rng(5).standard_normal((c_out, c_in, 3, 2)) * 1e-30
    layer = Conv2d(kernel, (9, 10), "circular")
    assert layer.fft_norm() == pytest.approx(layer.frequency_singular_values()[0], rel=1e-13, abs=0)


@pytest.mark.parametrize("case", CASES)
def test_circular_norm_is_the_dense_svd_max(case: Case) -> None:
    layer, matrix = _case(case, "circular")
    found = layer.norm(1e-6)
    assert found.method == "fft"
    assert found.value == pytest.approx(np.linalg.svd(matrix, compute_uv=False)[0], rel=SVD, abs=0)


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
@pytest.mark.parametrize("case", CASES)
def test_small_zero_padded_norm_is_dense(case: Case, rtol: float) -> None:
    layer, matrix = _case(case, "zeros")
    found = layer.norm(rtol)
    assert found.method == "dense"
    assert found.value == pytest.approx(np.linalg.svd(matrix, compute_uv=False)[0], rel=rtol, abs=0)


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
@pytest.mark.parametrize(("c_out", "c_in", "k"), [(3, 3, 3), (2, 4, 2), (4, 2, 5)])
def test_large_zero_padded_norm_is_lanczos(c_out: int, c_in: int, k: int, rtol: float) -> None:
    """min(m, n) ≥ 512 > DENSE_MAX_DIM: Lanczos on the tall, square and wide Gram side, against LAPACK's σ_max
    of dense(), itself the explicit matrix by test_dense_is_the_explicit_matrix."""
    kernel = np.random.default_rng(6).standard_normal((c_out, c_in, k, k)) * 1e5
    layer = Conv2d(kernel, (16, 16), "zeros")
    found = layer.norm(rtol)
    expected = np.linalg.norm(layer.dense(), 2)
    assert found.method == "lanczos"
    assert expected * (1 - rtol) <= found.value <= expected * (1 + RITZ)


def test_padded_fft_norm_bounds_the_zero_padded_norm() -> None:
    """‖A_zeros‖ ≤ padded_fft_norm for every case; fft_norm is the circular layer's norm, not the zero-padded
    one's (an estimate: here it is off by more than 1e-3 in every case)."""
    for case in CASES:
        layer, matrix = _case(case, "zeros")
        zeros = np.linalg.svd(matrix, compute_uv=False)[0]
        circular = np.linalg.svd(_case(case, "circular")[1], compute_uv=False)[0]
        assert layer.padded_fft_norm() >= zeros * (1 - EXACT)
        assert layer.fft_norm() == pytest.approx(circular, rel=SVD, abs=0)
        assert abs(layer.fft_norm() - zeros) > 1e-3 * zeros


def test_fft_norm_of_zero_padding_is_no_bound() -> None:
    """The circular norm can lie below the zero-padded one (as well as above, as in CASES): an estimate only.
    This kernel was found by searching seeds; the padded grid's circular norm still bounds."""
    layer = Conv2d(np.random.default_rng(34).standard_normal((2, 2, 3, 3)), (4, 5), "zeros")
    zeros = np.linalg.norm(_explicit(layer.kernel, layer.size, "zeros"), 2)
    assert layer.fft_norm() < zeros * (1 - 1e-3) < layer.padded_fft_norm()


def test_zero_kernel_has_norm_zero() -> None:
    for padding in PADDINGS:
        assert Conv2d(np.zeros((2, 2, 3, 3)), (20, 20), padding).norm(1e-6).value == 0.0


def test_flops_per_apply() -> None:
    assert Conv2d(np.ones((4, 3, 3, 2)), (5, 6), "zeros").flops_per_apply == 2.0 * 4 * 3 * 3 * 2 * 5 * 6


def _torch_operator(kernel: Array, size: tuple[int, int], padding: Padding) -> Array | None:
    """The explicit matrix of torch's nn.Conv2d(padding="same", padding_mode=padding) with this kernel, column i
    its output for the i-th basis image (float64); None where torch refuses the input."""
    c_out, c_in, kh, kw = kernel.shape
    layer = torch.nn.Conv2d(c_in, c_out, (kh, kw), padding="same", padding_mode=padding, bias=False).double()
    n = c_in * size[0] * size[1]
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(kernel))
        try:
            columns = layer(torch.eye(n, dtype=torch.float64).reshape(n, c_in, *size))
        except RuntimeError:
            return None
    matrix: Array = columns.reshape(n, -1).numpy().T
    return matrix


BIG_KERNELS = [(3, 3, 1, 9), (5, 5, 3, 3), (3, 3, 1, 1), (4, 4, 2, 3), (5, 4, 2, 2), (7, 7, 3, 3), (4, 4, 1, 4)]
"""(kh, kw, H, W): kernels larger than the input, each accepted by torch with zero padding; with circular padding
the last wraps around twice (kh//2 = 2 > H = 1), which torch refuses."""


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("kh", "kw", "height", "width"), BIG_KERNELS)
def test_kernel_larger_than_input_is_torch_s_operator(
    kh: int, kw: int, height: int, width: int, padding: Padding
) -> None:
    """Accepted exactly where torch accepts it; then the operator is the one looped from torch's conv2d (float64),
    its norm that matrix's largest singular value, and for circular padding its singular values the DFT's (the
    kernel folded onto the grid, not cropped)."""
    kernel = np.random.default_rng(kh * 100 + kw * 10 + height + width).standard_normal((2, 3, kh, kw))
    size = (height, width)
    expected = _torch_operator(kernel, size, padding)
    if expected is None:
        with pytest.raises(ValueError, match="wrap around more than once"):
            Conv2d(kernel, size, padding)
        return
    layer = Conv2d(kernel, size, padding)
    _close(layer.dense(), expected, EXACT)
    _close(layer.apply(np.eye(layer.shape[1])).T, expected, EXACT)
    _close(layer.adjoint(np.eye(layer.shape[0])), expected, EXACT)
    values = np.linalg.svd(expected, compute_uv=False)
    assert layer.norm(1e-10).value == pytest.approx(values[0], rel=SVD)
    if padding == "circular":
        assert layer.fft_norm() == pytest.approx(values[0], rel=SVD)
        np.testing.assert_allclose(
            layer.frequency_singular_values(), values[: min(layer.shape)], rtol=0, atol=SVD * values[0]
        )
    else:
        assert layer.padded_fft_norm() >= values[0] * (1 - SVD)


def test_other_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="kernel must have shape"):
        Conv2d(np.ones((2, 3, 3)), (5, 5), "zeros")
    with pytest.raises(ValueError, match="padding must be"):
        Conv2d(np.ones((1, 1, 3, 3)), (5, 5), "reflect")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN or infinite"):
        Conv2d(np.full((1, 1, 3, 3), np.nan), (5, 5), "zeros")
    layer = Conv2d(np.ones((2, 3, 3, 3)), (5, 5), "zeros")
    with pytest.raises(ValueError, match=r"rows of shape \[B, 75\]"):
        layer.apply(np.ones((1, 50)))
    with pytest.raises(ValueError, match="one of each per probe"):
        layer.kernel_gradient(np.ones((2, 50)), np.ones((3, 75)))


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
@pytest.mark.parametrize("scale", [1.0, 1e-30, 1e30])
@pytest.mark.parametrize("shape", [(300, 500), (500, 300)])
def test_operator_norm_is_lapack_s_norm(shape: tuple[int, int], scale: float, rtol: float) -> None:
    a = np.random.default_rng(7).standard_normal(shape) * scale
    found = operator_norm(lambda x: x @ a.T, lambda y: y @ a, shape, rtol)
    expected = np.linalg.norm(a, 2)
    assert found.method == "lanczos"
    assert expected * (1 - rtol) <= found.value <= expected * (1 + RITZ)


def test_operator_norm_of_zero_is_zero() -> None:
    a = np.zeros((30, 40))
    assert operator_norm(lambda x: x @ a.T, lambda y: y @ a, a.shape, 1e-6).value == 0.0


def test_operator_norm_refuses_what_lanczos_cannot_certify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain Lanczos answers to rtol; should it not converge within its basis, an error, never a guess."""
    a = np.random.default_rng(8).standard_normal((400, 300))
    expected = np.linalg.norm(a, 2)
    found = operator_norm(lambda x: x @ a.T, lambda y: y @ a, a.shape, 1e-10)
    assert expected * (1 - 1e-10) <= found.value <= expected * (1 + RITZ)
    monkeypatch.setattr(lanczos, "top_eigenvalues", lambda gram, count, *args: (np.full(count, np.nan), 0))
    with pytest.raises(InvalidInputError, match="could not be certified to rtol 1e-10") as caught:
        operator_norm(lambda x: x @ a.T, lambda y: y @ a, a.shape, 1e-10)
    assert caught.value.location == ("options", "rtol")
