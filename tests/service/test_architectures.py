"""Convolutional, residual and recurrent networks: every reported norm against a dense, probe-by-probe computation.

The reference forms each layer's matrix (a convolution's from ``Conv2d.dense``, itself checked against loop-built
matrices in test_conv.py), each probe's Jacobian J_j = S_j + diag(h_j'(z_j))·A_j, the products ∂a_L/∂a_j and
their norms by LAPACK's SVD (``np.linalg.norm(·, 2)``), and the loss gradient by plain backpropagation — with a
convolution's kernel gradient from the linearity of A in K: ∂ℓ/∂K_k = Σ_b δ_bᵀ A(e_k) a_{b}.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from service import analysis
from service.activations import Activation, make_activation
from service.analysis import Analysis, Options, analyse
from service.conv import Conv2d, Padding
from service.linear import Dense, Identity, Linear
from service.network import Layer, Network, RecurrentSpec, network_from_layers, recurrent_network
from service.spectra import QUANTILE_LEVELS, SpectrumMode
from service.spectral import SpectralNorm

Array = NDArray[np.float64]
RTOL = 1e-9
"""Agreement of every norm with the reference (the analysis runs at rtol 1e-10)."""
OPTIONS = Options(rtol=1e-10)


@dataclass(frozen=True)
class Reference:
    jacobian: list[float]
    backward_log10: list[float | None]
    input_log10: float | None
    gradient_log10: list[float | None]
    input_singular_values: list[Array]
    """Each probe's ∂a_L/∂a_0's singular values, decreasing."""


def _log10(value: float) -> float | None:
    """log10, None for an exact 0 (as the report gives it)."""
    return math.log10(value) if value > 0 else None


def reference(network: Network, x: Array, y: Array) -> Reference:
    """Every true norm of the report, probe by probe, from dense matrices."""
    layers = network.layers
    depth = len(layers)
    matrices = [layer.weight.dense() for layer in layers]
    skips = [None if layer.skip is None else layer.skip.dense() for layer in layers]
    jacobian = [0.0] * depth
    backward = [0.0] * (depth + 1)  # backward[j] = max_b ‖∂a_L/∂a_j‖₂, j = 0..L
    gradients = [np.zeros(layer.weight.entries.shape) for layer in layers]
    singular_values: list[Array] = []
    for b in range(len(x)):
        a, drive = _start(network, x[b])
        acts, ders = [a], []
        for j, layer in enumerate(layers):
            z = matrices[j] @ a + (0.0 if layer.bias is None else layer.bias) + drive[j]
            skip = skips[j]
            a = layer.activation.value(z) + (0.0 if skip is None else skip @ a)
            ders.append(layer.activation.derivative(z))
            acts.append(a)
        jacobians = [_jacobian(ders[j], matrices[j], skips[j]) for j in range(depth)]
        product = np.eye(len(a))
        for j in range(depth - 1, -1, -1):
            jacobian[j] = max(jacobian[j], float(np.linalg.norm(jacobians[j], 2)))
            product = product @ jacobians[j]
            backward[j] = max(backward[j], float(np.linalg.norm(product, 2)))
        singular_values.append(np.asarray(np.linalg.svd(product, compute_uv=False), dtype=np.float64))
        g = 2.0 * (acts[-1] - y[b]) / y.size
        for j in range(depth - 1, -1, -1):
            delta = g * ders[j]
            gradients[j] += _kernel_gradient(layers[j].weight, delta, acts[j])
            skip = skips[j]
            g = matrices[j].T @ delta + (0.0 if skip is None else skip.T @ g)
    return Reference(
        jacobian=jacobian,
        backward_log10=[*(_log10(v) for v in backward[1:-1]), 0.0],
        input_log10=_log10(backward[0]),
        gradient_log10=[_log10(float(np.linalg.norm(g))) for g in gradients],
        input_singular_values=singular_values,
    )


def _start(network: Network, probe: Array) -> tuple[Array, list[Array | float]]:
    """a_0 and each layer's input drive: (probe, zeros) for a feed-forward network, (h_0 = 0, U x_t) for an RNN."""
    recurrent = network.recurrent
    if recurrent is None:
        return probe, [0.0] * len(network.layers)
    u = recurrent.input_weight.dense()
    steps = probe.reshape(recurrent.steps, recurrent.input_size)
    return np.zeros(network.widths[0]), [u @ x_t for x_t in steps]


