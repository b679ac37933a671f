"""The weight survey of an uploaded state dict: one row of singular-value statistics for every matrix in it.

POST /v1/analyses answers a .safetensors upload with a SurveyReport (rather than an AnalysisReport) when the
request part asks for one (`"survey": true`), or when it names no `network.layers` and the file is not a chain of
`P.weight` matrices (and `P.bias` vectors) yet some `P.weight` is a matrix — a HuggingFace checkpoint with its LayerNorm
vectors, a CNN's kernels and BatchNorm statistics. Its `kind` is `"survey"`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jacspec.models._examples import SURVEY_REPORT


class _Report(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WeightSurvey(_Report):
    """One matrix W (m × n, k = min(m, n)) and its singular values s_1 ≥ … ≥ s_k (LAPACK gesdd, values only)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [SURVEY_REPORT["weights"][0]]})

    name: str = Field(description="The tensor's name in the file.")
    shape: list[int] = Field(description="The tensor's shape in the file.")
    type: Literal["matrix", "kernel"] = Field(
        description="matrix (a 2-D tensor: a linear layer's weight, an attention projection, an embedding table) or "
        "kernel (a 3-D or 4-D tensor, read as a convolution kernel [c_out, c_in, k…])."
    )
    matrix_shape: list[int] = Field(
        description="[m, n] of the matrix surveyed: the shape itself for a matrix; [c_out, c_in·k…] for a kernel "
        "(torch.flatten(K, 1), the matrix torch.nn.utils.spectral_norm takes; WeightWatcher instead slices a conv2d "
        "kernel into kh·kw matrices [c_out, c_in])."
    )
    sigma_max: float = Field(description="σ_max = s_1 = ‖W‖₂, the spectral norm.")
    sigma_min: float = Field(description="σ_min = s_k, the smallest of the min(m, n) singular values.")
    frobenius_norm: float = Field(description="‖W‖_F = √(Σ s_i²).")
    stable_rank: float | None = Field(
        description="‖W‖_F²/‖W‖₂² = Σ (s_i/s_1)², between 1 and k; null for W = 0 (flag zero)."
    )
    rank: int = Field(description="Singular values above s_1·max(m, n)·eps (numpy.linalg.matrix_rank's tolerance).")
    condition_number: float | None = Field(
        description="s_1/s_k; null where W is numerically rank-deficient (flag rank_deficient) or zero."
    )
    singular_values: list[float] | None = Field(
        None,
        description="With options.spectrum: the quantiles of s at the summary's quantile_levels (summary), or every "
        "s_i in decreasing order (full); absent otherwise.",
    )
    flags: list[str] = Field(description="zero (W = 0), rank_deficient (rank < min(m, n)).")


class SkippedTensor(_Report):
    """A tensor the survey lists but does not survey."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [SURVEY_REPORT["skipped"][0]]})

    name: str = Field(description="The tensor's name in the file.")
    shape: list[int] = Field(description="Its shape.")
    dtype: str = Field(description="Its dtype in the file (F16, BF16, F32, F64, or an integer or boolean type).")
    reason: str = Field(
        description="Why it is not surveyed: a scalar, a vector (biases, norms' scales and shifts, running "
        "statistics), five or more dimensions, a dimension of 0, or not floating point."
    )


class SurveySummary(_Report):
    """The survey in a few numbers."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [SURVEY_REPORT["summary"]]})

    matrices: int = Field(description="The tensors surveyed (rows of `weights`).")
    skipped: int = Field(description="The tensors listed in `skipped`.")
    parameters: int = Field(description="The entries of the surveyed matrices.")
    largest_sigma_max: float | None = Field(description="The largest σ_max of any matrix; null without matrices.")
    largest_sigma_max_name: str | None = Field(description="The (first) tensor of that σ_max.")
    smallest_stable_rank: float | None = Field(
        description="The smallest stable rank of any matrix (zero matrices have none); null if none has one."
    )
    smallest_stable_rank_name: str | None = Field(description="The (first) tensor of that stable rank.")
    spectrum: Literal["none", "summary", "full"] = Field(description="options.spectrum: the singular values given.")
    quantile_levels: list[float] | None = Field(
        description="The quantiles of each matrix's `singular_values` in summary mode (0 the smallest, 1 the "
        "largest); null otherwise."
    )


class SurveyMethods(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [SURVEY_REPORT["meta"]["methods"]]})

    dtype: str = Field("float64", description="The arithmetic of every computation (F16, BF16 and F32 widen exactly).")
    singular_values: str = Field(description="How the singular values were computed.")
    kernels: str = Field(description="How a convolution kernel is read as a matrix.")


class SurveyMeta(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [SURVEY_REPORT["meta"]]})

    version: str = Field(description="The server's version.")
    timings_ms: dict[str, float] = Field(
        description="Wall time in milliseconds: parse (the file's header), decode (tensors widened to float64), "
        "compute (the SVDs) and total."
    )
    methods: SurveyMethods


class SurveyReport(_Report):
    """The weight survey of a .safetensors state dict, every 2-D tensor and convolution kernel, as WeightWatcher
    surveys a model (without its power-law fits)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [SURVEY_REPORT]})

    kind: Literal["survey"] = Field(
        "survey", description="Always `survey`: tells a SurveyReport from an AnalysisReport."
    )
    weights: list[WeightSurvey] = Field(description="One row per matrix or kernel, in natural order of the names.")
    skipped: list[SkippedTensor] = Field(description="Every other tensor, in natural order of the names.")
    summary: SurveySummary
    meta: SurveyMeta

    def to_dataframe(self) -> Any:
        """The rows of ``weights`` as a pandas DataFrame indexed by name (pandas is imported only here)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("SurveyReport.to_dataframe needs pandas: pip install 'jacspec[pandas]'") from exc
        rows = [w.model_dump(exclude={"singular_values"} if w.singular_values is None else None) for w in self.weights]
        return pd.DataFrame(rows).set_index("name") if rows else pd.DataFrame()
