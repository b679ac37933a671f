"""Init schemes: singular values of orthogonal init, the Bai–Yin edge of a Gaussian matrix, each scheme's std
against torch.nn.init's formulas (written out here), uniform supports, and seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from service.activations import make_activation
from service.errors import InvalidInputError
from service.initializers import SCHEMES, init_weight
from service.network import InitRecipe, build_network

Array = NDArray[np.float64]

FAN_OUT, FAN_IN = 800, 1250
"""A 10^6-entry weight with fan_in ≠ fan_out, so that Xavier, He and LeCun give three different stds."""
STD_RTOL = 0.01
"""The sample std of N = 10^6 iid entries has relative standard error √((κ − 1)/4N): 7.1e-4 for a normal
(κ = 3), 4.5e-4 for a uniform (κ = 9/5). 1% is more than 14 standard errors."""
GAIN = 1.7


def _torch_std(scheme: str, fan_in: int, fan_out: int, gain: float, std: float) -> float:
    """The entries' std as the torch.nn.init documentation defines it, times gain."""
    if scheme in ("gaussian", "uniform"):
        return gain * std
    if scheme in ("xavier_normal", "xavier_uniform"):
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme in ("he_normal", "he_uniform"):
        return gain * math.sqrt(2.0 / fan_in)
    if scheme == "lecun_normal":
        return gain / math.sqrt(fan_in)
    if scheme == "orthogonal":
        # min(m, n) unit singular values times gain: ‖W‖_F² = gain²·min(m, n) over m·n entries.
        return gain / math.sqrt(max(fan_in, fan_out))
    raise AssertionError(scheme)


