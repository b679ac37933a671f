"""Settings, read from environment variables with the ``JACSPEC_`` prefix (e.g. ``JACSPEC_PORT=9000``).

List settings take JSON (``JACSPEC_API_KEYS='["k1", "k2"]'``) or a comma-separated value
(``JACSPEC_API_KEYS=k1,k2``). API keys are ``SecretStr``: the settings' repr and str never show them.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JACSPEC_", hide_input_in_errors=True)
    """``hide_input_in_errors``: a malformed JACSPEC_API_KEYS must not be printed in the error that refuses it."""

    host: str = Field("127.0.0.1", description="Interface `python -m api` listens on: an IPv4 or IPv6 address.")
    port: int = Field(8000, ge=1, le=65535, description="Port `python -m api` listens on.")
    max_body_bytes: int = Field(256 * 2**20, ge=1, description="Largest request body accepted; larger → 413.")
    body_budget_bytes: int = Field(
        512 * 2**20,
        ge=1,
        description="Bytes of request bodies over 64 KiB that each worker process holds at once, from arrival to"
        " the end of the response; a body that does not fit waits up to JACSPEC_QUEUE_TIMEOUT, then 503 with"
        " Retry-After (one larger than this alone: 413).",
    )
    max_parameters: int = Field(100_000_000, ge=1, description="Most weights and biases in one network; more → 413.")
    max_flops: float = Field(2e11, gt=0, description="Most estimated floating-point work for one analysis; more → 413.")
    max_response_bytes: int = Field(
        16 * 2**20, ge=1, description="Largest estimated answer (JSON bytes) of one analysis; larger → 413."
    )
    compute_workers: int | None = Field(
        None,
        ge=1,
        description="Compute worker processes per server process, one analysis each at a time; empty: the "
        "available cores divided by JACSPEC_WORKERS (at least 1). Without JACSPEC_CLUSTER, at least "
        "JACSPEC_JOB_RUNNERS + 1 either way, so that running jobs never hold every worker.",
    )
    queue_timeout: float = Field(
        10.0, gt=0, description="Seconds a request may wait for a compute worker; longer → 503 with Retry-After."
    )
    queue_size: int = Field(
        16, ge=0, description="Requests that may wait for a compute worker at once; one more → 503 at once."
    )
    max_seconds: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Most seconds one analysis may compute (options.max_seconds may ask for less); longer → its "
        "worker is stopped and replaced, and the answer is 413.",
    )
    worker_memory_bytes: int = Field(
        4 * 2**30,
        ge=2**29,
        description="Address space of each compute worker (RLIMIT_AS); an analysis that needs more → 413.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys accepted on /v1 as `Authorization: Bearer <key>` or `X-API-Key: <key>`; empty: no auth.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (`*` for any); empty: no CORS headers."
    )
    workers: int = Field(
        1, ge=1, le=1024, description="Worker processes `python -m api` (the container's start command) serves with."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a connection may take to send a request's headers, counted from its opening or from"
        " the end of the previous response (so also the idle keep-alive limit); slower → connection closed.",
    )
    body_timeout: float = Field(
        60.0, gt=0, description="Seconds a request's body may take to arrive, whole; slower → 408, connection closed."
    )
    max_header_bytes: int = Field(
        64 * 2**10, ge=8192, description="Largest request head (request line and headers); larger → 431."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Connections each worker process serves at once; more wait, unaccepted, in the listen backlog.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`python -m api`'s log lines: `text`, or `json` (one object per line, for collectors)."
    )

    database_url: str = Field(
        "sqlite:///jacspec.sqlite3",
        description="SQLAlchemy URL of the database that keeps jobs and runs: a SQLite file (relative to the working"
        " directory by default), or `postgresql+psycopg://user@host:port/db` for several replicas. Its schema is"
        " migrated (Alembic) at startup.",
    )
    retention_seconds: float = Field(
        30 * 86_400.0, gt=0, description="Finished jobs and run points older than this are deleted."
    )
    job_runners: int = Field(
        1,
        ge=0,
        description="Jobs this server process computes at once; they share the compute workers with POST"
        " /v1/analyses, which always keeps one of them (0: this process only accepts jobs, another replica runs"
        " them).",
    )
    job_max_flops: float | None = Field(
        None,
        gt=0,
        description="Most estimated floating-point work for one job; empty: 50 × JACSPEC_MAX_FLOPS; more → 413.",
    )
    job_max_seconds: float = Field(
        3600.0,
        gt=0,
        le=7 * 86_400,
        description="Most seconds one job may compute (options.max_seconds may ask for less); longer → the job"
        " fails with a 413 problem.",
    )
    max_pending_jobs: int = Field(
        100,
        ge=1,
        description="Most jobs one API key (or, without keys, everyone) may have queued or running; more → 429.",
    )
    max_pending_job_bytes: int = Field(
        2**30,
        ge=1,
        description="Most bytes of request bodies one API key's queued and running jobs may hold in the database;"
        " more → 429 (one body larger than this alone → 413).",
    )
    job_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="A running job's lease, renewed by its runner every third of it; a job whose lease has run out"
        " (its server died) is marked failed (`job-interrupted`) by any replica.",
    )
    events_keep_alive_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="Seconds of quiet after which GET /v1/jobs/{id}/events sends a `: keep-alive` comment, so that"
        " a proxy on the way does not close a stream with nothing to tell: keep it under the shortest idle timeout"
        " between the server and its clients.",
    )
    cluster: str | None = Field(
        None,
        description="Address of a Dask scheduler (`tcp://host:8786`): jobs then run on its workers; empty: on this"
        " server's compute workers. The server starts without the scheduler answering and reconnects when it goes"
        " away; jobs wait queued meanwhile (`cluster` in /readyz).",
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """A JSON list, or comma-separated values (blank entries dropped), when given as a string."""
        return split_list(value) if isinstance(value, str) else value

    @field_validator("host")
    @classmethod
    def _an_address(cls, value: str) -> str:
        """An IP address, as granian binds it (a host name is refused here rather than in a traceback)."""
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"not an IP address: {value!r} (127.0.0.1, 0.0.0.0, ::1, …)") from None
        return value

    @field_validator("cluster")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        """An empty (or blank) JACSPEC_CLUSTER means no cluster, as the table says, not an address."""
        if value is None or not value.strip():
            return None
        return value.strip()

    @field_validator("api_keys")
    @classmethod
    def _no_blank_key(cls, keys: list[SecretStr]) -> list[SecretStr]:
        """No key may be empty or pure whitespace: such a key would be matched by a blank header."""
        if any(not key.get_secret_value().strip() for key in keys):
            raise ValueError("an API key must not be blank")
        return keys

    _limit_names: tuple[str, str] = PrivateAttr(("JACSPEC_MAX_FLOPS", "JACSPEC_MAX_SECONDS"))
    """The settings that ``max_flops`` and ``max_seconds`` hold, as the 413s name them."""

    @property
    def flops_limit(self) -> str:
        """The setting ``max_flops`` holds: JACSPEC_MAX_FLOPS, or JACSPEC_JOB_MAX_FLOPS in ``for_jobs()``."""
        return self._limit_names[0]

    @property
    def seconds_limit(self) -> str:
        """The setting ``max_seconds`` holds: JACSPEC_MAX_SECONDS, or JACSPEC_JOB_MAX_SECONDS in ``for_jobs()``."""
        return self._limit_names[1]

    def for_jobs(self) -> Settings:
        """These settings as a job is checked and run with: ``max_flops`` = JACSPEC_JOB_MAX_FLOPS (50 ×
        JACSPEC_MAX_FLOPS when unset) and ``max_seconds`` = JACSPEC_JOB_MAX_SECONDS, named so in the 413s."""
        flops = self.job_max_flops if self.job_max_flops is not None else 50 * self.max_flops
        jobs = self.model_copy(update={"max_flops": flops, "max_seconds": self.job_max_seconds})
        jobs._limit_names = ("JACSPEC_JOB_MAX_FLOPS", "JACSPEC_JOB_MAX_SECONDS")
        return jobs


def split_list(value: str) -> list[Any]:
    """``'["a", "b"]'`` or ``"a, b"`` → ``["a", "b"]``; an empty string is an empty list."""
    text = value.strip()
    if text.startswith("["):
        parsed: list[Any] = json.loads(text)
        return parsed
    return [part.strip() for part in text.split(",") if part.strip()]
