"""api/openapi.json is the app's OpenAPI document: a change of the contract shows in the diff of that file."""

from __future__ import annotations

import json

import httpx
import pytest

from api.openapi_json import PATH, document, render


def test_the_committed_document_is_the_apps() -> None:
    committed = json.loads(PATH.read_text(encoding="utf-8"))
    assert committed == document(), (
        "the app's OpenAPI document differs from api/openapi.json: run `make openapi` and commit the file"
    )


def test_the_file_is_as_make_openapi_writes_it() -> None:
    assert PATH.read_text(encoding="utf-8") == render(json.loads(PATH.read_text(encoding="utf-8"))), (
        "api/openapi.json is not formatted as `make openapi` writes it: run `make openapi`"
    )


@pytest.mark.anyio
async def test_the_served_document_is_the_committed_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(PATH.read_text(encoding="utf-8"))
    assert "/metrics" in response.json()["paths"]


def test_every_component_schema_is_referred_to() -> None:
    """No schema is published that no path, body or other schema uses (pydantic defines one for ParsedArray)."""
    schema = document()
    text = json.dumps(schema)
    unused = [name for name in schema["components"]["schemas"] if f'"#/components/schemas/{name}"' not in text]
    assert unused == []
    assert "AnalysisRequest" in schema["components"]["schemas"]
