"""/docs, /redoc and /openapi.json: served with no CDN, every $ref resolving, every example real."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from api.main import create_app
from api.settings import Settings
from jacspec import models

pytestmark = pytest.mark.anyio

CONTRACT_SCHEMAS = [
    "AnalysisRequest",
    "BoundsRequest",
    "AnalysisReport",
    "BoundsResponse",
    "Tensor",
    "Network",
    "Layer",
    "InitRecipe",
    "Inputs",
    "Options",
    "ActivationInfo",
    "InitSchemeInfo",
    "Problem",
    "Health",
]
PATHS = ["/v1/analyses", "/v1/bounds", "/v1/activations", "/v1/init-schemes", "/healthz", "/readyz"]


class References(HTMLParser):
    """Every src and href attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "spec-url"} and value is not None:
                self.urls.append(value)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_need_no_cdn(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = references(html)
    assert any(url.endswith(".js") for url in urls), urls  # the page does load its script
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert not url.startswith(("http://", "https://")), url
    assert "fonts.googleapis" not in html
    assert "cdn.jsdelivr" not in html
    assert "unpkg.com" not in html
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], url
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css"), url


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_the_served_openapi(client: httpx.AsyncClient, page: str) -> None:
    html = (await client.get(page)).text
    found = re.findall(r"""(?:url:\s*|spec-url=)['"]([^'"]+)['"]""", html)
    assert found, "the page names no OpenAPI document"
    for url in found:
        assert url.startswith("/")
        assert not url.startswith("//")
        response = await client.get(url)
        assert response.status_code == 200
        assert response.json()["info"]["title"] == "jacspec"


async def test_swagger_oauth2_redirect_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


async def test_openapi_has_every_path(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    assert set(PATHS) <= set(document["paths"])
    assert "post" in document["paths"]["/v1/analyses"]
    assert "post" in document["paths"]["/v1/bounds"]
    assert "get" in document["paths"]["/v1/activations"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_every_ref_resolves(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    schemas = document["components"]["schemas"]
    refs = _refs(document)
    assert len(refs) > 10
    prefix = "#/components/schemas/"
    for ref in refs:
        assert ref.startswith(prefix), ref
        assert ref.removeprefix(prefix) in schemas, ref


@pytest.mark.parametrize(("path", "model"), [("/v1/analyses", "AnalysisRequest"), ("/v1/bounds", "BoundsRequest")])
async def test_request_bodies_reference_the_model_with_examples(
    client: httpx.AsyncClient, path: str, model: str
) -> None:
    document = await openapi(client)
    body = document["paths"][path]["post"]["requestBody"]
    content = body["content"]["application/json"]
    assert content["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert content["examples"]
    assert all("value" in example for example in content["examples"].values())


@pytest.mark.parametrize("name", CONTRACT_SCHEMAS)
async def test_contract_schemas_have_examples(client: httpx.AsyncClient, name: str) -> None:
    schemas = (await openapi(client))["components"]["schemas"]
    assert name in schemas
    examples = schemas[name].get("examples")
    assert isinstance(examples, list)
    assert examples
    # Each example is an instance of the SDK model of that name.
    model = getattr(models, name)
    assert issubclass(model, BaseModel)
    for example in examples:
        model.model_validate(example)


@pytest.mark.parametrize(("path", "model"), [("/v1/analyses", "AnalysisRequest"), ("/v1/bounds", "BoundsRequest")])
async def test_request_examples_are_accepted(client: httpx.AsyncClient, path: str, model: str) -> None:
    document = await openapi(client)
    examples = list(document["components"]["schemas"][model]["examples"])
    content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    examples += [example["value"] for example in content["examples"].values()]
    assert len(examples) >= 2
    for example in examples:
        response = await client.post(path, json=example)
        assert response.status_code == 200, (example, response.text)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_behind_a_proxy_the_pages_load_everything_under_its_root_path(page: str) -> None:
    """With the ASGI ``root_path`` a proxy's prefix sets (uvicorn --root-path, which puts it before every path
    too), every asset and the OpenAPI document are asked for under that prefix, and answered there."""
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app, root_path="/jacspec")
    async with httpx.AsyncClient(transport=transport, base_url="http://jacspec.test") as client:
        html = (await client.get("/jacspec" + page)).text
        urls = references(html) + re.findall(r"""(?:url:\s*|spec-url=)['"]([^'"]+)['"]""", html)
        assert "/jacspec/openapi.json" in urls
        assert any(url.endswith(".js") for url in urls)
        for url in urls:
            assert url.startswith("/jacspec/"), url
            assert (await client.get(url)).status_code == 200, url
