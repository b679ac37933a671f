"""The explorer at ``/``: a page that analyses an init recipe through the public API and plots the bound.

The page is ``api/static/explorer.html``, with a stylesheet and one JavaScript module under ``api/static/explorer``,
all served by jacspec itself (no CDN, no build step). It calls ``GET /v1/activations``, ``GET /v1/init-schemes``
and ``POST /v1/analyses`` exactly as any client would, so it doubles as a living example of the API.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/explorer"
STATIC = files("api") / "static"
ASSETS = STATIC / "explorer"
PAGE = STATIC / "explorer.html"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""Everything from jacspec itself: the browser refuses any other origin, so the page cannot lean on the internet."""


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` (left out of the OpenAPI document) and its assets under ``/explorer``."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS)), name="explorer")
    html = PAGE.read_text(encoding="utf-8")
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

    @app.get("/", include_in_schema=False)
    async def explorer() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)
