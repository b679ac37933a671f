"""``with_options`` / ``copy`` and ``with_raw_response``, on both clients: against the in-process app, the real
server, and a recording transport where the test needs to see what was sent."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import pytest

import jacspec
from jacspec import _client
from jacspec.models import ActivationInfo, AnalysisReport, BoundsResponse, Health
from tests.helpers import ClientFactory

TANH_INIT = {"activation": "tanh", "init": {"widths": [16, 16, 16, 4], "scheme": "orthogonal", "gain": 0.5}}
HEALTH = {"status": "ok", "version": jacspec.__version__}
KEY = "options-key-0123456789"


class Recorder:
    """A transport handler that answers 200 with a health body and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=HEALTH, headers={"X-Request-ID": f"r{len(self.requests)}"})

    def timeout(self, index: int) -> dict[str, float | None]:
        """The timeouts httpx applied to request ``index`` (httpx puts them in the request's extensions)."""
        timeouts: dict[str, float | None] = self.requests[index].extensions["timeout"]
        return timeouts


def _seconds(value: float | None) -> dict[str, float | None]:
    return dict.fromkeys(("connect", "read", "write", "pool"), value)


@pytest.fixture
async def in_process(client: httpx.AsyncClient) -> AsyncIterator[jacspec.AsyncClient]:
    async with jacspec.AsyncClient(base_url=str(client.base_url), http_client=client) as sdk:
        yield sdk


def test_with_options_changes_the_timeout_of_the_copy_only() -> None:
    recorder = Recorder()
    client = jacspec.Client(http_client=httpx.Client(transport=httpx.MockTransport(recorder)), timeout=10.0)
    client.health()
    fast = client.with_options(timeout=httpx.Timeout(2.0, connect=1.0))
    fast.health()
    client.health()
    unbounded = client.with_options(timeout=None)
    unbounded.health()
    assert recorder.timeout(0) == _seconds(10.0)
    assert recorder.timeout(1) == {"connect": 1.0, "read": 2.0, "write": 2.0, "pool": 2.0}
    assert recorder.timeout(2) == _seconds(10.0)
    assert recorder.timeout(3) == _seconds(None)
    assert (fast.base_url, fast.max_retries) == (client.base_url, client.max_retries)


def test_the_default_timeout_is_that_of_the_http_client_given() -> None:
    recorder = Recorder()
    client = jacspec.Client(http_client=httpx.Client(transport=httpx.MockTransport(recorder), timeout=7.0))
    client.health()
    client.with_options(max_retries=0).health()
    assert recorder.timeout(0) == recorder.timeout(1) == _seconds(7.0)
    assert jacspec.Client().timeout == _client.DEFAULT_TIMEOUT


def test_with_options_keeps_what_it_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JACSPEC_API_KEY", raising=False)
    recorder = Recorder()
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    client = jacspec.Client(base_url="http://here.test", api_key=KEY, max_retries=5, http_client=http)
    copy = client.with_options(max_retries=1)
    assert (copy.base_url, copy.api_key, copy.max_retries, copy.timeout) == ("http://here.test", KEY, 1, http.timeout)
    copy.health()
    client.with_options(base_url="http://there.test", api_key="").health()
    jacspec.Client(http_client=http).with_options(timeout=3.0).health()  # no key at all: the copy sends none
    assert str(recorder.requests[0].url) == "http://here.test/healthz"
    assert recorder.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert str(recorder.requests[1].url) == "http://there.test/healthz"
    assert "authorization" not in recorder.requests[1].headers
    assert "authorization" not in recorder.requests[2].headers


def test_max_retries_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        jacspec.Client(max_retries=-1)
    with pytest.raises(ValueError, match="max_retries"):
        jacspec.Client().with_options(max_retries=-1)


def test_a_copy_shares_the_connection_pool_and_never_closes_it(server_url: str) -> None:
    client = jacspec.Client(base_url=server_url)
    copy = client.with_options(timeout=30.0, max_retries=0)
    assert copy._client is client._client
    assert copy.with_raw_response.health().parse().status == "ok"
    copy.close()
    assert client.health().status == "ok"  # the pool is still open
    client.close()
    assert client._client.is_closed


