"""A network: explicit layers (dense, convolutional, residual), an init recipe from which the server draws the
weights, or a recurrent network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from jacspec.models._base import ContractModel
from jacspec.models._bounds import MAX_DEPTH, MAX_GAIN, MAX_SEED, MAX_WIDTH, Scale
from jacspec.models.activations import Activation
from jacspec.models.graph import GraphNetwork
from jacspec.models.tensor import KernelTensor, Matrix, Tensor, Vector

InitSchemeName = Literal[
    "gaussian", "uniform", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "lecun_normal", "orthogonal"
]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
"""A width or size: 1 … 2^20."""


class Layer(ContractModel):
    """z_j = W_j a_{j−1} + b_j, a_j = h_j(z_j); W_j is [n_j, n_{j−1}] (out × in, as in torch.nn.Linear).
    A residual layer adds its input: a_j = a_{j−1} + h_j(z_j), or P a_{j−1} + h_j(z_j) with a projection P."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"weight": [[0.5, -0.2], [0.1, 0.4]], "bias": [0.0, 0.1], "activation": "relu"},
                {"weight": [[0.5, -0.2], [0.1, 0.4]], "activation": "tanh", "residual": True},
            ]
        }
    )

    type: Literal["dense"] = Field("dense", description="A dense layer (the default when `type` is absent).")
    weight: Matrix
    bias: Vector | None = None
    activation: Activation | None = Field(None, description="Overrides the network's activation for this layer.")
    residual: bool = Field(
        False,
        description="a_j = a_{j−1} + h_j(W_j a_{j−1} + b_j): Jacobian I + diag(h_j')·W_j, bounded by "
        "1 + σ_j·sup|h_j'|. Needs n_j = n_{j−1} unless a projection is given.",
    )
    projection: Matrix | None = Field(
        None,
        description="A residual layer's skip P, [n_j, n_{j−1}]: a_j = P a_{j−1} + h_j(z_j), bounded by "
        "‖P‖₂ + σ_j·sup|h_j'|. Implies `residual`.",
    )


class Conv2dLayer(ContractModel):
    """z_j = K_j ⋆ a_{j−1} + b_j, a_j = h_j(z_j): a 2-D convolution (a cross-correlation, as torch.nn.Conv2d) with
    stride 1 and 'same' padding (top/left (k−1)//2, as padding='same'), so the output keeps the input's size
    [H, W]. Activations are [c, H, W] flattened row-major (torch's flatten order): the layer's shape is
    [c_out·H·W, c_in·H·W]. σ_j is the operator's norm: for circular padding exactly, from the 2-D DFT of the kernel
    (Sedghi, Gupta & Long 2019); for zeros by Lanczos on the operator (never formed), with the circular value
    reported beside it as an estimate."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "conv2d",
                    "kernel": {"shape": [1, 1, 3, 3], "data": [0, 0.1, 0, 0.1, 0.5, 0.1, 0, 0.1, 0]},
                    "input_size": [8, 8],
                    "padding": "circular",
                    "activation": "relu",
                }
            ]
        }
    )

    type: Literal["conv2d"]
    kernel: KernelTensor
    input_size: list[Width] = Field(
        min_length=2, max_length=2, description="[H, W], the input's spatial size (the output's too); each ≤ 2^20."
    )
    padding: Literal["zeros", "circular"] = Field("zeros", description="torch.nn.Conv2d's padding_mode.")
    bias: Vector | None = Field(None, description="[c_out], one per output channel.")
    activation: Activation | None = Field(None, description="Overrides the network's activation for this layer.")
    residual: bool = Field(
        False, description="a_j = a_{j−1} + h_j(z_j); needs c_out = c_in unless a projection is given."
    )
    projection: Matrix | None = Field(
        None,
        description="A residual layer's skip, a 1×1 convolution given as its [c_out, c_in] matrix. Implies `residual`.",
    )


def _layer_type(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("type", "dense")
        return kind if isinstance(kind, str) else "invalid"
    return str(getattr(value, "type", "dense"))


LayerSpec = Annotated[
    Annotated[Layer, Tag("dense")] | Annotated[Conv2dLayer, Tag("conv2d")],
    Discriminator(_layer_type, custom_error_type="layer_type", custom_error_message="`type` must be dense or conv2d"),
]
"""A dense layer (``type`` absent or "dense") or a convolution (``type`` "conv2d")."""


class InitRecipe(ContractModel):
    """Weights drawn by the server with torch.nn.init's formulas, from a seeded generator."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"widths": [784, 512, 512, 10], "scheme": "he_normal", "gain": 1.0, "bias_std": 0.0, "seed": 0}
            ]
        }
    )

    widths: list[Width] = Field(
        min_length=2,
        max_length=MAX_DEPTH + 1,
        description="[n_0, n_1, …, n_L]: input width, then each layer's; each 1 … 2^20, L ≤ 100000.",
    )
    scheme: InitSchemeName = Field(description="See GET /v1/init-schemes for each scheme's std formula.")
    gain: Scale = Field(1.0, description="Multiplies the std of every scheme; 1e-100 … 1e6.")
    std: Scale = Field(1.0, description="The base std of `gaussian` and `uniform`; ignored by the others.")
    bias_std: float = Field(
        0.0, ge=0, le=MAX_GAIN, description="Biases b_j ~ N(0, bias_std²); 0 means no biases; at most 1e6."
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of numpy's PCG64 generator, 0 … 2^64 − 1.")


class RecurrentInit(ContractModel):
    """W and U drawn with one init scheme (W first, then U, then the bias) from a seeded generator."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"hidden_size": 64, "input_size": 8, "scheme": "orthogonal", "gain": 0.9}]}
    )

    hidden_size: int = Field(ge=1, le=MAX_WIDTH, description="n, the width of h_t; at most 2^20.")
    input_size: int = Field(ge=1, le=MAX_WIDTH, description="n_in, the width of x_t; at most 2^20.")
    scheme: InitSchemeName = Field(description="See GET /v1/init-schemes (W is n × n, U is n × n_in).")
    gain: Scale = Field(1.0, description="Multiplies the std of the scheme; 1e-100 … 1e6.")
    std: Scale = Field(1.0, description="The base std of `gaussian` and `uniform`; 1e-100 … 1e6.")
    bias_std: float = Field(0.0, ge=0, le=MAX_GAIN, description="b ~ N(0, bias_std²); 0 means no bias; at most 1e6.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of numpy's PCG64 generator, 0 … 2^64 − 1.")


class Recurrent(ContractModel):
    """h_t = h(W h_{t−1} + U x_t + b), t = 1..T, from h_0 = 0 — torch.nn.RNN with W = weight_hh_l0,
    U = weight_ih_l0 and b = bias_ih_l0 + bias_hh_l0. The report has one layer per step t (index t, weight W),
    walking back through time: backward_bound and backward_norm of step t are the bound (σ_max(W)·γ)^{T−t} and the
    true ‖∂h_T/∂h_t‖, and the summary's input_* are those of ∂h_T/∂h_0. The probes' data rows are x_1 … x_T
    flattened ([count, T·n_in]); targets are for h_T."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "steps": 50,
                    "activation": "tanh",
                    "init": {"hidden_size": 64, "input_size": 8, "scheme": "orthogonal"},
                }
            ]
        }
    )

    steps: int = Field(ge=1, le=MAX_DEPTH, description="T, the steps unrolled; at most 100000.")
    activation: Activation = Field("tanh", description="h.")
    weight: Matrix | None = Field(None, description="W, the recurrent weight [n, n].")
    input_weight: Matrix | None = Field(None, description="U, the input weight [n, n_in].")
    bias: Vector | None = Field(None, description="b [n].")
    init: RecurrentInit | None = Field(None, description="Draw W, U and b instead of giving them.")

    @model_validator(mode="after")
    def _one_source(self) -> Recurrent:
        explicit = (self.weight, self.input_weight, self.bias)
        if self.init is not None and any(value is not None for value in explicit):
            raise ValueError("give either `init` or the weights (`weight`, `input_weight`, `bias`), not both")
        if self.init is None and (self.weight is None or self.input_weight is None):
            raise ValueError("give `weight` and `input_weight` (or an `init` recipe)")
        return self


