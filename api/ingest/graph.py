"""``network.graph`` to a service graph: each node's model to its op, by a registry of op name → builder.

A builder takes the node's model, its parameter arrays (by torch's names) and its input shapes, and returns the op.
Parameters are resolved by a ``Resolve``: a tensor given inline becomes its float64 array; a name, a tensor of the
uploaded .safetensors file (only in an upload). For the size check before any work (``api.sizes``) the same graph is
built from ``shapes_only``: zero-stride arrays of the declared shapes, which take no memory, so that the shapes are
checked through the graph, and the work estimated, before a weight is decoded.

Adding an op: its node model in ``jacspec.models.graph``, then one ``OPS`` entry here (its builder, and the
parameters it takes where the op does not check them itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.echo import echo
from api.ingest.decode import to_activation, to_array
from api.ingest.safetensors import ITEMSIZE, SafetensorsFile
from jacspec.models import GraphNetwork, ParamTensor
from jacspec.models.graph import (
    ActivationNode,
    AdaptiveAvgPool2dNode,
    AttentionNode,
    AvgPool2dNode,
    BatchNormNode,
    ConcatNode,
    Conv1dNode,
    Conv2dNode,
    FlattenNode,
    GroupNormNode,
    LayerNormNode,
    MaxPool2dNode,
    MulNode,
    Node,
    PermuteNode,
    ReshapeNode,
    RMSNormNode,
    RNNNode,
    TransposeNode,
    _Node,
    _RecurrentNode,
)
from service.errors import InvalidInputError, Location
from service.graph.attention import Attention
from service.graph.convolution import Conv1d, Conv2d
from service.graph.dense import Linear
from service.graph.elementwise import ActivationOp, Add, Mul
from service.graph.network import Graph, NodeSpec, Shape, build_graph
from service.graph.normalisation import BatchNorm, GroupNorm, LayerNorm, RMSNorm
from service.graph.op import Array, Op
from service.graph.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from service.graph.recurrent import GRU, LSTM, RNN
from service.graph.shape import Concat, Flatten, Permute, Reshape, Transpose

Resolve = Callable[[ParamTensor | str, Location], Array]
"""A parameter's array from its contract value (a tensor, or a file's tensor name) and its location."""
Arrays = Mapping[str, Array]
Builder = Callable[[Any, Arrays, Sequence[Shape]], Op]


@dataclass(frozen=True)
class OpEntry:
    build: Builder
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    checks_own: bool = False
    """The op checks its parameter names itself (attention, the recurrent ops)."""
    renamed: tuple[tuple[str, str], ...] = ()
    """An op's own name of a field → the node model's (the op's ``axis`` is concat's ``dim``)."""


def _recurrent(cls: type[RNN] | type[LSTM] | type[GRU]) -> Builder:
    def build(node: _RecurrentNode, params: Arrays, shapes: Sequence[Shape]) -> Op:
        steps = shapes[0][0] if len(shapes) == 1 and len(shapes[0]) == 2 else None
        extra = {"nonlinearity": node.nonlinearity} if isinstance(node, RNNNode) else {}
        op = cls(
            params,
            num_layers=node.num_layers,
            bias=node.bias,
            bidirectional=node.bidirectional,
            steps=steps,
            **extra,  # type: ignore[arg-type]
        )
        if op.hidden_size != node.hidden_size:
            raise InvalidInputError(("hidden_size",), f"is {node.hidden_size}, the weights' is {op.hidden_size}")
        return op

    return build


def _attention(node: AttentionNode, params: Arrays, shapes: Sequence[Shape]) -> Op:
    if "in_proj_weight" in params:
        return Attention.from_packed(params, num_heads=node.num_heads, causal=node.causal)
    return Attention(params, num_heads=node.num_heads, causal=node.causal)


def _activation(node: ActivationNode, params: Arrays, shapes: Sequence[Shape]) -> Op:
    return ActivationOp(to_activation(node.activation, ("activation",)))


def _batch_norm(node: BatchNormNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return BatchNorm(p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"), node.eps)


def _layer_norm(node: LayerNormNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return LayerNorm(node.normalized_shape, p.get("weight"), p.get("bias"), node.eps)


def _rms_norm(node: RMSNormNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return RMSNorm(node.normalized_shape, p.get("weight"), node.eps)


def _mul(node: MulNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return Mul(node.constant)


def _concat(node: ConcatNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return Concat(node.dim)


def _flatten(node: FlattenNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return Flatten(node.start_dim, node.end_dim)


def _reshape(node: ReshapeNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return Reshape(node.shape)


def _transpose(node: TransposeNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return Transpose(node.dim0, node.dim1)


def _permute(node: PermuteNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return Permute(node.dims)


def _image_size(shapes: Sequence[Shape]) -> tuple[int, int] | None:
    """(H, W) of a single (C, H, W) input, for a pool's exact bound (else None: the op refuses the shape)."""
    return (shapes[0][1], shapes[0][2]) if len(shapes) == 1 and len(shapes[0]) == 3 else None


