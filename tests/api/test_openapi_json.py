"""api/openapi.json is the app's OpenAPI document: a change of the contract shows in the diff of that file."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from api.openapi_json import PATH, document, render

SCHEMAS = "#/components/schemas/"


def test_the_committed_document_is_the_apps() -> None:
    committed = json.loads(PATH.read_text(encoding="utf-8"))
    assert committed == document(), (
        "the app's OpenAPI document differs from api/openapi.json: run `make openapi` and commit the file"
    )


def test_the_file_is_written_for_reading_in_a_diff() -> None:
    """Two-space indents, one key per line, non-ASCII characters as themselves, one final newline."""
    text = PATH.read_text(encoding="utf-8")
    lines = text.split("\n")
    assert text.endswith("}\n")
    assert not text.endswith("\n\n")
    assert lines[1].startswith('  "')
    assert not lines[1].startswith("   ")
    assert all((len(line) - len(line.lstrip(" "))) % 2 == 0 for line in lines)
    assert "\\u" not in text, "non-ASCII characters are escaped"
    assert "‖" in text
    assert "σ" in text
    assert render(json.loads(text)) == text


@pytest.mark.anyio
async def test_the_served_document_is_the_committed_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(PATH.read_text(encoding="utf-8"))
    assert "/metrics" in response.json()["paths"]


def _refs(node: Any) -> set[str]:
    """The names of the component schemas that ``node`` refers to directly (its own ``$ref``s, at any depth)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = {ref.removeprefix(SCHEMAS)} if isinstance(ref, str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def test_every_component_schema_is_reached_from_a_path() -> None:
    """The schemas a client can meet, following ``$ref`` from the paths, are exactly the published ones."""
    schema = document()
    components = schema["components"]["schemas"]
    reached: set[str] = set()
    frontier = _refs(schema["paths"])
    while frontier:
        assert frontier <= set(components), f"refers to no published schema: {frontier - set(components)}"
        reached |= frontier
        frontier = set().union(*(_refs(components[name]) for name in frontier)) - reached
    assert set(components) == reached, f"published but never reached: {set(components) - reached}"
    assert {"AnalysisRequest", "SafetensorsRequest", "BoundsRequest", "Tensor", "Problem"} <= reached
