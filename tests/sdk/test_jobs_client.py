"""``client.jobs`` and ``client.runs`` against a real server (``python -m api``, the session's): a job's report equals
``client.analyze``'s apart from timings, its events come in order to a final status, pages list every job, a
cancelled job raises JobError, a failed job raises the synchronous route's typed error, and a run's points compare."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

import jacspec
from jacspec._jobs import EventParser
from jacspec.models import AnalysisReport, AnalysisRequest
from tests.helpers import running_server

WAIT_S = 60.0


def chain(width: int, depth: int, probes: int = 8, **fields: Any) -> AnalysisRequest:
    """An orthogonal tanh chain of ``depth`` − 1 layers of ``width``."""
    init = {"widths": [width] * depth, "scheme": "orthogonal", "seed": 1}
    return AnalysisRequest.model_validate(
        {"network": {"activation": "tanh", "init": init}, "inputs": {"count": probes}, **fields}
    )


LONG = chain(384, 40, probes=16)
"""About forty seconds of one core: cancelled long before it could end."""


def without_timings(report: AnalysisReport) -> dict[str, Any]:
    dumped = report.model_dump()
    del dumped["meta"]["timings_ms"]
    return dumped


@pytest.fixture
def client(server_url: str) -> jacspec.Client:
    return jacspec.Client(base_url=server_url, max_retries=0)


def test_a_jobs_report_equals_analyze_and_its_events_end_final(client: jacspec.Client) -> None:
    request = chain(64, 6)
    job = client.jobs.create(request)
    assert job.status == "queued"
    assert job.id.startswith("job_")
    states = list(client.jobs.events(job.id))
    order = ["queued", "running", "succeeded"]
    assert [order.index(s.status) for s in states] == sorted(order.index(s.status) for s in states)
    assert states[-1].status == "succeeded"
    assert states[-1].progress.fraction == 1.0
    report = client.jobs.wait(job.id, timeout=WAIT_S)
    assert isinstance(report, AnalysisReport)
    synchronous = client.analyze(request.network, inputs=request.inputs, options=request.options)
    assert without_timings(report) == without_timings(synchronous)
    assert client.jobs.retrieve(job.id).report == report


@pytest.mark.anyio
async def test_the_async_client_has_the_same_jobs(server_url: str) -> None:
    async with jacspec.AsyncClient(base_url=server_url, max_retries=0) as client:
        job = await client.jobs.create(chain(32, 4))
        states = [state async for state in client.jobs.events(job.id)]
        assert states[-1].status == "succeeded"
        report = await client.jobs.wait(job.id, timeout=WAIT_S)
        assert isinstance(report, AnalysisReport)
        listed = [j.id async for j in client.jobs.list(limit=1, status="succeeded")]
        assert job.id in listed
        run = f"sdk-async-{uuid.uuid4().hex[:12]}"
        kept = await client.jobs.wait((await client.jobs.create(chain(32, 4, run=run, step=5))).id, timeout=WAIT_S)
        assert await client.runs.step(run, 5) == kept
        assert (await client.runs.retrieve(run)).steps == [5]
        compared = await client.runs.compare(run, 5, 5)
        assert all(layer.metrics["weight_norm"].log10_change == 0.0 for layer in compared.layers)
        event = await client.runs.add_event(run, step=5, kind="diverged", message="NaN", parameter="0.weight")
        assert (await client.runs.retrieve(run)).events == [event]
        assert run in [info.run async for info in client.runs.list(limit=1)]
        await client.runs.delete(run)
        with pytest.raises(jacspec.NotFoundError):
            await client.runs.retrieve(run)


def test_list_iterates_every_page_newest_first(client: jacspec.Client) -> None:
    ids = [client.jobs.create(chain(8, 3)).id for _ in range(3)]
    for job_id in ids:
        client.jobs.wait(job_id, timeout=WAIT_S, poll=0.05)
    listed = [job.id for job in client.jobs.list(limit=2)]
    assert len(listed) == len(set(listed))
    assert [job_id for job_id in listed if job_id in ids] == ids[::-1]
    succeeded = {job.id for job in client.jobs.list(limit=2, status="succeeded")}
    assert set(ids) <= succeeded
    assert not set(ids) & {job.id for job in client.jobs.list(status="failed")}


def test_a_cancelled_job_raises_job_error_and_cannot_be_cancelled_again(client: jacspec.Client) -> None:
    job = client.jobs.create(LONG)
    cancelled = client.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(jacspec.JobError, match="cancelled") as raised:
        client.jobs.wait(job.id, timeout=WAIT_S)
    assert raised.value.job.status == "cancelled"
    with pytest.raises(jacspec.ConflictError, match="cancelled"):
        client.jobs.cancel(job.id)
    assert [state.status for state in client.jobs.events(job.id)] == ["cancelled"]


def test_wait_runs_out_of_time_on_a_long_job(client: jacspec.Client) -> None:
    job = client.jobs.create(LONG)
    try:
        with pytest.raises(jacspec.JobTimeoutError) as raised:
            client.jobs.wait(job.id, timeout=0.2, poll=0.05)
        assert raised.value.job.status in {"queued", "running"}
    finally:
        client.jobs.cancel(job.id)


def test_a_failed_job_raises_the_typed_error_of_the_synchronous_route(client: jacspec.Client) -> None:
    # A weight whose spectral norm exceeds float64's range: refused by the numerics in the worker, not the checks.
    huge = [[1e308, 1e308], [1e308, 1e308]]
    request = {"network": {"activation": "tanh", "layers": [{"weight": huge}, {"weight": [[1.0, 0.0]]}]}}
    with pytest.raises(jacspec.UnprocessableEntityError) as synchronous:
        client.analyze(request["network"])
    job = client.jobs.create(request)
    with pytest.raises(jacspec.UnprocessableEntityError) as failed:
        client.jobs.wait(job.id, timeout=WAIT_S, poll=0.05)
    assert failed.value.status_code == 422
    assert failed.value.errors[0].pointer.startswith("/network/layers/0")
    assert failed.value.errors == synchronous.value.errors
    assert failed.value.type == synchronous.value.type


def test_an_invalid_request_is_refused_before_sending_and_an_unknown_job_is_404(client: jacspec.Client) -> None:
    with pytest.raises(pydantic.ValidationError, match="widths"):
        client.jobs.create({"network": {"activation": "tanh", "init": {"widths": [4, 0, 4]}}})
    with pytest.raises(jacspec.NotFoundError):
        client.jobs.retrieve("job_" + "0" * 32)


def test_runs_keep_the_jobs_points_and_compare_them(client: jacspec.Client) -> None:
    run = f"sdk-{uuid.uuid4().hex[:12]}"
    reports = []
    for step, gain in ((0, 0.5), (10, 2.0)):
        request = chain(16, 4, run=run, step=step)
        request.network.init.gain = gain  # type: ignore[union-attr]
        reports.append(client.jobs.wait(client.jobs.create(request).id, timeout=WAIT_S, poll=0.05))
    first, second = reports
    assert isinstance(first, AnalysisReport)
    assert isinstance(second, AnalysisReport)
    kept = client.runs.retrieve(run)
    assert kept.steps == [0, 10]
    assert kept.verdicts == [first.summary.verdict, second.summary.verdict]
    assert client.runs.step(run, 10) == second
    compared = client.runs.compare(run, 0, 10)
    assert (compared.a, compared.b) == (0, 10)
    for layer, a, b in zip(compared.layers, first.layers, second.layers, strict=True):
        norm = layer.metrics["weight_norm"]
        assert (norm.a, norm.b) == (a.weight_norm, b.weight_norm)
        assert norm.log10_change == pytest.approx(math.log10(4.0), abs=1e-12)  # σ = gain exactly: 2.0 / 0.5
    synchronous = client.analyze(chain(16, 4).network, inputs={"count": 8}, run=run)  # kept as step 11 (last + 1)
    assert client.runs.retrieve(run).steps == [0, 10, 11]
    assert without_timings(client.runs.step(run, 11)) == without_timings(synchronous)  # type: ignore[arg-type]
    event = client.runs.add_event(run, step=10, kind="error", message="a test event")
    assert client.runs.retrieve(run).events == [event]
    assert run in {info.run for info in client.runs.list(limit=1)}
    client.runs.delete(run)
    with pytest.raises(jacspec.NotFoundError):
        client.runs.retrieve(run)


class Recorded(httpx.SyncByteStream):
    """A response body read as it arrives, every chunk also kept in ``seen``."""

    def __init__(self, stream: httpx.SyncByteStream, seen: bytearray) -> None:
        self.stream, self.seen = stream, seen

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.stream:
            self.seen.extend(chunk)
            yield chunk

    def close(self) -> None:
        self.stream.close()


class Recording(httpx.BaseTransport):
    """httpx's own transport to the real server, keeping the bytes of every response body the client reads."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen = bytearray()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        stream = Recorded(response.stream, self.seen)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    def close(self) -> None:
        self.inner.close()


