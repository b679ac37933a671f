"""The jobs of one server process: accepted, run by ``job_runners`` runners, watched, cancelled.

A runner claims the oldest queued job in the database (any replica's), reads its stored request again through the
checks of POST /v1/analyses with the job limits (``Settings.for_jobs()``), runs it on the executor and stores the
report bytes, or the problem the synchronous route would have answered. While it runs, a heartbeat writes its
progress (at most every HEARTBEAT_S) and renews its lease; a heartbeat that finds the job no longer running (it
was cancelled, here or on another replica) cancels the work. A sweeper marks failed (``job-interrupted``) the
running jobs whose lease has expired — their server died — and deletes finished jobs older than
JACSPEC_RETENTION_SECONDS. At shutdown a job still running goes back to the queue.

A runner claims a job only once the executor is ready (``Executor.ready``: a cluster's scheduler connected), so
that while the cluster is away the jobs stay queued instead of failing one after another; a job claimed just as
the connection went (``UnavailableError``: nothing of it ran) goes back to the queue.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from anyio import CancelScope, Event, create_task_group, move_on_after, sleep, to_thread
from fastapi import FastAPI
from sqlalchemy.orm import Session
from starlette.requests import Request

from api import work
from api.encode import EncodedReport
from api.jobs.executor import Executor, UnavailableError
from api.problems import ProblemError, from_invalid_input
from api.settings import Settings
from api.store import runs
from api.store.base import in_session, now
from api.store.jobs import RUNNING, SUCCEEDED, Bound, Claimed, JobRecord, JobStore
from api.worker import Progress
from jacspec.models import Problem
from jacspec.models.jobs import INTERRUPTED
from service.errors import InvalidInputError

logger = logging.getLogger("jacspec.jobs")

HEARTBEAT_S = 0.3
"""How often a running job's progress is written (when it changed)."""
IDLE_POLL_S = 0.5
"""How often an idle runner looks for queued jobs (another replica's included); a job submitted here wakes it."""
PURGE_EVERY_S = 60.0
INTERRUPTED_PROBLEM = Problem(
    type=INTERRUPTED,
    title="Job interrupted",
    status=503,
    detail="the server stopped while this job ran; submit it again",
)


