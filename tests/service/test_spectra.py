"""service.spectra: the spectra against numpy computed here, and the free-probability prediction (Pennington,
Schoenholz & Ganguli 2017, 2018) against its closed forms and against random networks at criticality."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from numpy.typing import NDArray

from service import cost
from service.activations import make_activation
from service.analysis import Options, analyse
from service.cost import Declared, estimate_flops, init_layers
from service.linear import Dense
from service.meanfield import network_meanfield
from service.network import InitRecipe, Layer, Network, build_network, network_from_layers
from service.probes import ProbeSpec, make_probes
from service.spectra import QUANTILE_LEVELS, jacobian_spectra, predict, spectra, weight_spectrum

Array = NDArray[np.float64]

WIDTH, DEPTH = 400, 16
"""The issue's size for the free-probability checks."""


def _derivatives(network: Network, x: Array) -> list[Array]:
    """h_j'(z_j) for each layer, rows are probes: the forward pass written out here."""
    out, a = [], x
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in network.layers:
            z = a @ layer.weight.dense().T + (0.0 if layer.bias is None else layer.bias)
            out.append(layer.activation.derivative(z))
            a = layer.activation.value(z)
    return out


def _jacobian(network: Network, d: list[Array], b: int) -> Array:
    """J = D_L W_L ⋯ D_1 W_1 for probe b, multiplied out from the input side."""
    j = np.eye(network.widths[0])
    for layer, dj in zip(network.layers, d, strict=True):
        j = dj[b][:, None] * (layer.weight.dense() @ j)
    return j


# --- the spectra against numpy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(12, 20, 7), (7, 20, 12), (9, 9, 9, 9)])
def test_jacobian_spectra_against_numpy(widths: tuple[int, ...]) -> None:
    """Both accumulation orders (n_L < n_0, n_L > n_0, square), every singular value (full mode), the mean and
    variance over JJᵀ's n_L eigenvalues (n_L − n_0 of them zero where n_L > n_0) and the condition number, against
    numpy's SVD and eigvalsh of the product formed here (1e-10 in log10, 1e-10 relative)."""
    rng = np.random.default_rng(5)
    layers = [
        Layer(Dense(rng.standard_normal((n, m)) / math.sqrt(m)), 0.1 * rng.standard_normal(n), make_activation("tanh"))
        for m, n in itertools.pairwise(widths)
    ]
    network = network_from_layers(layers)
    x = rng.standard_normal((3, widths[0]))
    d = _derivatives(network, x)
    got = jacobian_spectra(network, d, full=True)
    for b, probe in enumerate(got):
        j = _jacobian(network, d, b)
        s = np.linalg.svd(j, compute_uv=False)
        eigen = np.linalg.eigvalsh(j @ j.T)
        assert probe.singular_values_log10 == pytest.approx(list(np.log10(s)), abs=1e-10)
        assert probe.eigenvalue_mean_log10 == pytest.approx(math.log10(float(np.mean(eigen))), abs=1e-10)
        assert probe.eigenvalue_variance_log10 == pytest.approx(math.log10(float(np.var(eigen))), abs=1e-8)
        assert probe.condition_number_log10 == pytest.approx(math.log10(s[0] / s[-1]), abs=1e-8)
        assert probe.rank == min(widths[0], widths[-1])
        assert probe.flags == ()


def test_summary_mode_gives_the_quantiles() -> None:
    """Summary mode: log10 of numpy's quantiles (linear interpolation) of the singular values at QUANTILE_LEVELS."""
    rng = np.random.default_rng(6)
    network = network_from_layers([Layer(Dense(rng.standard_normal((30, 30))), None, make_activation("relu"))])
    x = rng.standard_normal((2, 30))
    d = _derivatives(network, x)
    for b, probe in enumerate(jacobian_spectra(network, d, full=False)):
        s = np.linalg.svd(_jacobian(network, d, b), compute_uv=False)
        rank = int(np.linalg.matrix_rank(_jacobian(network, d, b)))
        assert probe.rank == rank < 30  # the dead ReLU units zero whole rows of J
        assert probe.flags == ("rank_deficient",)
        assert probe.condition_number_log10 is None
        quantiles = np.quantile(s, QUANTILE_LEVELS)
        for got, expected in zip(probe.singular_values_log10, quantiles, strict=True):
            if expected < s[0] * 1e-12:  # a rounding-level singular value
                continue
            assert got == pytest.approx(math.log10(expected), abs=1e-9)


