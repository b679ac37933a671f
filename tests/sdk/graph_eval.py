"""An evaluator of the contract's ``network.graph`` written from the contract's text alone, in torch float64, for
checking what ``jacspec.torch.graph_from_module`` maps: each op is torch.nn.functional's (or, for attention, the
formula itself) on a batch whose probes are axis 0; per-probe axes are shifted past it."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch import nn


def tensor(spec: Mapping[str, Any]) -> torch.Tensor:
    """A contract tensor (``data`` or ``b64``) as float64."""
    dtype = np.dtype("<f4" if spec.get("datatype", "FP64") == "FP32" else "<f8")
    if "b64" in spec:
        array = np.frombuffer(base64.b64decode(spec["b64"]), dtype=dtype)
    else:
        array = np.asarray(spec["data"], dtype=dtype)
    return torch.from_numpy(array.reshape(spec["shape"]).astype(np.float64))


def _axis(axis: int) -> int:
    """A per-probe axis as an axis of the batch."""
    return axis + 1 if axis >= 0 else axis


def _activation(spec: Any, x: torch.Tensor) -> torch.Tensor:
    name, params = (
        (spec, {}) if isinstance(spec, str) else (spec["name"], {k: v for k, v in spec.items() if k != "name"})
    )
    functions: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "linear": lambda z: z,
        "relu": F.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, params.get("negative_slope", 0.01)),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "hard_tanh": lambda z: F.hardtanh(z, params.get("min_val", -1.0), params.get("max_val", 1.0)),
        "elu": lambda z: F.elu(z, params.get("alpha", 1.0)),
        "selu": F.selu,
        "gelu": F.gelu,
        "silu": F.silu,
        "softplus": lambda z: torch.log1p(torch.exp(params.get("beta", 1.0) * z)) / params.get("beta", 1.0),
    }
    return functions[name](x)


def _attention(node: Mapping[str, Any], params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """softmax(Q_j K_jᵀ/√e (−∞ above the diagonal if causal)) V_j per head, merged, then the output projection."""
    d = x.shape[-1]
    if "in_proj_weight" in params:
        wq, wk, wv = params["in_proj_weight"].chunk(3)
        bias = params.get("in_proj_bias", torch.zeros(3 * d, dtype=x.dtype))
        bq, bk, bv = bias.chunk(3)
    else:
        wq, wk, wv = (params[f"{p}.weight"] for p in ("q_proj", "k_proj", "v_proj"))
        bq, bk, bv = (params.get(f"{p}.bias", torch.zeros(d, dtype=x.dtype)) for p in ("q_proj", "k_proj", "v_proj"))
    heads = node["num_heads"]
    width = d // heads
    batch, steps = x.shape[0], x.shape[1]

    def split(y: torch.Tensor) -> torch.Tensor:
        return y.reshape(batch, steps, heads, width).transpose(1, 2)

    q, k, v = split(x @ wq.T + bq), split(x @ wk.T + bk), split(x @ wv.T + bv)
    scores = q @ k.transpose(-1, -2) / math.sqrt(width)
    if node.get("causal"):
        scores = scores.masked_fill(torch.ones(steps, steps, dtype=torch.bool).triu(1), float("-inf"))
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, steps, d)
    return out @ params["out_proj.weight"].T + params.get("out_proj.bias", torch.zeros(d, dtype=x.dtype))


def _recurrent(node: Mapping[str, Any], params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torch.nn.RNN/LSTM/GRU (batch_first) with the node's parameters, from h_0 = 0."""
    kinds: dict[str, Any] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
    extra = {"nonlinearity": node.get("nonlinearity", "tanh")} if node["op"] == "rnn" else {}
    module = kinds[node["op"]](
        x.shape[-1],
        node["hidden_size"],
        num_layers=node.get("num_layers", 1),
        bias=node.get("bias", True),
        bidirectional=node.get("bidirectional", False),
        batch_first=True,
        dtype=torch.float64,
        **extra,
    )
    module.load_state_dict(dict(params), strict=True)
    out: torch.Tensor = module(x)[0]
    return out


