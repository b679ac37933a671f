"""Runs: GET /v1/runs, GET /v1/runs/{run}, GET /v1/runs/{run}/steps/{step}, GET /v1/runs/{run}/compare,
POST /v1/runs/{run}/events, DELETE /v1/runs/{run}. Thin: the queries are ``api.store.runs`` (each in a thread),
the answers ``api.runs``; every one is the request owner's (another key's run is a 404 like an unknown one)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api import runs as answers
from api.deps import EngineDep
from api.ingest.body import json_body
from api.openapi import request_body
from api.owner import OwnerDep
from api.problems import ProblemError, invalid, problem_responses
from api.store import runs as store
from api.store.base import in_session
from jacspec.models import (
    AnalysisReport,
    FieldError,
    Run,
    RunComparison,
    RunEvent,
    RunEventRequest,
    RunList,
    SurveyReport,
)
from jacspec.models.analysis import MAX_STEP, RUN_PATTERN

logger = logging.getLogger("jacspec")
router = APIRouter(prefix="/v1", tags=["runs"])
T = TypeVar("T")

RunPath = Annotated[str, Path(pattern=RUN_PATTERN, description="The run's name.")]
StepPath = Annotated[int, Path(ge=0, le=MAX_STEP, description="The step.")]
StepQuery = Annotated[int, Query(ge=0, le=MAX_STEP)]
RUN_POINT_HEADER = "Jacspec-Run-Step"
RUN_ERROR_HEADER = "Jacspec-Run-Error"


def rfc3339(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with microseconds: ``2026-12-03T16:11:03.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _not_found(run: str, step: int | None = None) -> ProblemError:
    what = f"run {run!r}" if step is None else f"step {step} of run {run!r}"
    return ProblemError(404, "Not Found", f"{what} is not there")


def encode_cursor(cursor: tuple[datetime, str]) -> str:
    """The opaque cursor of ``(updated_at, run)``: base64url of ``["<RFC 3339>", "<run>"]``."""
    return base64.urlsafe_b64encode(json.dumps([rfc3339(cursor[0]), cursor[1]]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(updated_at, run)`` of a cursor :func:`encode_cursor` made; a 422 at /query/cursor otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, run = json.loads(raw)
        moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if not isinstance(run, str):
            raise TypeError(run)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid(
            [FieldError(pointer="/query/cursor", detail="not a cursor of this server: pass next_cursor as it came")]
        ) from None
    return moment, run


def _event(record: store.EventRecord) -> dict[str, Any]:
    return {
        "step": record.step,
        "kind": record.kind,
        "message": record.message,
        "parameter": record.parameter,
        "created_at": rfc3339(record.created_at),
    }


@router.get("/runs", response_model=RunList, summary="List runs", responses=problem_responses(422))
async def list_runs(
    engine: EngineDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    """The runs, most recently updated first; `next_cursor` fetches the next page."""
    after = None if cursor is None else decode_cursor(cursor)
    records, following = await in_session(engine, partial(store.list_runs, owner=owner, cursor=after, limit=limit))
    runs = [
        {
            "run": r.run,
            "points": r.points,
            "first_step": r.first_step,
            "last_step": r.last_step,
            "last_verdict": r.last_verdict,
            "updated_at": rfc3339(r.updated_at),
        }
        for r in records
    ]
    return {"runs": runs, "next_cursor": None if following is None else encode_cursor(following)}


def _run_answer(session: Session, owner: str, run: str) -> dict[str, Any] | None:
    stored = store.points(session, owner, run)
    events = [_event(e) for e in store.events(session, owner, run)]
    if not stored and not events:
        return None
    parsed = [answers.parse_point(p.step, rfc3339(p.created_at), p.report) for p in stored]
    return answers.run_answer(run, parsed, events)


@router.get("/runs/{run}", response_model=Run, summary="A run over its steps", responses=problem_responses(404, 422))
async def get_run(run: RunPath, engine: EngineDep, owner: OwnerDep) -> Response:
    """Per layer, each metric over the steps (aligned with `steps`, null where absent), with the verdicts, the
    summary's numbers and the events."""
    answer = await in_session(engine, lambda s: _run_answer(s, owner, run))
    if answer is None:
        raise _not_found(run)
    return Response(json.dumps(answer, allow_nan=False), media_type="application/json")


@router.get(
    "/runs/{run}/steps/{step}",
    summary="One step's report",
    response_model=AnalysisReport | SurveyReport,
    responses=problem_responses(404, 422),
)
async def get_step(run: RunPath, step: StepPath, engine: EngineDep, owner: OwnerDep) -> Response:
    """The report stored at that step, as /v1/analyses answered it."""
    found = await in_session(engine, partial(store.point, owner=owner, run=run, step=step))
    if found is None:
        raise _not_found(run, step)
    return Response(found.report, media_type="application/json")


@router.get(
    "/runs/{run}/compare",
    response_model=RunComparison,
    summary="Compare two steps",
    responses=problem_responses(404, 422),
)
async def compare(run: RunPath, a: StepQuery, b: StepQuery, engine: EngineDep, owner: OwnerDep) -> dict[str, Any]:
    """Each layer's metrics at steps a and b and their log10 change (b − a for a *_log10 metric, log10(b/a) for
    a plain norm)."""

    def query(session: Session) -> tuple[store.StoredPoint | None, store.StoredPoint | None]:
        return store.point(session, owner, run, a), store.point(session, owner, run, b)

    found_a, found_b = await in_session(engine, query)
    if found_a is None:
        raise _not_found(run, a)
    if found_b is None:
        raise _not_found(run, b)
    parsed = [answers.parse_point(p.step, rfc3339(p.created_at), p.report) for p in (found_a, found_b)]
    return answers.comparison(run, parsed[0], parsed[1])


@router.post(
    "/runs/{run}/events",
    status_code=201,
    response_model=RunEvent,
    summary="Add an event to a run",
    openapi_extra=request_body(RunEventRequest),
    responses=problem_responses(400, 415, 422),
)
async def add_event(
    run: RunPath,
    body: Annotated[RunEventRequest, Depends(json_body(RunEventRequest))],
    engine: EngineDep,
    owner: OwnerDep,
) -> dict[str, Any]:
    """Something that happened at a step (a diverged model, naming the parameter); shown in GET /v1/runs/{run}."""
    record = await in_session(
        engine, lambda s: store.add_event(s, owner, run, body.step, body.kind, body.message, body.parameter)
    )
    return _event(record)


@router.delete("/runs/{run}", status_code=204, summary="Delete a run", responses=problem_responses(404, 422))
async def delete_run(run: RunPath, engine: EngineDep, owner: OwnerDep) -> Response:
    """Delete the run's points and events."""
    if not await in_session(engine, partial(store.delete_run, owner=owner, run=run)):
        raise _not_found(run)
    return Response(status_code=204)


async def keep_point(
    engine: Engine, owner: str, run: str, step: int | None, report: bytes, headers: dict[str, str]
) -> None:
    """Store a computed report as the point (run, step), in a thread; the step kept goes in ``headers``
    (``Jacspec-Run-Step``). A storage failure is logged and told in ``Jacspec-Run-Error``; the computed answer is
    answered as it is, never turned into a 5xx."""
    try:
        kept = await in_session(engine, lambda s: store.record_point(s, owner, run, step, report))
    except Exception:
        logger.exception("the report of run %r could not be stored as a point", run)
        headers[RUN_ERROR_HEADER] = "the report was not stored as a point of the run; it has been logged"
        return
    headers[RUN_POINT_HEADER] = str(kept)
