"""Settings, read from environment variables with the ``JACSPEC_`` prefix (e.g. ``JACSPEC_PORT=9000``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JACSPEC_")

    host: str = Field("127.0.0.1", description="Interface `python -m api` listens on.")
    port: int = Field(8000, description="Port `python -m api` listens on.")
    max_body_bytes: int = Field(256 * 2**20, ge=1, description="Largest request body accepted; larger → 413.")
    max_parameters: int = Field(100_000_000, ge=1, description="Most weights and biases in one network; more → 413.")
    max_flops: float = Field(2e11, gt=0, description="Most estimated floating-point work for one analysis; more → 413.")
    compute_slots: int = Field(2, ge=1, description="Analyses computed at once, each in a worker thread.")
    queue_timeout: float = Field(
        10.0, gt=0, description="Seconds a request may wait for a compute slot; longer → 503 with Retry-After."
    )
    queue_size: int = Field(
        16, ge=0, description="Requests that may wait for a compute slot at once; one more → 503 at once."
    )
