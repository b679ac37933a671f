"""``jacspec.torch.network_from_module``: a torch ``nn.Sequential`` as a network spec, analysed by the real app.

Every number the server reports is checked against torch itself: ``torch.linalg.matrix_norm(W, 2)`` for σ_j,
torch autograd on a fine grid for sup|h'|, and ``torch.autograd.functional.jacobian`` of the module's own blocks
for the true per-layer and backward Jacobian norms on the probes — so a wrong activation name or parameter shows.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'jacspec[torch]'); skipping jacspec.torch")

import torch
from torch import nn

import jacspec
from jacspec.models import AnalysisReport, Layer, Network, Tensor, activation_parts
from jacspec.torch import network_from_module

pytestmark = pytest.mark.anyio

WIDTHS = [5, 7, 6, 8, 6, 7, 5, 6, 8, 7, 6, 5, 3]
"""n_0 … n_12: twelve Linear layers, eleven followed by an activation module, the last plain."""

# (torch module factory, expected jacspec name, expected parameters, expected sup|h'|) in module order.
SELU_LAMBDA_ALPHA = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717
GELU_BOUND = 0.5 * (1.0 + math.erf(1.0)) + math.sqrt(2.0) * math.exp(-1.0) / math.sqrt(2.0 * math.pi)
ACTIVATIONS: list[tuple[Any, str, dict[str, float], float | None]] = [
    (lambda: nn.Tanh(), "tanh", {}, 1.0),
    (lambda: nn.ReLU(), "relu", {}, 1.0),
    (lambda: nn.LeakyReLU(0.2), "leaky_relu", {"negative_slope": 0.2}, 1.0),
    (lambda: nn.Sigmoid(), "sigmoid", {}, 0.25),
    (lambda: nn.Hardtanh(-2.0, 0.5), "hard_tanh", {"min_val": -2.0, "max_val": 0.5}, 1.0),
    (lambda: nn.ELU(0.7), "elu", {"alpha": 0.7}, 1.0),
    (lambda: nn.SELU(), "selu", {}, SELU_LAMBDA_ALPHA),
    (lambda: nn.GELU(), "gelu", {}, GELU_BOUND),
    (lambda: nn.SiLU(), "silu", {}, None),  # ≈ 1.0998: no closed form, the grid below decides
    (lambda: nn.Softplus(beta=2.0), "softplus", {"beta": 2.0}, 1.0),
    (lambda: nn.Identity(), "linear", {}, 1.0),
]
NAMES = [name for _, name, _, _ in ACTIVATIONS] + ["linear"]
DROPOUT_AFTER = 2
"""An ``nn.Dropout`` follows the third activation (LeakyReLU): it must be skipped."""

REL64 = 1e-10
"""σ_j of float64 weights: the same dense SVD problem (LAPACK) on both sides, matrices of size ≤ 8."""
REL32 = 1e-6
"""σ_j of float32 weights, against torch's float32 matrix_norm."""
GRID_REL = 1e-8
"""sup|h'| from autograd on a grid of spacing 1e-4 (the maxima are smooth: error ~ h''·(5e-5)² ≪ 1e-8)."""
JAC_REL = 1e-7
"""Jacobian norms from torch vs the server: equal to rounding, but torch's Softplus is exactly linear above
its threshold (β·z > 20) while jacspec's is not, a relative difference below e^-20 ≈ 2e-9 per factor."""


