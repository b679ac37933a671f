"""A graph network: a DAG of ops on one probe's tensor (``network.graph``), the fourth network source.

Nodes are listed in topological order (torch.fx's); each names its ``inputs`` (earlier ids or ``"input"``; by
default the previous node, so a chain needs none) and carries its op's attributes, under torch's names and with
torch's defaults, and its parameter tensors in ``params``, by torch's parameter names. A parameter is a tensor, or,
in a .safetensors upload, the name of one of the file's tensors. Axes are per-probe axes: the probe axis is not
counted (torch's ``flatten(x, 1)`` is ``flatten`` with ``start_dim`` 0 here).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from jacspec.models._base import ContractModel
from jacspec.models._bounds import MAX_GAIN, MAX_NAME, MAX_WIDTH
from jacspec.models.activations import Activation
from jacspec.models.tensor import Dimension, Tensor

MAX_NODES = 10_000
"""Nodes of a graph."""
MAX_NODE_INPUTS = 256
"""Inputs of one node (an ``add`` or ``concat`` of many)."""
MAX_NDIM = 4
"""Axes of one probe's tensor (and of a parameter tensor)."""
MAX_PARAMS = 64
"""Parameter tensors of one node (a bidirectional multi-layer LSTM has 8 a layer)."""
MAX_EPS = 1.0
"""The largest normalisation ε."""
NODE_ID = r"^[A-Za-z0-9_.:\-]{1,64}$"
"""A node id: 1–64 characters of letters, digits and ``_ . : -`` (``input`` names the graph's input)."""
INPUT = "input"

NodeId = Annotated[str, Field(pattern=NODE_ID, description="1–64 characters [A-Za-z0-9_.:-].")]
Axis = Annotated[int, Field(ge=-MAX_NDIM, le=MAX_NDIM - 1, description="A per-probe axis, −4 … 3.")]
Size = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class ParamTensor(Tensor):
    """A parameter tensor of 1–4 dimensions (``data`` flat row-major, or nested for a matrix; or ``b64``)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"shape": [2, 2], "datatype": "FP64", "data": [1.0, 0.0, 0.0, 1.0]}]}
    )
    NDIMS: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)

    shape: list[Dimension] = Field(min_length=1, max_length=MAX_NDIM, description="1–4 dimensions, each ≤ 2^20.")


def _tensor_or_name(value: object) -> str:
    return "reference" if isinstance(value, str) else "tensor"


Param = Annotated[
    Annotated[ParamTensor, Tag("tensor")] | Annotated[Annotated[str, Field(max_length=MAX_NAME)], Tag("reference")],
    Discriminator(_tensor_or_name),
    Field(description="A tensor, or (in a .safetensors upload only) the name of one of the file's tensors."),
]
Params = Annotated[dict[Annotated[str, Field(max_length=MAX_NAME)], Param], Field(max_length=MAX_PARAMS)]


class _Node(ContractModel):
    id: NodeId
    inputs: list[NodeId] | None = Field(
        None,
        min_length=1,
        max_length=MAX_NODE_INPUTS,
        description='Earlier node ids or "input"; by default the previous node ("input" for the first).',
    )
    params: Params = Field(default_factory=dict, description="Parameter tensors by torch's names.")


class LinearNode(_Node):
    """y = x·Wᵀ + b on the last axis; params ``weight`` [out, in], ``bias`` [out] (optional)."""

    op: Literal["linear"]


class ActivationNode(_Node):
    """y = h(x) elementwise."""

    op: Literal["activation"]
    activation: Activation


class AddNode(_Node):
    """y = Σ_i x_i over its inputs (equal shapes, no broadcasting)."""

    op: Literal["add"]


class MulNode(_Node):
    """y = c·x for a constant c."""

    op: Literal["mul"]
    constant: float = Field(ge=-MAX_GAIN, le=MAX_GAIN, description="c, |c| ≤ 1e6.")


class ConcatNode(_Node):
    """y = [x_1, …, x_k] along the per-probe axis ``dim`` (torch.cat)."""

    op: Literal["concat"]
    dim: Axis = 0


class FlattenNode(_Node):
    """Per-probe axes start_dim … end_dim merged into one (torch.flatten, the probe axis not counted)."""

    op: Literal["flatten"]
    start_dim: Axis = 0
    end_dim: Axis = -1


class ReshapeNode(_Node):
    """One probe's tensor viewed with ``shape`` (row-major; one entry may be −1)."""

    op: Literal["reshape"]
    shape: list[Annotated[int, Field(ge=-1, le=MAX_WIDTH)]] = Field(min_length=1, max_length=MAX_NDIM)


class TransposeNode(_Node):
    """Per-probe axes dim0 and dim1 swapped (torch.transpose)."""

    op: Literal["transpose"]
    dim0: Axis
    dim1: Axis


class PermuteNode(_Node):
    """Per-probe axes permuted (torch.permute)."""

    op: Literal["permute"]
    dims: list[Axis] = Field(min_length=1, max_length=MAX_NDIM)


