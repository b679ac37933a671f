"""The body budget (api.budget): bodies over 64 KiB in flight hold at most JACSPEC_BODY_BUDGET_BYTES; one that does
not fit waits its turn or is refused 503 with Retry-After, a chunked one is refused when the budget runs out, and
small requests are never held up. An upload is held in flight by a body generator that stops after its first chunk
until the test lets it go, so nothing depends on timing but the (generous) limits on how long a test may take.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import httpx
import pytest

from api.budget import SMALL_BODY_BYTES, ByteBudget
from api.compute import BUSY
from tests.helpers import served

pytestmark = pytest.mark.anyio

PATIENCE_S = 30.0
"""No step of these tests should come near this; it only turns a hang into a failure."""
UPLOAD = 200 * 1024
"""An upload's size: over SMALL_BODY_BYTES, so that it counts against the budget."""
JSON = {"Content-Type": "application/json"}
ANALYSIS = json.dumps(
    {
        "network": {"activation": "tanh", "init": {"widths": [4, 4, 1], "scheme": "xavier_normal"}},
        "inputs": {"count": 1},
    }
).encode()


@dataclass
class Upload:
    """A POST /v1/analyses whose body (the small analysis padded with spaces to ``size`` bytes) stops after its
    first chunk until ``let_go`` is set; ``reading`` is set once the app has asked for that first chunk."""

    size: int = UPLOAD
    declared: bool = True
    let_go: anyio.Event = field(default_factory=anyio.Event)
    reading: anyio.Event = field(default_factory=anyio.Event)
    response: httpx.Response | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        self.reading.set()
        yield ANALYSIS
        await self.let_go.wait()
        padding = self.size - len(ANALYSIS)
        for start in range(0, padding, 64 * 1024):
            yield b" " * min(64 * 1024, padding - start)

    async def send(self, client: httpx.AsyncClient, done: list[Upload] | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if self.declared:
            headers["Content-Length"] = str(self.size)
        self.response = await client.post("/v1/analyses", content=self.chunks(), headers=headers)
        if done is not None:
            done.append(self)


async def one_chunk() -> AsyncIterator[bytes]:
    """The small analysis as a body of no declared length (sent chunked)."""
    yield ANALYSIS


def answer(upload: Upload) -> httpx.Response:
    """The upload's response, which it must have had."""
    assert upload.response is not None
    return upload.response


def assert_busy(response: httpx.Response, retry_after: str) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == retry_after
    problem = response.json()
    assert problem["type"] == BUSY
    assert "JACSPEC_BODY_BUDGET_BYTES" in problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_a_second_upload_that_does_not_fit_is_503_with_retry_after() -> None:
    first, second, third = Upload(), Upload(), Upload()
    second.let_go.set()
    third.let_go.set()
    async with served(body_budget_bytes=int(1.5 * UPLOAD), queue_timeout=0.05) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            async with anyio.create_task_group() as group:
                group.start_soon(first.send, client)
                await first.reading.wait()
                await second.send(client)
                assert first.response is None
                first.let_go.set()
            await third.send(client)
    assert_busy(answer(second), "1")  # JACSPEC_QUEUE_TIMEOUT rounded up
    assert not second.reading.is_set()  # refused before a byte of its body was read
    assert answer(first).status_code == 200
    assert answer(third).status_code == 200  # the budget was given back


async def test_a_second_upload_waits_until_the_first_is_answered() -> None:
    first, second = Upload(), Upload()
    second.let_go.set()
    done: list[Upload] = []
    async with served(body_budget_bytes=int(1.5 * UPLOAD), queue_timeout=PATIENCE_S) as (app, client):
        with anyio.fail_after(PATIENCE_S):
            async with anyio.create_task_group() as group:
                group.start_soon(first.send, client, done)
                await first.reading.wait()
                group.start_soon(second.send, client, done)
                await wait_for_waiter(app.state.body_budget)
                assert not second.reading.is_set()
                first.let_go.set()
    assert done == [first, second]
    assert [answer(u).status_code for u in done] == [200, 200]


async def wait_for_waiter(budget: ByteBudget) -> None:
    """Return once a reservation waits in ``budget``."""
    while budget.waiting == 0:
        await anyio.sleep(0.01)


async def test_a_chunked_upload_past_the_whole_budget_is_413() -> None:
    upload = Upload(size=3 * UPLOAD, declared=False)
    upload.let_go.set()
    async with served(body_budget_bytes=2 * UPLOAD) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            await upload.send(client)
            after = await client.post("/v1/analyses", content=ANALYSIS + b" " * UPLOAD, headers=JSON)
    assert after.status_code == 200
    assert answer(upload).status_code == 413
    assert answer(upload).headers["content-type"] == "application/problem+json"
    assert "JACSPEC_BODY_BUDGET_BYTES" in answer(upload).json()["detail"]


async def test_a_chunked_upload_past_what_is_left_is_503() -> None:
    held, chunked = Upload(), Upload(declared=False)
    chunked.let_go.set()
    async with served(body_budget_bytes=int(1.5 * UPLOAD)) as (app, client):
        with anyio.fail_after(PATIENCE_S):
            async with anyio.create_task_group() as group:
                group.start_soon(held.send, client)
                await held.reading.wait()
                await chunked.send(client)
                held.let_go.set()
            assert app.state.body_budget.used == 0
    assert_busy(answer(chunked), "10")
    assert answer(held).status_code == 200


async def test_small_requests_pass_while_the_budget_is_exhausted() -> None:
    held = Upload()
    async with served(body_budget_bytes=UPLOAD, queue_timeout=0.05) as (app, client):
        with anyio.fail_after(PATIENCE_S):
            async with anyio.create_task_group() as group:
                group.start_soon(held.send, client)
                await held.reading.wait()
                assert app.state.body_budget.used == UPLOAD
                health = await client.get("/healthz")
                small = await client.post(
                    "/v1/analyses", content=ANALYSIS + b" " * (SMALL_BODY_BYTES // 2), headers=JSON
                )
                chunked = await client.post("/v1/analyses", content=one_chunk(), headers=JSON)
                assert held.response is None
                held.let_go.set()
    assert health.status_code == 200
    assert small.status_code == 200
    assert chunked.status_code == 200
    assert answer(held).status_code == 200


async def test_a_declared_length_over_the_body_limit_is_left_to_the_app() -> None:
    """Over JACSPEC_MAX_BODY_BYTES: the app's own 413, before reading; over only the budget: the budget's 413."""
    upload, over_budget = Upload(size=3 * UPLOAD), Upload(size=2 * UPLOAD)
    async with served(body_budget_bytes=UPLOAD, max_body_bytes=int(2.5 * UPLOAD)) as (_, client):
        with anyio.fail_after(PATIENCE_S):
            await upload.send(client)
            await over_budget.send(client)
    assert answer(upload).status_code == 413
    assert "JACSPEC_MAX_BODY_BYTES" in answer(upload).json()["detail"]
    assert not upload.reading.is_set()
    assert answer(over_budget).status_code == 413
    assert "JACSPEC_BODY_BUDGET_BYTES" in answer(over_budget).json()["detail"]
    assert not over_budget.reading.is_set()


# ------------------------------------------------------------------ the budget itself


async def test_reservations_are_granted_in_order_as_bytes_are_released() -> None:
    budget = ByteBudget(10)
    assert await budget.reserve(6, timeout=0)
    granted: list[int] = []

    async def reserve(size: int) -> None:
        if await budget.reserve(size, timeout=PATIENCE_S):
            granted.append(size)

    with anyio.fail_after(PATIENCE_S):
        async with anyio.create_task_group() as group:
            group.start_soon(reserve, 8)
            while budget.waiting < 1:
                await anyio.sleep(0)
            group.start_soon(reserve, 2)  # would fit now, but waits behind the 8
            while budget.waiting < 2:
                await anyio.sleep(0)
            assert granted == []
            budget.release(6)
    assert granted == [8, 2]
    assert budget.used == 10


async def test_a_reservation_that_times_out_takes_nothing_and_unblocks_those_behind() -> None:
    budget = ByteBudget(10)
    assert budget.take(6)
    assert not await budget.reserve(8, timeout=0.01)
    assert budget.waiting == 0
    assert budget.used == 6
    assert await budget.reserve(4, timeout=0)
    assert not budget.take(1)


async def test_without_a_valid_key_a_body_reserves_nothing_and_is_refused_unread() -> None:
    """With API keys set and the budget held by a keyed upload, uploads with no key or a wrong one neither wait for
    budget nor take any: each is the app's 401 at once, its body unread."""
    held, keyless, wrong, chunked = Upload(), Upload(), Upload(), Upload(declared=False)
    keyed = {"X-API-Key": "k1", "Content-Type": "application/json", "Content-Length": str(UPLOAD)}
    wrong_key = {**keyed, "X-API-Key": "nope"}
    async with served(body_budget_bytes=UPLOAD, api_keys=["k1"], queue_timeout=0.05) as (app, client):
        with anyio.fail_after(PATIENCE_S):
            async with anyio.create_task_group() as group:

                async def send_keyed() -> None:
                    held.response = await client.post("/v1/analyses", content=held.chunks(), headers=keyed)

                group.start_soon(send_keyed)
                await held.reading.wait()
                assert app.state.body_budget.used == UPLOAD
                await keyless.send(client)
                wrong.response = await client.post("/v1/analyses", content=wrong.chunks(), headers=wrong_key)
                await chunked.send(client)
                assert app.state.body_budget.used == UPLOAD
                held.let_go.set()
    for refused in (keyless, wrong, chunked):
        assert answer(refused).status_code == 401, answer(refused).text
        assert not refused.let_go.is_set()
    assert answer(held).status_code == 200


async def test_a_content_length_of_non_ascii_digits_is_no_declared_length() -> None:
    async with served() as (_, client):
        response = await client.post(
            "/v1/analyses",
            content=ANALYSIS,
            headers=[(b"content-type", b"application/json"), (b"content-length", "²".encode("latin-1"))],
        )
    assert response.status_code < 500
    assert response.headers["content-type"] in {"application/json", "application/problem+json"}
