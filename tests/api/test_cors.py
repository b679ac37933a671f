"""CORS: off unless JACSPEC_CORS_ORIGINS is set; then those origins may call, send the key headers, and read
X-Request-ID and Retry-After."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import ClientFactory

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, x-api-key, content-type",
}


async def test_no_cors_headers_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = await client.options("/v1/analyses", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers


async def test_preflight_allows_the_key_headers(make_client: ClientFactory) -> None:
    async with make_client(cors_origins=[ORIGIN], api_keys=["k"]) as client:
        response = await client.options("/v1/analyses", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "x-api-key", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "x-request-id" in response.headers  # preflights are answered, and logged, with an id too


async def test_responses_expose_request_id_and_retry_after(make_client: ClientFactory) -> None:
    async with make_client(cors_origins=[ORIGIN]) as client:
        response = await client.get("/v1/activations", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"x-request-id", "retry-after"}


async def test_other_origins_get_no_grant(make_client: ClientFactory) -> None:
    async with make_client(cors_origins=[ORIGIN]) as client:
        simple = await client.get("/v1/activations", headers={"Origin": "https://evil.example"})
        preflight = await client.options("/v1/analyses", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.headers["content-type"] == "application/problem+json"
    problem = preflight.json()
    assert problem["status"] == 400
    assert "origin" in problem["detail"]
    assert problem["request_id"] == preflight.headers["x-request-id"]