def _jacobian(d: Array, matrix: Array, skip: Array | None) -> Array:
    local = d[:, None] * matrix
    return local if skip is None else local + skip


def _kernel_gradient(weight: Linear, delta: Array, a: Array) -> Array:
    """∂/∂θ of δᵀ A_θ a: the outer product for a matrix; for a kernel, entry by entry from A(e_k)."""
    if isinstance(weight, Dense):
        return np.outer(delta, a)
    assert isinstance(weight, Conv2d)
    gradient = np.zeros(weight.kernel.size)
    for k in range(weight.kernel.size):
        unit = np.zeros(weight.kernel.size)
        unit[k] = 1.0
        basis = Conv2d(unit.reshape(weight.kernel.shape), weight.size, weight.padding).dense()
        gradient[k] = delta @ basis @ a
    return gradient.reshape(weight.kernel.shape)


def assert_matches_reference(report: Analysis, ref: Reference) -> None:
    for layer, jacobian, backward, gradient in zip(
        report.layers, ref.jacobian, ref.backward_log10, ref.gradient_log10, strict=True
    ):
        assert layer.jacobian_norm == pytest.approx(jacobian, rel=RTOL)
        assert layer.backward_norm_log10 == pytest.approx(backward, abs=RTOL)
        assert layer.gradient_norm_log10 == pytest.approx(gradient, abs=1e-8)
    assert report.summary.input_norm_log10 == pytest.approx(ref.input_log10, abs=RTOL)


def assert_within_bounds(report: Analysis) -> None:
    """True norms never exceed their bounds (up to the rounding of the bound's own product and the rtol)."""
    slack = 1e-9
    for layer in report.layers:
        assert layer.jacobian_norm is not None
        assert layer.jacobian_norm <= layer.jacobian_norm_bound * (1 + slack)
        if layer.backward_norm_log10 is not None:
            assert layer.backward_bound_log10 is not None
            assert layer.backward_norm_log10 <= layer.backward_bound_log10 + slack
    s = report.summary
    if s.input_norm_log10 is not None:
        assert s.input_bound_log10 is not None
        assert s.input_norm_log10 <= s.input_bound_log10 + slack


def tanh() -> Activation:
    return make_activation("tanh")