class BatchNormNode(_Node):
    """Inference batch norm over channel axis 0: y = (x − μ_c)·γ_c/√(σ²_c + ε) + β_c; params ``running_mean``,
    ``running_var``, ``weight`` and ``bias`` (both or neither)."""

    op: Literal["batch_norm"]
    eps: float = Field(1e-5, gt=0, le=MAX_EPS)


class LayerNormNode(_Node):
    """y = γ·(x − mean)/√(var + ε) + β over the last axes ``normalized_shape``; params ``weight``, ``bias``
    (both or neither)."""

    op: Literal["layer_norm"]
    normalized_shape: list[Size] = Field(min_length=1, max_length=MAX_NDIM)
    eps: float = Field(1e-5, gt=0, le=MAX_EPS)


class RMSNormNode(_Node):
    """y = γ·x/√(mean(x²) + ε) over the last axes ``normalized_shape``; param ``weight`` (optional); ``eps``
    null is torch's default (float64's machine epsilon)."""

    op: Literal["rms_norm"]
    normalized_shape: list[Size] = Field(min_length=1, max_length=MAX_NDIM)
    eps: float | None = Field(None, gt=0, le=MAX_EPS)


class AttentionNode(_Node):
    """Multi-head scaled dot-product self-attention on (T, d), torch.nn.MultiheadAttention's: params packed
    (``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``) or separate
    (``q_proj.weight``, ``k_proj.weight``, ``v_proj.weight``, ``out_proj.weight``, each with an optional bias)."""

    op: Literal["attention"]
    num_heads: Size
    causal: bool = Field(False, description="Query t attends to keys s ≤ t only.")


def _spatial_kind(value: object) -> str:
    """The tag of an int-or-list (or padding's word) union: what a value's errors are located under, dropped from
    a problem's pointer (api.problems.UNION_TAGS) as pydantic's own tags (``constrained-int``) were not."""
    return "list" if isinstance(value, list) else "word" if isinstance(value, str) else "int"


SpatialInt = Annotated[int, Field(ge=0, le=MAX_WIDTH)]
Spatial = Annotated[
    Annotated[SpatialInt, Tag("int")] | Annotated[list[SpatialInt], Field(min_length=1, max_length=2), Tag("list")],
    Discriminator(_spatial_kind),
]
"""An int for every spatial axis, or one per axis (torch's int-or-tuple)."""
Padding = Annotated[
    Annotated[SpatialInt, Tag("int")]
    | Annotated[list[SpatialInt], Field(min_length=1, max_length=2), Tag("list")]
    | Annotated[Literal["same", "valid"], Tag("word")],
    Discriminator(_spatial_kind),
]
"""A convolution's padding: Spatial, or "same" or "valid"."""


class _ConvNode(_Node):
    stride: Spatial = Field(1, description="An int, or one per spatial axis (≥ 1).")
    padding: Padding = Field(0, description="Zeros on both sides, per axis, or same/valid.")
    dilation: Spatial = 1
    groups: Size = 1
    padding_mode: Literal["zeros"] = "zeros"


class Conv1dNode(_ConvNode):
    """torch.nn.Conv1d on (C, L); params ``weight`` [c_out, c_in/groups, k], ``bias`` [c_out] (optional)."""

    op: Literal["conv1d"]


class Conv2dNode(_ConvNode):
    """torch.nn.Conv2d on (C, H, W); params ``weight`` [c_out, c_in/groups, kh, kw], ``bias`` [c_out] (optional)."""

    op: Literal["conv2d"]


class GroupNormNode(_Node):
    """torch.nn.GroupNorm on (C, …): params ``weight``, ``bias`` [C] (both or neither)."""

    op: Literal["group_norm"]
    num_groups: Size
    num_channels: Size | None = Field(None, description="C; by default the weight's length, else any C.")
    eps: float = Field(1e-5, gt=0, le=MAX_EPS)


class MaxPool2dNode(_Node):
    """torch.nn.MaxPool2d on (C, H, W)."""

    op: Literal["max_pool2d"]
    kernel_size: Spatial
    stride: Spatial | None = Field(None, description="By default kernel_size.")
    padding: Spatial = 0
    dilation: Spatial = 1
    ceil_mode: bool = False


class AvgPool2dNode(_Node):
    """torch.nn.AvgPool2d on (C, H, W)."""

    op: Literal["avg_pool2d"]
    kernel_size: Spatial
    stride: Spatial | None = Field(None, description="By default kernel_size.")
    padding: Spatial = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Size | None = None


class AdaptiveAvgPool2dNode(_Node):
    """torch.nn.AdaptiveAvgPool2d on (C, H, W): an int, or [h, w] with null keeping that input size."""

    op: Literal["adaptive_avg_pool2d"]
    output_size: Annotated[
        Annotated[Size, Tag("int")] | Annotated[list[Size | None], Field(min_length=2, max_length=2), Tag("list")],
        Discriminator(_spatial_kind),
    ]


class _RecurrentNode(_Node):
    hidden_size: Size
    num_layers: int = Field(1, ge=1, le=1024)
    bias: bool = True
    bidirectional: bool = False


