"""Retries, backoff and the exception hierarchy, against a scripted transport (no sleeping), and retries in front
of the real server."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

import jacspec
from jacspec import _client

PROBLEM_503 = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "all slots busy"}
HEALTH = {"status": "ok", "version": "0.1.0"}
CLIENT_RETRIES = 5

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport that answers each request with the next scripted response (or raises the scripted error)."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every delay the sync client would have slept, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(_client, "time", SimpleNamespace(sleep=recorded.append, time=time.time))
    return recorded


def _client_for(script: Script, max_retries: int = 2) -> jacspec.Client:
    http = httpx.Client(transport=httpx.MockTransport(script))
    return jacspec.Client(base_url="http://jacspec.test", http_client=http, max_retries=max_retries)


def _busy(retry_after: str | None = "0") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(503, json=PROBLEM_503, headers=headers)


def test_503_is_retried_max_retries_times_then_raises(sleeps: list[float]) -> None:
    script = Script(_busy("2"), _busy("2"), _busy("2"))
    with pytest.raises(jacspec.InternalServerError) as caught:
        _client_for(script, max_retries=2).health()
    assert len(script.requests) == 3
    assert sleeps == [2.0, 2.0]
    assert caught.value.status_code == 503
    assert caught.value.detail == "all slots busy"


def test_503_then_success_returns_the_answer(sleeps: list[float]) -> None:
    script = Script(_busy("1"), httpx.Response(200, json=HEALTH))
    assert _client_for(script).health().status == "ok"
    assert len(script.requests) == 2
    assert sleeps == [1.0]


def test_429_is_retried_and_raises_rate_limit_error(sleeps: list[float]) -> None:
    problem = {"title": "Too Many Requests", "status": 429}
    script = Script(*(httpx.Response(429, json=problem, headers={"Retry-After": "0"}) for _ in range(4)))
    with pytest.raises(jacspec.RateLimitError):
        _client_for(script, max_retries=3).health()
    assert len(script.requests) == 4
    assert sleeps == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, jacspec.BadRequestError),
        (401, jacspec.AuthenticationError),
        (403, jacspec.PermissionDeniedError),
        (404, jacspec.NotFoundError),
        (413, jacspec.ContentTooLargeError),
        (422, jacspec.UnprocessableEntityError),
        (500, jacspec.InternalServerError),
        (502, jacspec.InternalServerError),
    ],
)
def test_other_errors_are_never_retried(sleeps: list[float], status: int, error: type[jacspec.APIStatusError]) -> None:
    problem = {
        "type": "urn:jacspec:problem:invalid-request",
        "title": "Invalid request",
        "status": status,
        "detail": "/network/activation: unknown",
        "errors": [{"pointer": "/network/activation", "detail": "unknown"}],
    }
    script = Script(httpx.Response(status, json=problem), httpx.Response(200, json=HEALTH))
    with pytest.raises(error) as caught:
        _client_for(script).health()
    assert len(script.requests) == 1
    assert sleeps == []
    assert isinstance(caught.value, jacspec.APIStatusError)
    assert isinstance(caught.value, jacspec.JacspecError)
    assert caught.value.status_code == status
    assert caught.value.type == "urn:jacspec:problem:invalid-request"
    assert caught.value.errors[0].pointer == "/network/activation"


def test_a_non_problem_error_body_still_gives_a_status_error(sleeps: list[float]) -> None:
    script = Script(httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(jacspec.InternalServerError) as caught:
        _client_for(script).health()
    assert caught.value.status_code == 502
    assert caught.value.title == "Bad Gateway"


def test_connection_errors_are_retried_then_raise(sleeps: list[float]) -> None:
    refused = httpx.ConnectError("connection refused")
    script = Script(refused, refused, refused)
    with pytest.raises(jacspec.APIConnectionError) as caught:
        _client_for(script).health()
    assert not isinstance(caught.value, jacspec.APITimeoutError)
    assert len(script.requests) == 3
    assert len(sleeps) == 2
    assert str(caught.value) == "could not connect to http://jacspec.test/healthz: connection refused"
    assert caught.value.request.url == "http://jacspec.test/healthz"


def test_timeouts_raise_api_timeout_error(sleeps: list[float]) -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"))
    with pytest.raises(jacspec.APITimeoutError) as caught:
        _client_for(script, max_retries=1).health()
    assert len(script.requests) == 2
    assert "http://jacspec.test/healthz" in str(caught.value)


def test_backoff_without_retry_after_is_exponential_with_jitter(sleeps: list[float]) -> None:
    """Delay k (0-based) is 0.5·2^k s, capped at 8 s, less a random part of at most 25%."""
    script = Script(*(_busy(None) for _ in range(7)))
    with pytest.raises(jacspec.InternalServerError):
        _client_for(script, max_retries=6).health()
    assert len(sleeps) == 6
    for k, delay in enumerate(sleeps):
        nominal = min(0.5 * 2**k, 8.0)
        assert 0.75 * nominal <= delay <= nominal


def test_retry_after_as_http_date(sleeps: list[float]) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    script = Script(_busy(when), httpx.Response(200, json=HEALTH))
    _client_for(script).health()
    assert 28.0 <= sleeps[0] <= 31.0


def test_unreasonable_retry_after_falls_back_to_backoff(sleeps: list[float]) -> None:
    script = Script(_busy("86400"), httpx.Response(200, json=HEALTH))
    _client_for(script).health()
    assert 0.375 <= sleeps[0] <= 0.5


@pytest.mark.parametrize("max_retries", [0, 1, 2, 3])
def test_with_options_max_retries_on_a_503(sleeps: list[float], max_retries: int) -> None:
    """Two 503s, then the answer: max_retries 0 and 1 raise the last 503 after 1 and 2 attempts; 2 or more answer
    after three, and the raw response says it took two retries. The client copied from is unchanged."""
    script = Script(_busy("1"), _busy("1"), httpx.Response(200, json=HEALTH))
    client = _client_for(script, max_retries=CLIENT_RETRIES)
    if max_retries < 2:
        with pytest.raises(jacspec.InternalServerError) as caught:
            client.with_options(max_retries=max_retries).health()
        assert caught.value.status_code == 503
        assert len(script.requests) == max_retries + 1
    else:
        raw = client.with_options(max_retries=max_retries).with_raw_response.health()
        assert raw.retries_taken == 2
        assert raw.parse().status == "ok"
        assert len(script.requests) == 3
    assert sleeps == [1.0] * min(max_retries, 2)
    assert client.max_retries == CLIENT_RETRIES


class BusyFirst(httpx.BaseTransport):
    """A transport in front of the real one that answers the first ``count`` requests 503 with Retry-After: 0,
    as the server does when every compute slot is busy, and sends the others on."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent = 0
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.count > 0:
            self.count -= 1
            return _busy("0")
        self.sent += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_retries_reach_the_real_server(server_url: str) -> None:
    busy = BusyFirst(2)
    with httpx.Client(transport=busy) as http:
        client = jacspec.Client(base_url=server_url, http_client=http, max_retries=0)
        with pytest.raises(jacspec.InternalServerError) as caught:
            client.bounds(factor=0.5, depth=10)
        assert caught.value.detail == "all slots busy"
        raw = client.with_options(max_retries=3).with_raw_response.bounds(factor=0.5, depth=10)
    assert (busy.count, busy.sent) == (0, 1)
    assert raw.retries_taken == 1
    assert raw.status_code == 200
    assert raw.request_id  # the real server's X-Request-ID
    assert raw.parse().value == 0.5**10


