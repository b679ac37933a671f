"""The scaled forward pass (service.forward) against homogeneity: for positively homogeneous activations, scaling
W_j by C_j/C_{j−1} and b_j by C_j scales z_j and a_j by C_j exactly, ∂a_L/∂a_j by C_L/C_j, and with targets
C_L·y the loss gradient ∂ℓ/∂W_j by C_L²·C_{j−1}/C_j. The reference is the network at scale 1 computed here in
plain float64 (forward, dense per-probe Jacobian products rescaled each step, backprop), shifted by those exact
log10 offsets; float64's range is no limit to the report, so every log10 agrees to LOG_TOL."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from service.activations import make_activation
from service.analysis import Analysis, Options, analyse
from service.linear import Dense
from service.network import InitRecipe, Layer, Network, build_network, network_from_layers

Array = NDArray[np.float64]

LOG_TOL = 1e-9
"""Absolute, on log10 values up to 1.2e6 in magnitude (ulp ≈ 2e-10): both sides are 2000 float64 products of O(1)
matrices, the weights c·W rounded once each (relative 1e-16, 2e-13 over 2000 layers)."""


def _reference(net: Network, x: Array, y: Array) -> tuple[list[float | None], float | None, list[float | None]]:
    """Plain float64 at scale 1: log10 max_b ‖∂a_L/∂a_j‖₂ (j = 1..L), the same for j = 0, log10 ‖∂ℓ/∂W_j‖_F."""
    ws = [layer.weight.dense() for layer in net.layers]
    acts, ders = [x], []
    for layer, w in zip(net.layers, ws, strict=True):
        z = acts[-1] @ w.T + (0.0 if layer.bias is None else layer.bias)
        acts.append(layer.activation.value(z))
        ders.append(layer.activation.derivative(z))
    depth = len(ws)
    backward: list[list[float | None]] = [[0.0] * len(x) for _ in range(depth + 1)]
    for b in range(len(x)):
        p, scale = np.eye(ws[-1].shape[0]), 0.0
        for j in range(depth, 0, -1):
            p = p @ (ders[j - 1][b][:, None] * ws[j - 1])
            top = float(np.abs(p).max())
            if top == 0.0:
                for i in range(j):
                    backward[i][b] = None
                break
            p, scale = p / top, scale + math.log10(top)
            backward[j - 1][b] = scale + math.log10(float(np.linalg.norm(p, 2)))
    logs = [max((v for v in row if v is not None), default=None) for row in backward]
    g = 2.0 * (acts[-1] - y) / acts[-1].size
    grads: list[float | None] = []
    scale = 0.0  # g is rescaled to a largest entry of 1 each step (one scale for all probes), kept in log10
    for j in range(depth - 1, -1, -1):
        top = float(np.abs(g).max())
        g, scale = g / top, scale + math.log10(top)
        delta = g * ders[j]
        grad = delta.T @ acts[j]
        peak = float(np.abs(grad).max())
        grads.append(scale + math.log10(peak * float(np.linalg.norm(grad / peak))) if peak > 0 else None)
        g = delta @ ws[j]
    return logs[1:], logs[0], grads[::-1]


def _scaled(net: Network, cumulative: list[float]) -> Network:
    """W_j·C_j/C_{j−1} and b_j·C_j for C_0 = 1, C_j = ``cumulative[j−1]``."""
    before = [1.0, *cumulative[:-1]]
    return network_from_layers(
        [
            Layer(
                Dense(layer.weight.dense() * (c / p)), None if layer.bias is None else layer.bias * c, layer.activation
            )
            for layer, c, p in zip(net.layers, cumulative, before, strict=True)
        ]
    )


def _check(
    report: Analysis, ref: tuple[list[float | None], float | None, list[float | None]], logc: list[float]
) -> None:
    """Every log10 of ``report`` is the reference's plus its exact offset; a zero flag only where the reference is
    zero, and no underflow/overflow flag (every value is carried)."""
    backward, inp, grads = ref
    depth, last = len(logc), logc[-1]
    before = [0.0, *logc[:-1]]
    assert report.summary.flags == ()
    assert inp is not None
    assert report.summary.input_norm_log10 == pytest.approx(inp + last, abs=LOG_TOL)
    for j, rep in enumerate(report.layers):
        assert not {"underflow", "overflow", "downstream_underflow", "downstream_overflow"} & set(rep.flags)
        want = backward[j]
        if want is None:
            assert rep.backward_norm_log10 is None
            assert "backward_norm_zero" in rep.flags
        else:
            offset = 0.0 if j == depth - 1 else last - logc[j]
            assert rep.backward_norm_log10 == pytest.approx(want + offset, abs=LOG_TOL), f"layer {j + 1}"
        grad = grads[j]
        if grad is None:
            assert rep.gradient_norm_log10 is None
            assert "gradient_zero" in rep.flags
        else:
            offset = 2.0 * last + before[j] - logc[j]
            assert rep.gradient_norm_log10 == pytest.approx(grad + offset, abs=LOG_TOL), f"layer {j + 1}"


SCALES = [1e-150, 1e150, 1e-300, 1e300]
DEEP = [("linear", "orthogonal", 4, 2000), ("leaky_relu", "he_normal", 8, 2000), ("relu", "he_normal", 32, 400)]


@pytest.mark.parametrize("c", SCALES)
@pytest.mark.parametrize(("activation", "scheme", "width", "depth"), DEEP)
def test_bias_free_networks_scaled_by_c_per_layer(
    activation: str, scheme: str, width: int, depth: int, c: float
) -> None:
    """W_j → c·W_j: C_j = c^j, up to 10^±600000; targets 0 so that ℓ scales by C_L² exactly."""
    net = build_network(InitRecipe((width,) * (depth + 1), scheme, make_activation(activation), seed=5))
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((3, width)), np.zeros((3, width))
    logc = [(j + 1) * math.log10(c) for j in range(depth)]
    scaled = network_from_layers([Layer(Dense(lay.weight.dense() * c), None, lay.activation) for lay in net.layers])
    report = analyse(scaled, x, y, Options())
    _check(report, _reference(net, x, y), logc)


@pytest.mark.parametrize("c", SCALES)
@pytest.mark.parametrize("activation", ["linear", "relu", "leaky_relu"])
def test_networks_with_biases_scaled_consistently(activation: str, c: float) -> None:
    """C_j alternating c, 1, c, 1, … over 60 layers (W_j scaled by c or 1/c), b_j by C_j, targets by C_L."""
    depth, width = 60, 16
    net = build_network(
        InitRecipe((width,) * (depth + 1), "he_normal", make_activation(activation), bias_std=0.1, seed=7)
    )
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((3, width)), rng.standard_normal((3, width))
    cumulative = [c if j % 2 == 0 else 1.0 for j in range(depth)]
    report = analyse(_scaled(net, cumulative), x, y * cumulative[-1], Options())
    _check(report, _reference(net, x, y), [math.log10(v) for v in cumulative])


def test_issue_example_three_relu_layers_of_1e_minus_150() -> None:
    """a_3 = 10^−450·x and ∂a_3/∂a_0 = 10^−450·I (‖·‖₂ = 10^−450, log10 3·log10(1e−150)); with y = 0,
    ∂ℓ/∂W_j = δ_jᵀa_{j−1} = 10^−750·[1 1; 1 1] for every j (δ_3 = 2a_3/2), ‖·‖_F = 2·10^−750. Leaky ReLU the same."""
    for name in ("relu", "leaky_relu"):
        layer = Layer(Dense(1e-150 * np.eye(2)), None, make_activation(name))
        report = analyse(network_from_layers([layer] * 3), np.ones((1, 2)), np.zeros((1, 2)), Options())
        c = math.log10(1e-150)
        assert report.summary.input_norm_log10 == pytest.approx(3 * c, abs=1e-12)
        assert report.summary.flags == ()
        for rep in report.layers:
            assert rep.backward_norm_log10 == pytest.approx((3 - rep.index) * c, abs=1e-12)
            assert rep.gradient_norm_log10 == pytest.approx(5 * c + math.log10(2.0), abs=1e-12)
            assert rep.flags == ()


def test_issue_example_he_relu_gain_point_one_depth_400() -> None:
    """He-normal ReLU at gain 0.1, depth 400, is the gain-1 network (same seed) times 0.1 per layer: each
    backward norm is the gain-1 reference's shifted by (L − j)·log10 0.1."""
    depth, width = 400, 32
    nets = [
        build_network(InitRecipe((width,) * (depth + 1), "he_normal", make_activation("relu"), gain=g, seed=3))
        for g in (1.0, 0.1)
    ]
    x = np.random.default_rng(4).standard_normal((4, width))
    backward, inp, _ = _reference(nets[0], x, np.zeros_like(x))
    report = analyse(nets[1], x, np.zeros_like(x), Options())
    assert inp is not None
    assert report.summary.input_norm_log10 == pytest.approx(inp - depth, abs=LOG_TOL)
    right = sum(
        want is not None and rep.backward_norm_log10 == pytest.approx(want - (depth - rep.index), abs=LOG_TOL)
        for rep, want in zip(report.layers, backward, strict=True)
    )
    assert right == depth


def test_tanh_cannot_carry_a_scale_and_is_flagged_underflow() -> None:
    """tanh needs z itself: two layers of 1e−300·I give z_2 = 10^−600, below float64. Layer 2 is flagged
    underflow, layer 1 downstream_underflow, the summary underflow; the true norms are null, never zero flags."""
    layer = Layer(Dense(1e-300 * np.eye(2)), None, make_activation("tanh"))
    report = analyse(network_from_layers([layer] * 2), np.ones((1, 2)), np.zeros((1, 2)), Options())
    assert report.summary.flags == ("underflow",)
    assert report.summary.input_norm_log10 is None
    assert report.summary.verdict == "vanishing"
    assert "underflow" in report.summary.advice
    assert report.layers[0].flags == ("downstream_underflow",)
    assert report.layers[1].flags == ("underflow",)
    assert all(rep.backward_norm_log10 is None and rep.gradient_norm_log10 is None for rep in report.layers)