class RNNNode(_RecurrentNode):
    """torch.nn.RNN (batch_first) on (T, d) → (T, D·hidden_size); params weight_ih_l0, weight_hh_l0, bias_ih_l0,
    bias_hh_l0, …, ``_reverse`` for the reverse direction."""

    op: Literal["rnn"]
    nonlinearity: Literal["tanh", "relu"] = "tanh"


class LSTMNode(_RecurrentNode):
    """torch.nn.LSTM (batch_first, no proj_size), params as torch names them."""

    op: Literal["lstm"]


class GRUNode(_RecurrentNode):
    """torch.nn.GRU (batch_first), params as torch names them."""

    op: Literal["gru"]


NODE_MODELS: dict[str, type[_Node]] = {
    "linear": LinearNode,
    "activation": ActivationNode,
    "add": AddNode,
    "mul": MulNode,
    "concat": ConcatNode,
    "flatten": FlattenNode,
    "reshape": ReshapeNode,
    "transpose": TransposeNode,
    "permute": PermuteNode,
    "batch_norm": BatchNormNode,
    "layer_norm": LayerNormNode,
    "rms_norm": RMSNormNode,
    "attention": AttentionNode,
    "conv1d": Conv1dNode,
    "conv2d": Conv2dNode,
    "group_norm": GroupNormNode,
    "max_pool2d": MaxPool2dNode,
    "avg_pool2d": AvgPool2dNode,
    "adaptive_avg_pool2d": AdaptiveAvgPool2dNode,
    "rnn": RNNNode,
    "lstm": LSTMNode,
    "gru": GRUNode,
}
"""The node model of each op (a new op: its model here and in ``Node``, its builder in service.graph.network)."""
NODE_TAGS = frozenset(f"{op}_node" for op in NODE_MODELS)
"""The union tags a node's pydantic error locations carry (dropped from the pointers)."""


def _node_tag(value: Any) -> str:
    op = value.get("op") if isinstance(value, dict) else getattr(value, "op", None)
    return f"{op}_node" if isinstance(op, str) and op in NODE_MODELS else "invalid"


Node = Annotated[
    Annotated[LinearNode, Tag("linear_node")]
    | Annotated[ActivationNode, Tag("activation_node")]
    | Annotated[AddNode, Tag("add_node")]
    | Annotated[MulNode, Tag("mul_node")]
    | Annotated[ConcatNode, Tag("concat_node")]
    | Annotated[FlattenNode, Tag("flatten_node")]
    | Annotated[ReshapeNode, Tag("reshape_node")]
    | Annotated[TransposeNode, Tag("transpose_node")]
    | Annotated[PermuteNode, Tag("permute_node")]
    | Annotated[BatchNormNode, Tag("batch_norm_node")]
    | Annotated[LayerNormNode, Tag("layer_norm_node")]
    | Annotated[RMSNormNode, Tag("rms_norm_node")]
    | Annotated[AttentionNode, Tag("attention_node")]
    | Annotated[Conv1dNode, Tag("conv1d_node")]
    | Annotated[Conv2dNode, Tag("conv2d_node")]
    | Annotated[GroupNormNode, Tag("group_norm_node")]
    | Annotated[MaxPool2dNode, Tag("max_pool2d_node")]
    | Annotated[AvgPool2dNode, Tag("avg_pool2d_node")]
    | Annotated[AdaptiveAvgPool2dNode, Tag("adaptive_avg_pool2d_node")]
    | Annotated[RNNNode, Tag("rnn_node")]
    | Annotated[LSTMNode, Tag("lstm_node")]
    | Annotated[GRUNode, Tag("gru_node")],
    Discriminator(
        _node_tag,
        custom_error_type="node_op",
        custom_error_message=f"`op` must be one of {', '.join(NODE_MODELS)}",
    ),
]
"""A node: its ``op`` selects the model."""


class GraphNetwork(ContractModel):
    """A DAG of ops from one input to one output; see the module docstring. Ids are unique and not ``input``; a
    node's inputs are earlier ids (or ``input``); every node lies on a path from the input to the output (each
    checked with the analysis, 422 at the node's field)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "input_shape": [2],
                    "nodes": [
                        {"id": "fc1", "op": "linear", "params": {"weight": {"shape": [2, 2], "data": [1, 0.5, 0, 1]}}},
                        {"id": "act", "op": "activation", "activation": "tanh"},
                        {"id": "skip", "op": "add", "inputs": ["input", "act"]},
                    ],
                    "output": "skip",
                }
            ]
        }
    )

    input_shape: list[Size] = Field(
        min_length=1,
        max_length=MAX_NDIM,
        description="One probe's input shape, no probe axis; 1–4 axes. `inputs.data` rows are the input flattened "
        "row-major, `inputs.targets` rows the output flattened.",
    )
    nodes: list[Node] = Field(min_length=1, max_length=MAX_NODES, description="In topological order; ≤ 10000.")
    output: NodeId | None = Field(None, description="The output node's id; by default the last node.")
