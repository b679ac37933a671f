"""The answer of POST /v1/analyses: per-layer diagnostics, a summary and how they were computed.

Products are carried as base-10 logarithms (`*_log10`); a plain float is given only where it is a normal
float64, else null. A log10 of an exact zero is null, with a flag saying why.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jacspec.models._examples import ANALYSIS_REPORT
from jacspec.models.analysis import Thresholds

Verdict = Literal["vanishing", "exploding", "stable"]


class _Report(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LayerReport(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["layers"][0]]})

    index: int = Field(description="j, 1-based.")
    shape: list[int] = Field(description="[n_j, n_{j−1}].")
    activation: str
    weight_norm: float = Field(description="σ_j = ‖W_j‖₂.")
    derivative_bound: float = Field(description="sup_z |h_j'(z)|.")
    derivative_max: float | None = Field(
        description="max over probes and units of |h_j'(z_j)| (null where the forward pass overflowed)."
    )
    jacobian_norm_bound: float = Field(description="σ_j·sup|h_j'|.")
    jacobian_norm: float | None = Field(description="max over probes of ‖diag(h_j'(z_j)) W_j‖₂.")
    backward_bound_log10: float | None = Field(
        description="log10 ∏_{i=j+1}^{L} σ_i·sup|h_i'|, the bound on ‖∂a_L/∂a_j‖ (0 for j = L)."
    )
    backward_bound: float | None = Field(description="10^backward_bound_log10 where it fits a float64.")
    backward_norm_log10: float | None = Field(description="log10 max over probes of ‖∂a_L/∂a_j‖₂.")
    backward_norm: float | None = Field(description="10^backward_norm_log10 where it fits a float64.")
    gradient_norm: float | None = Field(description="‖∂ℓ/∂W_j‖_F for the probe batch and the MSE loss.")
    gradient_norm_log10: float | None = Field(
        description="log10 of gradient_norm (given even where the plain value does not fit)."
    )
    flags: list[str] = Field(
        description="zero_weight (σ_j = 0), dead (h_j' = 0 for every unit and probe), backward_bound_zero, "
        "backward_norm_zero, gradient_zero (the quantity is exactly 0: its log10 is null, its plain value 0), "
        "overflow (z_j is not finite), downstream_overflow (a later layer overflowed: true norms unknown)."
    )


class Summary(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["summary"]]})

    depth: int = Field(description="L.")
    input_bound_log10: float | None = Field(description="log10 ∏_{j=1}^{L} σ_j·sup|h_j'|, the bound on ‖∂a_L/∂a_0‖.")
    input_bound: float | None
    input_norm_log10: float | None = Field(description="log10 max over probes of ‖∂a_L/∂a_0‖₂.")
    input_norm: float | None
    rate_log10: float | None = Field(description="input_bound_log10 / L: the bound's growth per layer.")
    observed_rate_log10: float | None = Field(description="input_norm_log10 / L: the true growth per layer.")
    verdict: Verdict = Field(description="From input_norm_log10 and the thresholds.")
    bound_verdict: Verdict = Field(description="From input_bound_log10 and the thresholds.")
    thresholds: Thresholds
    gain: float | None = Field(description="The init gain (null for explicit weights).")
    suggested_gain: float | None = Field(
        description="gain·10^(−rate_log10): the gain (for explicit weights, the factor to scale every weight by) "
        "at which the bound's growth per layer is 1."
    )
    advice: str
    flags: list[str] = Field(description="overflow, input_bound_zero, input_norm_zero.")


class Methods(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["meta"]["methods"]]})

    dtype: str = "float64"
    rtol: float
    probes: int
    loss: str = Field(description="The loss behind gradient_norm.")
    spectral_norm: str = Field(description="How each σ and each per-probe Jacobian norm was computed.")
    backward_norm: str = Field(
        description="How max over probes of ‖∂a_L/∂a_j‖₂ was computed, and to which tolerance: the dense solver "
        "on each probe's n_L × n_j product while n_L is small, else Lanczos to rtol."
    )
    dense_max_dim: int = Field(
        description="Matrices with min(m, n) ≤ this use the dense solver (√λ_max of the smaller Gram matrix)."
    )
    weight_norms_dense: int
    weight_norms_lanczos: int
    matvecs: int = Field(description="Matrix-vector products taken by Lanczos over the whole analysis.")


class Meta(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["meta"]]})

    version: str
    timings_ms: dict[str, float] = Field(
        description="Wall time in milliseconds: parse (the JSON body), decode (tensors to arrays, or drawing the "
        "init recipe's weights), compute (the analysis) and total."
    )
    methods: Methods


class AnalysisReport(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT]})

    layers: list[LayerReport]
    summary: Summary
    meta: Meta

    def to_dataframe(self) -> Any:
        """The per-layer fields as a pandas DataFrame indexed by layer j (pandas is imported only here)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("AnalysisReport.to_dataframe needs pandas: pip install pandas") from exc
        rows = [layer.model_dump() for layer in self.layers]
        return pd.DataFrame(rows).set_index("index")

    def plot(self, ax: Any = None) -> Any:
        """Plot the backward bound and the true norm ‖∂a_L/∂a_j‖ against layer j on a log scale.

        The picture of "later layers favored more": the farther a layer is from the loss, the more factors its
        gradient sees. Returns the matplotlib Axes (matplotlib is imported only here).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("AnalysisReport.plot needs matplotlib: pip install matplotlib") from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        j = [0, *(layer.index for layer in self.layers)]
        bound = [self.summary.input_bound_log10, *(layer.backward_bound_log10 for layer in self.layers)]
        norm = [self.summary.input_norm_log10, *(layer.backward_norm_log10 for layer in self.layers)]
        ax.plot(j, [_nan(v) for v in bound], marker="o", label="bound ∏ σ_i·sup|h_i'|")
        ax.plot(j, [_nan(v) for v in norm], marker="s", label="true max ‖∂a_L/∂a_j‖₂")
        ax.set_xlabel("layer j (a_j: 0 is the input)")
        ax.set_ylabel("log10 ‖∂a_L/∂a_j‖")
        ax.set_title(f"{self.summary.verdict}: {self.summary.advice.partition('. ')[0]}", fontsize=9)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.legend()
        return ax


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
