"""A wide output layer: the backward products ∂a_L/∂a_j are n_L × n_j with n_L > DENSE_MAX_DIM, so their norms
come from Lanczos to rtol; the report says so, and the values still match a dense computation to rtol."""

from __future__ import annotations

import math

import numpy as np

from service.activations import make_activation
from service.analysis import Options, analyse
from service.network import InitRecipe, build_network
from service.probes import ProbeSpec, make_probes
from service.spectral import DENSE_MAX_DIM

RTOL = 1e-6
WIDE = DENSE_MAX_DIM + 44


def test_wide_output_uses_lanczos_to_rtol() -> None:
    """‖∂a_L/∂a_0‖₂ = ‖J_2 J_1‖₂ per probe, J_j = diag(tanh'(z_j)) W_j, built densely here; log10 within
    log10(1 + RTOL) of the report, and each ‖∂a_L/∂a_1‖ = ‖J_2‖ likewise."""
    widths = (20, WIDE, WIDE)
    net = build_network(InitRecipe(widths=widths, scheme="xavier_normal", activation=make_activation("tanh")))
    x, y = make_probes(ProbeSpec(count=2), widths[0], widths[-1])
    report = analyse(net, x, y, Options(rtol=RTOL))
    assert report.methods.backward_dense is False
    assert report.methods.output_width == WIDE
    w1, w2 = (layer.weight.dense() for layer in net.layers)
    top_input, top_first = -math.inf, -math.inf
    for probe in x:
        z1 = w1 @ probe
        z2 = w2 @ np.tanh(z1)
        j1 = (1 - np.tanh(z1) ** 2)[:, None] * w1
        j2 = (1 - np.tanh(z2) ** 2)[:, None] * w2
        top_input = max(top_input, math.log10(float(np.linalg.norm(j2 @ j1, 2))))
        top_first = max(top_first, math.log10(float(np.linalg.norm(j2, 2))))
    slack = math.log10(1 + RTOL)
    assert report.summary.input_norm_log10 is not None
    assert abs(report.summary.input_norm_log10 - top_input) <= slack
    first = report.layers[0].backward_norm_log10
    assert first is not None
    assert abs(first - top_first) <= slack


def test_narrow_output_is_dense() -> None:
    net = build_network(InitRecipe(widths=(8, WIDE, 10), scheme="xavier_normal", activation=make_activation("relu")))
    x, y = make_probes(ProbeSpec(count=2), 8, 10)
    assert analyse(net, x, y, Options()).methods.backward_dense is True
