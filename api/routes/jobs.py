"""/v1/jobs: analyses run in the background (``api.jobs``), with their status, progress, report and events."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from anyio import sleep, to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.auth import owner_of
from api.deps import SettingsDep
from api.ingest.body import declared_length, read_body
from api.jobs.service import Jobs, job_json, view
from api.problems import ProblemError, invalid, problem_responses
from api.routes.analyses import _request_body
from api.settings import Settings
from api.store.jobs import FINAL, SUCCEEDED, Bound, JobRecord, PendingError
from jacspec.models import AnalysisReport, FieldError, Job, JobList, JobStatus, SurveyReport
from jacspec.models.jobs import JOB_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["jobs"])

EVENTS_POLL_S = 0.3
"""How often the event stream reads the job from the database (any replica may be running it)."""
PENDING_RETRY_S = 10
"""The Retry-After of a 429 for too many pending jobs."""


def get_jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


def get_owner(request: Request, settings: SettingsDep) -> str:
    return owner_of(request, settings.api_keys)


JobsDep = Annotated[Jobs, Depends(get_jobs)]
OwnerDep = Annotated[str, Depends(get_owner)]
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id, `job_` and 32 hex digits.")]
JSON = "application/json"


def _not_found(job_id: str) -> ProblemError:
    return ProblemError(404, "Not Found", f"no job {job_id}")


async def _record(jobs: Jobs, owner: str, job_id: str) -> JobRecord:
    record = await to_thread.run_sync(jobs.store.get, owner, job_id)
    if record is None:
        raise _not_found(job_id)
    return record


@router.post(
    "/jobs",
    status_code=202,
    response_model=Job,
    summary="Submit an analysis as a job",
    description=(
        "Any body POST /v1/analyses takes (JSON, or multipart with a .safetensors file), checked the same way at "
        "once (4xx) but against the job limits (JACSPEC_JOB_MAX_FLOPS, JACSPEC_JOB_MAX_SECONDS). Answers 202 with "
        "`Location: /v1/jobs/{id}`; the job waits for a compute worker, then runs. 429 when this key's queued and "
        "running jobs are JACSPEC_MAX_PENDING_JOBS, or their bodies with this one would pass "
        "JACSPEC_MAX_PENDING_JOB_BYTES."
    ),
    openapi_extra=_request_body(),
    responses=problem_responses(400, 408, 413, 415, 422, 429),
)
async def create_job(request: Request, settings: SettingsDep, jobs: JobsDep, owner: OwnerDep) -> Response:
    count, held = await to_thread.run_sync(jobs.store.pending, owner)
    _refuse_if_pending(count, held, declared_length(request) or 0, settings)  # before the body is read
    content_type = request.headers.get("content-type", "")
    body = await read_body(request, settings.max_body_bytes)
    pending = await jobs.check(content_type, body)
    bound = Bound(settings.max_pending_jobs, settings.max_pending_job_bytes)
    try:
        record = await jobs.submit(owner, content_type, body, pending, bound)
    except PendingError as exc:  # another submit of this key came first, or the body had no Content-Length
        _refuse_if_pending(exc.count, exc.held, len(body), settings)
        raise
    return Response(job_json(record), 202, media_type=JSON, headers={"Location": f"/v1/jobs/{record.id}"})


def _refuse_if_pending(count: int, held: int, size: int, settings: Settings) -> None:
    """413 for a body of ``size`` bytes that alone passes JACSPEC_MAX_PENDING_JOB_BYTES; 429 when the key already
    has ``count`` = JACSPEC_MAX_PENDING_JOBS jobs queued or running, or when their ``held`` bytes and this body's
    would pass JACSPEC_MAX_PENDING_JOB_BYTES: the database never fills with work nobody can wait for. The store
    checks again as it inserts (``Bound``), where concurrent submits take turns."""
    limit = settings.max_pending_job_bytes
    if size > limit:
        detail = f"a job's body may be at most {limit} bytes (JACSPEC_MAX_PENDING_JOB_BYTES); this one is {size}"
        raise ProblemError(413, "Content Too Large", detail)
    if count >= settings.max_pending_jobs:
        raise _too_many(f"this key already has {count} jobs queued or running (JACSPEC_MAX_PENDING_JOBS)")
    if held + size > limit:
        raise _too_many(
            f"this key's queued and running jobs hold {held} bytes of requests, and this one's {size} would pass "
            f"JACSPEC_MAX_PENDING_JOB_BYTES ({limit})"
        )


def _too_many(why: str) -> ProblemError:
    detail = f"{why}; wait for a job to finish, or cancel one, and retry in {PENDING_RETRY_S} s"
    return ProblemError(429, "Too Many Requests", detail, headers={"Retry-After": str(PENDING_RETRY_S)})


@router.get(
    "/jobs",
    response_model=JobList,
    summary="List jobs",
    description="This key's jobs, newest first, without their reports; pass `next_cursor` as `cursor` for more.",
    responses=problem_responses(422),
)
async def list_jobs(
    jobs: JobsDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")] = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs of this status.")] = None,
) -> Response:
    after = None if cursor is None else _decoded(cursor)
    records, following = await to_thread.run_sync(jobs.store.list, owner, after, limit, status)
    page = {"jobs": [{**view(r), "report": None} for r in records], "next_cursor": _encoded(following)}
    return Response(json.dumps(page).encode(), media_type=JSON)


def _encoded(cursor: tuple[datetime, str] | None) -> str | None:
    """An opaque cursor: the last job's creation time and id, base64url."""
    if cursor is None:
        return None
    at, job_id = cursor
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{job_id}".encode()).decode().rstrip("=")


