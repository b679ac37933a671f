"""GET /v1/activations and GET /v1/init-schemes: what the service supports, with the formulas it uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Parameter(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "negative_slope", "default": 0.01, "description": "slope for z ≤ 0"}]}
    )

    name: str
    default: float
    description: str


class ActivationInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "sigmoid",
                    "formula": "h(z) = 1 / (1 + e^(−z))",
                    "derivative_formula": "h'(z) = h(z)·(1 − h(z))",
                    "derivative_bound": 0.25,
                    "bound_formula": "1/4 (at z = 0)",
                    "parameters": [],
                }
            ]
        }
    )

    name: str
    formula: str
    derivative_formula: str
    derivative_bound: float = Field(description="sup_z |h'(z)| with the parameters at their defaults.")
    bound_formula: str
    parameters: list[Parameter]


class InitSchemeInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "he_normal",
                    "distribution": "normal",
                    "std_formula": "gain·√(2/fan_in)",
                    "torch_equivalent": "gain·(nn.init.kaiming_normal_(W) for ReLU)",
                }
            ]
        }
    )

    name: str
    distribution: str = Field(description="normal, uniform or orthogonal.")
    std_formula: str = Field(description="The std of W's entries; fan_in = n_{j−1}, fan_out = n_j.")
    torch_equivalent: str
