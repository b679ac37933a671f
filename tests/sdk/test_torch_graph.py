"""``jacspec.torch.graph_from_module`` (``network_from_module(model, example_input)``): torch.fx traces mapped onto
``network.graph``.

Each model is mapped, and the graph is evaluated by ``tests.sdk.graph_eval`` — written from the contract's text, op
by op with torch.nn.functional in float64 — on the probes; its output must equal the torch model's own forward
pass in float64 to 1e-10 (relative to the output's largest entry): a wrong axis, parameter, default or ordering
shows as an O(1) difference. Refusals must name the node, its target and the module path.
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
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch import nn

import jacspec
from jacspec.torch import graph_from_module, network_from_module
from tests.sdk.graph_eval import evaluate, run


@pytest.fixture
async def sdk(client: httpx.AsyncClient) -> AsyncIterator[jacspec.AsyncClient]:
    async with jacspec.AsyncClient(base_url="http://jacspec.test", http_client=client) as c:
        yield c


REL = 1e-10
"""float64 on both sides, the same operations in a different order: differences are rounding, ~1e-15 relative."""


def _close(graph: dict[str, Any], model: nn.Module, x: torch.Tensor, batch_dim: int = 0) -> None:
    """The graph on the probes (the input's batch axis moved first) equals the model's output per probe."""
    with torch.no_grad():
        expected = model(x)
    with torch.no_grad():
        got = evaluate(graph, x.movedim(batch_dim, 0))
    want = expected.movedim(batch_dim, 0).double()
    assert got.shape == want.shape
    scale = float(want.abs().max())
    assert scale > 0
    assert float((got - want).abs().max()) <= REL * scale


def _ops(graph: dict[str, Any]) -> list[str]:
    return [node["op"] for node in graph["nodes"]]


def _seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """The model in float64, eval mode, with nontrivial running statistics for every batch norm."""
    torch.manual_seed(seed)
    model = model.double()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            assert module.running_mean is not None
            assert module.running_var is not None
            with torch.no_grad():
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------- models


class SkipMLP(nn.Module):
    """y = fc3(tanh(x + fc2(relu(fc1(x))))) − 0.5·x·... : a residual MLP with a scaled skip."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 24)
        self.fc2 = nn.Linear(24, width)
        self.fc3 = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.fc2(F.relu(self.fc1(x)))
        return self.fc3(torch.tanh(h) - 0.5 * x)  # type: ignore[no-any-return]


class StridedCNN(nn.Module):
    """Stride-2 convolutions with BatchNorm and max-pool, global pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = F.silu(self.bn(self.conv(x)))
        return self.head(x)  # type: ignore[no-any-return]


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out: two 3×3 conv-BN stages, a 1×1 strided projection when the
    shape changes, out += identity, relu."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)  # type: ignore[no-any-return]


class ResNet(nn.Module):
    """torchvision's resnet18 layout ([2, 2, 2, 2] BasicBlocks, 7×7 stride-2 stem, max-pool), widths scaled by
    ``width``/64."""

    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        inplanes = width
        for index, planes in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))  # type: ignore[no-any-return]


class GPT2Block(nn.Module):
    """A GPT-2 block with nn modules: x + attn(ln_1(x)) under a causal mask, then x + mlp(ln_2(x))."""

    mask: torch.Tensor

    def __init__(self, d: int = 32, heads: int = 4, context: int = 16) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(0.1))
        self.register_buffer("mask", torch.ones(context, context, dtype=torch.bool).triu(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.size(1)
        h = self.ln_1(x)
        a, _ = self.attn(h, h, h, attn_mask=self.mask[:steps, :steps], need_weights=False)
        x = x + a
        return x + self.mlp(self.ln_2(x))  # type: ignore[no-any-return]


class SequenceModel(nn.Module):
    """A recurrent layer (its output sequence, item [0]) and a linear read-out at every step."""

    def __init__(self, rnn: nn.RNNBase, hidden: int) -> None:
        super().__init__()
        self.rnn = rnn
        self.out = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.out(out)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------------------- tests


def test_mlp_with_skip() -> None:
    model = _seeded(SkipMLP())
    x = torch.randn(4, 12, dtype=torch.float64)
    network = network_from_module(model, x)
    assert network.graph is not None
    graph = network.graph.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    assert graph["input_shape"] == [12]
    assert _ops(graph) == ["linear", "activation", "linear", "add", "activation", "mul", "mul", "add", "linear"]
    _close(graph, model, x)


def test_strided_cnn_with_batch_norm_and_max_pool() -> None:
    model = _seeded(StridedCNN())
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    graph = graph_from_module(model, x)
    assert graph["input_shape"] == [3, 32, 32]
    assert _ops(graph) == [
        "conv2d", "batch_norm", "activation", "max_pool2d", "conv2d", "batch_norm", "activation",
        "adaptive_avg_pool2d", "flatten", "linear",
    ]  # fmt: skip
    conv = graph["nodes"][0]
    assert (conv["stride"], conv["padding"], conv["id"]) == ([2, 2], [1, 1], "stem.0")
    assert set(conv["params"]) == {"weight"}
    pool = graph["nodes"][3]
    assert (pool["kernel_size"], pool["stride"], pool["padding"], pool["dilation"]) == ([3, 3], [2, 2], [1, 1], [1, 1])
    _close(graph, model, x)


def test_strided_cnn_batch_norm_folded() -> None:
    model = _seeded(StridedCNN())
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    graph = graph_from_module(model, x, fold_batch_norm=True)
    assert "batch_norm" not in _ops(graph)
    assert set(graph["nodes"][0]["params"]) == {"weight", "bias"}
    _close(graph, model, x)


def test_linear_batch_norm_folded() -> None:
    """BatchNorm1d after an nn.Linear on vectors folds into it (W' = s·W, b' = s·(b − μ) + β)."""
    model = _seeded(NormMLP())
    x = torch.randn(4, 10, dtype=torch.float64)
    graph = graph_from_module(model, x, fold_batch_norm=True)
    assert _ops(graph) == ["linear", "activation", "linear", "activation", "add", "rms_norm", "linear"]
    _close(graph, model, x)


def test_resnet_basic_block() -> None:
    model = _seeded(BasicBlock(8, 16, stride=2))
    x = torch.randn(2, 8, 16, 16, dtype=torch.float64)
    graph = graph_from_module(model, x)
    ids = [node["id"] for node in graph["nodes"]]
    assert ids == [
        "conv1", "bn1", "relu", "conv2", "bn2", "downsample.0", "downsample.1", "add", "relu:1",
    ]  # fmt: skip
    assert graph["nodes"][5]["inputs"] == ["input"]
    assert graph["nodes"][7]["inputs"] == ["bn2", "downsample.1"]
    _close(graph, model, x)


def test_small_resnet18() -> None:
    model = _seeded(ResNet(width=8))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    graph = graph_from_module(model, x)
    assert _ops(graph).count("add") == 8
    assert _ops(graph).count("conv2d") == 20
    _close(graph, model, x)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder(norm_first: bool) -> None:
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True, norm_first=norm_first)
    model = _seeded(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    x = torch.randn(3, 16, 32, dtype=torch.float64)
    graph = graph_from_module(model, x)
    assert graph["input_shape"] == [16, 32]
    per_layer = (
        ["layer_norm", "attention", "add", "layer_norm", "linear", "activation", "linear", "add"]
        if norm_first
        else ["attention", "add", "layer_norm", "linear", "activation", "linear", "add", "layer_norm"]
    )
    assert _ops(graph) == per_layer * 2
    attention = graph["nodes"][per_layer.index("attention")]
    assert attention["num_heads"] == 4
    assert attention["causal"] is False
    assert set(attention["params"]) == {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}
    _close(graph, model, x)


def test_transformer_sequence_first_with_batch_dim() -> None:
    """batch_first=False: the probes are axis 1 of (T, N, d); the graph's input is still one probe's (T, d)."""
    torch.manual_seed(2)
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation="gelu")
    model = _seeded(nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False))
    x = torch.randn(16, 3, 16, dtype=torch.float64)
    graph = graph_from_module(model, x, batch_dim=1)
    assert graph["input_shape"] == [16, 16]
    assert graph["nodes"][-1]["op"] == "layer_norm"
    assert graph["nodes"][4]["activation"] == {"name": "gelu"}
    _close(graph, model, x, batch_dim=1)


def test_gpt2_block_is_causal() -> None:
    model = _seeded(GPT2Block())
    x = torch.randn(2, 16, 32, dtype=torch.float64)
    graph = graph_from_module(model, x)
    assert _ops(graph) == ["layer_norm", "attention", "add", "layer_norm", "linear", "activation", "linear", "add"]
    assert graph["nodes"][1]["causal"] is True
    assert graph["nodes"][2]["inputs"] == ["input", "attn"]
    _close(graph, model, x)


@pytest.mark.parametrize(
    "rnn",
    [
        lambda: nn.LSTM(6, 10, num_layers=2, batch_first=True),
        lambda: nn.GRU(6, 5, bidirectional=True, batch_first=True),
        lambda: nn.RNN(6, 10, nonlinearity="relu", batch_first=True),
    ],
    ids=["lstm-2-layers", "gru-bidirectional", "rnn-relu"],
)
def test_recurrent_over_20_steps(rnn: Any) -> None:
    torch.manual_seed(3)
    module = rnn()
    hidden = module.hidden_size * (2 if module.bidirectional else 1)
    model = _seeded(SequenceModel(module, hidden))
    x = torch.randn(3, 20, 6, dtype=torch.float64)
    graph = graph_from_module(model, x)
    assert graph["input_shape"] == [20, 6]
    node = graph["nodes"][0]
    assert node["hidden_size"] == module.hidden_size
    assert set(node["params"]) == {name for name, _ in module.named_parameters()}
    _close(graph, model, x)


def test_sequence_first_lstm() -> None:
    """batch_first=False with the probes on axis 1, then transposed to batch-first: no node for the transpose."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(4, 8)
            self.fc = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x.transpose(0, 1))
            return self.fc(out.transpose(0, 1))  # type: ignore[no-any-return]

    model = _seeded(Model())
    x = torch.randn(3, 20, 4, dtype=torch.float64)
    graph = graph_from_module(model, x)
    assert _ops(graph) == ["lstm", "linear"]
    _close(graph, model, x)


