"""GET /healthz and GET /readyz."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ok", "version": "0.1.0"},
                {"status": "ready", "version": "0.1.0", "cluster": "disconnected"},
            ]
        }
    )

    status: Literal["ok", "ready", "not_ready"]
    version: str
    cluster: Literal["connected", "disconnected"] | None = Field(
        None,
        description="With JACSPEC_CLUSTER: whether the server is connected to the Dask scheduler now; jobs stay "
        "queued while it is not (the synchronous routes do not need it). Absent without a cluster.",
    )
