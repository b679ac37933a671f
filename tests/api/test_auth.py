"""API keys: with JACSPEC_API_KEYS set, /v1 needs `Authorization: Bearer <key>` or `X-API-Key: <key>`; health and
docs stay open; a refusal is 401 problem+json with WWW-Authenticate; no key ever reaches a log or an answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from api.auth import matches
from tests.helpers import ClientFactory

pytestmark = pytest.mark.anyio

KEYS = ["first-key-0123456789", "second-key-abcdefghij"]
WRONG = "wrong-key-zyxwvutsrq"
BOUNDS = {"factor": 0.5, "depth": 10}


@pytest.fixture
async def guarded(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(api_keys=KEYS) as client:
        yield client


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    problem = response.json()
    assert problem["status"] == 401
    assert problem["title"] == "Unauthorized"
    for secret in (*KEYS, WRONG):
        assert secret not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {WRONG}"},
        {"X-API-Key": WRONG},
        {"Authorization": f"Basic {KEYS[0]}"},  # right key, wrong scheme
        {"Authorization": f"Bearer {KEYS[0][:-1]}"},  # a prefix of a key
        {"Authorization": f"Bearer {KEYS[0]}x"},  # a key and more
        {"Authorization": "Bearer "},
        {"X-API-Key": ""},
        # Every key header present must be valid: one right key does not excuse a wrong one beside it.
        {"Authorization": f"Bearer {WRONG}", "X-API-Key": KEYS[1]},
        {"Authorization": f"Bearer {KEYS[0]}", "X-API-Key": WRONG},
        {"Authorization": f"Basic {KEYS[0]}", "X-API-Key": KEYS[0]},  # a malformed scheme is not ignored
        {"Authorization": KEYS[0], "X-API-Key": KEYS[0]},  # no scheme at all
    ],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/activations"), ("POST", "/v1/bounds")])
async def test_no_valid_key_is_401(guarded: httpx.AsyncClient, headers: dict[str, str], method: str, path: str) -> None:
    response = await guarded.request(method, path, json=BOUNDS, headers=headers)
    assert_unauthorized(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEYS[0]}"},
        {"Authorization": f"bearer {KEYS[1]}"},
        {"X-API-Key": KEYS[0]},
        {"X-API-Key": KEYS[1]},
        {"Authorization": f"Bearer {KEYS[0]}", "X-API-Key": KEYS[1]},  # both present, both valid
    ],
)
async def test_a_valid_key_in_either_header_is_accepted(guarded: httpx.AsyncClient, headers: dict[str, str]) -> None:
    bounds = await guarded.post("/v1/bounds", json=BOUNDS, headers=headers)
    assert bounds.status_code == 200
    assert bounds.json()["verdict"] == "vanishing"
    catalog = await guarded.get("/v1/init-schemes", headers=headers)
    assert catalog.status_code == 200


async def test_every_v1_route_is_guarded(guarded: httpx.AsyncClient) -> None:
    document = (await guarded.get("/openapi.json")).json()
    v1 = [(method, path) for path, item in document["paths"].items() if path.startswith("/v1/") for method in item]
    assert len(v1) == 16  # analyses, bounds, the two catalogs, six of jobs, six of runs
    for method, path in v1:
        assert_unauthorized(await guarded.request(method.upper(), path, json=BOUNDS))


async def test_the_key_is_checked_before_the_body(guarded: httpx.AsyncClient) -> None:
    """An unauthenticated caller learns nothing about its body: 401, not 400/415/413."""
    response = await guarded.post("/v1/analyses", content=b"{not json", headers={"Content-Type": "text/plain"})
    assert_unauthorized(response)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
async def test_health_and_docs_stay_open(guarded: httpx.AsyncClient, path: str) -> None:
    response = await guarded.get(path)
    assert response.status_code == 200


async def test_without_keys_v1_is_open(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/activations")
    assert response.status_code == 200


async def test_openapi_documents_both_schemes(guarded: httpx.AsyncClient) -> None:
    document = (await guarded.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["apiKey"]["type"] == "apiKey"
    assert schemes["apiKey"]["in"] == "header"
    assert schemes["apiKey"]["name"] == "X-API-Key"
    operation = document["paths"]["/v1/analyses"]["post"]
    assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "401" in operation["responses"]
    assert "security" not in document["paths"]["/healthz"]["get"]


async def test_openapi_has_no_schemes_when_auth_is_off(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in document.get("components", {})
    assert "security" not in document["paths"]["/v1/analyses"]["post"]


async def test_keys_never_reach_the_logs(guarded: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for headers in ({"Authorization": f"Bearer {KEYS[0]}"}, {"X-API-Key": KEYS[1]}, {"X-API-Key": WRONG}, {}):
        await guarded.post("/v1/bounds", json=BOUNDS, headers=headers)
    access = [r for r in caplog.records if r.name == "jacspec.access"]
    assert [getattr(r, "status", None) for r in access] == [200, 200, 401, 401]
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    for secret in (*KEYS, WRONG):
        assert secret not in logged


def test_matches_compares_bytes_against_every_key() -> None:
    accepted = [key.encode() for key in KEYS]
    assert matches(KEYS[1].encode(), accepted)
    assert not matches(WRONG.encode(), accepted)
    assert not matches(b"", accepted)
    assert not matches(KEYS[0].encode(), [])


async def test_a_non_ascii_key_is_compared_as_bytes(make_client: ClientFactory) -> None:
    key = "clé-ünïcode"
    async with make_client(api_keys=[key]) as client:
        ok = await client.get("/v1/activations", headers=[(b"X-API-Key", key.encode())])
        wrong = await client.get("/v1/activations", headers={"X-API-Key": "cle-unicode"})
    assert ok.status_code == 200
    assert_unauthorized(wrong)