def test_deep_jacobian_beyond_float64() -> None:
    """A linear network of 400 layers of 3 × 3 weights 10·Q (Q orthogonal): J = 10^400·(a product of orthogonal
    matrices), every singular value 10^400, eigenvalue mean 10^800, variance 0 (to rounding) — far beyond float64,
    exact in log10 (to 1e-9)."""
    rng = np.random.default_rng(1)
    layers = []
    for _ in range(400):
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        layers.append(Layer(Dense(10.0 * q), None, make_activation("linear")))
    network = network_from_layers(layers)
    (probe,) = jacobian_spectra(network, _derivatives(network, np.ones((1, 3))), full=True)
    assert probe.singular_values_log10 == pytest.approx([400.0] * 3, abs=1e-9)
    assert probe.eigenvalue_mean_log10 == pytest.approx(800.0, abs=1e-9)
    assert probe.condition_number_log10 == pytest.approx(0.0, abs=1e-9)


def test_weight_spectrum_against_numpy() -> None:
    """Quantiles of W's singular values, rank, stable rank ‖W‖_F²/‖W‖₂², condition number, and the normalised
    variance of WᵀW's n_in eigenvalues (zeros included), against numpy."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((20, 50))
    got = weight_spectrum(w, full=False)
    s = np.linalg.svd(w, compute_uv=False)
    assert got.singular_values == pytest.approx(list(np.quantile(s, QUANTILE_LEVELS)), rel=1e-12)
    assert got.rank == 20
    assert got.stable_rank == pytest.approx(np.linalg.norm(w, "fro") ** 2 / np.linalg.norm(w, 2) ** 2, rel=1e-12)
    assert got.condition_number == pytest.approx(np.linalg.cond(w), rel=1e-10)
    eigen = np.linalg.eigvalsh(w.T @ w)
    assert got.gram_variance == pytest.approx(float(np.var(eigen) / np.mean(eigen) ** 2), rel=1e-10)
    huge = weight_spectrum(1e150 * w, full=False)  # s⁴ would overflow: the moments are taken relative to s_max
    assert huge.stable_rank == pytest.approx(got.stable_rank, rel=1e-12)
    assert huge.gram_variance == pytest.approx(got.gram_variance, rel=1e-12)
    singular = weight_spectrum(np.outer(np.arange(1.0, 5.0), np.ones(4)), full=True)
    assert singular.rank == 1
    assert singular.condition_number is None
    assert singular.stable_rank == pytest.approx(1.0, rel=1e-12)


# --- the prediction: closed forms -------------------------------------------------------------------------------

CRITICAL = {
    "linear_gaussian": ("linear", "gaussian", 1.0, float(DEPTH)),
    "linear_orthogonal": ("linear", "orthogonal", 1.0, 0.0),
    "relu_gaussian": ("relu", "he_normal", 1.0, 2.0 * DEPTH),
    "relu_orthogonal": ("relu", "orthogonal", math.sqrt(2.0), float(DEPTH)),
}
"""At criticality (σ_w² = 1 linear, 2 ReLU): the free-probability variance of JJᵀ's eigenvalues — L (Gaussian) or 0
(orthogonal) for linear networks, 2L or L for ReLU (Pennington et al. 2017, eq. 15) — and mean 1."""


def _recipe(case: str, width: int, seed: int) -> Network:
    activation, scheme, gain, _ = CRITICAL[case]
    std = 1.0 / math.sqrt(width)  # the gaussian scheme's base std: σ_w = gain·std·√fan_in = 1
    widths = (width,) * (DEPTH + 1)
    return build_network(InitRecipe(widths, scheme, make_activation(activation), gain=gain, std=std, seed=seed))


@pytest.mark.parametrize("case", sorted(CRITICAL))
def test_prediction_at_criticality(case: str) -> None:
    """The prediction for the issue's four networks: mean 1 and variance L, 0, 2L, L (to 1e-12)."""
    network = _recipe(case, 8, seed=0)  # the prediction depends on the recipe, not on the width
    meanfield = network_meanfield(network)
    weights = [weight_spectrum(layer.weight.dense(), full=False) for layer in network.layers]
    mean_log10, variance_log10 = predict(network, meanfield, weights)
    assert mean_log10 is not None
    assert 10.0**mean_log10 == pytest.approx(1.0, rel=1e-12)
    expected = CRITICAL[case][3]
    variance = 0.0 if variance_log10 is None else 10.0**variance_log10
    assert variance == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("scheme", "n_out", "gain", "mean", "variance"),
    [
        ("lecun_normal", 200, 1.0, 1.0, 0.5),  # WWᵀ Wishart, ratio n_out/n_in = 1/2: Marchenko–Pastur variance 1/2
        ("lecun_normal", 800, 1.0, 1.0, 2.0),  # ratio 2: WWᵀ (800 × 800) has 400 zeros
        ("orthogonal", 200, 1.0, 1.0, 0.0),  # orthonormal rows: WWᵀ = I
        ("orthogonal", 800, math.sqrt(2.0), 1.0, 1.0),  # orthonormal columns ·√2: 400 eigenvalues 2, 400 zeros
    ],
)
def test_rectangular_layer(scheme: str, n_out: int, gain: float, mean: float, variance: float) -> None:
    """One linear 400 → n_out layer: the prediction (λ = n_out/400, a = 1 i.i.d., max(0, 1 − λ) orthogonal) is the
    closed form of the comment (to 1e-12), and the drawn layer's JJᵀ = WWᵀ has that mean and variance (within 3% or
    0.03: one Wishart matrix of this size fluctuates by about 1%)."""
    network = build_network(InitRecipe((400, n_out), scheme, make_activation("linear"), gain=gain, seed=3))
    weights = [weight_spectrum(layer.weight.dense(), full=False) for layer in network.layers]
    mean_log10, variance_log10 = predict(network, network_meanfield(network), weights)
    assert mean_log10 is not None
    assert 10.0**mean_log10 == pytest.approx(mean, rel=1e-12)
    assert (0.0 if variance_log10 is None else 10.0**variance_log10) == pytest.approx(variance, rel=1e-12, abs=1e-12)
    w = network.layers[0].weight.dense()
    eigen = np.linalg.eigvalsh(w @ w.T)
    assert float(np.mean(eigen)) == pytest.approx(mean, rel=0.03)
    assert float(np.var(eigen)) == pytest.approx(variance, rel=0.03, abs=0.03)


