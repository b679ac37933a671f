"""``client.jobs``: analyses run in the background by the server (POST /v1/jobs and the routes under it).

    job = client.jobs.create({"network": {"activation": "tanh", "init": {"widths": [256] * 31}}})
    for state in client.jobs.events(job.id):         # server-sent events, until a final status
        print(state.status, state.progress.fraction)
    report = client.jobs.wait(job.id, timeout=600)   # the AnalysisReport (or SurveyReport)

A failed job's ``wait`` raises the :class:`~jacspec.APIStatusError` the synchronous route would have raised (its
``error`` problem, e.g. an UnprocessableEntityError with the pointer); a cancelled one raises
:class:`~jacspec.JobError`, a wait that runs out of time :class:`~jacspec.JobTimeoutError`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

import httpx
from pydantic import TypeAdapter

from jacspec._exceptions import JobError, JobTimeoutError, problem_error, status_error
from jacspec.models import AnalysisReport, AnalysisRequest, Job, JobList, SafetensorsRequest, SurveyReport
from jacspec.models.jobs import FINAL_STATUSES, JobStatus

if TYPE_CHECKING:
    from jacspec._client import AsyncClient, Client, Multipart
    from jacspec._response import APIResponse

Report = AnalysisReport | SurveyReport
REPORT: TypeAdapter[Report] = TypeAdapter(Report)
DEFAULT_POLL_S = 0.5
PAGE_LIMIT = 100


def create_body(
    request: AnalysisRequest | SafetensorsRequest | Mapping[str, Any] | None,
    weights: str | os.PathLike[str] | bytes | None,
) -> tuple[bytes | None, Multipart | None]:
    """(JSON body, None) for an AnalysisRequest; (None, multipart parts) with ``weights``, as
    ``analyze_safetensors`` sends them: part ``weights`` the file, part ``request`` a SafetensorsRequest."""
    if weights is None:
        if request is None:
            raise ValueError("jobs.create needs a request (an AnalysisRequest), or weights= a .safetensors file")
        return AnalysisRequest.model_validate(request).model_dump_json(exclude_none=True).encode(), None
    blob = weights if isinstance(weights, bytes) else open(weights, "rb").read()  # noqa: SIM115 - read at once
    part = SafetensorsRequest.model_validate(request or {}).model_dump_json(exclude_none=True)
    return None, {
        "weights": ("model.safetensors", blob, "application/octet-stream"),
        "request": (None, part, "application/json"),
    }


def list_path(limit: int, status: JobStatus | None, cursor: str | None) -> str:
    query: dict[str, Any] = {"limit": limit}
    if status is not None:
        query["status"] = status
    if cursor is not None:
        query["cursor"] = cursor
    return "/v1/jobs?" + urlencode(query)


class EventParser:
    """Server-sent events, a line at a time: ``feed`` gives (event, data) when a blank line ends one (comments
    such as ``: keep-alive`` are skipped)."""

    def __init__(self) -> None:
        self.event, self.data = "message", list[str]()

    def feed(self, line: str) -> tuple[str, str] | None:
        if not line:
            done = (self.event, "\n".join(self.data)) if self.data else None
            self.event, self.data = "message", []
            return done
        if not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                self.event = value
            elif field == "data":
                self.data.append(value)
        return None


def outcome(job: Job, response: httpx.Response) -> Report | None:
    """The report of a finished job, or raise why there is none; None while it is not finished."""
    if job.status not in FINAL_STATUSES:
        return None
    if job.status == "failed" and job.error is not None:
        raise problem_error(job.error, response)
    if job.status != "succeeded" or job.report is None:
        raise JobError(f"job {job.id} is {job.status}: it has no report", job)
    return job.report


class Jobs:
    """``client.jobs`` of a :class:`~jacspec.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        request: AnalysisRequest | SafetensorsRequest | Mapping[str, Any] | None = None,
        *,
        weights: str | os.PathLike[str] | bytes | None = None,
    ) -> Job:
        """POST /v1/jobs: the job (status queued), checked at once as POST /v1/analyses checks a request.
        ``request`` is an AnalysisRequest; with ``weights`` (a .safetensors path or its bytes), a
        SafetensorsRequest or None."""
        body, files = create_body(request, weights)
        return self._client._call("POST", "/v1/jobs", Job.model_validate_json, body=body, files=files)

    def retrieve(self, id: str) -> Job:
        """GET /v1/jobs/{id}: its status and progress, and its report once succeeded."""
        return self._client._call("GET", f"/v1/jobs/{id}", Job.model_validate_json)

    def list(self, *, limit: int = PAGE_LIMIT, status: JobStatus | None = None) -> Iterator[Job]:
        """GET /v1/jobs, every page of ``limit`` jobs in turn: newest first, without their reports."""
        cursor: str | None = None
        while True:
            page = self._client._call("GET", list_path(limit, status, cursor), JobList.model_validate_json)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, id: str) -> Job:
        """DELETE /v1/jobs/{id}: the job, cancelled (its work stopped); ConflictError if it had finished."""
        return self._client._call("DELETE", f"/v1/jobs/{id}", Job.model_validate_json)

    def events(self, id: str) -> Iterator[Job]:
        """GET /v1/jobs/{id}/events: the job (without report) at once and at each change, until a final status."""
        client = self._client
        headers = {**client._headers(body=False), "Accept": "text/event-stream"}
        with client._client.stream("GET", client._url(f"/v1/jobs/{id}/events"), headers=headers) as response:
            if not response.is_success:
                response.read()
                raise status_error(response)
            parser = EventParser()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None and event[0] == "end":
                    return
                if event is not None and event[0] == "progress":
                    yield Job.model_validate_json(event[1])

    def wait(self, id: str, *, timeout: float | None = None, poll: float = DEFAULT_POLL_S) -> Report:
        """The report once the job succeeded, reading it every ``poll`` seconds; raises the failed job's error
        (an APIStatusError), JobError if it was cancelled, JobTimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            raw = cast("APIResponse[Job]", self._client._raw()._call("GET", f"/v1/jobs/{id}", Job.model_validate_json))
            job = raw.parse()
            report = outcome(job, raw.http_response)
            if report is not None:
                return report
            if deadline is not None and time.monotonic() + poll > deadline:
                raise JobTimeoutError(f"job {id} is still {job.status} after {timeout} s", job)
            time.sleep(poll)


class AsyncJobs:
    """``client.jobs`` of an :class:`~jacspec.AsyncClient`: the methods of :class:`Jobs`, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        request: AnalysisRequest | SafetensorsRequest | Mapping[str, Any] | None = None,
        *,
        weights: str | os.PathLike[str] | bytes | None = None,
    ) -> Job:
        """POST /v1/jobs."""
        body, files = create_body(request, weights)
        return await self._client._call("POST", "/v1/jobs", Job.model_validate_json, body=body, files=files)

    async def retrieve(self, id: str) -> Job:
        """GET /v1/jobs/{id}."""
        return await self._client._call("GET", f"/v1/jobs/{id}", Job.model_validate_json)

    async def list(self, *, limit: int = PAGE_LIMIT, status: JobStatus | None = None) -> AsyncIterator[Job]:
        """GET /v1/jobs, every page in turn."""
        cursor: str | None = None
        while True:
            page = await self._client._call("GET", list_path(limit, status, cursor), JobList.model_validate_json)
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, id: str) -> Job:
        """DELETE /v1/jobs/{id}."""
        return await self._client._call("DELETE", f"/v1/jobs/{id}", Job.model_validate_json)

    async def events(self, id: str) -> AsyncIterator[Job]:
        """GET /v1/jobs/{id}/events, until a final status."""
        client = self._client
        headers = {**client._headers(body=False), "Accept": "text/event-stream"}
        async with client._client.stream("GET", client._url(f"/v1/jobs/{id}/events"), headers=headers) as response:
            if not response.is_success:
                await response.aread()
                raise status_error(response)
            parser = EventParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None and event[0] == "end":
                    return
                if event is not None and event[0] == "progress":
                    yield Job.model_validate_json(event[1])

    async def wait(self, id: str, *, timeout: float | None = None, poll: float = DEFAULT_POLL_S) -> Report:
        """The report once the job succeeded; the same errors as :meth:`Jobs.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            raw = cast(
                "APIResponse[Job]", await self._client._raw()._call("GET", f"/v1/jobs/{id}", Job.model_validate_json)
            )
            job = raw.parse()
            report = outcome(job, raw.http_response)
            if report is not None:
                return report
            if deadline is not None and time.monotonic() + poll > deadline:
                raise JobTimeoutError(f"job {id} is still {job.status} after {timeout} s", job)
            await asyncio.sleep(poll)


__all__ = ["REPORT", "AsyncJobs", "Jobs", "Report"]
