"""`python -m api` (what `make serve` runs) serves the API over real HTTP on a loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save

from tests.helpers import ROOT, free_port, stop, wait_healthy


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


def test_the_command_line_sets_the_port_and_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "JACSPEC_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite3'}", "JACSPEC_WORKERS": "1"}
    env.pop("JACSPEC_PORT", None)
    process = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port)], cwd=ROOT, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", [process], lambda: "python -m api --port did not serve there")
    finally:
        stop(process)
    refusals = [
        (["--prot", "8001"], "unrecognized arguments: --prot"),
        (["--port", "99999"], "JACSPEC_PORT"),
        (["--workers", "1" + "0" * 400], "JACSPEC_WORKERS"),  # not granian's OverflowError
        (["--host", "nosuchhost.invalid"], "JACSPEC_HOST: Value error, not an IP address"),
    ]
    for argv, said in refusals:
        command = [sys.executable, "-m", "api", *argv]
        refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2
        assert said in refused.stderr
        assert "usage: python -m api" in refused.stderr
