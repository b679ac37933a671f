"""``client.runs``: the reports kept as points (run, step) of a training run, and the run's events.

client.analyze(network, run="mlp-1", step=100)          # or a job, or jacspec.torch.Monitor
run = client.runs.retrieve("mlp-1")                      # every layer's metrics over the steps
change = client.runs.compare("mlp-1", 0, 100)            # two steps side by side
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from jacspec._jobs import REPORT, Report
from jacspec.models import Run, RunComparison, RunEvent, RunEventRequest, RunList
from jacspec.models.runs import EventKind, RunInfo

if TYPE_CHECKING:
    from jacspec._client import AsyncClient, Client

PAGE_LIMIT = 100


def _run(run: str) -> str:
    return "/v1/runs/" + quote(run, safe="")


def _list_path(limit: int, cursor: str | None) -> str:
    query: dict[str, Any] = {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
    return "/v1/runs?" + urlencode(query)


def _event_body(step: int, kind: EventKind, message: str, parameter: str | None) -> bytes:
    event = RunEventRequest(step=step, kind=kind, message=message, parameter=parameter)
    return event.model_dump_json(exclude_none=True).encode()


def _nothing(_: bytes) -> None:
    return None


class Runs:
    """``client.runs`` of a :class:`~jacspec.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, *, limit: int = PAGE_LIMIT) -> Iterator[RunInfo]:
        """GET /v1/runs, every page in turn: the runs, most recently updated first."""
        cursor: str | None = None
        while True:
            page = self._client._call("GET", _list_path(limit, cursor), RunList.model_validate_json)
            yield from page.runs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def retrieve(self, run: str) -> Run:
        """GET /v1/runs/{run}: its steps, verdicts, each layer's metrics over the steps, its events."""
        return self._client._call("GET", _run(run), Run.model_validate_json)

    def step(self, run: str, step: int) -> Report:
        """GET /v1/runs/{run}/steps/{step}: the report kept at that step (an AnalysisReport or SurveyReport)."""
        return self._client._call("GET", f"{_run(run)}/steps/{step}", REPORT.validate_json)

    def compare(self, run: str, a: int, b: int) -> RunComparison:
        """GET /v1/runs/{run}/compare?a=&b=: the two steps layer by layer, with each metric's log10 change."""
        path = f"{_run(run)}/compare?" + urlencode({"a": a, "b": b})
        return self._client._call("GET", path, RunComparison.model_validate_json)

    def add_event(
        self, run: str, *, step: int, kind: EventKind, message: str, parameter: str | None = None
    ) -> RunEvent:
        """POST /v1/runs/{run}/events: something that happened at ``step`` (kind diverged or error)."""
        body = _event_body(step, kind, message, parameter)
        return self._client._call("POST", f"{_run(run)}/events", RunEvent.model_validate_json, body=body)

    def delete(self, run: str) -> None:
        """DELETE /v1/runs/{run}: its points and events."""
        self._client._call("DELETE", _run(run), _nothing)


class AsyncRuns:
    """``client.runs`` of an :class:`~jacspec.AsyncClient`: the methods of :class:`Runs`, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, *, limit: int = PAGE_LIMIT) -> AsyncIterator[RunInfo]:
        """GET /v1/runs, every page in turn."""
        cursor: str | None = None
        while True:
            page = await self._client._call("GET", _list_path(limit, cursor), RunList.model_validate_json)
            for info in page.runs:
                yield info
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def retrieve(self, run: str) -> Run:
        """GET /v1/runs/{run}."""
        return await self._client._call("GET", _run(run), Run.model_validate_json)

    async def step(self, run: str, step: int) -> Report:
        """GET /v1/runs/{run}/steps/{step}."""
        return await self._client._call("GET", f"{_run(run)}/steps/{step}", REPORT.validate_json)

    async def compare(self, run: str, a: int, b: int) -> RunComparison:
        """GET /v1/runs/{run}/compare?a=&b=."""
        path = f"{_run(run)}/compare?" + urlencode({"a": a, "b": b})
        return await self._client._call("GET", path, RunComparison.model_validate_json)

    async def add_event(
        self, run: str, *, step: int, kind: EventKind, message: str, parameter: str | None = None
    ) -> RunEvent:
        """POST /v1/runs/{run}/events."""
        body = _event_body(step, kind, message, parameter)
        return await self._client._call("POST", f"{_run(run)}/events", RunEvent.model_validate_json, body=body)

    async def delete(self, run: str) -> None:
        """DELETE /v1/runs/{run}."""
        await self._client._call("DELETE", _run(run), _nothing)


__all__ = ["AsyncRuns", "Runs"]
