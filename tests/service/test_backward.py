"""service.backward: the backward norms by Lanczos on the chains J_L ⋯ J_{j+1} against the accumulated products
(service.analysis._backward_norms) and numpy's dense SVD of the products formed here, to 1e-9 relative; and the
choice between them (service.cost.backward_by_chains), which the analysis and the estimate share."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from service import analysis, cost
from service.activations import make_activation
from service.backward import chain_backward_norms
from service.conv import Conv2d
from service.forward import forward
from service.linear import Dense, Identity, Linear
from service.network import Layer, Network, network_from_layers

Array = NDArray[np.float64]

REL = 1e-9
"""The issue's tolerance: both paths solve to rtol 1e-11, far inside it."""
RTOL = 1e-11


def _network(widths: list[int], activation: str, residual: bool = False, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    layers = []
    for n, m in itertools.pairwise(widths):
        skip: Linear | None = Identity(n) if residual and m == n else None
        weight = Dense(1.3 * rng.standard_normal((m, n)) / math.sqrt(n))
        layers.append(Layer(weight, 0.2 * rng.standard_normal(m), make_activation(activation), skip))
    return network_from_layers(layers)


def _both(network: Network, probes: int) -> tuple[tuple[list[float | None], float | None], list[float | None]]:
    """(chains' logs and input log, accumulated products' logs with the input log appended)."""
    x = np.random.default_rng(1).standard_normal((probes, network.widths[0]))
    records = [
        analysis._LayerRecord(layer, layer.weight.norm(RTOL), analysis._skip_norm(layer, RTOL))
        for layer in network.layers
    ]
    norms = [record.weight.value for record in records]
    fwd = forward(network, x, norms, [record.skip_norm for record in records])
    last, _ = records[-1].jacobian(fwd.derivatives[-1], RTOL)
    bounds = [(record.skip_norm or 0.0, record.weight.value) for record in records]
    logs, top, _ = chain_backward_norms(network.layers, fwd.derivatives, bounds, last, RTOL)
    old, old_top, _ = analysis._backward_norms(network, fwd, last, RTOL, norms)
    return (logs, top), [*old, old_top]


def _dense(network: Network, probes: int) -> list[float]:
    """max_b ‖∂a_L/∂a_j‖₂ = ‖J_L ⋯ J_{j+1}‖₂ for j = 0..L, by the formed Jacobians and LAPACK's SVD."""
    x = np.random.default_rng(1).standard_normal((probes, network.widths[0]))
    norms = [layer.weight.norm(RTOL).value for layer in network.layers]
    fwd = forward(network, x, norms, [analysis._skip_norm(layer, RTOL) for layer in network.layers])
    depth = len(network.layers)
    best = [0.0] * depth + [1.0]
    for b in range(probes):
        product = np.eye(network.widths[-1])
        for j in range(depth - 1, -1, -1):
            layer = network.layers[j]
            jacobian = fwd.derivatives[j][b][:, None] * layer.weight.dense()
            if layer.skip is not None:
                jacobian += layer.skip.dense()
            product = product @ jacobian
            best[j] = max(best[j], float(np.linalg.norm(product, 2)))
    return best


@pytest.mark.parametrize(
    ("widths", "activation", "residual"),
    [
        ([280, 300, 290, 310], "tanh", False),  # n_L > n_j and < n_j: the Gram on either side
        ([300, 300, 300, 300], "relu", True),  # residual: J = I + diag(h')·W
        ([260, 300, 270, 320, 260], "gelu", False),
    ],
)
def test_chains_equal_the_accumulated_products_and_dense_svd(
    widths: list[int], activation: str, residual: bool
) -> None:
    network = _network(widths, activation, residual)
    (logs, top), old = _both(network, 9)
    dense = _dense(network, 9)
    for new_log, old_log in zip([*logs, top], old, strict=True):
        assert new_log is not None
        assert old_log is not None
        assert 10**new_log == pytest.approx(10**old_log, rel=REL)
    for j, new_log in enumerate(logs):
        assert new_log is not None
        assert 10**new_log == pytest.approx(dense[j + 1], rel=REL), j
    assert top is not None
    assert 10**top == pytest.approx(dense[0], rel=REL)


def test_chains_of_a_convolution_equal_the_accumulated_products() -> None:
    rng = np.random.default_rng(3)
    tanh = make_activation("tanh")
    layers = [
        Layer(Conv2d(rng.standard_normal((3, 3, 3, 3)) / 5, (10, 10), "zeros"), None, tanh),
        Layer(Conv2d(rng.standard_normal((3, 3, 3, 3)) / 5, (10, 10), "circular"), None, tanh),
        Layer(Dense(rng.standard_normal((300, 300)) / 17), None, tanh),
    ]
    (logs, top), old = _both(network_from_layers(layers), 8)
    for new_log, old_log in zip([*logs, top], old, strict=True):
        assert new_log is not None
        assert old_log is not None
        assert 10**new_log == pytest.approx(10**old_log, rel=REL)


def test_the_analysis_takes_the_chains_where_they_are_cheaper(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shallow network with a wide output takes the chains (and its backward norms are the dense SVD's); a deep
    narrow-output one, fewer probes than lockstep needs, or a dense-sized one accumulate the products."""
    assert cost.backward_by_chains([1024] * 11, 16, 1e-6)
    assert not cost.backward_by_chains([1024] * 11, 4, 1e-6)
    assert not cost.backward_by_chains([512] * 100 + [10], 16, 1e-6)
    assert not cost.backward_by_chains([200] * 5, 16, 1e-6)
    network = _network([300, 310, 290, 300], "tanh")
    assert cost.backward_by_chains(network.widths, 9, RTOL)
    monkeypatch.setattr(analysis, "_backward_norms", _refused)
    x = np.random.default_rng(1).standard_normal((9, 300))
    report = analysis.analyse(network, x, np.zeros((9, 300)), analysis.Options(rtol=RTOL))
    dense = _dense(network, 9)
    for j, layer in enumerate(report.layers):
        assert layer.backward_norm == pytest.approx(dense[j + 1], rel=REL)
    assert report.summary.input_norm == pytest.approx(dense[0], rel=REL)


def test_the_estimate_counts_the_chains() -> None:
    """Where backward_by_chains holds, the estimate is the layers' own work with no backward pull plus the chains'
    Lanczos (cost._chain_backward); the accumulated products' share is not counted."""
    layers = tuple(cost.init_layers([1024] * 11, False, "gaussian"))
    declared = cost.Declared(layers, 16)
    b = 16.0
    expected = cost.NORMAL * b * (1024 + 1024)
    expected += sum((layer.draw + cost._layer_flops(layer, 16, 0, 1e-6)) * layer.count for layer in layers)
    expected += cost._chain_backward(layers, 16, 1e-6)
    assert cost.estimate_flops(declared) == pytest.approx(expected, rel=1e-12)
    assert cost.estimate_flops(declared) < cost._accumulated_backward(layers, 16, 1024, 1e-6)


def _refused(*_: object) -> tuple[list[float | None], float | None, int]:
    raise AssertionError("the accumulated products were taken")