@pytest.mark.parametrize("gain", [0.5, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("shape", [(64, 64), (100, 40), (40, 100), (1, 7), (7, 1)])
def test_orthogonal_singular_values_equal_gain(shape: tuple[int, int], gain: float) -> None:
    """Orthogonal init has every one of its min(m, n) singular values equal to gain (to 1e-10)."""
    w = init_weight(np.random.default_rng(3), "orthogonal", shape, gain, 1.0)
    assert w.shape == shape
    s = np.linalg.svd(w, compute_uv=False)
    assert len(s) == min(shape)
    np.testing.assert_allclose(s, gain, rtol=0, atol=1e-10)


def test_orthogonal_via_build_network() -> None:
    """build_network with the orthogonal scheme gives W_j of shape (n_j, n_{j−1}) with all σ_i = gain."""
    net = build_network(
        InitRecipe(widths=(5, 9, 3, 3), scheme="orthogonal", activation=make_activation("tanh"), gain=2)
    )
    assert [layer.weight.dense().shape for layer in net.layers] == [(9, 5), (3, 9), (3, 3)]
    for layer in net.layers:
        np.testing.assert_allclose(np.linalg.svd(layer.weight.dense(), compute_uv=False), 2.0, rtol=0, atol=1e-10)


def test_gaussian_square_matrix_norm_at_bai_yin_edge() -> None:
    """An n×n matrix of iid N(0, 1/n) entries has ‖W‖₂ → 2 (Bai–Yin: (√m + √n)·std); at n = 512 the
    Tracy–Widom fluctuation is O(n^(−2/3)) ≈ 0.016, so |‖W‖₂ − 2| < 0.05."""
    net = build_network(
        InitRecipe(
            widths=(512, 512), scheme="gaussian", activation=make_activation("linear"), std=1 / math.sqrt(512), seed=7
        )
    )
    assert abs(float(np.linalg.norm(net.layers[0].weight.dense(), 2)) - 2.0) < 0.05


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_empirical_std_matches_torch_formula(scheme: str) -> None:
    """The sample std of a 10^6-entry weight matches torch.nn.init's std for the scheme (to STD_RTOL), the mean
    is 0 within 5 standard errors, and the scheme's own std formula agrees with torch's exactly."""
    std_param = 0.3
    # Orthogonal init is not iid and its mean square is exact, so a small shape suffices (QR is the slow part).
    fan_in, fan_out = (FAN_IN // 10, FAN_OUT // 10) if scheme == "orthogonal" else (FAN_IN, FAN_OUT)
    net = build_network(
        InitRecipe(
            widths=(fan_in, fan_out),
            scheme=scheme,
            activation=make_activation("linear"),
            gain=GAIN,
            std=std_param,
            seed=11,
        )
    )
    w = net.layers[0].weight.dense()
    assert w.shape == (fan_out, fan_in)
    expected = _torch_std(scheme, fan_in, fan_out, GAIN, std_param)
    assert SCHEMES[scheme].std(fan_in, fan_out, GAIN, std_param) == pytest.approx(expected, rel=1e-15)
    if scheme == "orthogonal":
        # Not iid: the mean square is exactly gain²·min(m, n)/(m·n).
        assert float(np.mean(w**2)) == pytest.approx(expected**2, rel=1e-10)
        return
    assert float(w.std()) == pytest.approx(expected, rel=STD_RTOL)
    assert abs(float(w.mean())) < 5 * expected / math.sqrt(w.size)


@pytest.mark.parametrize("scheme", [s for s in sorted(SCHEMES) if SCHEMES[s].distribution == "uniform"])
def test_uniform_schemes_bounded_by_sqrt3_std(scheme: str) -> None:
    """U(−a, a) has std a/√3, so every entry lies in [−√3·std, √3·std], and with 10^6 draws the extremes come
    within 1e-4·a of ±a (P(miss) = (1 − 5e-5)^(10^6) ≈ e^(−50))."""
    std_param = 0.3
    w = init_weight(np.random.default_rng(5), scheme, (FAN_OUT, FAN_IN), GAIN, std_param)
    a = math.sqrt(3.0) * _torch_std(scheme, FAN_IN, FAN_OUT, GAIN, std_param)
    assert float(np.abs(w).max()) <= a
    assert float(w.max()) > a * (1 - 1e-4)
    assert float(w.min()) < -a * (1 - 1e-4)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_same_seed_same_weights_different_seed_different(scheme: str) -> None:
    """The same recipe gives bit-identical weights and biases; another seed gives different ones."""

    def recipe(seed: int) -> InitRecipe:
        return InitRecipe(widths=(6, 8, 4), scheme=scheme, activation=make_activation("relu"), bias_std=0.1, seed=seed)

    a, b, c = build_network(recipe(1)), build_network(recipe(1)), build_network(recipe(2))
    for la, lb, lc in zip(a.layers, b.layers, c.layers, strict=True):
        np.testing.assert_array_equal(la.weight.dense(), lb.weight.dense())
        assert la.bias is not None
        assert lb.bias is not None
        np.testing.assert_array_equal(la.bias, lb.bias)
        assert not np.array_equal(la.weight.dense(), lc.weight.dense())


def test_bias_std_and_output_activation() -> None:
    """bias_std = 0 gives no biases; output_activation replaces the activation of the last layer only;
    the network remembers its gain."""
    net = build_network(
        InitRecipe(
            widths=(3, 4, 4, 2),
            scheme="he_normal",
            activation=make_activation("relu"),
            output_activation=make_activation("linear"),
            gain=0.7,
        )
    )
    assert [layer.activation.name for layer in net.layers] == ["relu", "relu", "linear"]
    assert all(layer.bias is None for layer in net.layers)
    assert net.gain == 0.7
    assert net.widths == [3, 4, 4, 2]


@pytest.mark.parametrize(
    ("recipe", "location"),
    [
        (
            InitRecipe(widths=(3, 4), scheme="kaiming", activation=make_activation("relu")),
            ("network", "init", "scheme"),
        ),
        (
            InitRecipe(widths=(3,), scheme="he_normal", activation=make_activation("relu")),
            ("network", "init", "widths"),
        ),
        (
            InitRecipe(widths=(3, 0, 2), scheme="he_normal", activation=make_activation("relu")),
            ("network", "init", "widths", 1),
        ),
    ],
)
def test_bad_recipes_name_the_field(recipe: InitRecipe, location: tuple[str | int, ...]) -> None:
    """An unknown scheme, fewer than two widths or a width < 1 raise InvalidInputError at that field."""
    with pytest.raises(InvalidInputError) as info:
        build_network(recipe)
    assert info.value.location == location
