"""Whole models as graphs (service.graph.analysis) against torch float64: each block's Jacobian norm (jacrev and a
dense SVD), the backward norms ‖∂y/∂t‖₂ at the blocks' ends, ‖∂y/∂x‖₂, and every parameter tensor's loss gradient
norm (autograd), to 1e-6 relative (issue 19's tolerance; Lanczos runs at rtol 1e-10); and every bound given is at
least the norm it bounds. The linearisation an executor's task would get (pickled) gives the same products."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from api.ingest.decode import explicit_network
from api.ingest.graph import build, inline
from jacspec.models import GraphNetwork, Network
from service.analysis import Options, analyse
from service.graph import analysis
from service.graph.analysis import GraphAnalysis, analyse_graph
from service.graph.network import Block, Graph, linearise, stretch
from service.verdict import Thresholds
from tests.service.graph.export import Exported, relative, tensor

REL = 1e-6
RTOL = 1e-10
PROBES = 3


def _analysed(model: Exported, xs: torch.Tensor, seed: int = 0) -> tuple[GraphAnalysis, torch.Tensor]:
    graph = build(GraphNetwork.model_validate(model.contract()), inline)
    outputs = graph.size(graph.output)
    ys = torch.tensor(np.random.default_rng(seed).standard_normal((len(xs), outputs)))
    x = xs.detach().numpy().reshape(len(xs), -1)
    _check_pickled(graph, x)
    return analyse_graph(graph, x, ys.numpy(), RTOL, Thresholds()), ys


def _check_pickled(graph: Graph, x: np.ndarray) -> None:
    """The whole graph's linearisation as an executor's task gets it (service.graph.network.Stretch, by plain
    pickle): its JVP and VJP are the original's, exactly."""
    lins, stop = linearise(graph, x.reshape(len(x), *graph.shapes[0]))
    assert stop is None
    piece = stretch(graph, lins, Block(0, graph.output))
    clone = pickle.loads(pickle.dumps(piece))
    rng = np.random.default_rng(1)
    v = rng.standard_normal((len(x), *graph.shapes[0]))
    u = rng.standard_normal((len(x), *graph.shapes[-1]))
    assert np.array_equal(clone.jvp(v), piece.jvp(v))
    assert np.array_equal(clone.vjp(u), piece.vjp(u))


def _check(model: Exported, xs: torch.Tensor, blocks: list[list[str]]) -> GraphAnalysis:
    """Every number of the report against torch; the blocks are ``blocks`` (node ids)."""
    result, ys = _analysed(model, xs)
    assert [list(block.nodes) for block in result.blocks] == blocks
    ends = [0]
    for block in blocks:
        ends.append(model.ids[block[-1]])
    last = ends[-1]
    for report, start, stop in zip(result.blocks, ends, ends[1:], strict=False):
        truth = model.jacobian_norm(start, stop, xs)
        assert report.jacobian_norm is not None
        assert relative(report.jacobian_norm, truth) < REL, report.nodes
        if report.jacobian_norm_bound is not None:
            assert report.jacobian_norm_bound >= truth * (1 - 1e-9), report.nodes
        backward = 1.0 if stop == last else model.jacobian_norm(stop, last, xs)
        assert report.backward_norm_log10 is not None
        assert relative(10**report.backward_norm_log10, backward) < REL, report.nodes
        if report.backward_bound_log10 is not None:
            assert 10**report.backward_bound_log10 >= backward * (1 - 1e-9)
    whole = model.jacobian_norm(0, last, xs)
    assert result.summary.input_norm_log10 is not None
    assert relative(10**result.summary.input_norm_log10, whole) < REL
    expected = model.gradients(xs, ys)
    found = {name: value for block in result.blocks for name, value in block.parameter_gradient_norms.items()}
    assert set(found) == set(expected)
    for name, value in expected.items():
        got = found[name]
        assert got is not None, name
        assert relative(got, value) < REL, name
    return result


def _linear(model: Exported, node_id: str, m: nn.Linear, inputs: list[str] | None = None) -> str:
    return model.module(node_id, "linear", m, inputs)


def test_mlp_with_residual_adds() -> None:
    torch.manual_seed(0)
    d = 6
    fc1, fc2, fc3 = nn.Linear(d, d).double(), nn.Linear(d, d).double(), nn.Linear(d, 3).double()
    model = Exported((d,))
    _linear(model, "fc1", fc1)
    model.add("act1", "activation", torch.tanh, activation="tanh")
    model.add("res1", "add", lambda a, b: a + b, ["input", "act1"])
    _linear(model, "fc2", fc2)
    model.add("act2", "activation", torch.relu, activation="relu")
    model.add("res2", "add", lambda a, b: a + b, ["res1", "act2"])
    _linear(model, "fc3", fc3)
    xs = torch.randn(PROBES, d, dtype=torch.float64)
    _check(model, xs, [["fc1", "act1", "res1"], ["fc2", "act2", "res2"], ["fc3"]])