class Network(ContractModel):
    """Exactly one of `layers`, `init`, `recurrent` and `graph`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"activation": "tanh", "init": {"widths": [256, 256, 256, 10], "scheme": "orthogonal", "gain": 0.5}},
                {
                    "activation": "relu",
                    "layers": [{"weight": [[1.0, 0.5], [-0.5, 1.0]]}, {"weight": [[0.3, 0.7]], "activation": "linear"}],
                },
            ]
        }
    )

    activation: Activation = Field("linear", description="The activation of every layer that names none.")
    output_activation: Activation | None = Field(
        None, description="The last layer's activation when it differs (init recipes)."
    )
    layers: list[LayerSpec] | None = Field(None, min_length=1, max_length=MAX_DEPTH, description="At most 100000.")
    init: InitRecipe | None = None
    recurrent: Recurrent | None = None
    graph: GraphNetwork | None = Field(
        None,
        description="A DAG of ops (linear, activation, add, …, attention, lstm). Its report has one layer per block: "
        "the stretch between two tensors that every input-to-output path passes through. `activation` and "
        "`output_activation` do not apply to it.",
    )

    @classmethod
    def from_arrays(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any | None] | None = None,
        *,
        activation: Activation = "linear",
        activations: Sequence[Activation | None] | None = None,
    ) -> Network:
        """A network of explicit layers from numpy arrays (``W_j`` is [n_j, n_{j−1}], as in ``nn.Linear``).

        ``activation`` applies to every layer; ``activations[j]`` overrides it for layer j.

            >>> import numpy as np
            >>> net = Network.from_arrays([np.eye(3), np.ones((1, 3))], activation="tanh")
            >>> [layer.weight.shape for layer in net.layers]
            [[3, 3], [1, 3]]
        """
        biases = biases if biases is not None else [None] * len(weights)
        activations = activations if activations is not None else [None] * len(weights)
        if not len(weights) == len(biases) == len(activations):
            raise ValueError("weights, biases and activations must have one entry per layer")
        layers = [
            Layer(
                weight=Tensor.from_numpy(w),
                bias=None if b is None else Tensor.from_numpy(b),
                activation=a,
            )
            for w, b, a in zip(weights, biases, activations, strict=True)
        ]
        return cls(activation=activation, layers=layers)

    @model_validator(mode="after")
    def _one_source(self) -> Network:
        if sum(source is not None for source in (self.layers, self.init, self.recurrent, self.graph)) != 1:
            raise ValueError(
                "give exactly one of `layers` (explicit weights), `init` (a random-init recipe), `recurrent` and "
                "`graph`"
            )
        return self