def rfc3339(moment: Any) -> str | None:
    """``2026-01-01T12:00:00.000000Z`` (UTC), or None."""
    return None if moment is None else str(moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def view(record: JobRecord) -> dict[str, Any]:
    """The Job of ``record``, without its report, as JSON-ready data.

    fraction = done / total (1 once succeeded); seconds_left = the request's estimated seconds × (1 − fraction)
    while it runs.
    """
    fraction = 1.0 if record.status == SUCCEEDED else (record.done / record.total if record.total else 0.0)
    fraction = min(max(fraction, 0.0), 1.0)
    left = None
    if record.status == RUNNING and record.estimate_seconds is not None:
        left = record.estimate_seconds * (1.0 - fraction)
    return {
        "id": record.id,
        "status": record.status,
        "created_at": rfc3339(record.created_at),
        "started_at": rfc3339(record.started_at),
        "finished_at": rfc3339(record.finished_at),
        "progress": {
            "done": record.done,
            "total": record.total,
            "unit": record.unit,
            "fraction": fraction,
            "seconds_left": left,
        },
        "run": record.run,
        "step": record.step,
        "error": None if record.error is None else json.loads(record.error),
    }


def job_json(record: JobRecord, report: bytes | None = None) -> bytes:
    """The Job's JSON, with the stored ``report`` bytes spliced in verbatim as ``report`` (null without)."""
    data = view(record)
    error = data.pop("error")
    head = json.dumps(data, separators=(",", ":"))[:-1].encode()
    return head + b',"report":' + (report or b"null") + b',"error":' + json.dumps(error).encode() + b"}"


def problem_json(problem: Problem) -> str:
    return problem.model_dump_json(exclude_none=True)


def replayed(app: FastAPI, content_type: str, body: bytes) -> Request:
    """A request of ``app`` whose headers and body are a stored job's: what POST /v1/analyses's checks read."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/jobs",
        "raw_path": b"/v1/jobs",
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())],
        "app": app,
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


@dataclass
class _Live:
    """A running job's latest progress, as its worker told it (written to the database by the heartbeat), with
    the estimated seconds its worker told once (kept through the later progress)."""

    progress: Progress | None = None

    def told(self, progress: Progress) -> None:
        if progress.seconds is None and self.progress is not None:
            progress = replace(progress, seconds=self.progress.seconds)
        self.progress = progress


class Jobs:
    """The jobs of this process: ``store`` (the database), ``executor`` (where they compute), the settings."""

    def __init__(self, app: FastAPI, settings: Settings, store: JobStore, executor: Executor) -> None:
        self.app = app
        self.settings = settings
        self.limits = settings.for_jobs()
        self.store = store
        self.executor = executor
        self.scopes: dict[str, CancelScope] = {}
        """The cancel scope of each job running here, by id."""
        self._wakeup = Event()

    async def check(self, content_type: str, body: bytes) -> work.AnalysisWork:
        """The stored request read as POST /v1/analyses reads it, with the job limits: its 4xx at once."""
        return await work.receive(replayed(self.app, content_type, body), self.limits, None)

    async def submit(
        self, owner: str, content_type: str, body: bytes, pending: work.AnalysisWork, bound: Bound | None = None
    ) -> JobRecord:
        """A new queued job of ``owner`` (``PendingError`` when it would pass ``bound``); an idle runner here is
        woken at once."""
        run, step = await work.run_and_step(pending)
        record = await to_thread.run_sync(self.store.create, owner, content_type, body, run, step, bound)
        self._wakeup.set()
        self._wakeup = Event()
        return record

    async def cancel(self, owner: str, job_id: str) -> JobRecord | None:
        """Cancel the job (if queued or running) and, when it runs here, its work at once."""
        record = await to_thread.run_sync(self.store.cancel, owner, job_id)
        scope = self.scopes.get(job_id)
        if scope is not None and record is not None and record.status == "cancelled":
            scope.cancel()
        return record

    async def serve(self) -> None:
        """The runners and the sweeper, until cancelled (the app's lifespan runs this)."""
        async with create_task_group() as group:
            group.start_soon(self._sweeper)
            for _ in range(self.settings.job_runners):
                group.start_soon(self._runner)

    async def _sweeper(self) -> None:
        """Fail the jobs whose server died (lease expired), every half lease; purge old finished jobs."""
        error = problem_json(INTERRUPTED_PROBLEM)
        purged_at = -math.inf
        while True:
            failed = await to_thread.run_sync(self.store.interrupted, error)
            if failed:
                logger.warning("%d job(s) interrupted by a server that stopped were marked failed", failed)
            if time.monotonic() - purged_at > PURGE_EVERY_S:
                await self.purge()
                purged_at = time.monotonic()
            await sleep(max(self.settings.job_lease_seconds / 2, 0.2))

    async def purge(self) -> int:
        """Delete the finished jobs, run points and run events older than JACSPEC_RETENTION_SECONDS; how many."""
        cutoff = now() - timedelta(seconds=self.settings.retention_seconds)
        points = await in_session(self.store.engine, lambda session: runs.purge_runs(session, cutoff))
        return await to_thread.run_sync(self.store.purge, cutoff) + points

    async def _runner(self) -> None:
        """Claim the oldest queued job and run it, over and over, each time once the executor is ready."""
        while True:
            await self.executor.ready()
            claimed = await to_thread.run_sync(self.store.claim_next)
            if claimed is None:
                with move_on_after(IDLE_POLL_S):
                    await self._wakeup.wait()
                continue
            await self._run(claimed)

    async def _run(self, claimed: Claimed) -> None:
        """Run one claimed job to its end: succeeded, failed, or cancelled (and then not written over)."""
        scope = CancelScope()
        self.scopes[claimed.id] = scope
        finished = False
        try:
            with scope:
                await self._computed(claimed, scope)
            finished = True
        finally:
            del self.scopes[claimed.id]
            if not finished and not scope.cancel_called:  # the server is stopping: run it again after
                with CancelScope(shield=True):
                    await to_thread.run_sync(self.store.requeue, claimed.id)

    async def _computed(self, claimed: Claimed, scope: CancelScope) -> None:
        request = replayed(self.app, claimed.content_type, claimed.request)
        live = _Live()
        try:
            pending = await work.receive(request, self.limits, None)
            await to_thread.run_sync(self.store.progress, claimed.id, 0, None, "layers", pending.seconds)
            report = await self._watched(claimed.id, pending, request, live, scope)
        except UnavailableError as exc:
            logger.info("job %s goes back to the queue: %s", claimed.id, exc)
            await to_thread.run_sync(self.store.requeue, claimed.id)
            return
        except (ProblemError, InvalidInputError) as exc:
            problem = exc.problem if isinstance(exc, ProblemError) else from_invalid_input(exc).problem
            await to_thread.run_sync(self.store.fail, claimed.id, problem_json(problem))
            return
        except Exception:
            logger.exception("job %s failed unexpectedly", claimed.id)
            problem = Problem(
                title="Internal Server Error", status=500, detail="an unexpected error; it has been logged"
            )
            await to_thread.run_sync(self.store.fail, claimed.id, problem_json(problem))
            return
        last = live.progress
        parts = None if last is None else (last.done, last.total, last.unit)
        await self._keep_point(claimed, report.json)
        await to_thread.run_sync(self.store.succeed, claimed.id, report.json, parts)

    async def _watched(
        self, job_id: str, pending: work.AnalysisWork, request: Request, live: _Live, scope: CancelScope
    ) -> EncodedReport:
        """The executor's report, the heartbeat beside it; its error raised as itself (not in an exception group)."""
        failure: Exception | None = None
        async with create_task_group() as group:
            group.start_soon(self._heartbeat, job_id, live, scope)
            try:
                args = (pending.payload, *pending.args, work.server_timings(request))
                report = await self.executor.run(pending.function, args, pending.deadline, live.told)
            except Exception as exc:
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return report

    async def _keep_point(self, claimed: Claimed, report: bytes) -> None:
        """A job that names a run keeps its report as the point (run, step) too, with its job id, before the job is
        marked succeeded (so that a client who sees it succeeded finds the point). A storage failure is logged: the
        job still succeeds with its report."""
        run, step = claimed.run, claimed.step
        if run is None:
            return

        def keep(session: Session) -> int:
            return runs.record_point(session, claimed.owner, run, step, report, job_id=claimed.id)

        try:
            await in_session(self.store.engine, keep)
        except Exception:
            logger.exception("the report of job %s could not be stored as a point of run %r", claimed.id, run)

    async def _heartbeat(self, job_id: str, live: _Live, scope: CancelScope) -> None:
        """Write the job's progress when it changed, else renew its lease every third of it; cancel the work once
        the job is no longer running."""
        written: Progress | None = None
        renewed = time.monotonic()
        while True:
            await sleep(HEARTBEAT_S)
            latest = live.progress
            if latest is not None and latest != written:
                alive = await to_thread.run_sync(
                    self.store.progress, job_id, latest.done, latest.total, latest.unit, latest.seconds
                )
                written = latest
            elif time.monotonic() - renewed > self.settings.job_lease_seconds / 3:
                alive = await to_thread.run_sync(self.store.renew, job_id)
            else:
                continue
            renewed = time.monotonic()
            if not alive:
                scope.cancel()
                return