def test_raw_response_over_http(server_url: str) -> None:
    with jacspec.Client(base_url=server_url) as client:
        raw = client.with_raw_response.bounds(factor=0.5, depth=10)
        assert isinstance(raw, jacspec.APIResponse)
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "application/json"
        assert raw.request_id is not None
        assert raw.request_id == raw.http_response.headers["x-request-id"]
        assert raw.retries_taken == 0
        assert str(raw.url) == f"{server_url}/v1/bounds"
        bounds = raw.parse()
        assert isinstance(bounds, BoundsResponse)
        assert bounds.log10 == pytest.approx(10 * math.log10(0.5), abs=1e-12)
        assert raw.parse() is bounds  # parsed once
        assert bounds == client.bounds(factor=0.5, depth=10)
        assert repr(raw) == f"<APIResponse [200] POST {server_url}/v1/bounds>"

        activations = client.with_raw_response.activations().parse()
        assert all(isinstance(a, ActivationInfo) for a in activations)
        assert {a.name for a in activations} == {a.name for a in client.activations()}
        assert isinstance(client.with_raw_response.health().parse(), Health)
        assert client.with_raw_response.init_schemes().parse() == client.init_schemes()


def test_two_calls_get_two_request_ids(server_url: str) -> None:
    with jacspec.Client(base_url=server_url) as client:
        ids = {client.with_raw_response.health().request_id for _ in range(2)}
    assert len(ids) == 2
    assert None not in ids


@pytest.mark.anyio
async def test_async_raw_response_in_process(in_process: jacspec.AsyncClient) -> None:
    raw = await in_process.with_raw_response.analyze(TANH_INIT, inputs={"count": 4})
    assert raw.status_code == 200
    assert raw.request_id == raw.headers["x-request-id"]
    assert raw.request_id
    report = raw.parse()
    assert isinstance(report, AnalysisReport)
    assert [layer.weight_norm for layer in report.layers] == pytest.approx([0.5] * 3, rel=1e-12)
    assert report.model_dump(exclude={"meta"}) == (await in_process.analyze(TANH_INIT, inputs={"count": 4})).model_dump(
        exclude={"meta"}
    )


@pytest.mark.anyio
async def test_an_error_still_raises_with_raw_response(in_process: jacspec.AsyncClient) -> None:
    chained_wrong = {"layers": [{"weight": [[1.0, 2.0]]}, {"weight": [[1.0, 2.0, 3.0]]}]}
    with pytest.raises(jacspec.UnprocessableEntityError) as caught:
        await in_process.with_raw_response.analyze(chained_wrong)
    assert caught.value.errors[0].pointer == "/network/layers/1/weight"
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]


@pytest.mark.anyio
async def test_async_with_options_shares_the_pool(in_process: jacspec.AsyncClient) -> None:
    copy = in_process.with_options(max_retries=0, timeout=60.0)
    assert isinstance(copy, jacspec.AsyncClient)
    assert copy._client is in_process._client
    assert (copy.max_retries, copy.timeout) == (0, 60.0)
    assert in_process.max_retries == _client.DEFAULT_MAX_RETRIES
    raw = await copy.with_raw_response.bounds(factors=[2.0, 0.25])
    assert raw.parse().log10 == pytest.approx(math.log10(0.5), abs=1e-15)
    await copy.close()
    assert (await in_process.health()).status == "ok"


@pytest.mark.anyio
async def test_a_copy_carries_the_key(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JACSPEC_API_KEY", raising=False)
    async with (
        make_client(api_keys=[KEY]) as http,
        jacspec.AsyncClient(base_url=str(http.base_url), api_key=KEY, http_client=http) as sdk,
    ):
        assert (await sdk.with_options(timeout=30.0).bounds(factor=0.5, depth=2)).verdict == "stable"
        with pytest.raises(jacspec.AuthenticationError):
            await sdk.with_options(api_key="not-the-key").activations()