def _rnn(sigma: float, n: int, n_in: int, steps: int, activation: str, seed: int) -> Network:
    """A recurrent network whose W is σ times an orthogonal matrix: every singular value is σ."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    spec = RecurrentSpec(
        sigma * q, rng.standard_normal((n, n_in)), 0.1 * rng.standard_normal(n), steps, make_activation(activation)
    )
    return recurrent_network(spec)


def test_tanh_rnn_with_norm_0_9_over_50_steps_stays_below_0_9_to_the_50(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _rnn(0.9, 12, 3, 50, "tanh", seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 150)), rng.standard_normal((6, 12))
    calls: list[tuple[int, int]] = []
    norm = Dense.norm

    def counted(self: Dense, rtol: float) -> SpectralNorm:
        calls.append(self.shape)
        return norm(self, rtol)

    monkeypatch.setattr(Dense, "norm", counted)
    report = analyse(network, x, y, OPTIONS)
    assert calls == [(12, 12), (12, 3)]  # W once for all 50 steps, then U
    assert report.summary.input_bound_log10 == pytest.approx(50 * math.log10(0.9), abs=1e-12)
    assert report.summary.input_norm_log10 is not None
    assert report.summary.input_norm_log10 < 50 * math.log10(0.9)
    for t, layer in enumerate(report.layers, start=1):  # the bound walks back through time: 0.9^(T−t)
        assert layer.backward_bound_log10 == pytest.approx((50 - t) * math.log10(0.9), abs=1e-12)
        assert layer.kind == "recurrent"
    assert_matches_reference(report, reference(network, x, y))
    assert report.recurrent is not None
    assert report.recurrent.vanishing_sufficient
    assert not report.recurrent.exploding_necessary
    assert report.recurrent.weight_norm == pytest.approx(0.9, rel=1e-12)
    assert report.methods.dense_svd == 1  # W's norm is taken once for all 50 steps


@pytest.mark.parametrize(
    ("sigma", "vanishing", "exploding"), [(3.9, True, False), (4.1, False, True), (4.0, False, False)]
)
def test_sigmoid_rnn_conditions_against_one_over_gamma_4(sigma: float, vanishing: bool, exploding: bool) -> None:
    """γ = 1/4 for the sigmoid: σ_max(W) = 3.9 < 4 is sufficient for vanishing, 4.1 > 4 necessary for exploding."""
    network = _rnn(sigma, 8, 2, 20, "sigmoid", seed=3)
    rng = np.random.default_rng(4)
    report = analyse(network, rng.standard_normal((4, 40)), rng.standard_normal((4, 8)), OPTIONS)
    r = report.recurrent
    assert r is not None
    assert r.derivative_bound == 0.25
    assert r.threshold == 4.0
    assert (r.vanishing_sufficient, r.exploding_necessary) == (vanishing, exploding)
    assert f"{sigma:.4g}" in r.statement
    assert ("sufficient for vanishing" in r.statement) == vanishing
    assert ("necessary condition for exploding" in r.statement) == exploding
    assert_within_bounds(report)


@pytest.mark.parametrize("n", [6, 300])
@pytest.mark.parametrize("probes", [3, 9])
def test_residual_jacobian_norm_is_the_dense_norm_of_identity_plus_dw(n: int, probes: int) -> None:
    """‖I + diag(h'(z_b))·W‖₂: formed densely for n = 6, by Lanczos on the operator for n = 300 (one by one at 3
    probes, in lockstep at 9), against LAPACK's SVD of the formed matrix."""
    rng = np.random.default_rng(n + probes)
    w = rng.standard_normal((n, n)) / math.sqrt(n)
    layers = [
        Layer(Dense(w), rng.standard_normal(n), tanh(), Identity(n)),
        Layer(Dense(np.ones((2, n)) / n), None, tanh()),
    ]
    network = network_from_layers(layers)
    x, y = rng.standard_normal((probes, n)), rng.standard_normal((probes, 2))
    report = analyse(network, x, y, OPTIONS)
    expected = max(
        float(np.linalg.norm(np.eye(n) + (1 - np.tanh(w @ xb + layers[0].bias) ** 2)[:, None] * w, 2)) for xb in x
    )
    assert report.layers[0].jacobian_norm == pytest.approx(expected, rel=RTOL)
    assert report.layers[0].skip_norm == 1.0
    assert report.layers[0].jacobian_norm_bound == pytest.approx(1.0 + report.layers[0].weight_norm, rel=1e-15)
    assert_matches_reference(report, reference(network, x, y))
    assert_within_bounds(report)


def test_residual_with_a_projection() -> None:
    rng = np.random.default_rng(7)
    p, w = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    network = network_from_layers(
        [Layer(Dense(w), None, tanh(), Dense(p)), Layer(Dense(rng.standard_normal((3, 5))), None, tanh())]
    )
    x, y = rng.standard_normal((4, 8)), rng.standard_normal((4, 3))
    report = analyse(network, x, y, OPTIONS)
    assert report.layers[0].skip_norm == pytest.approx(float(np.linalg.norm(p, 2)), rel=1e-12)
    assert_matches_reference(report, reference(network, x, y))
    assert report.summary.bound_gain is None  # no gain brings ‖P‖ + σ·sup|h'| to a growth of 1 from below ‖P‖
    assert report.summary.suggestion == "unchanged"  # the true growth, 10^0.66, is stable
    assert report.meanfield.predicted_growth_log10 is None
    assert "residual" in report.meanfield.layers[0].flags


@pytest.mark.parametrize("padding", ["circular", "zeros"])
@pytest.mark.parametrize(("channels", "size", "probes"), [(2, (4, 5), 3), (3, (10, 9), 3), (3, (10, 9), 9)])
def test_conv_network_matches_the_dense_reference(
    padding: Padding, channels: int, size: tuple[int, int], probes: int
) -> None:
    """conv → conv (residual) → dense: small operators formed, larger ones (270 > 256) applied by Lanczos."""
    rng = np.random.default_rng(channels * 100 + probes)
    pixels = size[0] * size[1]
    first = Conv2d(rng.standard_normal((channels, 2, 3, 3)) / 3, size, padding)
    second = Conv2d(rng.standard_normal((channels, channels, 2, 3)) / 3, size, padding)
    layers = [
        Layer(first, np.repeat(rng.standard_normal(channels), pixels), make_activation("relu")),
        Layer(second, None, tanh(), Identity(channels * pixels)),
        Layer(Dense(rng.standard_normal((4, channels * pixels)) / 10), None, make_activation("linear")),
    ]
    network = network_from_layers(layers)
    x, y = rng.standard_normal((probes, 2 * pixels)), rng.standard_normal((probes, 4))
    report = analyse(network, x, y, OPTIONS)
    for layer, conv in zip(report.layers[:2], (first, second), strict=True):
        assert layer.kind == "conv2d"
        assert layer.weight_norm == pytest.approx(float(np.linalg.norm(conv.dense(), 2)), rel=RTOL)
        assert layer.conv is not None
        assert layer.conv.weight_norm_method == ("fft" if padding == "circular" else layer.conv.weight_norm_method)
        if padding == "circular":
            assert layer.conv.fft_norm == layer.weight_norm
        else:
            assert layer.conv.padded_fft_norm is not None
            assert layer.weight_norm <= layer.conv.padded_fft_norm * (1 + 1e-12)
    assert_matches_reference(report, reference(network, x, y))
    assert_within_bounds(report)


