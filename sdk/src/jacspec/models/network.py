"""A network: explicit layers, or an init recipe from which the server draws the weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from jacspec.models._base import ContractModel
from jacspec.models.activations import Activation
from jacspec.models.tensor import Matrix, Tensor, Vector

InitSchemeName = Literal[
    "gaussian", "uniform", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "lecun_normal", "orthogonal"
]
MAX_SEED = 2**64 - 1


class Layer(ContractModel):
    """z_j = W_j a_{j−1} + b_j, a_j = h_j(z_j); W_j is [n_j, n_{j−1}] (out × in, as in torch.nn.Linear)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"weight": [[0.5, -0.2], [0.1, 0.4]], "bias": [0.0, 0.1], "activation": "relu"}]
        }
    )

    weight: Matrix
    bias: Vector | None = None
    activation: Activation | None = Field(None, description="Overrides the network's activation for this layer.")


class InitRecipe(ContractModel):
    """Weights drawn by the server with torch.nn.init's formulas, from a seeded generator."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"widths": [784, 512, 512, 10], "scheme": "he_normal", "gain": 1.0, "bias_std": 0.0, "seed": 0}
            ]
        }
    )

    widths: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=2, description="[n_0, n_1, …, n_L]: input width, then each layer's."
    )
    scheme: InitSchemeName = Field(description="See GET /v1/init-schemes for each scheme's std formula.")
    gain: float = Field(1.0, gt=0, description="Multiplies the std of every scheme.")
    std: float = Field(1.0, gt=0, description="The base std of `gaussian` and `uniform`; ignored by the others.")
    bias_std: float = Field(0.0, ge=0, description="Biases b_j ~ N(0, bias_std²); 0 means no biases.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of numpy's PCG64 generator.")


class Network(ContractModel):
    """Exactly one of `layers` and `init`."""

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
    layers: list[Layer] | None = Field(None, min_length=1)
    init: InitRecipe | None = None

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
        if (self.layers is None) == (self.init is None):
            raise ValueError("give exactly one of `layers` (explicit weights) and `init` (a random-init recipe)")
        return self
