"""Activation functions: a bare name, or an object with the name and its parameters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from jacspec.models._base import ContractModel
from jacspec.models._bounds import (
    MAX_ACTIVATION_PARAMETER,
    MAX_SOFTPLUS_BETA,
    MIN_HARD_TANH_INTERVAL,
    MIN_SOFTPLUS_BETA,
)

BOUND = MAX_ACTIVATION_PARAMETER


def _example(schema: dict[str, Any]) -> None:
    """Each activation model's example: its name with every parameter at its default."""
    properties = schema.get("properties", {})
    example = {key: value.get("const", value.get("default")) for key, value in properties.items()}
    schema["examples"] = [example]


class _ActivationModel(ContractModel):
    model_config = ConfigDict(json_schema_extra=_example)


ActivationName = Literal[
    "linear", "relu", "leaky_relu", "tanh", "sigmoid", "hard_tanh", "elu", "selu", "gelu", "silu", "softplus"
]


class Linear(_ActivationModel):
    name: Literal["linear"]


class ReLU(_ActivationModel):
    name: Literal["relu"]


class LeakyReLU(_ActivationModel):
    name: Literal["leaky_relu"]
    negative_slope: float = Field(0.01, ge=-BOUND, le=BOUND, description="Slope for z ≤ 0; |negative_slope| ≤ 1e6.")


class Tanh(_ActivationModel):
    name: Literal["tanh"]


class Sigmoid(_ActivationModel):
    name: Literal["sigmoid"]


class HardTanh(_ActivationModel):
    name: Literal["hard_tanh"]
    min_val: float = Field(-1.0, ge=-BOUND, le=BOUND, description="Lower clip point; |min_val| ≤ 1e6.")
    max_val: float = Field(
        1.0,
        ge=-BOUND,
        le=BOUND,
        description="Upper clip point; |max_val| ≤ 1e6, and max_val − min_val ≥ 1e-6·max(1, |min_val|, |max_val|).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> HardTanh:
        if not self.min_val < self.max_val:
            raise ValueError("hard_tanh needs min_val < max_val")
        span = max(1.0, abs(self.min_val), abs(self.max_val))
        if self.max_val - self.min_val < MIN_HARD_TANH_INTERVAL * span:
            raise ValueError("hard_tanh needs max_val − min_val ≥ 1e-6·max(1, |min_val|, |max_val|)")
        return self


class ELU(_ActivationModel):
    name: Literal["elu"]
    alpha: float = Field(1.0, ge=0, le=BOUND, description="Scale of the negative branch, 0 ≤ alpha ≤ 1e6.")


class SELU(_ActivationModel):
    name: Literal["selu"]


class GELU(_ActivationModel):
    name: Literal["gelu"]


class SiLU(_ActivationModel):
    name: Literal["silu"]


class Softplus(_ActivationModel):
    name: Literal["softplus"]
    beta: float = Field(1.0, ge=MIN_SOFTPLUS_BETA, le=MAX_SOFTPLUS_BETA, description="Sharpness, 1e-6 ≤ beta ≤ 1e6.")


ActivationSpec = Annotated[
    Linear | ReLU | LeakyReLU | Tanh | Sigmoid | HardTanh | ELU | SELU | GELU | SiLU | Softplus,
    Field(discriminator="name"),
]


def _name_or_object(value: object) -> str:
    return "name" if isinstance(value, str) else "object"


Activation = Annotated[
    Annotated[ActivationName, Tag("name")] | Annotated[ActivationSpec, Tag("object")],
    Discriminator(_name_or_object),
    Field(
        description="An activation's name (its parameters at their defaults), or an object with `name` and parameters.",
        examples=["tanh", {"name": "leaky_relu", "negative_slope": 0.1}],
    ),
]
"""``"tanh"`` or ``{"name": "leaky_relu", "negative_slope": 0.1}``."""


def activation_parts(activation: str | ContractModel) -> tuple[str, dict[str, float]]:
    """(name, parameters) of an activation in either form."""
    if isinstance(activation, str):
        return activation, {}
    params = activation.model_dump()
    return params.pop("name"), params
