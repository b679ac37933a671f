"""Runs: the reports kept as points (run, step), GET /v1/runs[/{run}], the comparison of two steps, run events."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jacspec.models._base import ContractModel
from jacspec.models.analysis import RunName, Step

EventKind = Literal["diverged", "error"]
METRICS: tuple[str, ...] = (
    "weight_norm",
    "jacobian_norm",
    "backward_norm_log10",
    "backward_bound_log10",
    "gradient_norm_log10",
)
"""The per-layer metrics a run follows over its steps (a survey's matrices: weight_norm = σ_max only)."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RunEventRequest(ContractModel):
    """The body of POST /v1/runs/{run}/events: something that happened at a step (the SDK's monitor sends these)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"step": 12, "kind": "diverged", "message": "NaN in 0.weight", "parameter": "0.weight"}]
        }
    )

    step: Step
    kind: EventKind = Field(description="diverged (NaN or Inf weights), or error (the monitor could not report).")
    message: str = Field(max_length=4096, description="What happened, in a sentence.")
    parameter: str | None = Field(None, max_length=1024, description="The parameter at fault (diverged).")


class RunEvent(_Answer):
    """A stored run event."""

    step: int
    kind: EventKind
    message: str
    parameter: str | None
    created_at: str = Field(description="When it was received, RFC 3339 UTC.")


class RunInfo(_Answer):
    """One run in GET /v1/runs."""

    run: str
    points: int = Field(description="The steps kept.")
    first_step: int
    last_step: int
    last_verdict: str = Field(description="The verdict of the last step (`survey` for a weight survey).")
    updated_at: str = Field(description="When its newest point was stored, RFC 3339 UTC.")


class RunList(_Answer):
    """A page of runs, most recently updated first."""

    runs: list[RunInfo]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class RunLayer(_Answer):
    """One layer (by its 1-based index) over the run's steps."""

    index: int
    kind: str = Field(description="The layer's type (dense, conv2d, recurrent, block; a survey's matrix or kernel).")
    metrics: dict[str, list[float | None]] = Field(
        description="Each of weight_norm, jacobian_norm, backward_norm_log10, backward_bound_log10, "
        "gradient_norm_log10: one value per step, aligned with `steps`; null where the layer or the value is absent."
    )


class Run(_Answer):
    """A run: its steps ascending, each step's verdict and time, each layer's metrics over the steps."""

    run: str
    steps: list[int]
    verdicts: list[str] = Field(description="Each step's summary.verdict (`survey` for a weight survey).")
    created_at: list[str] = Field(description="When each point was stored, RFC 3339 UTC.")
    layers: list[RunLayer]
    summary: dict[str, list[float | None]] = Field(
        description="Each number of the reports' summary (input_norm_log10, input_bound_log10, …) per step."
    )
    events: list[RunEvent]


class MetricChange(_Answer):
    a: float | None
    b: float | None
    log10_change: float | None = Field(
        description="b − a for a *_log10 metric, log10(b/a) for a plain norm; null where either is absent or ≤ 0."
    )


class ComparedLayer(_Answer):
    index: int
    metrics: dict[str, MetricChange]


class Verdicts(_Answer):
    a: str
    b: str


class RunComparison(_Answer):
    """Two steps of a run side by side, layer by layer."""

    run: str
    a: int
    b: int
    verdicts: Verdicts
    layers: list[ComparedLayer]


__all__ = [
    "METRICS",
    "ComparedLayer",
    "EventKind",
    "MetricChange",
    "Run",
    "RunComparison",
    "RunEvent",
    "RunEventRequest",
    "RunInfo",
    "RunLayer",
    "RunList",
    "RunName",
    "Verdicts",
]