def _attention(model: Exported, node_id: str, mha: nn.MultiheadAttention, inputs: list[str] | None = None) -> str:
    def fn(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = mha(x[None], x[None], x[None], need_weights=False)[0][0]
        return out

    return model.add(node_id, "attention", fn, inputs, dict(mha.named_parameters()), num_heads=mha.num_heads)


def _norm(model: Exported, node_id: str, ln: nn.LayerNorm, inputs: list[str] | None = None) -> str:
    return model.module(node_id, "layer_norm", ln, inputs, normalized_shape=list(ln.normalized_shape), eps=ln.eps)


def _mlp(model: Exported, prefix: str, fc1: nn.Linear, fc2: nn.Linear) -> str:
    _linear(model, f"{prefix}.fc1", fc1)
    model.add(f"{prefix}.gelu", "activation", functional.gelu, activation="gelu")
    return _linear(model, f"{prefix}.fc2", fc2)


@pytest.mark.parametrize("pre_ln", [True, False])
def test_transformer_block(pre_ln: bool) -> None:
    """x + attn(ln1(x)), then + mlp(ln2(·)) (pre-LN), or ln1(x + attn(x)), ln2(· + mlp(·)) (post-LN)."""
    torch.manual_seed(1)
    steps, d, heads = 5, 8, 2
    mha = nn.MultiheadAttention(d, heads, batch_first=True).double().eval()
    ln1, ln2 = nn.LayerNorm(d).double(), nn.LayerNorm(d).double()
    with torch.no_grad():
        for ln in (ln1, ln2):
            ln.weight.normal_(1.0, 0.2)
            ln.bias.normal_(0.0, 0.2)
    fc1, fc2 = nn.Linear(d, 2 * d).double(), nn.Linear(2 * d, d).double()
    model = Exported((steps, d))
    add = lambda a, b: a + b  # noqa: E731
    if pre_ln:
        _norm(model, "ln1", ln1)
        _attention(model, "attn", mha)
        model.add("res1", "add", add, ["input", "attn"])
        _norm(model, "ln2", ln2)
        _mlp(model, "mlp", fc1, fc2)
        model.add("res2", "add", add, ["res1", "mlp.fc2"])
        blocks = [["ln1", "attn", "res1"], ["ln2", "mlp.fc1", "mlp.gelu", "mlp.fc2", "res2"]]
    else:
        _attention(model, "attn", mha)
        model.add("res1", "add", add, ["input", "attn"])
        _norm(model, "ln1", ln1)
        _mlp(model, "mlp", fc1, fc2)
        model.add("res2", "add", add, ["ln1", "mlp.fc2"])
        _norm(model, "ln2", ln2)
        blocks = [["attn", "res1"], ["ln1"], ["mlp.fc1", "mlp.gelu", "mlp.fc2", "res2"], ["ln2"]]
    xs = torch.randn(PROBES, steps, d, dtype=torch.float64)
    result = _check(model, xs, blocks)
    attention_block = result.blocks[0]
    assert attention_block.jacobian_norm_bound is None
    assert "no_global_bound" in attention_block.flags
    assert any(note.startswith("attn:") for note in attention_block.bound_notes)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_recurrent_then_linear(kind: str) -> None:
    """A 2-layer recurrent op (the rnn bidirectional, relu) over 6 steps, a linear head, a flatten."""
    torch.manual_seed(2)
    steps, d, hidden = 6, 3, 4
    fields: dict[str, object] = {"hidden_size": hidden, "num_layers": 2}
    if kind == "rnn":
        cell: nn.Module = nn.RNN(d, hidden, 2, nonlinearity="relu", batch_first=True, bidirectional=True).double()
        fields |= {"nonlinearity": "relu", "bidirectional": True}
    else:
        cell = (nn.LSTM if kind == "lstm" else nn.GRU)(d, hidden, num_layers=2, batch_first=True).double()
    width = hidden * (2 if kind == "rnn" else 1)
    head = nn.Linear(width, 2).double()
    model = Exported((steps, d))
    model.add(kind, kind, lambda x: cell(x[None])[0][0], None, dict(cell.named_parameters()), **fields)
    _linear(model, "head", head)
    model.add("flat", "flatten", lambda x: x.flatten())
    xs = torch.randn(PROBES, steps, d, dtype=torch.float64)
    result = _check(model, xs, [[kind], ["head"], ["flat"]])
    assert (result.blocks[0].jacobian_norm_bound is None) == (kind != "rnn")


def test_concat_permute_reshape_and_batch_norm() -> None:
    """Two branches concatenated (a block over both), then shape ops and an inference batch norm."""
    torch.manual_seed(3)
    bn = nn.BatchNorm1d(4).double().eval()
    assert bn.running_mean is not None
    assert bn.running_var is not None
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_(1.0, 0.3)
        bn.bias.normal_()
    a, b = nn.Linear(3, 2).double(), nn.Linear(3, 2).double()
    model = Exported((3,))
    _linear(model, "a", a, ["input"])
    _linear(model, "b", b, ["input"])
    model.add("cat", "concat", lambda u, v: torch.cat([u, v]), ["a", "b"])
    model.add("mul", "mul", lambda u: -0.5 * u, constant=-0.5)
    model.module("bn", "batch_norm", _BatchNorm(bn), eps=bn.eps)
    model.add("shape", "reshape", lambda u: u.reshape(2, 2), shape=[2, -1])
    model.add("t", "transpose", lambda u: u.transpose(0, 1), dim0=0, dim1=1)
    model.add("p", "permute", lambda u: u.permute(1, 0), dims=[1, 0])
    model.add("act", "activation", torch.sigmoid, activation="sigmoid")
    xs = torch.randn(PROBES, 3, dtype=torch.float64)
    _check(model, xs, [["a", "b", "cat"], ["mul"], ["bn"], ["shape"], ["t"], ["p"], ["act"]])


class _BatchNorm(nn.Module):
    """A BatchNorm1d applied to one probe's (C,) vector (torch's wants a batch axis)."""

    def __init__(self, bn: nn.BatchNorm1d) -> None:
        super().__init__()
        self.bn = bn
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn(x[None])[0]
        return out


def test_a_chain_as_a_graph_gives_the_chain_numbers() -> None:
    """tanh layers 4 → 5 → 3 → 2 as `layers` and as a graph of linear and activation nodes: the backward norms at
    each layer's output, the weights' gradient norms and ‖∂a_L/∂a_0‖ agree; each linear + activation pair's
    Jacobian norm is the layer's."""
    rng = np.random.default_rng(4)
    shapes = [(5, 4), (3, 5), (2, 3)]
    weights = [rng.normal(0, 0.8, size=s) for s in shapes]
    biases = [rng.normal(0, 0.1, size=s[0]) for s in shapes]
    x = rng.standard_normal((PROBES, 4))
    y = rng.standard_normal((PROBES, 2))
    chain = analyse(explicit_network(Network.from_arrays(weights, biases, activation="tanh")), x, y, Options(rtol=RTOL))
    nodes = []
    for j, (w, b) in enumerate(zip(weights, biases, strict=True)):
        params = {"weight": tensor(torch.tensor(w)), "bias": tensor(torch.tensor(b))}
        nodes += [
            {"id": f"fc{j}", "op": "linear", "params": params},
            {"id": f"h{j}", "op": "activation", "activation": "tanh"},
        ]
    graph = build(GraphNetwork.model_validate({"input_shape": [4], "nodes": nodes}), inline)
    result = analyse_graph(graph, x, y, RTOL, Thresholds())
    assert len(result.blocks) == 2 * len(chain.layers)
    assert chain.summary.input_norm_log10 is not None
    assert result.summary.input_norm_log10 is not None
    assert relative(10**result.summary.input_norm_log10, 10**chain.summary.input_norm_log10) < REL
    whole = graph.blocks()
    for j, layer in enumerate(chain.layers):
        linear, activation = result.blocks[2 * j], result.blocks[2 * j + 1]
        assert layer.backward_norm_log10 is not None
        assert activation.backward_norm_log10 is not None
        assert relative(10**activation.backward_norm_log10, 10**layer.backward_norm_log10) < REL
        assert layer.gradient_norm_log10 is not None
        assert linear.gradient_norm_log10 is not None
        gradient = linear.parameter_gradient_norms[f"fc{j}.weight"]
        assert gradient is not None
        assert relative(gradient, 10**layer.gradient_norm_log10) < REL
        assert linear.jacobian_norm is not None
        assert relative(linear.jacobian_norm, layer.weight_norm) < REL
        pair = _pair_norm(graph, x, whole[2 * j].start, whole[2 * j + 1].stop)
        assert layer.jacobian_norm is not None
        assert relative(pair, layer.jacobian_norm) < REL
    assert math.isclose(result.blocks[-1].backward_norm_log10 or 0.0, 0.0, abs_tol=1e-15)


def _pair_norm(graph: object, x: np.ndarray, start: int, stop: int) -> float:
    """max_b ‖∂t_stop/∂t_start‖₂ by the graph's own sweeps, formed densely (a 2-node stretch: tiny)."""
    assert isinstance(graph, Graph)
    lins, _ = linearise(graph, x)
    n = graph.size(start)
    piece = stretch(graph, lins, Block(start, stop))
    columns = [piece.jvp(np.repeat(np.eye(n)[i][None], len(x), axis=0)) for i in range(n)]
    stack = np.stack(columns, axis=-1)
    return max(float(np.linalg.svd(m, compute_uv=False)[0]) for m in stack)


class _Batched(nn.Module):
    """A module that wants a batch axis applied to one probe (its parameters and buffers as its own)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module
        for name, value in list(module.named_parameters(recurse=False)):
            setattr(self, name, value)
        for name in ("running_mean", "running_var"):
            if getattr(module, name, None) is not None:
                self.register_buffer(name, getattr(module, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x[None])[0]
        return out


def _bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels).double().eval()
    assert bn.running_mean is not None
    assert bn.running_var is not None
    with torch.no_grad():
        bn.running_mean.normal_(0.0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_(1.0, 0.2)
        bn.bias.normal_(0.0, 0.2)
    return bn


def test_a_small_cnn_with_a_strided_residual_block() -> None:
    """conv (stride 2) → BN → ReLU → max-pool, a ResNet basic block with a strided 1×1 projection skip, group
    norm, adaptive average pool, flatten, linear."""
    torch.manual_seed(5)
    stem = nn.Conv2d(2, 4, 3, stride=2, padding=1).double()
    conv1, conv2 = (
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False).double(),
        nn.Conv2d(6, 6, 3, padding="same").double(),
    )
    down = nn.Conv2d(4, 6, 1, stride=2, bias=False).double()
    gn = nn.GroupNorm(2, 6).double()
    head = nn.Linear(6, 3).double()
    bn0, bn1, bn2 = _bn(4), _bn(6), _bn(6)
    model = Exported((2, 12, 12))
    model.module("stem", "conv2d", _Batched(stem), stride=2, padding=1)
    model.module("bn0", "batch_norm", _Batched(bn0), eps=bn0.eps)
    model.add("relu0", "activation", torch.relu, activation="relu")
    model.add("pool", "max_pool2d", lambda x: functional.max_pool2d(x[None], 2)[0], kernel_size=2)
    model.module("conv1", "conv2d", _Batched(conv1), stride=2, padding=1)
    model.module("bn1", "batch_norm", _Batched(bn1), eps=bn1.eps)
    model.add("relu1", "activation", torch.relu, activation="relu")
    model.module("conv2", "conv2d", _Batched(conv2), padding="same")
    model.module("bn2", "batch_norm", _Batched(bn2), eps=bn2.eps)
    model.module("down", "conv2d", _Batched(down), ["pool"], stride=2)
    model.add("res", "add", lambda a, b: a + b, ["bn2", "down"])
    model.add("relu2", "activation", torch.relu, activation="relu")
    model.module("gn", "group_norm", _Batched(gn), num_groups=2, eps=gn.eps)
    model.add("avg", "adaptive_avg_pool2d", lambda x: functional.adaptive_avg_pool2d(x[None], 1)[0], output_size=1)
    model.add("flat", "flatten", lambda x: x.flatten())
    _linear(model, "fc", head)
    xs = torch.randn(PROBES, 2, 12, 12, dtype=torch.float64)
    blocks = [
        ["stem"],
        ["bn0"],
        ["relu0"],
        ["pool"],
        ["conv1", "bn1", "relu1", "conv2", "bn2", "down", "res"],
        ["relu2"],
        ["gn"],
        ["avg"],
        ["flat"],
        ["fc"],
    ]
    _check(model, xs, blocks)


def test_wide_output_backward_norms_by_lanczos(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward norms of an output too wide for the dense rows (here: every output) by Lanczos on the stretch
    block end → output: the residual MLP's numbers again."""
    monkeypatch.setattr(analysis, "DENSE_MAX_DIM", 0)
    test_mlp_with_residual_adds()
    test_transformer_block(True)
