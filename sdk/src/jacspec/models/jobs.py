"""Jobs: POST /v1/jobs, GET /v1/jobs[/{id}], DELETE /v1/jobs/{id}, GET /v1/jobs/{id}/events."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jacspec.models.problem import Problem
from jacspec.models.report import AnalysisReport
from jacspec.models.survey import SurveyReport

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
"""The statuses a job never leaves."""
ProgressUnit = Literal["layers", "blocks", "tensors", "stages"]

JOB_ID_PATTERN = r"^job_[0-9a-f]{32}$"
INTERRUPTED = "urn:jacspec:problem:job-interrupted"
"""The problem type of a job whose server stopped while it ran."""


class JobProgress(BaseModel):
    """How far a job has come: ``done`` of ``total`` parts in ``unit``."""

    done: int = Field(0, ge=0, description="Parts finished.")
    total: int | None = Field(None, ge=0, description="Parts in all; null until the job has started computing.")
    unit: ProgressUnit = Field(
        "layers",
        description="What a part is: `stages` for a chain (each distinct weight's norm, each layer's Jacobian norm, "
        "the backward pass), `blocks` for a graph, `tensors` for a weight survey.",
    )
    fraction: float = Field(0.0, ge=0.0, le=1.0, description="done / total (1 once the job has succeeded).")
    seconds_left: float | None = Field(
        None,
        ge=0.0,
        description="Estimated seconds of computing left: the request's estimated work (its flops at the "
        "server's seconds per flop) × (1 − fraction); null when not computing.",
    )


class Job(BaseModel):
    """A long analysis run in the background. ``report`` only on GET /v1/jobs/{id}, once succeeded."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "job_0123456789abcdef0123456789abcdef",
                    "status": "running",
                    "created_at": "2026-01-01T12:00:00.000000Z",
                    "started_at": "2026-01-01T12:00:00.100000Z",
                    "finished_at": None,
                    "progress": {"done": 12, "total": 97, "unit": "stages", "fraction": 0.124, "seconds_left": 8.2},
                    "run": None,
                    "step": None,
                    "report": None,
                    "error": None,
                }
            ]
        }
    )

    id: str = Field(pattern=JOB_ID_PATTERN, description="`job_` and 32 hexadecimal digits.")
    status: JobStatus
    created_at: str = Field(description="When it was submitted (RFC 3339, UTC).")
    started_at: str | None = Field(None, description="When a runner started it (RFC 3339, UTC).")
    finished_at: str | None = Field(None, description="When it succeeded, failed or was cancelled.")
    progress: JobProgress = Field(default_factory=JobProgress)
    run: str | None = Field(None, description="The run its report is a point of, if the request named one.")
    step: int | None = Field(None, description="That point's step.")
    report: AnalysisReport | SurveyReport | None = Field(
        None, description="The report POST /v1/analyses would have answered (timings apart), once succeeded."
    )
    error: Problem | None = Field(
        None,
        description="Why it failed: the problem the synchronous route would have answered, or type "
        "`urn:jacspec:problem:job-interrupted` when the server stopped, or lost its Dask scheduler, while it ran.",
    )


class JobList(BaseModel):
    """A page of jobs, newest first (without their reports)."""

    jobs: list[Job]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last one.")