# --- the prediction against random networks ----------------------------------------------------------------------

SEEDS = {"linear_gaussian": 8, "linear_orthogonal": 2, "relu_gaussian": 24, "relu_orthogonal": 16}
TOLERANCE = {
    "linear_gaussian": (0.05, 2.4),
    "linear_orthogonal": (1e-12, 1e-20),
    "relu_gaussian": (0.17, 12.0),
    "relu_orthogonal": (0.16, 5.1),
}
"""(mean, variance) absolute tolerances on the average over SEEDS[case] networks (one N(0, 1) probe each): three
standard errors of that average, from the spread of single networks measured over 48 seeds — per network the
variance of the spectrum fluctuates by 11% (linear, Gaussian), 56% (ReLU, Gaussian) and 41% (ReLU, orthogonal), its
top eigenvalues being heavy-tailed at width 400. Linear orthogonal networks are exact to rounding."""


@pytest.mark.parametrize("case", sorted(CRITICAL))
def test_jacobian_spectrum_matches_free_probability(case: str) -> None:
    """Depth 16, width 400, at criticality: the mean and variance of JJᵀ's eigenvalues, averaged over seeds,
    against the prediction (mean 1; variance L, 0, 2L, L) within TOLERANCE."""
    means, variances = [], []
    for seed in range(SEEDS[case]):
        network = _recipe(case, WIDTH, seed)
        x = np.random.default_rng(10_000 + seed).standard_normal((1, WIDTH))
        (probe,) = jacobian_spectra(network, _derivatives(network, x), full=False)
        assert probe.eigenvalue_mean_log10 is not None
        means.append(10.0**probe.eigenvalue_mean_log10)
        log_variance = probe.eigenvalue_variance_log10
        variances.append(0.0 if log_variance is None else 10.0**log_variance)
    mean_tolerance, variance_tolerance = TOLERANCE[case]
    assert float(np.mean(means)) == pytest.approx(1.0, abs=mean_tolerance)
    assert float(np.mean(variances)) == pytest.approx(CRITICAL[case][3], abs=variance_tolerance)


