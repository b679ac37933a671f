"""`python -m api` (what `make serve` runs) serves the API over real HTTP on a loopback port."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from safetensors.numpy import save


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


def test_serves_a_large_upload_read_in_many_chunks(server_url: str) -> None:
    """A 4 MiB .safetensors upload, received by uvicorn in many chunks: the norm is the weight's, to the rtol
    asked."""
    weight = np.random.default_rng(5).standard_normal((1024, 1024)).astype(np.float32)
    files = {"weights": ("w.safetensors", save({"0.weight": weight}), "application/octet-stream")}
    data = {"request": json.dumps({"options": {"rtol": 1e-8}})}
    response = httpx.post(f"{server_url}/v1/analyses", files=files, data=data, timeout=60.0)
    assert response.status_code == 200, response.text
    expected = float(np.linalg.norm(weight.astype(np.float64), 2))
    assert response.json()["layers"][0]["weight_norm"] == pytest.approx(expected, rel=1e-8)