def test_conv_gradient_is_the_finite_difference_of_the_loss() -> None:
    """‖∂ℓ/∂K‖_F against central differences of ℓ = mean (a_L − y)² in each kernel entry (step 1e-6: 1e-7)."""
    rng = np.random.default_rng(11)
    kernel = rng.standard_normal((2, 1, 3, 3)) / 3
    head = rng.standard_normal((2, 2 * 16)) / 6

    def build(k: Array) -> Network:
        return network_from_layers([Layer(Conv2d(k, (4, 4), "zeros"), None, tanh()), Layer(Dense(head), None, tanh())])

    x, y = rng.standard_normal((3, 16)), rng.standard_normal((3, 2))

    def loss(k: Array) -> float:
        a = x
        for layer in build(k).layers:
            a = layer.activation.value(layer.weight.apply(a))
        return float(np.mean((a - y) ** 2))

    step = 1e-6
    gradient = np.zeros(kernel.size)
    for i in range(kernel.size):
        e = np.zeros(kernel.size)
        e[i] = step
        gradient[i] = (loss(kernel + e.reshape(kernel.shape)) - loss(kernel - e.reshape(kernel.shape))) / (2 * step)
    report = analyse(build(kernel), x, y, OPTIONS)
    assert report.layers[0].gradient_norm == pytest.approx(float(np.linalg.norm(gradient)), rel=1e-7)


@st.composite
def architectures(draw: st.DrawFn) -> tuple[Network, Array, Array]:
    """A small random network of any kind, its probes and targets."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    activation = make_activation(draw(st.sampled_from(["tanh", "relu", "sigmoid", "gelu", "linear"])))
    scale = draw(st.sampled_from([0.3, 1.0, 3.0]))
    kind = draw(st.sampled_from(["recurrent", "residual", "projection", "conv", "conv-residual"]))
    probes = draw(st.integers(1, 9))
    head = draw(st.integers(1, 40))  # the output width: above the input width, the spectra form J from the input
    if kind == "recurrent":
        n, n_in, steps = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 12))
        spec = RecurrentSpec(
            scale * rng.standard_normal((n, n)) / math.sqrt(n),
            rng.standard_normal((n, n_in)),
            rng.standard_normal(n),
            steps,
            activation,
        )
        network = recurrent_network(spec)
    elif kind in ("residual", "projection"):
        n = draw(st.integers(1, 7))
        m = n if kind == "residual" else draw(st.integers(1, 7))
        skip: Linear = Identity(n) if kind == "residual" else Dense(rng.standard_normal((m, n)))
        layers = [
            Layer(Dense(scale * rng.standard_normal((m, n)) / math.sqrt(n)), rng.standard_normal(m), activation, skip),
            Layer(Dense(rng.standard_normal((head, m))), None, activation),
        ]
        network = network_from_layers(layers)
    else:
        size = (draw(st.integers(2, 4)), draw(st.integers(2, 4)))
        c = draw(st.integers(1, 3))
        padding: Padding = draw(st.sampled_from(["circular", "zeros"]))
        kernel = scale * rng.standard_normal((c, c, draw(st.integers(1, size[0])), draw(st.integers(1, size[1])))) / 3
        skip_conv = Identity(c * size[0] * size[1]) if kind == "conv-residual" else None
        layers = [
            Layer(Conv2d(kernel, size, padding), None, activation, skip_conv),
            Layer(Dense(rng.standard_normal((head, c * size[0] * size[1]))), None, activation),
        ]
        network = network_from_layers(layers)
    x = rng.standard_normal((probes, network.input_width))
    y = rng.standard_normal((probes, network.widths[-1]))
    return network, x, y


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_true_norms_never_exceed_their_bounds(case: tuple[Network, Array, Array]) -> None:
    """Property: for every architecture, true Jacobian and backward norms within their bounds, and equal to the
    dense reference."""
    network, x, y = case
    report = analyse(network, x, y, OPTIONS)
    assert_within_bounds(report)
    ref = reference(network, x, y)
    for layer, jacobian in zip(report.layers, ref.jacobian, strict=True):
        assert layer.jacobian_norm == pytest.approx(jacobian, rel=RTOL, abs=1e-300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures(), st.sampled_from(["full", "summary"]))
def test_spectra_are_the_dense_reference(case: tuple[Network, Array, Array], mode: SpectrumMode) -> None:
    """Property: every map's singular values are its matrix's (gesdd), and each probe's input–output Jacobian's
    are those of the product of the dense J_j = S_j + diag(h_j')·A_j, whichever end it is formed from."""
    network, x, y = case
    spectra = analyse(network, x, y, Options(rtol=RTOL, spectrum=mode)).spectra
    assert spectra is not None
    for layer, weight in zip(network.layers, spectra.weights, strict=True):
        expected = np.linalg.svd(layer.weight.dense(), compute_uv=False)
        expected = expected if mode == "full" else np.quantile(expected, QUANTILE_LEVELS)
        np.testing.assert_allclose(weight.singular_values, expected, rtol=1e-9, atol=1e-12 * expected.max())
    ref = reference(network, x, y)
    for probe, expected in zip(spectra.probes, ref.input_singular_values, strict=True):
        expected = expected if mode == "full" else np.quantile(expected, QUANTILE_LEVELS)
        got = np.array([0.0 if v is None else 10.0**v for v in probe.singular_values_log10])
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10 * max(expected.max(), 1e-300))
    assert "prediction_unknown" in spectra.flags
    assert spectra.predicted_mean_log10 is None