def test_explicit_weights_predict_from_their_own_spectrum() -> None:
    """The same He-initialised ReLU weights (width 200) sent as explicit layers: the predicted mean is the product
    of the empirical χ₁ = n·Var(W_j)/2 (to 1e-12), and the normalised variance v_L = variance/mean² uses each W_j's
    own v(WᵀW) ≈ 1/λ = 1, so it is the recipe's 2L up to sampling (within 2%)."""
    drawn = _recipe("relu_gaussian", 200, seed=4)
    explicit = network_from_layers(list(drawn.layers))
    weights = [weight_spectrum(layer.weight.dense(), full=False) for layer in explicit.layers]
    mean_log10, variance_log10 = predict(explicit, network_meanfield(explicit), weights)
    assert mean_log10 is not None
    assert variance_log10 is not None
    chi1 = [200 * float(np.var(layer.weight.dense())) / 2.0 for layer in explicit.layers]
    assert 10.0**mean_log10 == pytest.approx(math.prod(chi1), rel=1e-12)
    assert 10.0 ** (variance_log10 - 2.0 * mean_log10) == pytest.approx(2.0 * DEPTH, rel=0.02)


def test_analyse_with_spectrum() -> None:
    """Through analyse: one weight spectrum per layer, one probe spectrum per probe, the probe average of the
    eigenvalue means, and no spectrum by default."""
    network = build_network(InitRecipe((16, 24, 24, 8), "xavier_normal", make_activation("tanh"), bias_std=0.1))
    x, y = make_probes(ProbeSpec(count=3), 16, 8)
    assert analyse(network, x, y, Options()).spectra is None
    result = analyse(network, x, y, Options(spectrum="summary")).spectra
    assert result is not None
    assert len(result.weights) == 3
    assert len(result.probes) == 3
    means = [10.0**p.eigenvalue_mean_log10 for p in result.probes if p.eigenvalue_mean_log10 is not None]
    assert result.eigenvalue_mean_log10 == pytest.approx(math.log10(float(np.mean(means))), abs=1e-12)
    growth = network_meanfield(network).predicted_growth_log10
    assert growth is not None
    assert result.predicted_mean_log10 == pytest.approx(2.0 * growth, rel=1e-15)


def test_overflowing_forward_pass_has_no_probe_spectra() -> None:
    """Where the forward pass overflows there is no Jacobian to take: no probe spectra, flag overflow; the weights'
    spectra and the prediction remain."""
    network = build_network(InitRecipe((4,) * 200, "gaussian", make_activation("linear"), gain=1e3, seed=1))
    x, _ = make_probes(ProbeSpec(count=2), 4, 4)
    result = spectra(network, _derivatives(network, x)[:150], network_meanfield(network), "summary")
    assert result.probes == ()
    assert result.flags == ("overflow",)
    assert len(result.weights) == 199
    assert result.predicted_mean_log10 is not None


def test_flop_estimate_counts_the_spectra() -> None:
    """With a spectrum, the estimate adds every weight's SVD (SVD·(4·M·k² − 4k³/3), M = max(m, n), k = min(m, n)),
    the Jacobians formed from the narrower end (B·min(n_0, n_L) rows through each m × n layer, (2·r + READ)·m·n
    flops and ELEMENT·r·m for the derivatives) and their SVDs with PROBE_SPECTRUM each, written out here."""
    widths, probes = [300, 500, 500, 10], 4
    pairs = list(itertools.pairwise(widths))

    def svd(m: int, n: int) -> float:
        big, k = max(m, n), min(m, n)
        return cost.SVD * (4.0 * big * k * k - 4.0 * k**3 / 3.0)

    rows = probes * 10
    expected = probes * (svd(10, 300) + cost.PROBE_SPECTRUM) + sum(
        svd(m, n) + (2.0 * rows + cost.READ) * m * n + cost.ELEMENT * rows * m for n, m in pairs
    )
    declared = Declared(tuple(init_layers(widths, False)), probes)
    base = estimate_flops(declared)
    summary = estimate_flops(replace(declared, spectrum="summary"))
    assert summary - base == pytest.approx(expected, rel=1e-12)
    assert estimate_flops(replace(declared, spectrum="full")) == summary