def _conv(cls: type[Conv1d] | type[Conv2d]) -> Builder:
    def build(node: Conv1dNode | Conv2dNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
        return cls(p["weight"], p.get("bias"), node.stride, node.padding, node.dilation, node.groups, node.padding_mode)

    return build


def _group_norm(node: GroupNormNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return GroupNorm(node.num_groups, node.num_channels, p.get("weight"), p.get("bias"), node.eps)


def _max_pool(node: MaxPool2dNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return MaxPool2d(node.kernel_size, node.stride, node.padding, node.dilation, node.ceil_mode)


def _avg_pool(node: AvgPool2dNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return AvgPool2d(
        node.kernel_size,
        node.stride,
        node.padding,
        node.ceil_mode,
        node.count_include_pad,
        node.divisor_override,
        input_size=_image_size(shapes),
    )


def _adaptive_pool(node: AdaptiveAvgPool2dNode, p: Arrays, shapes: Sequence[Shape]) -> Op:
    return AdaptiveAvgPool2d(node.output_size, input_size=_image_size(shapes))


OPS: dict[str, OpEntry] = {
    "linear": OpEntry(lambda node, p, shapes: Linear(p["weight"], p.get("bias")), ("weight",), ("bias",)),
    "activation": OpEntry(_activation),
    "add": OpEntry(lambda node, p, shapes: Add(len(shapes))),
    "mul": OpEntry(_mul),
    "concat": OpEntry(_concat, renamed=(("axis", "dim"),)),
    "flatten": OpEntry(_flatten),
    "reshape": OpEntry(_reshape),
    "transpose": OpEntry(_transpose),
    "permute": OpEntry(_permute),
    "batch_norm": OpEntry(_batch_norm, ("running_mean", "running_var"), ("weight", "bias")),
    "layer_norm": OpEntry(_layer_norm, (), ("weight", "bias")),
    "rms_norm": OpEntry(_rms_norm, (), ("weight",)),
    "attention": OpEntry(_attention, checks_own=True),
    "conv1d": OpEntry(_conv(Conv1d), ("weight",), ("bias",)),
    "conv2d": OpEntry(_conv(Conv2d), ("weight",), ("bias",)),
    "group_norm": OpEntry(_group_norm, (), ("weight", "bias")),
    "max_pool2d": OpEntry(_max_pool),
    "avg_pool2d": OpEntry(_avg_pool),
    "adaptive_avg_pool2d": OpEntry(_adaptive_pool),
    "rnn": OpEntry(_recurrent(RNN), checks_own=True),
    "lstm": OpEntry(_recurrent(LSTM), checks_own=True),
    "gru": OpEntry(_recurrent(GRU), checks_own=True),
}
"""Every op the contract names (jacspec.models.graph.NODE_MODELS): its builder and its parameters."""


def build(graph: GraphNetwork, resolve: Resolve, where: Location = ("network", "graph")) -> Graph:
    """The service graph of ``graph``, its parameters resolved by ``resolve``; errors at the node's field."""
    specs = [_spec(node, k, resolve, where) for k, node in enumerate(graph.nodes)]
    return build_graph(tuple(graph.input_shape), specs, graph.output, where)


def _spec(node: Node, k: int, resolve: Resolve, where: Location) -> NodeSpec:
    location: Location = (*where, "nodes", k)
    op: str = node.op
    entry = OPS[op]
    params = _params(node, entry, op, resolve, location)
    inputs = None if node.inputs is None else tuple(node.inputs)
    fields = set(type(node).model_fields)
    renamed = dict(entry.renamed)

    def relocate(relative: Location) -> Location:
        if not relative:
            return relative
        head = renamed.get(str(relative[0]), relative[0])
        return (head, *relative[1:]) if head in fields else ("params", *relative)

    return NodeSpec(node.id, inputs, location, lambda shapes: entry.build(node, params, shapes), relocate)


def _params(node: _Node, entry: OpEntry, op: str, resolve: Resolve, location: Location) -> dict[str, Array]:
    """The node's parameter arrays; unknown or missing names refused (unless the op checks its own)."""
    if not entry.checks_own:
        known = (*entry.required, *entry.optional)
        for name in node.params:
            if name not in known:
                expected = ", ".join(known) if known else "none"
                raise InvalidInputError(
                    (*location, "params", name), f"is not a parameter of {op} (its parameters: {expected})"
                )
        for name in entry.required:
            if name not in node.params:
                raise InvalidInputError(
                    (*location, "params", name), f"is missing ({op} needs {', '.join(entry.required)})"
                )
    return {name: resolve(value, (*location, "params", name)) for name, value in node.params.items()}


def inline(value: ParamTensor | str, location: Location) -> Array:
    """A JSON request's parameter: its tensor as float64 (a name is refused: there is no file)."""
    if isinstance(value, str):
        raise InvalidInputError(location, f"names a tensor ({echo(value)}), which only a .safetensors upload has")
    return to_array(value, location)


def shapes_only(file: SafetensorsFile | None = None) -> Resolve:
    """Zero-stride zero arrays of each parameter's declared shape (a name's from the file's header)."""

    def resolve(value: ParamTensor | str, location: Location) -> Array:
        if isinstance(value, str):
            return np.broadcast_to(np.float64(0.0), _entry(file, value, location))
        return np.broadcast_to(np.float64(0.0), tuple(value.shape))

    return resolve


def from_file(file: SafetensorsFile) -> Resolve:
    """An upload's parameter: the file's tensor named, widened to float64 (or an inline tensor)."""

    def resolve(value: ParamTensor | str, location: Location) -> Array:
        if isinstance(value, str):
            _entry(file, value, location)
            return file.array(value)
        return to_array(value, location)

    return resolve


def _entry(file: SafetensorsFile | None, name: str, location: Location) -> tuple[int, ...]:
    if file is None:
        return tuple(inline(name, location).shape)
    entry = file.entries.get(name)
    if entry is None:
        raise InvalidInputError(location, f"names {echo(name)}, which is not a tensor of the uploaded file")
    if entry.dtype not in ITEMSIZE:
        raise InvalidInputError(
            location, f"names {echo(name)}, of dtype {echo(entry.dtype)}; jacspec reads {sorted(ITEMSIZE)}"
        )
    return tuple(entry.shape)