class Refusing(ThreadPoolExecutor):
    """An executor that fails any task handed to it."""

    def submit(self, *args: Any, **kwargs: Any) -> Future[Any]:
        raise AssertionError("a task was handed to the executor")


def _mixed_network() -> Network:
    rng = np.random.default_rng(12)
    conv = Conv2d(rng.standard_normal((2, 2, 3, 3)) / 3, (12, 12), "zeros")
    layers = [
        Layer(Dense(rng.standard_normal((288, 300)) / 17), None, tanh()),
        Layer(conv, None, tanh(), Identity(288)),
        Layer(Dense(rng.standard_normal((300, 288)) / 17), rng.standard_normal(300), tanh()),
        Layer(Dense(rng.standard_normal((3, 300)) / 17), None, tanh()),
    ]
    return network_from_layers(layers)


def test_an_executor_spreads_the_layers_and_changes_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layers' norms as tasks of a two-thread pool give the very same report as one after another."""
    monkeypatch.setattr(analysis, "SPREAD_MIN_FLOPS", 0.0)
    network = _mixed_network()
    x, y = np.random.default_rng(13).standard_normal((9, 300)), np.random.default_rng(14).standard_normal((9, 3))
    alone = analyse(network, x, y, Options(rtol=1e-8))
    with pytest.raises(AssertionError, match="handed to the executor"), Refusing(1) as refusing:
        analyse(network, x, y, Options(rtol=1e-8), refusing)  # the pool is really used
    with ThreadPoolExecutor(2) as pool:
        spread = analyse(network, x, y, Options(rtol=1e-8), pool)
    assert spread.layers == alone.layers
    assert spread.summary == alone.summary
    assert spread.methods == alone.methods


def test_small_layers_are_not_spread() -> None:
    """Below SPREAD_MIN_FLOPS a layer's norms are too quick to pay for a task: the executor is left idle."""
    network = _mixed_network()
    assert max(layer.weight.flops_per_apply for layer in network.layers) < analysis.SPREAD_MIN_FLOPS
    x, y = np.random.default_rng(13).standard_normal((9, 300)), np.random.default_rng(14).standard_normal((9, 3))
    with Refusing(1) as refusing:
        spared = analyse(network, x, y, Options(rtol=1e-8), refusing)
    assert spared.layers == analyse(network, x, y, Options(rtol=1e-8)).layers
