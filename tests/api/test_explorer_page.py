"""The explorer at /: an HTML page left out of the OpenAPI document, whose every asset jacspec serves itself.

These run over ASGI; tests/test_explorer_render.py drives the page in a real browser.
"""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser

import httpx
import pytest

from tests.helpers import ROOT, ClientFactory

pytestmark = pytest.mark.anyio

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
"""The one absolute URL the assets may hold: a name, never fetched."""


class _Links(HTMLParser):
    """Every src and href in a document, with the tag that holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value is not None:
                self.links.append((tag, value))


def _links(html: str) -> list[tuple[str, str]]:
    parser = _Links()
    parser.feed(html)
    return parser.links


async def test_root_serves_the_explorer_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "style-src 'self'"):
        assert directive in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    links = _links(response.text)
    for target in ("docs", "redoc", "explorer/app.js", "explorer/style.css"):
        assert any(href == target for _, href in links), target
    assert 'type="module" src="explorer/app.js"' in response.text


async def test_the_page_is_not_part_of_the_api_description(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/explorer")]


async def test_every_asset_and_link_is_served_by_jacspec(client: httpx.AsyncClient) -> None:
    """Relative URLs only, each answered 200 with the right media type: the page needs no other host."""
    page = (await client.get("/")).text
    links = _links(page)
    assert links
    for tag, href in links:
        assert not re.match(r"^([a-z][a-z0-9+.-]*:|//)", href, re.IGNORECASE), f"<{tag}> points off the server: {href}"
        response = await client.get(f"/{href}")
        assert response.status_code == 200, href
    script = await client.get("/explorer/app.js")
    assert script.headers["content-type"].startswith("text/javascript")  # a module script needs a JS media type
    style = await client.get("/explorer/style.css")
    assert style.headers["content-type"].startswith("text/css")
    for asset in (page, script.text, style.text):
        assert set(re.findall(r"https?://[^\s\"'`)]+", asset)) <= {SVG_NAMESPACE}
    for path in set(re.findall(r'"(v1/[a-z-]+)"', script.text)) - {"v1/analyses"}:
        assert (await client.get(f"/{path}")).status_code == 200, path


async def test_an_unknown_asset_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/explorer/missing.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_page_stays_open_when_api_keys_are_required(make_client: ClientFactory) -> None:
    """Like /docs: the page and its assets are open; the calls it makes need the key (its API key field)."""
    async with make_client(api_keys=["a-key-0123456789"]) as guarded:
        assert (await guarded.get("/")).status_code == 200
        assert (await guarded.get("/explorer/app.js")).status_code == 200
        assert (await guarded.get("/v1/activations")).status_code == 401
        headers = {"X-API-Key": "a-key-0123456789"}
        assert (await guarded.get("/v1/activations", headers=headers)).status_code == 200


def test_the_explorer_files_ship_in_the_distribution() -> None:
    """Every file under api/static matches a package-data glob of pyproject.toml, so a wheel carries it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["api"]
    package = ROOT / "api"
    shipped = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    files = {path for path in (package / "static").rglob("*") if path.is_file()}
    assert files
    assert files <= shipped, sorted(str(path.relative_to(package)) for path in files - shipped)