# ------------------------------------------------------------------- the server: its forward pass and its report


class NormMLP(nn.Module):
    """Linear → BatchNorm1d → GELU → Linear, with a skip around the middle and an RMSNorm at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 16)
        self.bn = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 16)
        self.norm = nn.RMSNorm(16, eps=1e-6)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn(self.fc1(x)))
        return self.out(self.norm(h + torch.tanh(self.fc2(h))))  # type: ignore[no-any-return]


def _encoder(norm_first: bool) -> nn.Module:
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


SERVED: dict[str, tuple[Any, tuple[int, ...]]] = {
    "strided-cnn": (lambda: StridedCNN(), (2, 3, 16, 16)),
    "resnet-basic-block": (lambda: BasicBlock(4, 8, stride=2), (2, 4, 8, 8)),
    "resnet18-layout": (lambda: ResNet(width=4), (2, 3, 32, 32)),
    "mlp-skip": (lambda: SkipMLP(), (3, 12)),
    "mlp-batch-norm": (lambda: NormMLP(), (3, 10)),
    "encoder-post-ln": (lambda: _encoder(False), (2, 16, 16)),
    "encoder-pre-ln": (lambda: _encoder(True), (2, 16, 16)),
    "gpt2-block": (lambda: GPT2Block(16, 4, 16), (2, 16, 16)),
    "lstm": (lambda: SequenceModel(nn.LSTM(4, 6, batch_first=True), 6), (2, 20, 4)),
    "gru": (lambda: SequenceModel(nn.GRU(4, 6, num_layers=2, batch_first=True), 6), (2, 20, 4)),
}
"""Models with their example input's shape, for the server's forward pass and report (the ResNet-18 layout at
widths 4–32 on 32 × 32 images: its 23 blocks' dense Jacobians, up to 1024 × 3072, take about 25 s)."""

JAC_REL = 1e-6
"""The report's Jacobian, backward and gradient norms vs torch autograd: Lanczos to rtol 1e-10, float64."""


def _served(name: str) -> tuple[nn.Module, torch.Tensor]:
    factory, shape = SERVED[name]
    torch.manual_seed(5)
    model = _seeded(factory())
    return model, torch.randn(*shape, dtype=torch.float64)


def _block_norm(graph: dict[str, Any], ids: list[str], start: torch.Tensor, start_id: str) -> float:
    """max over probes of ‖∂(the nodes ``ids``)/∂(tensor ``start_id``)‖₂ by torch.func.jacrev and a dense SVD."""

    def block(t: torch.Tensor) -> torch.Tensor:
        return run(graph, {start_id: t[None], "input": t[None]}, ids)[0]

    norms = []
    for probe in start:
        jacobian = torch.func.jacrev(block)(probe)
        rows = jacobian.reshape(-1, probe.numel())
        norms.append(float(torch.linalg.matrix_norm(rows, 2)))
    return max(norms)


@pytest.mark.parametrize("name", list(SERVED))
def test_server_forward_pass_equals_torch(name: str) -> None:
    """The server's own graph builder (api.ingest.graph) and forward pass (service.graph.network) on the mapped
    network give the model's output, float64, to 1e-10."""
    from api.ingest.graph import build, inline
    from service.graph.network import linearise

    model, x = _served(name)
    network = network_from_module(model, x)
    assert network.graph is not None
    built = build(network.graph, inline)
    lins, stopped = linearise(built, x.numpy())
    assert stopped is None
    with torch.no_grad():
        want = model(x).numpy()
    got = lins[built.output - 1].output
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= REL * np.max(np.abs(want))


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(SERVED))
async def test_report_matches_autograd(sdk: Any, name: str) -> None:
    """Each block of the report: its Jacobian norm and backward norm equal torch.func.jacrev's (max over the
    probes of the dense Jacobian's spectral norm), its parameters' gradient norms equal autograd's of the MSE
    loss mean((model(x) − y)²), all to 1e-6 relative; the probes and targets are sent as torch tensors."""
    model, x = _served(name)
    network = network_from_module(model, x)
    with torch.no_grad():
        out = model(x)
    y = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    report = await sdk.analyze(network, inputs={"data": x, "targets": y}, options={"rtol": 1e-10})
    assert network.graph is not None
    graph = network.graph.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    values: dict[str, torch.Tensor] = {"input": x}
    with torch.no_grad():
        run(graph, values)
    order = [node["id"] for node in graph["nodes"]]
    model.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    grads = {key: float(p.grad.norm()) for key, p in model.named_parameters() if p.grad is not None}
    assert len(report.layers) >= 2
    checked = 0
    for layer in report.layers:
        assert layer.type == "block"
        assert layer.nodes is not None
        ids = list(layer.nodes)
        first, last = order.index(ids[0]), order.index(ids[-1])
        start_id = "input" if first == 0 else order[first - 1]
        truth = _block_norm(graph, ids, values[start_id], start_id)
        assert layer.jacobian_norm == pytest.approx(truth, rel=JAC_REL)
        downstream = order[last + 1 :]
        backward = 1.0 if not downstream else _block_norm(graph, downstream, values[ids[-1]], ids[-1])
        assert layer.backward_norm_log10 == pytest.approx(math.log10(backward), abs=JAC_REL)
        for key, norm in (layer.parameter_gradient_norms or {}).items():
            if key in grads:
                assert norm == pytest.approx(grads[key], rel=JAC_REL)
                checked += 1
    assert checked == len(grads)  # every model parameter's gradient norm is reported, in its block


