"""/v1/jobs in-process, on SQLite and on a real PostgreSQL server: the report equals POST /v1/analyses's (timings
apart), progress arrives as server-sent events, a failure carries the synchronous route's problem, a cancelled job
frees its worker, another key's job is a 404, pages cover every job once, and bad parameters are 4xx."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from safetensors.numpy import save

from api.compute import SHARED_BYTES, ComputePool
from tests.helpers import running_server, served

pytestmark = pytest.mark.anyio

TIMINGS = re.compile(rb'"timings_ms":\{[^{}]*\}')
FINAL = {"succeeded", "failed", "cancelled"}
WAIT_S = 60.0


def chain(width: int, depth: int, probes: int = 16) -> dict[str, Any]:
    """An orthogonal tanh chain of ``depth`` − 1 layers of ``width``."""
    init = {"widths": [width] * depth, "scheme": "orthogonal", "seed": 1}
    return {"network": {"activation": "tanh", "init": init}, "inputs": {"count": probes}}


SMALL = chain(16, 5)
MEDIUM = chain(256, 24)
"""About two seconds of one core: long enough for progress to be seen between its stages."""
LONG = chain(384, 40)
"""About forty seconds of one core: a job that is cancelled long before it could end."""


def without_timings(raw: bytes) -> bytes:
    """The report's bytes with its ``timings_ms`` object cut out (the one thing that differs run to run)."""
    cut, count = TIMINGS.subn(b"", raw)
    assert count == 1
    return cut


def parsed_without_timings(raw: bytes) -> Any:
    report = json.loads(raw)
    del report["meta"]["timings_ms"]
    return report