def _conv(node: Mapping[str, Any], params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    conv = F.conv1d if node["op"] == "conv1d" else F.conv2d
    padding = node.get("padding", 0)
    if node.get("padding_mode", "zeros") != "zeros":
        raise NotImplementedError(node["padding_mode"])
    return conv(
        x,
        params["weight"],
        params.get("bias"),
        stride=node.get("stride", 1),
        padding=padding,
        dilation=node.get("dilation", 1),
        groups=node.get("groups", 1),
    )


def _op(node: Mapping[str, Any], params: Mapping[str, torch.Tensor], xs: list[torch.Tensor]) -> torch.Tensor:
    op, x = node["op"], xs[0]
    if op == "linear":
        return F.linear(x, params["weight"], params.get("bias"))
    if op in ("conv1d", "conv2d"):
        return _conv(node, params, x)
    if op == "activation":
        return _activation(node["activation"], x)
    if op == "add":
        return torch.stack(xs).sum(dim=0)
    if op == "mul":
        return float(node["constant"]) * x
    if op == "concat":
        return torch.cat(xs, dim=_axis(node.get("dim", 0)))
    if op == "flatten":
        return torch.flatten(x, _axis(node.get("start_dim", 0)), _axis(node.get("end_dim", -1)))
    if op == "reshape":
        return x.reshape(x.shape[0], *node["shape"])
    if op == "transpose":
        return x.transpose(_axis(node["dim0"]), _axis(node["dim1"]))
    if op == "permute":
        dims = [d % (x.dim() - 1) for d in node["dims"]]
        return x.permute(0, *(d + 1 for d in dims))
    if op == "batch_norm":
        return F.batch_norm(
            x,
            params["running_mean"],
            params["running_var"],
            params.get("weight"),
            params.get("bias"),
            training=False,
            eps=node.get("eps", 1e-5),
        )
    if op == "layer_norm":
        return F.layer_norm(
            x, node["normalized_shape"], params.get("weight"), params.get("bias"), node.get("eps", 1e-5)
        )
    if op == "rms_norm":
        return F.rms_norm(x, node["normalized_shape"], params.get("weight"), node.get("eps"))
    if op == "group_norm":
        return F.group_norm(x, node["num_groups"], params.get("weight"), params.get("bias"), node.get("eps", 1e-5))
    if op == "max_pool2d":
        kernel = node["kernel_size"]
        return F.max_pool2d(
            x,
            kernel,
            node.get("stride", kernel),
            node.get("padding", 0),
            node.get("dilation", 1),
            ceil_mode=node.get("ceil_mode", False),
        )
    if op == "avg_pool2d":
        kernel = node["kernel_size"]
        return F.avg_pool2d(
            x,
            kernel,
            node.get("stride", kernel),
            node.get("padding", 0),
            ceil_mode=node.get("ceil_mode", False),
            count_include_pad=node.get("count_include_pad", True),
            divisor_override=node.get("divisor_override"),
        )
    if op == "adaptive_avg_pool2d":
        return F.adaptive_avg_pool2d(x, node["output_size"])
    if op in ("rnn", "lstm", "gru"):
        return _recurrent(node, params, x)
    if op == "attention":
        return _attention(node, params, x)
    raise NotImplementedError(op)


def wired(graph: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], list[str]]]:
    """Each node with the ids it reads (its ``inputs``, by default the previous node's, ``input`` for the first)."""
    previous, found = "input", []
    for node in graph["nodes"]:
        found.append((node, list(node.get("inputs", [previous]))))
        previous = node["id"]
    return found


def run(graph: Mapping[str, Any], values: dict[str, torch.Tensor], ids: list[str] | None = None) -> torch.Tensor:
    """Evaluate the nodes ``ids`` (all by default) in order from ``values`` (tensors by id, probes on axis 0, added
    to as they are made); the last one's output."""
    out = values["input"]
    for node, inputs in wired(graph):
        if ids is None or node["id"] in ids:
            params = {name: tensor(spec) for name, spec in node.get("params", {}).items()}
            out = values[node["id"]] = _op(node, params, [values[name] for name in inputs])
    return out


def evaluate(graph: Mapping[str, Any], probes: torch.Tensor) -> torch.Tensor:
    """The graph's output on ``probes`` ([N, *input_shape]), in float64."""
    assert list(probes.shape[1:]) == list(graph["input_shape"])
    values = {"input": probes.double()}
    run(graph, values)
    return values[graph.get("output", graph["nodes"][-1]["id"])]