# ------------------------------------------------------------------------------ shape ops, functions, more modules


class ShapeOps(nn.Module):
    """permute, cat, reshape, transpose, contiguous, unsqueeze, flatten, torch.add's alpha, /, neg, −, view."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc(x)  # (N, 4, 6)
        b = a.permute(0, 2, 1)  # (N, 6, 4)
        c = torch.cat([b, b * 0.5], dim=-1)  # (N, 6, 8)
        d = c.reshape(c.size(0), 8, 6)
        e = d.transpose(1, 2).contiguous()  # (N, 6, 8)
        f = e.unsqueeze(1).flatten(2)  # (N, 1, 48)
        g = torch.add(f, -f / 4, alpha=2.0) - torch.sigmoid(f).neg()
        return g.view(x.size(0), -1)


class MoreModules(nn.Module):
    """Dilated grouped 'same' conv2d, GroupNorm, AvgPool2d, strided Conv1d, LayerNorm without bias, ReLU6 and
    functional activations with their parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding="same", dilation=2, groups=3)
        self.gn = nn.GroupNorm(3, 6)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.halve = nn.AvgPool2d(2, stride=1, divisor_override=8)
        self.conv1 = nn.Conv1d(6, 4, 3, stride=2)
        self.ln = nn.LayerNorm(24, bias=False)
        self.relu6 = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.elu(self.gn(self.conv(x)), 0.5)
        h = self.halve(self.pool(h)).flatten(2)  # (N, 6, 49)
        h = F.hardtanh(self.conv1(h), -0.5, 2.0)  # (N, 4, 24)
        return self.relu6(F.leaky_relu(self.ln(h), 0.2) * 3.0)  # type: ignore[no-any-return]


