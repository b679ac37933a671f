"""POST /v1/bounds: the seed's arithmetic, ∏ f_j from per-layer factors f_j = σ_j·γ_j or f^L from (factor, depth)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jacspec.models._base import ContractModel
from jacspec.models.analysis import Thresholds
from jacspec.models.report import Verdict

MAX_FACTORS = 1_000_000


class BoundsRequest(ContractModel):
    """Exactly one of `factors`, or `factor` with `depth`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"factor": 0.5, "depth": 10},
                {"factor": 1.5, "depth": 2000},
                {"factors": [1.2, 0.9, 0.25, 1.0]},
            ]
        }
    )

    factors: list[Annotated[float, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_FACTORS,
        fail_fast=True,
        description="Per-layer factors σ_j·γ_j, j = 1..L.",
    )
    factor: float | None = Field(None, ge=0, description="One factor for every layer.")
    depth: int | None = Field(None, ge=1, le=10**12, description="L, with `factor`.")
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @model_validator(mode="after")
    def _one_form(self) -> BoundsRequest:
        if self.factors is not None and (self.factor is not None or self.depth is not None):
            raise ValueError("give either `factors`, or `factor` and `depth`, not both")
        if self.factors is None and (self.factor is None or self.depth is None):
            raise ValueError("give `factors`, or both `factor` and `depth`")
        return self


class BoundsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "depth": 10,
                    "log10": -3.010299956639812,
                    "value": 0.0009765625,
                    "rate_log10": -0.3010299956639812,
                    "verdict": "vanishing",
                    "thresholds": {"vanishing_log10": -2.0, "exploding_log10": 2.0},
                    "backward_bound_log10": None,
                    "flags": [],
                }
            ]
        }
    )

    depth: int = Field(description="L.")
    log10: float | None = Field(description="log10 ∏_{j=1}^{L} f_j (null where a factor is 0).")
    value: float | None = Field(description="The product as a plain float where it is a normal float64, else null.")
    rate_log10: float | None = Field(description="log10 / L: growth per layer.")
    verdict: Verdict
    thresholds: Thresholds
    backward_bound_log10: list[float | None] | None = Field(
        description="With `factors`: entry j−1 is log10 ∏_{i=j+1}^{L} f_i, the bound on ‖∂a_L/∂a_j‖ (0 for j = L)."
    )
    flags: list[str] = Field(description="zero_factor when a factor is 0 (the product is exactly 0).")
