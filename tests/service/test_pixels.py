"""service.pixels: the norms of 1×1 convolutions' Jacobians, pixel by pixel, against numpy's dense SVD of the
Jacobians formed here (Conv2d.dense, the skip's dense matrix) and of their products, to 1e-12 relative."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.typing import NDArray

from service import analysis, pixels
from service.activations import make_activation
from service.conv import Conv2d
from service.forward import forward
from service.jacobian import jacobian_max
from service.linear import Dense, Identity, Linear
from service.network import Layer, Network, network_from_layers

Array = NDArray[np.float64]

REL = 1e-12
"""Both sides are dense eigensolvers: agreement to rounding, far inside any rtol."""
RTOL = 1e-6


def _layers(channels: list[int], size: tuple[int, int], skips: str, seed: int = 0) -> list[Layer]:
    """1×1 convolutions of ``channels`` [c_0, …, c_L] over ``size``, tanh; skips "none", "identity" (where
    c_out = c_in) or "projection"."""
    rng = np.random.default_rng(seed)
    tanh, pixels_count = make_activation("tanh"), size[0] * size[1]
    layers = []
    for c_in, c_out in itertools.pairwise(channels):
        kernel = rng.standard_normal((c_out, c_in, 1, 1)) * 1.5 / np.sqrt(c_in)
        skip: Linear | None = None
        if skips == "identity" and c_in == c_out:
            skip = Identity(c_in * pixels_count)
        elif skips == "projection":
            skip = Conv2d(rng.standard_normal((c_out, c_in, 1, 1)) / np.sqrt(c_in), size, "zeros")
        layers.append(Layer(Conv2d(kernel, size, "zeros"), 0.1 * rng.standard_normal(c_out * pixels_count), tanh, skip))
    return layers


def _derivatives(network: Network, probes: int) -> list[Array]:
    x = np.random.default_rng(1).standard_normal((probes, network.widths[0]))
    norms = [layer.weight.norm(RTOL).value for layer in network.layers]
    fwd = forward(network, x, norms, [analysis._skip_norm(layer, RTOL) for layer in network.layers])
    return list(fwd.derivatives)


def _jacobian(layer: Layer, d: Array) -> Array:
    """S + diag(d)·A, formed."""
    formed = d[:, None] * layer.weight.dense()
    return formed if layer.skip is None else formed + layer.skip.dense()


@pytest.mark.parametrize("skips", ["none", "identity", "projection"])
def test_a_pixelwise_layer_s_jacobian_norm_is_the_dense_svd_s(skips: str) -> None:
    layers = _layers([3, 3, 4], (5, 6), skips)
    network = network_from_layers(layers)
    derivatives = _derivatives(network, 5)
    for layer, d in zip(layers, derivatives, strict=True):
        assert pixels.pixelwise(layer)
        expected = max(np.linalg.norm(_jacobian(layer, row), 2) for row in d)
        found, matvecs = jacobian_max(layer, d, RTOL, layer.weight.norm(RTOL).value, analysis._skip_norm(layer, RTOL))
        assert found == pytest.approx(expected, rel=REL)
        assert matvecs == 0


def test_a_1x1_kernel_s_norm_is_its_matrix_s() -> None:
    kernel = np.random.default_rng(2).standard_normal((4, 3, 1, 1))
    conv = Conv2d(kernel, (7, 5), "zeros")
    found = conv.norm(1e-6)
    assert found.method == "dense"
    assert found.value == pytest.approx(np.linalg.norm(conv.dense(), 2), rel=REL)


@pytest.mark.parametrize("skips", ["none", "identity", "projection"])
def test_pixelwise_backward_norms_are_the_dense_products(skips: str) -> None:
    """log10 max_b ‖J_L ⋯ J_{j+1}‖₂ for every j against the formed products' SVD, probe by probe."""
    layers = _layers([2, 3, 3, 3, 2], (4, 5), skips, seed=4)
    network = network_from_layers(layers)
    derivatives = _derivatives(network, 4)
    last = max(float(np.linalg.norm(_jacobian(layers[-1], row), 2)) for row in derivatives[-1])
    logs, top, matvecs = pixels.backward_norms(layers, derivatives, last)
    depth = len(layers)
    expected = []
    for j in range(depth):  # ‖J_L ⋯ J_{j+1}‖₂ for j = 0..L−1, max over the probes
        best = 0.0
        for b in range(4):
            product = np.eye(layers[-1].weight.shape[0])
            for i in range(depth - 1, j - 1, -1):
                product = product @ _jacobian(layers[i], derivatives[i][b])
            best = max(best, float(np.linalg.norm(product, 2)))
        expected.append(best)
    assert top is not None
    assert 10**top == pytest.approx(expected[0], rel=REL)
    assert logs[-1] == 0.0
    for j in range(depth - 1):
        value = logs[j]
        assert value is not None
        assert 10**value == pytest.approx(expected[j + 1], rel=REL)
    assert matvecs == 0


def test_the_analysis_of_a_1x1_network_matches_the_accumulated_products(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole report's backward norms by pixels equal service.analysis's accumulated products (forced)."""
    layers = _layers([3, 3, 3, 3], (6, 6), "identity", seed=7)
    network = network_from_layers(layers)
    x = np.random.default_rng(1).standard_normal((9, network.widths[0]))
    y = np.zeros((9, network.widths[-1]))
    report = analysis.analyse(network, x, y, analysis.Options(rtol=1e-10))
    monkeypatch.setattr(pixels, "uniform", lambda layers: False)
    monkeypatch.setattr(analysis, "backward_by_chains", lambda *args: False)
    reference = analysis.analyse(network, x, y, analysis.Options(rtol=1e-10))
    for got, want in zip(report.layers, reference.layers, strict=True):
        assert got.backward_norm_log10 is not None
        assert want.backward_norm_log10 is not None
        assert 10**got.backward_norm_log10 == pytest.approx(10**want.backward_norm_log10, rel=1e-9)
    assert report.summary.input_norm == pytest.approx(reference.summary.input_norm, rel=1e-9)


def test_a_dense_layer_is_not_pixelwise() -> None:
    layer = Layer(Dense(np.eye(3)), None, make_activation("tanh"))
    assert not pixels.pixelwise(layer)
    three = Layer(Conv2d(np.ones((2, 2, 3, 3)), (4, 4), "zeros"), None, make_activation("tanh"))
    assert not pixels.pixelwise(three)