def test_shape_ops_and_functions() -> None:
    model = _seeded(ShapeOps())
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    graph = graph_from_module(model, x)
    assert _ops(graph) == [
        "linear", "transpose", "mul", "concat", "reshape", "transpose", "reshape", "flatten", "mul", "mul", "mul",
        "add", "activation", "mul", "mul", "add", "reshape",
    ]  # fmt: skip
    concat = graph["nodes"][3]
    assert (concat["dim"], concat["inputs"]) == (1, ["permute", "mul"])
    _close(graph, model, x)


def test_more_modules() -> None:
    model = _seeded(MoreModules())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    graph = graph_from_module(model, x)
    conv = graph["nodes"][0]
    assert (conv["padding"], conv["dilation"], conv["groups"]) == ("same", [2, 2], 3)
    norm = next(node for node in graph["nodes"] if node["op"] == "layer_norm")
    assert set(norm["params"]) == {"weight", "bias"}  # bias=False: a zero bias, the same function
    assert graph["nodes"][-1]["activation"] == {"name": "hard_tanh", "min_val": 0.0, "max_val": 6.0}
    _close(graph, model, x)


def test_float32_weights_and_b64() -> None:
    """float32 weights go as FP32 (base64 above 1024 elements, data below, or as asked)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 30), nn.Tanh(), nn.Linear(30, 2)).eval()
    graph = graph_from_module(model, torch.randn(2, 40))
    big, small = graph["nodes"][0]["params"]["weight"], graph["nodes"][2]["params"]["weight"]
    assert (big["datatype"], "b64" in big, "data" in small) == ("FP32", True, True)
    listed = graph_from_module(model, torch.randn(2, 40), b64=False)
    assert "data" in listed["nodes"][0]["params"]["weight"]
    with torch.no_grad():
        want = model(torch.ones(1, 40)).double()
    got = evaluate(listed, torch.ones(1, 40, dtype=torch.float64))
    assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())


def test_numpy_example_input() -> None:
    model = _seeded(SkipMLP())
    x = np.random.default_rng(0).standard_normal((3, 12))
    _close(graph_from_module(model, x), model, torch.from_numpy(x))


def test_network_refuses_what_the_contract_cannot_hold() -> None:
    """A node the contract refuses (here a circular-padded convolution) is named, with the contract's reason."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.Tanh()).eval()
    with pytest.raises(ValueError, match=r"node '0' \(op conv2d\) at network\.graph\.nodes\.0\.padding_mode: Input"):
        network_from_module(model, torch.randn(2, 3, 8, 8))