def test_events_pass_over_keep_alive_comments(tmp_path: Path) -> None:
    """A queued job (the server has no runner) streams `: keep-alive` comments every 0.3 s; ``jobs.events`` yields
    the queued state, nothing for the comments, then the cancelled state, and ends."""
    database = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = {"JACSPEC_JOB_RUNNERS": "0", "JACSPEC_EVENTS_KEEP_ALIVE_SECONDS": "0.3", "JACSPEC_DATABASE_URL": database}
    recording = Recording()
    with (
        running_server(**env) as url,
        httpx.Client(transport=recording, timeout=10.0) as http,
        ThreadPoolExecutor(1) as thread,
    ):
        client = jacspec.Client(base_url=url, max_retries=0, http_client=http)
        job = client.jobs.create(chain(8, 3))
        states = client.jobs.events(job.id)
        assert next(states).status == "queued"
        following = thread.submit(next, states)  # blocks reading the stream: comments only, until the cancel
        deadline = time.monotonic() + WAIT_S
        while bytes(recording.seen).count(b"\n: keep-alive\n\n") < 2:
            assert time.monotonic() < deadline, bytes(recording.seen)
            assert not following.done()
            time.sleep(0.05)
        jacspec.Client(base_url=url, max_retries=0).jobs.cancel(job.id)
        assert following.result(timeout=WAIT_S).status == "cancelled"
        assert list(states) == []
    seen = bytes(recording.seen)
    assert seen.index(b": keep-alive") < seen.index(b"event: end\n")


def test_the_event_parser_skips_comments_also_within_an_event() -> None:
    parser = EventParser()
    lines = [
        ": keep-alive",
        "",
        "event: progress",
        ": inside",
        'data: {"a": 1}',
        ":",
        "data: 2",
        "",
        ": keep-alive",
        "",
    ]
    assert [event for line in lines if (event := parser.feed(line)) is not None] == [("progress", '{"a": 1}\n2')]