@pytest.mark.anyio
async def test_async_client_retries_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[float] = []

    async def fake_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(_client, "asyncio", SimpleNamespace(sleep=fake_sleep))
    script = Script(_busy("3"), _busy("3"), httpx.Response(200, json=HEALTH))
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    async with jacspec.AsyncClient(base_url="http://jacspec.test", http_client=http) as client:
        assert (await client.health()).status == "ok"
    assert recorded == [3.0, 3.0]
    assert len(script.requests) == 3


@pytest.mark.anyio
async def test_async_client_never_retries_4xx(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(httpx.Response(422, json={"title": "Invalid request", "status": 422}))
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    async with jacspec.AsyncClient(base_url="http://jacspec.test", http_client=http) as client:
        with pytest.raises(jacspec.UnprocessableEntityError):
            await client.health()
    assert len(script.requests) == 1


def test_base_url_and_api_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_BASE_URL", "http://elsewhere.test:9000/")
    monkeypatch.setenv("JACSPEC_API_KEY", "s3cret")
    script = Script(httpx.Response(200, json=HEALTH))
    client = jacspec.Client(http_client=httpx.Client(transport=httpx.MockTransport(script)))
    client.health()
    request = script.requests[0]
    assert str(request.url) == "http://elsewhere.test:9000/healthz"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["user-agent"] == f"jacspec-python/{jacspec.__version__}"


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_BASE_URL", "http://elsewhere.test")
    monkeypatch.setenv("JACSPEC_API_KEY", "from-env")
    script = Script(httpx.Response(200, json=HEALTH))
    http = httpx.Client(transport=httpx.MockTransport(script))
    jacspec.Client(base_url="http://here.test", api_key="", http_client=http).health()
    assert script.requests[0].url.host == "here.test"
    assert "authorization" not in script.requests[0].headers


def test_an_injected_http_client_is_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(Script()))
    with jacspec.Client(http_client=http):
        pass
    assert not http.is_closed
    with jacspec.Client() as owned:
        pass
    assert owned._client.is_closed