# ---------------------------------------------------------------------------------------------------- refusals


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.fc(x), dim=-1)


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.head = Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))  # type: ignore[no-any-return]


class LastStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return out[:, -1]  # type: ignore[no-any-return]


class FinalState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return h  # type: ignore[no-any-return]


class CrossAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.memory = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.memory(x)
        return self.attn(x, m, m, need_weights=False)[0]  # type: ignore[no-any-return]


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * torch.sigmoid(x)  # type: ignore[no-any-return]


class Offset(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + 1.0  # type: ignore[no-any-return]


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x)  # type: ignore[no-any-return]
        return x


class Embedded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(8, 8), nn.Softmax(dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)  # type: ignore[no-any-return]


REFUSED: list[tuple[str, Any, tuple[int, ...], str]] = [
    (
        "softmax",
        Classifier,
        (2, 8),
        r"node 'softmax' \(call_function torch\.nn\.functional\.softmax, in module 'head'\): "
        r"torch\.nn\.functional\.softmax is not an op of the contract; rewrite that part",
    ),
    (
        "softmax-module",
        Embedded,
        (2, 8),
        r"node 'blocks_1' \(call_module blocks\.1, in module 'blocks\.1'\): Softmax is not an op of the contract",
    ),
    (
        "last-step",
        LastStep,
        (2, 5, 4),
        r"node 'getitem_2' \(call_function operator\.getitem.*indexes or slices a tensor",
    ),
    ("final-state", FinalState, (2, 5, 4), r"item \[1\] of what nn\.GRU 'gru' returns is not mapped"),
    ("cross-attention", CrossAttention, (2, 5, 8), r"in module 'attn'\): query, key and value are different tensors"),
    ("gate", Gate, (2, 8), r"node 'mul' .*multiplies two tensors that depend on the input"),
    ("offset", Offset, (2, 8), r"node 'add' .*adds a constant \(1\.0\)"),
    ("control-flow", Branching, (2, 8), r"torch\.fx cannot trace Branching: TraceError"),
    (
        "gelu-tanh",
        lambda: nn.Sequential(nn.Linear(8, 8), nn.GELU(approximate="tanh")),
        (2, 8),
        r"node '_1' \(call_module 1, in module '1'\): GELU\(approximate='tanh'\)",
    ),
]


