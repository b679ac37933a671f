"""``jacspec.torch.network_from_module``: a torch ``nn.Sequential`` as a network spec, analysed by the real app.

Every number the server reports is checked against torch itself: ``torch.linalg.matrix_norm(W, 2)`` for σ_j,
torch autograd on a fine grid for sup|h'|, and ``torch.autograd.functional.jacobian`` of the module's own blocks
for the true per-layer and backward Jacobian norms on the probes — so a wrong activation name or parameter shows.
Convolutions, ``jacspec.torch.Residual`` blocks and ``nn.RNN`` are checked the same way: the torch module's own
forward pass, differentiated by autograd, against the report of the spec the SDK made of it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'jacspec[torch]'); skipping jacspec.torch")

import torch
from torch import nn

import jacspec
from jacspec.models import AnalysisReport, Conv2dLayer, Layer, Network, Tensor, activation_parts
from jacspec.torch import Residual, network_from_module

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
    """The module cut into one block per layer (Linear, Conv2d or Residual): the layer with the modules that follow
    it (its activation, a Dropout, a Flatten)."""
    blocks: list[list[nn.Module]] = []
    for child in module:
        if isinstance(child, nn.Linear | nn.Conv2d | Residual):
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
        assert layer.derivative_bound is not None
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


# --- convolutions, residual blocks and recurrent networks (#8) ---------------------------------------------------

Float64Array = np.ndarray[Any, np.dtype[np.float64]]

SIZE = (5, 6)
"""[H, W] entering the first convolution: not square, so that H and W swapped somewhere would show."""
C_IN = 2
"""Input channels of the convolutional networks."""
COUNT = 4
"""Probes of the convolutional and recurrent networks."""
LOG_ABS = 1e-9
"""log10 of a true Jacobian norm, server vs torch autograd: both float64 products of the same small matrices, then
a dense SVD; they agree to rounding (~1e-15), far inside this."""
OPERATOR_REL = 1e-6
"""σ of a convolution (the server's FFT for circular padding, the dense or Lanczos operator norm to its rtol 1e-6
for zeros) against numpy's SVD of the operator matrix that torch's own convolution builds from the basis images."""
RESIDUAL_REL = 1e-9
"""A residual layer's Jacobian norm, server vs numpy's dense SVD of S + diag(h'(z))·W from torch's weights: both
dense float64 SVDs of the same small matrix."""
STEPS = 7
N_IN, HIDDEN = 3, 5


def _flat_jacobian(function: nn.Module, x: torch.Tensor) -> Float64Array:
    """∂function/∂x at x as a matrix [outputs, inputs], both sides flattened row-major (torch's order, which is
    the contract's [c, H, W] order for images)."""

    def flat(v: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = function(v.reshape(x.shape)).reshape(-1)
        return out

    jacobian = torch.autograd.functional.jacobian(flat, x.reshape(-1))  # type: ignore[no-untyped-call]
    matrix: Float64Array = jacobian.detach().numpy()
    return matrix


def _norm2(matrix: Float64Array) -> float:
    """‖matrix‖₂, the largest singular value (LAPACK)."""
    return float(np.linalg.norm(matrix, 2))


def _torch_norms(module: nn.Sequential, probes: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """By autograd through the module's own blocks (_blocks): max over probes of ‖∂a_j/∂a_{j−1}‖₂ for j = 1..L,
    and of ‖∂a_L/∂a_j‖₂ for j = 0..L (the last is 1)."""
    blocks = _blocks(module)
    depth = len(blocks)
    layer_norms = [0.0] * depth
    backward = [0.0] * depth + [1.0]
    for x in probes:
        acts = [x]
        for block in blocks:
            acts.append(block(acts[-1]).detach())
        for j in range(depth):
            layer_norms[j] = max(layer_norms[j], _norm2(_flat_jacobian(blocks[j], acts[j])))
            backward[j] = max(backward[j], _norm2(_flat_jacobian(nn.Sequential(*blocks[j:]), acts[j])))
    return layer_norms, backward


def _conv_operator(conv: nn.Conv2d, size: tuple[int, int]) -> Float64Array:
    """The explicit [c_out·H·W, c_in·H·W] matrix of torch's convolution without its bias: column i is the
    convolution of the i-th basis image (its padding and padding_mode as torch applies them)."""
    unbiased = copy.deepcopy(conv)
    unbiased.bias = None
    n = conv.in_channels * size[0] * size[1]
    basis = torch.eye(n, dtype=conv.weight.dtype).reshape(n, conv.in_channels, *size)
    with torch.no_grad():
        columns = unbiased(basis).reshape(n, -1)
    matrix: Float64Array = columns.T.numpy()
    return matrix


def _conv_net(kind: str) -> nn.Sequential:
    """Two 'same' convolutions (zero, then circular padding) with activations, a Flatten and a Linear: odd kernels
    with integer and 'same' padding, or even ones (torch pads (k−1)//2 above/left and the rest below/right)."""
    torch.manual_seed(5)
    height, width = SIZE
    if kind == "odd":
        modules: list[nn.Module] = [
            nn.Conv2d(C_IN, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding="same", padding_mode="circular"),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(4 * height * width, 3),
        ]
    else:
        modules = [
            nn.Conv2d(C_IN, 3, (2, 4), padding="same"),
            nn.Tanh(),
            nn.Conv2d(3, 3, (4, 3), padding="same", padding_mode="circular"),
            nn.Sigmoid(),
            nn.Flatten(),
            nn.Linear(3 * height * width, 3),
        ]
    return nn.Sequential(*modules).double().eval()


def _image_probes(seed: int) -> Float64Array:
    """COUNT probes [c, H, W] flattened row-major, as the server takes them: [COUNT, C_IN·H·W]."""
    return np.random.default_rng(seed).normal(0.0, 1.5, size=(COUNT, C_IN * SIZE[0] * SIZE[1]))


def _as_images(probes: Float64Array) -> list[torch.Tensor]:
    return [torch.from_numpy(row).reshape(1, C_IN, *SIZE) for row in probes]


def test_conv_spec_maps_each_module() -> None:
    module = _conv_net("odd")
    network = network_from_module(module, input_size=SIZE)
    assert network.layers is not None
    first, second, last = network.layers
    convs = [m for m in module if isinstance(m, nn.Conv2d)]
    for spec, conv, padding, activation in zip(
        (first, second), convs, ("zeros", "circular"), ("relu", "tanh"), strict=True
    ):
        assert isinstance(spec, Conv2dLayer)
        assert (spec.type, spec.input_size, spec.padding, spec.activation) == (
            "conv2d",
            list(SIZE),
            padding,
            activation,
        )
        assert spec.kernel.shape == list(conv.weight.shape)
        assert spec.kernel.datatype == "FP64"
        assert np.array_equal(spec.kernel.to_numpy(), conv.weight.detach().numpy())
        assert isinstance(spec.bias, Tensor)
        assert conv.bias is not None
        assert np.array_equal(spec.bias.to_numpy(), conv.bias.detach().numpy())
        assert (spec.residual, spec.projection) == (False, None)
    assert isinstance(last, Layer)
    assert last.activation == "linear"
    assert isinstance(last.weight, Tensor)
    assert last.weight.shape == [3, 4 * SIZE[0] * SIZE[1]]
    # a bare Conv2d is a one-layer network; b64 reaches the kernel
    (bare,) = network_from_module(convs[0], input_size=SIZE, b64=True).layers or []
    assert isinstance(bare, Conv2dLayer)
    assert bare.kernel.b64 is not None


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize("kind", ["odd", "even"])
async def test_conv_report_matches_torch(sdk: jacspec.AsyncClient, kind: str) -> None:
    """The true input-output norm, each layer's Jacobian and backward norms, and each convolution's σ against
    torch's own convolutions: a wrong padding side, channel order or flatten order would change them."""
    module = _conv_net(kind)
    probes = _image_probes(13)
    report = await sdk.analyze(network_from_module(module, input_size=SIZE), inputs={"data": probes.tolist()})
    layer_norms, backward = _torch_norms(module, _as_images(probes))
    assert report.summary.input_norm_log10 == pytest.approx(math.log10(backward[0]), abs=LOG_ABS)
    convs = [m for m in module if isinstance(m, nn.Conv2d)]
    pixels = SIZE[0] * SIZE[1]
    for layer, conv in zip(report.layers, convs, strict=False):
        assert layer.type == "conv2d"
        assert layer.shape == [conv.out_channels * pixels, conv.in_channels * pixels]
        assert layer.weight_norm == pytest.approx(_norm2(_conv_operator(conv, SIZE)), rel=OPERATOR_REL)
    assert report.layers[-1].type == "dense"
    assert len(report.layers) == len(layer_norms) == 3
    for j, layer in enumerate(report.layers):
        assert layer.jacobian_norm == pytest.approx(layer_norms[j], rel=JAC_REL), j
        assert layer.backward_norm_log10 == pytest.approx(math.log10(backward[j + 1]), abs=LOG_ABS), j


BIG_KERNELS = [((1, 9), 3, "zeros"), ((1, 9), 3, "circular"), ((3, 3), 5, "zeros"), ((3, 3), 5, "circular")]
"""([H, W], k, padding_mode): k × k kernels larger than the input, which nn.Conv2d accepts (its padding wraps at most
once, k//2 ≤ H, W)."""


@pytest.mark.parametrize(("size", "kernel", "padding_mode"), BIG_KERNELS)
async def test_kernel_larger_than_the_input_matches_torch(
    sdk: jacspec.AsyncClient, size: tuple[int, int], kernel: int, padding_mode: Literal["zeros", "circular"]
) -> None:
    """A kernel larger than its input, with integer and 'same' padding: σ against numpy's SVD of the operator that
    torch's convolution builds from the basis images, each layer's Jacobian and backward norm against autograd."""
    torch.manual_seed(3)
    modules = [
        nn.Conv2d(C_IN, 3, kernel, padding=kernel // 2, padding_mode=padding_mode),
        nn.Tanh(),
        nn.Conv2d(3, 3, kernel, padding="same", padding_mode=padding_mode),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Linear(3 * size[0] * size[1], 2),
    ]
    module = nn.Sequential(*modules).double().eval()
    probes = np.random.default_rng(17).normal(0.0, 1.5, size=(COUNT, C_IN * size[0] * size[1]))
    report = await sdk.analyze(network_from_module(module, input_size=size), inputs={"data": probes.tolist()})
    images = [torch.from_numpy(row).reshape(1, C_IN, *size) for row in probes]
    layer_norms, backward = _torch_norms(module, images)
    convs = [m for m in module if isinstance(m, nn.Conv2d)]
    for layer, conv in zip(report.layers, convs, strict=False):
        assert layer.weight_norm == pytest.approx(_norm2(_conv_operator(conv, size)), rel=OPERATOR_REL)
    assert report.summary.input_norm_log10 == pytest.approx(math.log10(backward[0]), abs=LOG_ABS)
    for j, layer in enumerate(report.layers):
        assert layer.jacobian_norm == pytest.approx(layer_norms[j], rel=JAC_REL), j
        assert layer.backward_norm_log10 == pytest.approx(math.log10(backward[j + 1]), abs=LOG_ABS), j


def test_circular_padding_that_wraps_twice_is_refused_as_torch_refuses_it() -> None:
    """nn.Conv2d's forward refuses circular padding beyond the input (k//2 > H); so does the mapping, naming it."""
    conv = nn.Conv2d(C_IN, 2, 4, padding="same", padding_mode="circular").double()
    with pytest.raises(RuntimeError, match="wrapping around more than once"):
        conv(torch.zeros(1, C_IN, 1, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"kernel_size=\(4, 4\) with padding_mode='circular'.*kh//2 ≤ H"):
        network_from_module(conv, input_size=(1, 9))
    (layer,) = network_from_module(conv, input_size=(2, 9)).layers or []
    assert isinstance(layer, Conv2dLayer)


# --- residual blocks ---


def _residual_blocks() -> list[tuple[Residual, tuple[int, ...]]]:
    """Residual blocks of every kind, each with the shape of an input batch."""
    torch.manual_seed(17)
    return [
        (Residual(nn.Linear(6, 6), nn.Tanh()), (3, 6)),
        (Residual(nn.Linear(6, 5), nn.Tanh(), projection=nn.Linear(6, 5, bias=False)), (3, 6)),
        (Residual(nn.Linear(5, 5)), (3, 5)),
        (Residual(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()), (2, 3, *SIZE)),
        (
            Residual(
                nn.Conv2d(3, 4, 3, padding="same", padding_mode="circular"),
                nn.Tanh(),
                projection=nn.Conv2d(3, 4, 1, bias=False),
            ),
            (2, 3, *SIZE),
        ),
    ]


def test_residual_forward_is_the_skip_plus_the_activated_layer() -> None:
    """forward(x) = x + h(layer(x)), or projection(x) + h(layer(x)); its parameters are the module's, trainable."""
    for block, shape in _residual_blocks():
        x = torch.randn(*shape)
        skip = x if block.projection is None else block.projection(x)
        assert torch.equal(block(x), skip + block.activation(block.layer(x)))
        owned = list(block.layer.parameters()) + (
            [] if block.projection is None else list(block.projection.parameters())
        )
        assert {id(p) for p in block.parameters()} == {id(p) for p in owned}
        block(x).square().sum().backward()
        assert block.layer.weight.grad is not None
    with pytest.raises(TypeError, match=r"layer must be an nn\.Linear or nn\.Conv2d"):
        Residual(nn.Tanh())  # type: ignore[arg-type]


def _residual_net() -> nn.Sequential:
    """Linear → Tanh, then three residual blocks (identity skip with tanh, a projection, identity skip with no
    activation), then a Linear; weights doubled so that tanh' ranges over (0, 1]."""
    torch.manual_seed(9)
    module = nn.Sequential(
        nn.Linear(4, 6),
        nn.Tanh(),
        Residual(nn.Linear(6, 6), nn.Tanh()),
        Residual(nn.Linear(6, 5), nn.Tanh(), projection=nn.Linear(6, 5, bias=False)),
        Residual(nn.Linear(5, 5)),
        nn.Linear(5, 3),
    ).double()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(2.0)
    return module.eval()


def test_residual_spec_maps_each_block() -> None:
    module = _residual_net()
    network = network_from_module(module)
    plain, identity, projected, linear, last = _dense_layers(network)
    assert (plain.residual, plain.projection, plain.activation) == (False, None, "tanh")
    assert (identity.residual, identity.projection, identity.activation) == (True, None, "tanh")
    assert (projected.residual, projected.activation) == (True, "tanh")
    assert (linear.residual, linear.projection, linear.activation) == (True, None, "linear")
    assert (last.residual, last.activation) == (False, "linear")
    block = module[3]
    assert isinstance(block, Residual)
    assert isinstance(block.projection, nn.Linear)
    assert isinstance(projected.projection, Tensor)
    assert np.array_equal(projected.projection.to_numpy(), block.projection.weight.detach().numpy())
    assert isinstance(projected.weight, Tensor)
    assert np.array_equal(projected.weight.to_numpy(), block.layer.weight.detach().numpy())


async def test_residual_dense_jacobian_norms(sdk: jacspec.AsyncClient) -> None:
    """Each residual layer's jacobian_norm is max over probes of ‖S + diag(h'(z))·W‖₂, S = I or P, formed densely
    with numpy from torch's weights and torch's forward pass; the input-output norm is torch autograd's."""
    module = _residual_net()
    probes = np.random.default_rng(23).normal(0.0, 1.5, size=(6, 4))
    report = await sdk.analyze(network_from_module(module), inputs={"data": probes.tolist()})
    x = torch.from_numpy(probes)
    for position in (2, 3, 4):
        block = module[position]
        assert isinstance(block, Residual)
        assert isinstance(block.layer, nn.Linear)
        with torch.no_grad():
            a = module[:position](x).numpy()
        weight = block.layer.weight.detach().numpy()
        bias = block.layer.bias.detach().numpy()
        z = a @ weight.T + bias
        derivative = 1.0 - np.tanh(z) ** 2 if isinstance(block.activation, nn.Tanh) else np.ones_like(z)
        if block.projection is None:
            skip = np.eye(weight.shape[1])
        else:
            assert isinstance(block.projection, nn.Linear)
            skip = block.projection.weight.detach().numpy()
        expected = max(_norm2(skip + d[:, None] * weight) for d in derivative)
        layer = report.layers[position - 1]
        assert layer.jacobian_norm == pytest.approx(expected, rel=RESIDUAL_REL), position
        assert layer.skip_norm == pytest.approx(_norm2(skip), rel=RESIDUAL_REL), position
    _, backward = _torch_norms(module, list(x))
    assert report.summary.input_norm_log10 == pytest.approx(math.log10(backward[0]), abs=LOG_ABS)


def _conv_residual_net() -> nn.Sequential:
    """A convolution, then residual convolutions with an identity skip (circular) and a 1×1 projection (an even
    kernel, zero padding), then Flatten and Linear."""
    torch.manual_seed(29)
    height, width = SIZE
    return (
        nn.Sequential(
            nn.Conv2d(C_IN, 3, 3, padding=1),
            nn.ReLU(),
            Residual(nn.Conv2d(3, 3, 3, padding="same", padding_mode="circular"), nn.Tanh()),
            Residual(nn.Conv2d(3, 4, (2, 2), padding="same"), nn.Tanh(), projection=nn.Conv2d(3, 4, 1, bias=False)),
            nn.Flatten(),
            nn.Linear(4 * height * width, 3),
        )
        .double()
        .eval()
    )


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
async def test_conv_residual_report_matches_torch(sdk: jacspec.AsyncClient) -> None:
    """Residual convolutions: the projection goes as its [c_out, c_in] matrix; every layer's Jacobian norm, the
    backward norms and the input-output norm against torch autograd through the Residual modules themselves."""
    module = _conv_residual_net()
    network = network_from_module(module, input_size=SIZE)
    assert network.layers is not None
    _, identity, projected, _ = network.layers
    assert isinstance(identity, Conv2dLayer)
    assert (identity.residual, identity.projection, identity.padding) == (True, None, "circular")
    assert isinstance(projected, Conv2dLayer)
    block = module[3]
    assert isinstance(block, Residual)
    assert isinstance(block.projection, nn.Conv2d)
    projection = block.projection.weight.detach().numpy()[:, :, 0, 0]
    assert projected.residual
    assert isinstance(projected.projection, Tensor)
    assert np.array_equal(projected.projection.to_numpy(), projection)

    probes = _image_probes(31)
    report = await sdk.analyze(network, inputs={"data": probes.tolist()})
    layer_norms, backward = _torch_norms(module, _as_images(probes))
    assert report.summary.input_norm_log10 == pytest.approx(math.log10(backward[0]), abs=LOG_ABS)
    for j, layer in enumerate(report.layers):
        assert layer.jacobian_norm == pytest.approx(layer_norms[j], rel=JAC_REL), j
        assert layer.backward_norm_log10 == pytest.approx(math.log10(backward[j + 1]), abs=LOG_ABS), j
    assert report.layers[1].skip_norm == 1.0
    assert report.layers[2].skip_norm == pytest.approx(_norm2(projection), rel=OPERATOR_REL)


# --- recurrent networks ---


def _rnn(nonlinearity: str, bias: bool, batch_first: bool) -> nn.RNN:
    torch.manual_seed(37)
    rnn = nn.RNN(N_IN, HIDDEN, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first, dtype=torch.float64)
    with torch.no_grad():  # σ_max(W) near 1, so that ∂h_T/∂h_0 neither vanishes nor explodes in 7 steps
        rnn.get_parameter("weight_hh_l0").mul_(2.0)
    return rnn


@pytest.mark.parametrize("sequential", [False, True], ids=["bare", "sequential"])
def test_rnn_spec(sequential: bool) -> None:
    rnn = _rnn("tanh", True, True)
    network = network_from_module(nn.Sequential(rnn) if sequential else rnn, steps=STEPS)
    assert (network.layers, network.init) == (None, None)
    recurrent = network.recurrent
    assert recurrent is not None
    assert (recurrent.steps, recurrent.activation, recurrent.init) == (STEPS, "tanh", None)
    for field, expected in (
        (recurrent.weight, rnn.get_parameter("weight_hh_l0")),
        (recurrent.input_weight, rnn.get_parameter("weight_ih_l0")),
        (recurrent.bias, rnn.get_parameter("bias_ih_l0") + rnn.get_parameter("bias_hh_l0")),
    ):
        assert isinstance(field, Tensor)
        assert np.array_equal(field.to_numpy(), expected.detach().numpy())
    relu = network_from_module(_rnn("relu", False, False), steps=1).recurrent
    assert relu is not None
    assert (relu.activation, relu.bias) == ("relu", None)


@pytest.mark.parametrize(
    ("nonlinearity", "bias", "batch_first"),
    [("tanh", True, True), ("relu", False, False)],
    ids=["tanh-bias-batch_first", "relu-nobias-seq_first"],
)
async def test_rnn_report_matches_torch(
    sdk: jacspec.AsyncClient, nonlinearity: str, bias: bool, batch_first: bool
) -> None:
    """input_norm_log10 is log10 max over probes of ‖∂h_T/∂h_0‖₂ at h_0 = 0, and step t's backward_norm_log10
    that of ‖∂h_T/∂h_t‖₂, both by autograd through torch's nn.RNN on the probes x.reshape(count, T, n_in)."""
    rnn = _rnn(nonlinearity, bias, batch_first)
    probes = np.random.default_rng(41).normal(0.0, 1.0, size=(COUNT, STEPS * N_IN))
    report = await sdk.analyze(network_from_module(rnn, steps=STEPS), inputs={"data": probes.tolist()})
    sequences = torch.from_numpy(probes).reshape(COUNT, STEPS, N_IN)
    backward = [0.0] * STEPS + [1.0]  # backward[t] = max over probes of ‖∂h_T/∂h_t‖₂, t = 0..T
    for sequence in sequences:
        with torch.no_grad():
            states = [torch.zeros(HIDDEN, dtype=torch.float64), *_run(rnn, sequence, batch_first)[0]]
        for t in range(STEPS):

            def final(h: torch.Tensor, t: int = t, sequence: torch.Tensor = sequence) -> torch.Tensor:
                return _run(rnn, sequence[t:], batch_first, h)[1]

            jacobian = torch.autograd.functional.jacobian(final, states[t])  # type: ignore[no-untyped-call]
            backward[t] = max(backward[t], _norm2(jacobian.numpy()))
    assert report.summary.input_norm_log10 == pytest.approx(math.log10(backward[0]), abs=LOG_ABS)
    assert [layer.index for layer in report.layers] == list(range(1, STEPS + 1))
    for layer in report.layers:
        assert layer.backward_norm_log10 == pytest.approx(math.log10(backward[layer.index]), abs=LOG_ABS)
    assert report.recurrent is not None
    assert report.recurrent.weight_norm == pytest.approx(
        _norm2(rnn.get_parameter("weight_hh_l0").detach().numpy()), rel=REL64
    )
    assert report.recurrent.input_weight_norm == pytest.approx(
        _norm2(rnn.get_parameter("weight_ih_l0").detach().numpy()), rel=REL64
    )


def _run(
    rnn: nn.RNN, sequence: torch.Tensor, batch_first: bool, h: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's nn.RNN on one sequence [T, n_in] from h (zeros if None): every h_t [T, n] and the last h_T [n]."""
    x = sequence[None] if batch_first else sequence[:, None]
    h0 = torch.zeros(1, 1, HIDDEN, dtype=torch.float64) if h is None else h.reshape(1, 1, HIDDEN)
    out, last = rnn(x, h0)
    return (out[0] if batch_first else out[:, 0]), last.reshape(HIDDEN)


# --- refusals ---


def _conv(**kwargs: Any) -> nn.Conv2d:
    return nn.Conv2d(C_IN, C_IN, kwargs.pop("kernel_size", 3), **kwargs)


@pytest.mark.parametrize(
    ("module", "kwargs", "match"),
    [
        pytest.param(
            _conv(stride=2, padding=1), {"input_size": SIZE}, r"module \[0\] \(Conv2d\): stride=\(2, 2\)", id="stride"
        ),
        pytest.param(_conv(dilation=2, padding=2), {"input_size": SIZE}, r"dilation=\(2, 2\)", id="dilation"),
        pytest.param(_conv(groups=2, padding=1), {"input_size": SIZE}, r"groups=2", id="groups"),
        pytest.param(_conv(), {"input_size": SIZE}, r"padding=\(0, 0\) with kernel_size=\(3, 3\)", id="padding-0"),
        pytest.param(_conv(kernel_size=4, padding=2), {"input_size": SIZE}, r"padding=\(2, 2\).*'same'", id="even-int"),
        pytest.param(
            _conv(padding=1, padding_mode="reflect"), {"input_size": SIZE}, r"padding_mode='reflect'", id="reflect"
        ),
        pytest.param(_conv(padding=1), {}, r"module \[0\] \(Conv2d\): input_size", id="no-input-size"),
        pytest.param(
            _conv(kernel_size=5, padding=2, padding_mode="circular"),
            {"input_size": (1, 8)},
            r"kernel_size=\(5, 5\) with padding_mode='circular'",
            id="wraps-twice",
        ),
        pytest.param(_conv(padding=1), {"input_size": (5,)}, r"input_size must be \(H, W\)", id="input-size-1d"),
        pytest.param(
            nn.Sequential(_conv(padding=1), nn.Conv2d(3, 2, 3, padding=1)),
            {"input_size": SIZE},
            r"module \[1\] \(Conv2d\): in_channels=3",
            id="channels",
        ),
        pytest.param(
            nn.Sequential(_conv(padding=1), nn.Linear(SIZE[1], 3)),
            {"input_size": SIZE},
            r"module \[1\] \(Linear\).*nn\.Flatten",
            id="linear-on-images",
        ),
        pytest.param(
            nn.Sequential(_conv(padding=1), nn.Flatten(), nn.Linear(7, 3)),
            {"input_size": SIZE},
            r"module \[2\] \(Linear\): in_features=7, but the layers before give 60",
            id="flatten-width",
        ),
        pytest.param(
            nn.Sequential(_conv(padding=1), nn.Flatten(0)),
            {"input_size": SIZE},
            r"module \[1\] \(Flatten\): start_dim=0",
            id="flatten-dims",
        ),
        pytest.param(nn.Linear(3, 3), {"input_size": SIZE}, r"input_size=.*no nn\.Conv2d", id="input-size-unused"),
        pytest.param(
            nn.Sequential(nn.Flatten(), _conv(padding=1)),
            {"input_size": SIZE},
            r"module \[1\] \(Conv2d\): .*nn\.Unflatten",
            id="conv-after-flatten",
        ),
        pytest.param(nn.RNN(3, 5, num_layers=2), {"steps": 4}, r"module \(RNN\): num_layers=2", id="rnn-2-layers"),
        pytest.param(nn.RNN(3, 5, bidirectional=True), {"steps": 4}, r"bidirectional=True", id="rnn-bidirectional"),
        pytest.param(nn.RNN(3, 5), {}, r"module \(RNN\): steps", id="rnn-no-steps"),
        pytest.param(nn.Sequential(nn.RNN(3, 5)), {}, r"module \[0\] \(RNN\): steps", id="rnn-sequential-no-steps"),
        pytest.param(nn.RNN(3, 5), {"steps": 0}, r"steps must be a positive integer", id="rnn-zero-steps"),
        pytest.param(nn.RNN(3, 5), {"steps": 4, "input_size": SIZE}, r"input_size", id="rnn-input-size"),
        pytest.param(nn.LSTM(3, 5), {"steps": 4}, r"nn\.RNN only.*LSTM", id="lstm"),
        pytest.param(
            nn.Sequential(nn.RNN(3, 5), nn.Linear(5, 2)), {"steps": 4}, r"module \[0\] \(RNN\)", id="rnn-in-sequence"
        ),
        pytest.param(nn.Linear(3, 3), {"steps": 4}, r"steps=.*holds none", id="steps-unused"),
        pytest.param(
            Residual(nn.Linear(4, 5), nn.Tanh()), {}, r"\(Residual\)\.layer: .* give a projection", id="skip-width"
        ),
        pytest.param(
            Residual(nn.Linear(4, 5), projection=nn.Linear(4, 5)), {}, r"\.projection: bias", id="projection-bias"
        ),
        pytest.param(
            Residual(nn.Linear(4, 5), projection=nn.Linear(5, 4, bias=False)),
            {},
            r"\.projection: in_features, out_features = 5, 4",
            id="projection-shape",
        ),
        pytest.param(
            Residual(nn.Conv2d(2, 3, 3, padding=1), projection=nn.Conv2d(2, 3, 3, padding=1, bias=False)),
            {"input_size": SIZE},
            r"\.projection: kernel_size=\(3, 3\)",
            id="projection-not-1x1",
        ),
        pytest.param(
            Residual(nn.Conv2d(2, 3, 3, padding=1), projection=nn.Linear(2, 3, bias=False)),
            {"input_size": SIZE},
            r"\.projection: an nn\.Conv2d layer needs a 1×1 nn\.Conv2d",
            id="projection-kind",
        ),
        pytest.param(
            Residual(nn.Conv2d(2, 2, 3, stride=2, padding=1)),
            {"input_size": SIZE},
            r"\.layer: stride",
            id="skip-stride",
        ),
        pytest.param(
            nn.Sequential(Residual(nn.Linear(3, 3)), nn.Tanh()),
            {},
            r"module \[1\] \(Tanh\): an activation must follow",
            id="activation-after-residual",
        ),
        pytest.param(
            Residual(nn.Linear(3, 3), nn.GELU(approximate="tanh")), {}, r"\(Residual\)\.activation", id="bad-activation"
        ),
    ],
)
def test_refusals_of_what_the_contract_cannot_express(module: nn.Module, kwargs: dict[str, Any], match: str) -> None:
    """Each refusal names the module, its position and the attribute (stride, dilation, groups, padding, …)."""
    with pytest.raises(ValueError, match=match):
        network_from_module(module, **kwargs)


def test_accepted_conv_paddings() -> None:
    """What keeps the size: 'same' for any kernel, (kh//2, kw//2) for odd ones, 0 or 'valid' for 1×1."""
    for conv, padding in (
        (nn.Conv2d(2, 2, (3, 5), padding=(1, 2)), "zeros"),
        (nn.Conv2d(2, 2, (2, 3), padding="same"), "zeros"),
        (nn.Conv2d(2, 2, 4, padding="same", padding_mode="circular"), "circular"),
        (nn.Conv2d(2, 2, 1), "zeros"),
        (nn.Conv2d(2, 2, 1, padding="valid", padding_mode="reflect"), "zeros"),  # 1×1: nothing is padded
    ):
        (layer,) = network_from_module(conv, input_size=SIZE).layers or []
        assert isinstance(layer, Conv2dLayer)
        assert layer.padding == padding
