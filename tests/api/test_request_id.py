"""X-Request-ID on every response (echoed when valid, else a fresh uuid4 hex), in problem bodies and on log records."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from api.main import create_app
from api.request_id import NONE, RequestIdFilter
from api.settings import Settings
from tests.helpers import ClientFactory, asgi_client

pytestmark = pytest.mark.anyio

UUID_HEX = re.compile(r"[0-9a-f]{32}")
GOOD_ID = "Req-1.2_three"


@pytest.fixture
def app() -> FastAPI:
    """The app with three routes only tests need: one that logs, one that fails, one that streams."""
    app = create_app(Settings())

    @app.get("/test/log")
    async def log() -> dict[str, str]:
        logging.getLogger("jacspec.test").info("inside the request")
        return {}

    @app.get("/test/fail")
    async def fail() -> None:
        raise RuntimeError("boom")

    @app.get("/test/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"chunk {i};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


@pytest.fixture
def filtered_caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at INFO, its handler given the RequestIdFilter as a deployment's log handler would be."""
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO)
    return caplog


async def test_a_fresh_id_when_none_is_sent(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert UUID_HEX.fullmatch(first.headers["x-request-id"])
    assert UUID_HEX.fullmatch(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("sent", [GOOD_ID, "a", "x" * 128])
async def test_a_valid_id_is_echoed(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/v1/activations", headers={"X-Request-ID": sent})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == sent
    assert response.headers.get_list("x-request-id") == [sent]


@pytest.mark.parametrize("sent", [b"", b"has space", b"x" * 129, b"semi;colon", b"caf\xc3\xa9", b"a/b"])
async def test_an_invalid_id_is_replaced(client: httpx.AsyncClient, sent: bytes) -> None:
    response = await client.get("/healthz", headers=[(b"X-Request-ID", sent)])
    assert UUID_HEX.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [("GET", "/nowhere", None, 404), ("POST", "/v1/bounds", b"{not json", 400), ("POST", "/v1/bounds", b"{}", 422)],
)
async def test_problems_carry_the_id(
    client: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int
) -> None:
    headers = {"X-Request-ID": GOOD_ID, "Content-Type": "application/json"}
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == GOOD_ID
    assert response.json()["request_id"] == GOOD_ID


async def test_a_500_carries_the_id_in_header_body_and_log(
    app: FastAPI, filtered_caplog: pytest.LogCaptureFixture
) -> None:
    async with asgi_client(app, raise_app_exceptions=False) as client:
        response = await client.get("/test/fail", headers={"X-Request-ID": GOOD_ID})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == GOOD_ID
    assert response.json()["request_id"] == GOOD_ID
    errors = [r for r in filtered_caplog.records if r.name == "jacspec" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert getattr(errors[0], "request_id", None) == GOOD_ID
    access = [r for r in filtered_caplog.records if r.name == "jacspec.access"]
    assert [getattr(r, "status", None) for r in access] == [500]


async def test_log_records_inside_a_request_carry_its_id(
    app: FastAPI, filtered_caplog: pytest.LogCaptureFixture
) -> None:
    async with asgi_client(app, raise_app_exceptions=False) as client:
        response = await client.get("/test/log", headers={"X-Request-ID": GOOD_ID})
    assert response.status_code == 200
    inside = [r for r in filtered_caplog.records if r.name == "jacspec.test"]
    assert [getattr(r, "request_id", None) for r in inside] == [GOOD_ID]
    logging.getLogger("jacspec.test").info("outside any request")
    assert getattr(filtered_caplog.records[-1], "request_id", None) == NONE


async def test_one_access_line_per_request(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jacspec.access")
    async with asgi_client(app, raise_app_exceptions=False) as client:
        ok = await client.get("/v1/init-schemes")
        missing = await client.post("/nowhere", headers={"X-Request-ID": GOOD_ID})
    access = [r for r in caplog.records if r.name == "jacspec.access"]
    assert len(access) == 2
    for record, response in zip(access, (ok, missing), strict=True):
        assert getattr(record, "request_id", None) == response.headers["x-request-id"]
        assert getattr(record, "status", None) == response.status_code
        assert isinstance(getattr(record, "duration_ms", None), float)
    assert access[0].getMessage().startswith("GET /v1/init-schemes 200 ")
    assert access[0].getMessage().endswith(" ms")
    assert access[1].getMessage().startswith("POST /nowhere 404 ")


async def test_a_path_cannot_forge_a_log_line(make_client: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jacspec.access")
    async with make_client() as client:
        await client.get("/v1/x%0A2099-01-01 forged line")
    (record,) = [r for r in caplog.records if r.name == "jacspec.access"]
    assert "\n" not in record.getMessage()
    assert "\\n2099-01-01" in record.getMessage()


async def test_a_streamed_response_keeps_its_body_and_gets_the_header(app: FastAPI) -> None:
    async with asgi_client(app, raise_app_exceptions=False) as client:
        response = await client.get("/test/stream", headers={"X-Request-ID": GOOD_ID})
    assert response.status_code == 200
    assert response.text == "chunk 0;chunk 1;chunk 2;"
    assert response.headers["x-request-id"] == GOOD_ID