@pytest.mark.parametrize(("factory", "shape", "message"), [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED])
def test_refusals_name_the_node(factory: Any, shape: tuple[int, ...], message: str) -> None:
    model = factory().double().eval()
    with pytest.raises(ValueError, match=message):
        graph_from_module(model, torch.randn(*shape, dtype=torch.float64))


def test_training_mode_is_refused() -> None:
    model = StridedCNN().train()
    with pytest.raises(ValueError, match=r"module 'StridedCNN' is in training mode; call model\.eval\(\) first"):
        graph_from_module(model, torch.randn(2, 3, 16, 16))


def test_non_finite_weight_is_named() -> None:
    model = _seeded(ResNet(width=4))
    with torch.no_grad():
        model.get_parameter("layer2.1.conv2.weight")[0, 0, 1, 1] = float("nan")
        model.get_buffer("layer3.0.bn1.running_var")[2] = float("inf")
    with pytest.raises(ValueError, match=r"parameter 'layer2\.1\.conv2\.weight' \(node 'layer2_1_conv2'.*holds 1 NaN"):
        graph_from_module(model, torch.randn(2, 3, 32, 32, dtype=torch.float64))
    with torch.no_grad():
        model.get_parameter("layer2.1.conv2.weight")[0, 0, 1, 1] = 0.0
    with pytest.raises(ValueError, match=r"parameter 'layer3\.0\.bn1\.running_var'"):
        graph_from_module(model, torch.randn(2, 3, 32, 32, dtype=torch.float64))


def test_non_finite_weight_is_named_in_the_chain_form() -> None:
    """The chain form (no example input) names the parameter too, not a bare pydantic error."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        model.get_parameter("2.bias")[1] = float("-inf")
    with pytest.raises(ValueError, match=r"parameter '2\.bias' \(in Sequential\) holds 1 NaN or infinite value of 2"):
        network_from_module(model)


def test_inputs_take_numpy_and_torch() -> None:
    """Inputs.data and targets: an array or tensor of probes, each flattened row-major, as its rows."""
    from jacspec.models import Inputs

    images = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    inputs = Inputs(data=images, targets=np.ones((3, 5), dtype=np.float32))
    assert inputs.data is not None
    assert inputs.targets is not None
    data, targets = inputs.data, inputs.targets
    assert not isinstance(data, list)
    assert not isinstance(targets, list)
    np.testing.assert_array_equal(data.to_numpy(), images.detach().numpy().reshape(3, 32))
    assert (targets.shape, targets.datatype) == ([3, 5], "FP32")
    with pytest.raises(ValueError, match=r"needs the probes on axis 0.*got shape \[5\]"):
        Inputs(data=np.zeros(5))
