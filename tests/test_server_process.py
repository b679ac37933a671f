"""`python -m api` (what `make serve` runs) serves the API over real HTTP on a loopback port."""

from __future__ import annotations

import httpx
import pytest


def test_serves_an_analysis(server_url: str) -> None:
    body = {"network": {"activation": "tanh", "init": {"widths": [16, 16, 4], "scheme": "orthogonal", "gain": 0.5}}}
    response = httpx.post(f"{server_url}/v1/analyses", json=body, timeout=30.0)
    assert response.status_code == 200
    report = response.json()
    assert [layer["weight_norm"] for layer in report["layers"]] == pytest.approx([0.5, 0.5], rel=1e-12)


def test_serves_docs_and_readiness(server_url: str) -> None:
    assert httpx.get(f"{server_url}/readyz").json()["status"] == "ready"
    docs = httpx.get(f"{server_url}/docs")
    assert docs.status_code == 200
    assert "/static/docs/swagger-ui-bundle.js" in docs.text