def _decoded(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, job_id = text.split("|")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or not job_id.startswith("job_"):
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        detail = "not a cursor this server gave (pass next_cursor unchanged)"
        raise invalid([FieldError(pointer="/query/cursor", detail=detail)]) from None
    return moment, job_id


@router.get(
    "/jobs/{id}",
    response_model=Job,
    summary="A job",
    description="Its status and progress; once succeeded, `report` is the report POST /v1/analyses would give.",
    responses=problem_responses(404, 422),
)
async def get_job(jobs: JobsDep, owner: OwnerDep, id: JobId) -> Response:
    record = await _record(jobs, owner, id)
    report = await to_thread.run_sync(jobs.store.report, owner, id) if record.status == SUCCEEDED else None
    return Response(job_json(record, report), media_type=JSON)


@router.get(
    "/jobs/{id}/report",
    response_model=AnalysisReport | SurveyReport,
    summary="A job's report",
    description="The stored report alone, byte for byte what POST /v1/analyses answers (timings apart); 409 while "
    "the job has not succeeded.",
    responses=problem_responses(404, 409, 422),
)
async def get_job_report(jobs: JobsDep, owner: OwnerDep, id: JobId) -> Response:
    record = await _record(jobs, owner, id)
    report = await to_thread.run_sync(jobs.store.report, owner, id) if record.status == SUCCEEDED else None
    if report is None:
        raise ProblemError(409, "Conflict", f"job {id} is {record.status}: it has no report")
    return Response(report, media_type=JSON)


@router.delete(
    "/jobs/{id}",
    response_model=Job,
    summary="Cancel a job",
    description="A queued job never runs; a running one stops (its compute worker is killed and replaced). "
    "409 for a job already finished.",
    responses=problem_responses(404, 409, 422),
)
async def cancel_job(jobs: JobsDep, owner: OwnerDep, id: JobId) -> Response:
    before = await _record(jobs, owner, id)
    if before.status in FINAL:
        raise ProblemError(409, "Conflict", f"job {id} is already {before.status}")
    record = await jobs.cancel(owner, id)
    if record is None:
        raise _not_found(id)
    if record.status != "cancelled":
        raise ProblemError(409, "Conflict", f"job {id} is already {record.status}")
    return Response(job_json(record), media_type=JSON)


@router.get(
    "/jobs/{id}/events",
    summary="A job's progress as server-sent events",
    description="`event: progress` with the Job (no report) at once and whenever its status or progress changes; "
    "after the one with a final status, `event: end` with the same Job, and the stream ends. A `: keep-alive` "
    "comment after JACSPEC_EVENTS_KEEP_ALIVE_SECONDS (15 by default) without any.",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}, **problem_responses(404, 422)},
)
async def job_events(settings: SettingsDep, jobs: JobsDep, owner: OwnerDep, id: JobId) -> StreamingResponse:
    first = await _record(jobs, owner, id)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    stream = _events(jobs, owner, first, settings.events_keep_alive_seconds)
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _events(jobs: Jobs, owner: str, record: JobRecord | None, keep_alive: float) -> AsyncIterator[bytes]:
    """The job's changes as events, read from the database every EVENTS_POLL_S, until a final status; a
    ``: keep-alive`` comment once ``keep_alive`` seconds of polls have told nothing new (rounded up to a poll)."""
    sent: Any = None
    quiet = 0.0
    while record is not None:
        data = view(record)
        shown = (data["status"], data["progress"]["done"], data["progress"]["total"], data["progress"]["unit"])
        if shown != sent:
            sent, quiet = shown, 0.0
            text = json.dumps({**data, "report": None})
            yield f"event: progress\ndata: {text}\n\n".encode()
            if record.status in FINAL:
                yield f"event: end\ndata: {text}\n\n".encode()
                return
        elif quiet >= keep_alive:
            quiet = 0.0
            yield b": keep-alive\n\n"
        await sleep(EVENTS_POLL_S)
        quiet += EVENTS_POLL_S
        record = await to_thread.run_sync(jobs.store.get, owner, record.id)