@pytest.fixture
async def jobs_app(database_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with served(database_url=database_url, compute_workers=1) as pair:
        yield pair


async def submit(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> str:
    response = await client.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["report"] is None
    return str(job["id"])


async def wait_for(client: httpx.AsyncClient, job_id: str, statuses: set[str], **headers: str) -> dict[str, Any]:
    """The job once its status is one of ``statuses`` (fails after WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        await anyio.sleep(0.05)


async def events(client: httpx.AsyncClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (event, data) of the job's stream, to its end."""
    seen: list[tuple[str, dict[str, Any]]] = []
    with anyio.fail_after(WAIT_S):
        async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((name, json.loads(line.removeprefix("data: "))))
    return seen


def worker_pids(pool: ComputePool) -> set[int | None]:
    return {worker.process.pid for worker in (*pool.idle, *pool.running)}


async def test_job_report_equals_the_synchronous_report_and_progress_is_streamed(
    jobs_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = jobs_app
    job_id = await submit(client, MEDIUM)
    stream = await events(client, job_id)
    synchronous = await client.post("/v1/analyses", json=MEDIUM)
    assert synchronous.status_code == 200

    names = [name for name, _ in stream]
    assert names[-2:] == ["progress", "end"]
    assert set(names[:-1]) == {"progress"}
    progress = [data["progress"] for _, data in stream]
    layers = len(MEDIUM["network"]["init"]["widths"]) - 1
    total = 2 * layers + 1  # each distinct weight's norm, each layer's Jacobian, the backward pass
    under_way = [p for (_, data), p in zip(stream, progress, strict=True) if data["status"] == "running" and p["total"]]
    assert any(0 < p["done"] < p["total"] for p in under_way), progress
    assert all(p["total"] == total and p["unit"] == "stages" for p in under_way)
    assert all(0 < p["fraction"] < 1 and p["seconds_left"] is not None for p in under_way if p["done"] < total)
    dones = [p["done"] for p in progress]
    assert dones == sorted(dones)
    last = stream[-1][1]
    assert last["status"] == "succeeded"
    assert last["progress"]["done"] == total
    assert last["progress"]["fraction"] == 1.0

    report = await client.get(f"/v1/jobs/{job_id}/report")
    assert report.status_code == 200
    assert parsed_without_timings(report.content) == parsed_without_timings(synchronous.content)
    assert without_timings(report.content) == without_timings(synchronous.content)
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "succeeded"
    assert job["report"] == json.loads(report.content)
    assert job["started_at"] <= job["finished_at"]


async def test_a_body_validated_in_the_worker_gets_its_seconds_left_once_validated(
    jobs_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = jobs_app
    body = json.dumps(MEDIUM).encode() + b" " * SHARED_BYTES  # whitespace: too large to validate in the server
    created = await client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert created.status_code == 202, created.text
    stream = await events(client, created.json()["id"])
    assert stream[-1][1]["status"] == "succeeded"
    under_way = [data["progress"] for _, data in stream if data["status"] == "running" and data["progress"]["total"]]
    assert under_way  # once the worker has validated the body
    assert all(p["seconds_left"] is not None for p in under_way), under_way
    lefts = [p["seconds_left"] for p in under_way]
    assert lefts == sorted(lefts, reverse=True)  # the estimate × (1 − fraction), counting down


async def test_a_failed_job_carries_the_problem_of_the_synchronous_route(
    jobs_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = jobs_app
    # A weight whose spectral norm exceeds float64's range: refused by the numerics in the worker, not by the checks.
    huge = [[1e308, 1e308], [1e308, 1e308]]
    body = {"network": {"activation": "tanh", "layers": [{"weight": huge}, {"weight": [[1.0, 0.0]]}]}}
    synchronous = await client.post("/v1/analyses", json=body)
    assert synchronous.status_code == 422
    job = await wait_for(client, await submit(client, body), FINAL)
    assert job["status"] == "failed"
    expected = synchronous.json()
    del expected["request_id"]
    assert job["error"] == expected
    assert job["error"]["errors"][0]["pointer"].startswith("/network/layers/0")
    missing = await client.get(f"/v1/jobs/{job['id']}/report")
    assert missing.status_code == 409
    assert "failed" in missing.json()["detail"]


async def test_a_request_the_checks_refuse_is_refused_at_once(jobs_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = jobs_app
    refused = await client.post("/v1/jobs", json={"network": {"activation": "tanh"}, "bogus": 1})
    synchronous = await client.post("/v1/analyses", json={"network": {"activation": "tanh"}, "bogus": 1})
    assert refused.status_code == synchronous.status_code == 422
    assert refused.json()["errors"] == synchronous.json()["errors"]
    assert (await client.get("/v1/jobs")).json()["jobs"] == []


async def running_job(client: httpx.AsyncClient, pool: ComputePool) -> str:
    """The id of a LONG job submitted, once it runs in one of the pool's workers."""
    job_id = await submit(client, LONG)
    await wait_for(client, job_id, {"running"})
    with anyio.fail_after(WAIT_S):
        while not pool.running:  # the runner has taken a worker
            await anyio.sleep(0.02)
    return job_id


async def test_cancel_stops_a_running_job_and_frees_its_worker(jobs_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = jobs_app
    pool: ComputePool = app.state.compute
    before = worker_pids(pool)
    job_id = await running_job(client, pool)
    (taken,) = {worker.process.pid for worker in pool.running}
    cancelled = await client.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    with anyio.fail_after(WAIT_S):
        while pool.limiter.borrowed_tokens:  # the job's worker killed and replaced, then its token given back
            await anyio.sleep(0.02)
    after = worker_pids(pool)
    assert len(after) == len(before) == 2  # compute_workers=1, and one more for the job runner
    assert taken in before
    assert taken not in after
    small = await client.post("/v1/analyses", json=SMALL)
    assert small.status_code == 200
    await anyio.sleep(0.5)
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "cancelled"
    assert job["report"] is None
    again = await client.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    follow = await wait_for(client, await submit(client, SMALL), FINAL)
    assert follow["status"] == "succeeded"


async def test_a_running_job_leaves_a_worker_to_the_synchronous_route(database_url: str) -> None:
    """JACSPEC_COMPUTE_WORKERS=1 with one job runner: the pool has a second worker, so an analysis posted while a
    long job runs is answered at once rather than refused once its short queue wait is over."""
    settings = {"compute_workers": 1, "queue_timeout": 0.2, "queue_size": 1}
    async with served(database_url=database_url, **settings) as (app, client):
        pool: ComputePool = app.state.compute
        job_id = await running_job(client, pool)
        small = await client.post("/v1/analyses", json=SMALL)
        assert small.status_code == 200, small.text
        assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "running"
        assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 200


@pytest.fixture
async def queued_only(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose jobs are never run (no runner), with two API keys."""
    async with served(database_url=database_url, compute_workers=1, job_runners=0, api_keys=["k1", "k2"]) as (_, c):
        yield c


async def test_another_keys_job_answers_404(queued_only: httpx.AsyncClient) -> None:
    client = queued_only
    mine, theirs = {"Authorization": "Bearer k1"}, {"X-API-Key": "k2"}
    job_id = await submit(client, SMALL, **mine)
    assert (await client.get(f"/v1/jobs/{job_id}", headers=mine)).status_code == 200
    unknown = "job_" + "0" * 32
    for method, path in [
        ("GET", ""),
        ("GET", "/report"),
        ("GET", "/events"),
        ("DELETE", ""),
    ]:
        other = await client.request(method, f"/v1/jobs/{job_id}{path}", headers=theirs)
        absent = await client.request(method, f"/v1/jobs/{unknown}{path}", headers=mine)
        assert other.status_code == absent.status_code == 404, (method, path)
        assert other.json()["title"] == absent.json()["title"]
    assert (await client.get("/v1/jobs", headers=theirs)).json()["jobs"] == []
    assert [j["id"] for j in (await client.get("/v1/jobs", headers=mine)).json()["jobs"]] == [job_id]
    still = (await client.get(f"/v1/jobs/{job_id}", headers=mine)).json()
    assert still["status"] == "queued"  # the other key's DELETE did nothing


async def test_pages_give_every_job_once_newest_first(queued_only: httpx.AsyncClient) -> None:
    client, key = queued_only, {"X-API-Key": "k1"}
    ids = [await submit(client, SMALL, **key) for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params, headers=key)).json()
        pages += 1
        assert len(page["jobs"]) <= 2
        assert all(job["report"] is None for job in page["jobs"])
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ids[::-1]
    queued = (await client.get("/v1/jobs", params={"status": "queued"}, headers=key)).json()["jobs"]
    assert len(queued) == 5
    assert (await client.get("/v1/jobs", params={"status": "succeeded"}, headers=key)).json()["jobs"] == []


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ("/v1/jobs?limit=0", "/query/limit"),
        ("/v1/jobs?limit=101", "/query/limit"),
        ("/v1/jobs?limit=two", "/query/limit"),
        ("/v1/jobs?status=done", "/query/status"),
        ("/v1/jobs?cursor=bm90IGEgY3Vyc29y", "/query/cursor"),
        ("/v1/jobs?cursor=%FF%FE", "/query/cursor"),
        ("/v1/jobs?cursor=" + "A" * 300, "/query/cursor"),
        ("/v1/jobs/not-a-job", "/path/id"),
        ("/v1/jobs/job_XYZ/report", "/path/id"),
        ("/v1/jobs/job_" + "0" * 33 + "/events", "/path/id"),
    ],
)
async def test_bad_parameters_are_422_naming_them(queued_only: httpx.AsyncClient, path: str, pointer: str) -> None:
    response = await queued_only.get(path, headers={"X-API-Key": "k1"})
    assert response.status_code == 422, response.text
    assert pointer in [error["pointer"] for error in response.json()["errors"]]


async def test_an_upload_job_gives_the_synchronous_survey(jobs_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """A .safetensors upload that is no chain: the job's survey equals POST /v1/analyses's, timings apart, and its
    progress counts the tensors surveyed."""
    _, client = jobs_app
    rng = np.random.default_rng(8)
    tensors = {
        "encoder.attn.q.weight": rng.standard_normal((24, 16)).astype(np.float32),
        "encoder.attn.q.bias": rng.standard_normal(24).astype(np.float32),
        "encoder.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
    }
    files = {"weights": ("m.safetensors", save(tensors), "application/octet-stream")}
    synchronous = await client.post("/v1/analyses", files=files)
    assert synchronous.status_code == 200, synchronous.text
    submitted = await client.post("/v1/jobs", files=files)
    assert submitted.status_code == 202, submitted.text
    job = await wait_for(client, submitted.json()["id"], FINAL)
    assert job["status"] == "succeeded", job
    assert job["progress"]["unit"] == "tensors"
    # the two matrices (the weight and the kernel): the bias is set aside from the file's header, before the worker
    assert job["progress"]["done"] == job["progress"]["total"] == 2
    report = await client.get(f"/v1/jobs/{job['id']}/report")
    assert json.loads(report.content)["kind"] == "survey"
    assert without_timings(report.content) == without_timings(synchronous.content)


async def test_jobs_are_checked_against_the_job_limits(database_url: str) -> None:
    """Work over JACSPEC_MAX_FLOPS but within JACSPEC_JOB_MAX_FLOPS: 413 synchronously, a job that succeeds; work
    over the job limit: 413 at once, naming JACSPEC_JOB_MAX_FLOPS."""
    async with served(database_url=database_url, compute_workers=1, max_flops=2e7, job_max_flops=1e9) as (_, client):
        body = chain(64, 8)
        synchronous = await client.post("/v1/analyses", json=body)
        assert synchronous.status_code == 413
        assert "(JACSPEC_MAX_FLOPS)" in synchronous.json()["detail"]
        job = await wait_for(client, await submit(client, body), FINAL)
        assert job["status"] == "succeeded", job
        too_large = await client.post("/v1/jobs", json=chain(512, 40))
        assert too_large.status_code == 413
        assert "(JACSPEC_JOB_MAX_FLOPS)" in too_large.json()["detail"]
        assert "(JACSPEC_MAX_FLOPS)" not in too_large.json()["detail"]


ODD = ["", " ", "-1", "1e3", "NaN", "9" * 40, "%00", "job_", "😀", "a|b", "' OR 1=1 --", "..", "/", "\\x00", "A" * 199]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_odd_parameter_values_are_4xx_never_5xx(queued_only: httpx.AsyncClient) -> None:
    """Each odd value as limit, cursor, status and id: a 4xx problem (422 naming the parameter), or, for a value
    that is valid, a 200 or 404; never a 5xx."""
    key = {"X-API-Key": "k1"}
    for value in ODD:
        for name in ("limit", "cursor", "status"):
            response = await queued_only.get("/v1/jobs", params={name: value}, headers=key)
            assert response.status_code in (200, 422), (name, value, response.text)
            if response.status_code == 422:
                assert f"/query/{name}" in [e["pointer"] for e in response.json()["errors"]]
        for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/report"), ("GET", "/events")]:
            response = await queued_only.request(method, f"/v1/jobs/{quote(value, safe='')}{suffix}", headers=key)
            assert 400 <= response.status_code < 500, (method, value, response.text)


async def test_a_queued_job_is_run_by_the_next_server(database_url: str) -> None:
    """A job accepted by a server that runs none stays queued with its stored request; a server started later on
    the same database runs it, and its report equals the synchronous one (timings apart)."""
    async with served(database_url=database_url, compute_workers=1, job_runners=0) as (_, first):
        job_id = await submit(first, SMALL)
        await anyio.sleep(0.6)  # longer than a runner's idle poll: none is there to take it
        assert (await first.get(f"/v1/jobs/{job_id}")).json()["status"] == "queued"
    async with served(database_url=database_url, compute_workers=1) as (_, second):
        job = await wait_for(second, job_id, FINAL)
        assert job["status"] == "succeeded", job
        report = (await second.get(f"/v1/jobs/{job_id}/report")).content
        synchronous = (await second.post("/v1/analyses", json=SMALL)).content
    assert without_timings(report) == without_timings(synchronous)


async def test_a_job_naming_a_run_keeps_its_report_as_the_point(jobs_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = jobs_app
    job_id = await submit(client, {**SMALL, "run": "trained", "step": 7})
    job = await wait_for(client, job_id, FINAL)
    assert job["status"] == "succeeded", job
    assert (job["run"], job["step"]) == ("trained", 7)
    run = (await client.get("/v1/runs/trained")).json()
    assert run["steps"] == [7]
    assert run["verdicts"] == [job["report"]["summary"]["verdict"]]
    point = await client.get("/v1/runs/trained/steps/7")
    assert point.content == (await client.get(f"/v1/jobs/{job_id}/report")).content


async def test_retention_purges_old_jobs_and_run_points(jobs_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = jobs_app
    job_id = await submit(client, {**SMALL, "run": "old", "step": 0})
    assert (await wait_for(client, job_id, FINAL))["status"] == "succeeded"
    jobs = app.state.jobs
    jobs.settings = jobs.settings.model_copy(update={"retention_seconds": 0.0})
    assert await jobs.purge() >= 2  # the job and its point
    assert (await client.get(f"/v1/jobs/{job_id}")).status_code == 404
    assert (await client.get("/v1/runs/old")).status_code == 404


async def test_a_key_with_too_many_pending_jobs_gets_a_429_naming_the_setting(database_url: str) -> None:
    async with served(database_url=database_url, compute_workers=1, job_runners=0, max_pending_jobs=2) as (_, client):
        for _ in range(2):
            await submit(client, SMALL)
        refused = await client.post("/v1/jobs", json=SMALL)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert "JACSPEC_MAX_PENDING_JOBS" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0
        listed = (await client.get("/v1/jobs")).json()["jobs"]
        assert len(listed) == 2


@pytest.mark.parametrize("bound", ["max_pending_jobs", "max_pending_job_bytes"])
async def test_concurrent_submits_of_one_key_cannot_all_pass_its_bound(database_url: str, bound: str) -> None:
    """Eight submits at once, room for two: the check made before each body is read passes them all, and the one
    made as each is inserted (one transaction, the key's submits taking turns) lets exactly two in."""
    body = json.dumps(SMALL).encode()
    limit = {"max_pending_jobs": 2, "max_pending_job_bytes": 2 * len(body) + len(body) // 2}[bound]
    async with served(database_url=database_url, compute_workers=1, job_runners=0, **{bound: limit}) as (_, client):
        answers: list[httpx.Response] = []

        async def post() -> None:
            answers.append(await client.post("/v1/jobs", content=body, headers={"content-type": "application/json"}))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(post)
        assert sorted(answer.status_code for answer in answers) == [202] * 2 + [429] * 6
        assert len((await client.get("/v1/jobs")).json()["jobs"]) == 2


async def test_a_key_whose_pending_bodies_are_too_large_gets_a_429_then_room_once_one_is_cancelled(
    database_url: str,
) -> None:
    body = json.dumps(SMALL).encode()
    limit = 2 * len(body) + len(body) // 2
    settings = {"compute_workers": 1, "job_runners": 0, "max_pending_job_bytes": limit}
    async with served(database_url=database_url, **settings) as (_, client):
        first = await submit(client, SMALL)
        await submit(client, SMALL)
        refused = await client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 429, refused.text
        assert "JACSPEC_MAX_PENDING_JOB_BYTES" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: measured once read
            yield body

        refused = await client.post("/v1/jobs", content=chunked(), headers={"content-type": "application/json"})
        assert refused.status_code == 429, refused.text
        assert (await client.delete(f"/v1/jobs/{first}")).status_code == 200
        assert (
            await client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
        ).status_code == 202
        too_large = json.dumps({**SMALL, "pad": "x" * limit}).encode()
        refused = await client.post("/v1/jobs", content=too_large, headers={"content-type": "application/json"})
        assert refused.status_code == 413
        assert "JACSPEC_MAX_PENDING_JOB_BYTES" in refused.json()["detail"]


async def test_a_quiet_event_stream_gets_keep_alive_comments_then_its_end(tmp_path: Path) -> None:
    """Over real HTTP (``python -m api``; the in-process transport hands a response over only once it has ended):
    a job that stays queued (no runner) sends nothing new, so its stream carries `: keep-alive` comments, each
    within the read timeout; cancelled, the stream still gives the final event and ends."""
    database = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = {"JACSPEC_JOB_RUNNERS": "0", "JACSPEC_EVENTS_KEEP_ALIVE_SECONDS": "0.3", "JACSPEC_DATABASE_URL": database}
    with running_server(**env) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            job_id = await submit(client, SMALL)
            lines: list[str] = []
            async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == ": keep-alive" and lines.count(line) == 3:
                        assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 200
    last = len(lines) - 1 - lines[::-1].index("event: progress")
    first, quiet, ending = lines[:3], lines[3:last], lines[last:]
    assert first[0] == "event: progress"
    assert json.loads(first[1].removeprefix("data: "))["status"] == "queued"
    assert first[2] == ""
    assert len(quiet) >= 6
    assert quiet == [": keep-alive", ""] * (len(quiet) // 2)  # nothing but comments while the job stayed queued
    assert [line.split(":")[0] for line in ending] == ["event", "data", "", "event", "data", ""]
    assert ending[3] == "event: end"
    assert json.loads(ending[4].removeprefix("data: "))["status"] == "cancelled"