def _module(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(7)
    modules: list[nn.Module] = []
    for j, (factory, _, _, _) in enumerate(ACTIVATIONS):
        linear = nn.Linear(WIDTHS[j], WIDTHS[j + 1], dtype=dtype)
        with torch.no_grad():  # weights of σ ≈ 1-2, so that pre-activations reach every branch and clip point
            linear.weight.normal_(0.0, 1.2 / math.sqrt(WIDTHS[j]))
            linear.bias.uniform_(-0.5, 0.5)
        modules += [linear, factory()]
        if j == DROPOUT_AFTER:
            modules.append(nn.Dropout(0.5))
    modules.append(nn.Linear(WIDTHS[-2], WIDTHS[-1], dtype=dtype))
    return nn.Sequential(*modules).eval()


def _linears(module: nn.Sequential) -> list[nn.Linear]:
    return [m for m in module if isinstance(m, nn.Linear)]


def _blocks(module: nn.Sequential) -> list[nn.Sequential]:
    """The module cut into one block per Linear: the Linear with the modules that follow it."""
    blocks: list[list[nn.Module]] = []
    for child in module:
        if isinstance(child, nn.Linear):
            blocks.append([])
        blocks[-1].append(child)
    return [nn.Sequential(*b).eval() for b in blocks]


def _probes() -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(11).normal(0.0, 1.5, size=(6, WIDTHS[0]))


@pytest.fixture
async def sdk(client: httpx.AsyncClient) -> AsyncIterator[jacspec.AsyncClient]:
    async with jacspec.AsyncClient(base_url="http://jacspec.test", http_client=client) as c:
        yield c


def _sup_derivative(activation: nn.Module) -> float:
    """sup_z |h'(z)| by autograd over z ∈ [−30, 30] (spacing 1e-4) and points just either side of 0."""
    z = torch.cat(
        [torch.linspace(-30.0, 30.0, 600_001, dtype=torch.float64), torch.tensor([-1e-12, 0.0, 1e-12])]
    ).requires_grad_()
    (grad,) = torch.autograd.grad(activation(z).sum(), z)
    return float(grad.abs().max())


def test_sup_derivative_grid_is_sound() -> None:
    """The independent reference itself: it recovers the closed forms it is compared with below."""
    for factory, name, _, bound in ACTIVATIONS:
        if bound is not None:
            assert _sup_derivative(factory()) == pytest.approx(bound, rel=GRID_REL), name
    assert _sup_derivative(nn.SiLU()) == pytest.approx(1.0998, abs=1e-4)


def test_spec_maps_each_module() -> None:
    module = _module()
    network = network_from_module(module)
    assert isinstance(network, Network)
    assert network.init is None
    assert network.layers is not None
    assert len(network.layers) == len(WIDTHS) - 1  # the Dropout made no layer
    for j, (layer, linear) in enumerate(zip(network.layers, _linears(module), strict=True)):
        assert isinstance(layer, Layer)
        name, params = activation_parts(layer.activation or "linear")
        assert name == NAMES[j]
        expected = ACTIVATIONS[j][2] if j < len(ACTIVATIONS) else {}
        assert params == expected, name
        assert isinstance(layer.weight, Tensor)
        assert layer.weight.datatype == "FP64"
        assert layer.weight.shape == [WIDTHS[j + 1], WIDTHS[j]]
        assert np.array_equal(layer.weight.to_numpy(), linear.weight.detach().numpy())
        assert isinstance(layer.bias, Tensor)
        assert np.array_equal(layer.bias.to_numpy(), linear.bias.detach().numpy())


def test_spec_without_bias_and_bare_linear() -> None:
    linear = nn.Linear(4, 3, bias=False, dtype=torch.float64)
    for module in (linear, nn.Sequential(linear)):
        network = network_from_module(module)
        assert network.layers is not None
        assert len(network.layers) == 1
        (layer,) = _dense_layers(network)
        assert layer.bias is None
        assert layer.activation == "linear"
        assert isinstance(layer.weight, Tensor)
        assert np.array_equal(layer.weight.to_numpy(), linear.weight.detach().numpy())


def test_spec_b64_option() -> None:
    module = _module()
    for b64, on_wire in ((True, "b64"), (False, "data")):
        network = network_from_module(module, b64=b64)
        assert network.layers is not None
        for layer, linear in zip(_dense_layers(network), _linears(module), strict=True):
            assert isinstance(layer.weight, Tensor)
            assert isinstance(layer.bias, Tensor)
            assert getattr(layer.weight, on_wire) is not None
            assert getattr(layer.bias, on_wire) is not None
            assert np.array_equal(layer.weight.to_numpy(), linear.weight.detach().numpy())


async def _analyse(sdk: jacspec.AsyncClient, module: nn.Sequential, **kwargs: Any) -> AnalysisReport:
    return await sdk.analyze(network_from_module(module, **kwargs), inputs={"data": _probes().tolist()})


async def test_report_float64_module(sdk: jacspec.AsyncClient) -> None:
    module = _module()
    report = await _analyse(sdk, module)
    assert report.summary.depth == len(WIDTHS) - 1
    linears = _linears(module)
    for j, (layer, linear) in enumerate(zip(report.layers, linears, strict=True)):
        assert layer.index == j + 1
        assert layer.shape == [WIDTHS[j + 1], WIDTHS[j]]
        assert layer.activation == NAMES[j]
        sigma = float(torch.linalg.matrix_norm(linear.weight.detach(), 2))
        assert layer.weight_norm == pytest.approx(sigma, rel=REL64), j
        activation = ACTIVATIONS[j][0]() if j < len(ACTIVATIONS) else nn.Identity()
        assert layer.derivative_bound == pytest.approx(_sup_derivative(activation), rel=GRID_REL), NAMES[j]
        assert layer.jacobian_norm_bound == pytest.approx(sigma * layer.derivative_bound, rel=REL64)
        assert layer.flags == []
    # the exact closed forms where the parameters decide the bound: leaky 0.2 → 1, elu 0.7 → 1, sigmoid 1/4
    by_name = {layer.activation: layer.derivative_bound for layer in report.layers}
    assert by_name["leaky_relu"] == 1.0
    assert by_name["elu"] == 1.0
    assert by_name["hard_tanh"] == 1.0
    assert by_name["softplus"] == 1.0
    assert by_name["sigmoid"] == 0.25
    assert by_name["selu"] == pytest.approx(SELU_LAMBDA_ALPHA, rel=1e-12)
    assert by_name["gelu"] == pytest.approx(GELU_BOUND, rel=1e-12)


def _jacobian_norm(function: nn.Module, x: torch.Tensor) -> float:
    """‖∂function/∂x‖₂ at x, by autograd and torch's own SVD."""
    jacobian = torch.autograd.functional.jacobian(function, x)  # type: ignore[no-untyped-call]
    return float(torch.linalg.matrix_norm(jacobian, 2))


async def test_report_matches_torch_jacobians(sdk: jacspec.AsyncClient) -> None:
    """The true norms: a wrong activation or parameter (slope, clip points, α, β) would change them."""
    module = _module()
    report = await _analyse(sdk, module)
    blocks = _blocks(module)
    depth = len(blocks)
    layer_norms = [0.0] * depth
    backward = [0.0] * (depth + 1)  # backward[j] = max_b ‖∂a_L/∂a_j‖₂, j = 0..L
    for x in torch.from_numpy(_probes()):
        acts = [x]
        for block in blocks:
            acts.append(block(acts[-1]).detach())
        for j in range(depth):
            layer_norms[j] = max(layer_norms[j], _jacobian_norm(blocks[j], acts[j]))
            backward[j] = max(backward[j], _jacobian_norm(nn.Sequential(*blocks[j:]), acts[j]))
        backward[depth] = 1.0
    for j, layer in enumerate(report.layers):
        assert layer.jacobian_norm == pytest.approx(layer_norms[j], rel=JAC_REL), NAMES[j]
        assert layer.backward_norm_log10 == pytest.approx(math.log10(backward[j + 1]), abs=JAC_REL), NAMES[j]
    assert report.summary.input_norm_log10 == pytest.approx(math.log10(backward[0]), abs=JAC_REL)


async def test_report_float32_module(sdk: jacspec.AsyncClient) -> None:
    module = _module(torch.float32)
    network = network_from_module(module)
    assert network.layers is not None
    for spec in _dense_layers(network):
        assert isinstance(spec.weight, Tensor)
        assert isinstance(spec.bias, Tensor)
        assert (spec.weight.datatype, spec.bias.datatype) == ("FP32", "FP32")
    report = await sdk.analyze(network, inputs={"count": 4})
    for layer, linear in zip(report.layers, _linears(module), strict=True):
        weight = linear.weight.detach()
        assert weight.dtype == torch.float32
        assert layer.weight_norm == pytest.approx(float(torch.linalg.matrix_norm(weight, 2)), rel=REL32)
        # FP32 values are widened exactly, then everything is float64
        assert layer.weight_norm == pytest.approx(float(torch.linalg.matrix_norm(weight.double(), 2)), rel=REL64)


async def test_b64_and_lists_give_the_same_report(sdk: jacspec.AsyncClient) -> None:
    module = _module()
    as_b64 = await _analyse(sdk, module, b64=True)
    as_lists = await _analyse(sdk, module, b64=False)
    assert as_b64.layers == as_lists.layers
    assert as_b64.summary == as_lists.summary


@pytest.mark.parametrize(
    ("module", "match"),
    [
        pytest.param(
            nn.Sequential(nn.Linear(3, 3), nn.GELU(approximate="tanh")), r"module \[1\] \(GELU\)", id="gelu-tanh"
        ),
        pytest.param(
            nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Conv2d(1, 1, 1)), r"module \[2\] \(Conv2d\)", id="conv2d"
        ),
        pytest.param(nn.Sequential(nn.Tanh(), nn.Linear(3, 3)), r"module \[0\] \(Tanh\)", id="activation-first"),
        pytest.param(
            nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.ReLU(), nn.Linear(3, 3)),
            r"module \[2\] \(ReLU\)",
            id="two-activations",
        ),
        pytest.param(
            nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Dropout(), nn.ReLU()),
            r"module \[3\] \(ReLU\)",
            id="two-activations-around-dropout",
        ),
        pytest.param(nn.Sequential(), r"no nn\.Linear", id="empty"),
        pytest.param(nn.Sequential(nn.Dropout()), r"no nn\.Linear", id="dropout-only"),
        pytest.param(nn.ModuleList([nn.Linear(3, 3)]), r"nn\.Sequential.*ModuleList", id="module-list"),
        pytest.param(nn.Tanh(), r"nn\.Sequential.*Tanh", id="bare-activation"),
    ],
)
def test_refusals(module: nn.Module, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        network_from_module(module)


def test_refusal_of_an_unsupported_parameter_names_the_position() -> None:
    """torch accepts ELU(alpha=-0.5); jacspec's elu needs alpha ≥ 0. The refusal must say which module."""
    with pytest.raises(ValueError, match=r"module \[1\] \(ELU\)"):
        network_from_module(nn.Sequential(nn.Linear(3, 3), nn.ELU(alpha=-0.5)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_module_becomes_fp32(dtype: torch.dtype) -> None:
    """Half-precision weights (mixed-precision training) are widened exactly to FP32, as Tensor.from_numpy does
    for float16/bfloat16 arrays, rather than failing inside torch's ``.numpy()``."""
    torch.manual_seed(3)
    linear = nn.Linear(4, 3, dtype=dtype)
    network = network_from_module(nn.Sequential(linear, nn.Tanh()))
    assert network.layers is not None
    (layer,) = _dense_layers(network)
    assert isinstance(layer.weight, Tensor)
    assert layer.weight.datatype == "FP32"
    assert np.array_equal(layer.weight.to_numpy(), linear.weight.detach().float().numpy())


def _dense_layers(network: Network) -> list[Layer]:
    """The network's layers, each checked to be a dense Layer."""
    assert network.layers is not None
    layers = [layer for layer in network.layers if isinstance(layer, Layer)]
    assert len(layers) == len(network.layers)
    return layers
