"""Liveness and readiness."""

from __future__ import annotations

import httpx
import pytest

from jacspec import __version__

pytestmark = pytest.mark.anyio


async def test_healthz_reports_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


async def test_readyz_once_started(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "version": __version__}  # no "cluster": jobs run here
