"""The mean-field fields of every report and the spectra of options.spectrum, over HTTP: against numpy computed
here from the request's own weights and probes, the contract models, and the work limit."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from safetensors.numpy import save as save_numpy

from jacspec.models import AnalysisReport
from service.cost import Declared, dense_layer, estimate_flops, init_layers
from tests.helpers import ClientFactory

pytestmark = pytest.mark.anyio

Array = NDArray[np.float64]

MEANFIELD_FIELDS = {
    "sigma_w",
    "sigma_b",
    "q_star",
    "chi1",
    "growth_log10",
    "depth_scale",
    "critical_sigma_w",
    "flags",
}
RNG = np.random.default_rng(11)
W1, B1, W2 = RNG.standard_normal((7, 5)) / 2.0, 0.2 * RNG.standard_normal(7), RNG.standard_normal((4, 7)) / 3.0
PROBES = RNG.standard_normal((3, 5))
EXPLICIT = {
    "network": {
        "activation": "tanh",
        "layers": [{"weight": W1.tolist(), "bias": B1.tolist()}, {"weight": W2.tolist(), "activation": "linear"}],
    },
    "inputs": {"data": PROBES.tolist()},
}


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    AnalysisReport.model_validate(report)
    return report


async def test_default_report_has_meanfield_and_no_spectrum(client: httpx.AsyncClient) -> None:
    """He-initialised ReLU: σ_w = √2, χ₁ = 1 (flags critical, q_marginal with q* = q^1 = 2), critical σ_w √2,
    predicted growth 10^0 and critical gain 1; no spectrum keys unless asked for."""
    body = {"network": {"activation": "relu", "init": {"widths": [32] * 5, "scheme": "he_normal"}}}
    report = await _post(client, body)
    assert "spectrum" not in report
    for layer in report["layers"]:
        assert "weight_spectrum" not in layer
        m = layer["meanfield"]
        assert set(m) == MEANFIELD_FIELDS
        assert m["sigma_w"] == pytest.approx(math.sqrt(2.0), rel=1e-15)
        assert m["chi1"] == pytest.approx(1.0, rel=1e-15)
        assert m["q_star"] == pytest.approx(2.0, rel=1e-15)
        assert m["critical_sigma_w"] == pytest.approx(math.sqrt(2.0), rel=1e-15)
        assert m["depth_scale"] is None
        assert set(m["flags"]) == {"critical", "q_marginal"}
    summary = report["summary"]["meanfield"]
    assert summary["predicted_growth_log10"] == pytest.approx(0.0, abs=1e-14)
    assert summary["predicted_growth"] == pytest.approx(1.0, rel=1e-13)
    assert summary["critical_gain"] == pytest.approx(1.0, rel=1e-14)
    assert "mean field predicts 10^0 (χ₁ = 1 per layer)" in report["summary"]["advice"]


async def test_explicit_weights_meanfield_from_their_variances(client: httpx.AsyncClient) -> None:
    """σ_w = √(n_in·Var W), σ_b = √Var b (0 without a bias); the linear last layer's χ₁ = σ_w², q* = 0."""
    first, second = (layer["meanfield"] for layer in (await _post(client, EXPLICIT))["layers"])
    assert first["sigma_w"] == pytest.approx(math.sqrt(5 * float(np.var(W1))), rel=1e-14)
    assert first["sigma_b"] == pytest.approx(float(np.std(B1)), rel=1e-14)
    assert second["sigma_b"] == 0.0
    assert second["chi1"] == pytest.approx(7 * float(np.var(W2)), rel=1e-14)
    assert second["q_star"] == 0.0


def _jacobian(x: Array) -> Array:
    z1 = W1 @ x + B1
    return np.asarray(W2 @ ((1.0 - np.tanh(z1) ** 2)[:, None] * W1))


async def test_full_spectrum_against_numpy(client: httpx.AsyncClient) -> None:
    """options.spectrum = "full": every singular value of each probe's J = W_2·diag(tanh'(z_1))·W_1 and of each
    weight, the eigenvalue mean and variance of JJᵀ, and the condition number, against numpy here (1e-10)."""
    report = await _post(client, {**EXPLICIT, "options": {"spectrum": "full"}})
    spectrum = report["spectrum"]
    assert spectrum["mode"] == "full"
    assert spectrum["quantile_levels"] is None
    assert len(spectrum["probes"]) == len(PROBES)
    means = []
    for b, probe in enumerate(spectrum["probes"]):
        assert probe["probe"] == b
        j = _jacobian(PROBES[b])
        s = np.linalg.svd(j, compute_uv=False)
        eigen = np.linalg.eigvalsh(j @ j.T)
        assert probe["singular_values_log10"] == pytest.approx(list(np.log10(s)), abs=1e-10)
        assert probe["eigenvalue_mean"] == pytest.approx(float(np.mean(eigen)), rel=1e-10)
        assert probe["eigenvalue_variance"] == pytest.approx(float(np.var(eigen)), rel=1e-9)
        assert probe["condition_number"] == pytest.approx(float(s[0] / s[-1]), rel=1e-9)
        assert probe["eigenvalue_mean_log10"] == pytest.approx(math.log10(probe["eigenvalue_mean"]), abs=1e-12)
        assert probe["rank"] == 4
        means.append(float(np.mean(eigen)))
    assert spectrum["eigenvalue_mean"] == pytest.approx(float(np.mean(means)), rel=1e-10)
    for layer, w in zip(report["layers"], (W1, W2), strict=True):
        ws = layer["weight_spectrum"]
        s = np.linalg.svd(w, compute_uv=False)
        assert ws["singular_values"] == pytest.approx(list(s), rel=1e-12)
        assert ws["stable_rank"] == pytest.approx(float(np.sum(s**2) / s[0] ** 2), rel=1e-12)
        assert ws["condition_number"] == pytest.approx(float(s[0] / s[-1]), rel=1e-10)
    # the prediction's mean is ∏ χ₁ = 10^(2·predicted_growth_log10)
    growth = report["summary"]["meanfield"]["predicted_growth_log10"]
    assert spectrum["predicted_eigenvalue_mean_log10"] == pytest.approx(2.0 * growth, rel=1e-14)


async def test_summary_spectrum_at_criticality(client: httpx.AsyncClient) -> None:
    """options.spectrum = "summary" for a He-initialised ReLU network of depth 4: seven quantiles per probe and per
    weight; the prediction is mean 1 and variance 2L = 8 (to 1e-12)."""
    body = {
        "network": {"activation": "relu", "init": {"widths": [48] * 5, "scheme": "he_normal"}},
        "inputs": {"count": 3},
        "options": {"spectrum": "summary"},
    }
    report = await _post(client, body)
    spectrum = report["spectrum"]
    assert spectrum["quantile_levels"] == [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    assert [len(p["singular_values_log10"]) for p in spectrum["probes"]] == [7, 7, 7]
    assert all(len(layer["weight_spectrum"]["singular_values"]) == 7 for layer in report["layers"])
    assert spectrum["predicted_eigenvalue_mean"] == pytest.approx(1.0, rel=1e-12)
    assert spectrum["predicted_eigenvalue_variance"] == pytest.approx(8.0, rel=1e-12)
    for probe in spectrum["probes"]:  # a ReLU output layer zeroes the rows of J for its dead units
        assert probe["rank"] < 48
        assert probe["condition_number"] is None
        assert probe["flags"] == ["rank_deficient"]


async def test_safetensors_upload_takes_the_spectrum_option(client: httpx.AsyncClient) -> None:
    weights = {"0.weight": W1, "0.bias": B1, "1.weight": W2}
    request = {"network": {"activation": "tanh", "output_activation": "linear"}, "options": {"spectrum": "summary"}}
    files: dict[str, Any] = {
        "weights": ("model.safetensors", save_numpy(weights), "application/octet-stream"),
        "request": (None, json.dumps(request), "application/json"),
    }
    response = await client.post("/v1/analyses", files=files)
    assert response.status_code == 200, response.text
    assert response.json()["spectrum"]["mode"] == "summary"


async def test_spectrum_is_refused_when_its_svds_are_too_much(make_client: ClientFactory) -> None:
    """A limit between the analysis's estimate without and with the spectrum: accepted without, 413 with, and the
    problem names options.spectrum = "none" as a change that fits."""
    widths, count = [512, 512, 512], 2
    declared = Declared(tuple(init_layers(widths, False, "orthogonal")), count)
    limit = (estimate_flops(declared) + estimate_flops(replace(declared, spectrum="full"))) / 2.0
    body: dict[str, Any] = {"network": {"init": {"widths": widths, "scheme": "orthogonal"}}, "inputs": {"count": 2}}
    async with make_client(max_flops=limit) as client:
        refused = await client.post("/v1/analyses", json={**body, "options": {"spectrum": "full"}})
        assert refused.status_code == 413
        assert 'with options.spectrum = "none"' in refused.json()["detail"]
        assert (await client.post("/v1/analyses", json=body)).status_code == 200


async def test_unknown_spectrum_mode_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/analyses", json={**EXPLICIT, "options": {"spectrum": "everything"}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/options/spectrum"


@pytest.mark.parametrize(("activation", "status"), [("tanh", 413), ("relu", 200)])
async def test_explicit_layers_count_their_mean_field_solve(
    make_client: ClientFactory, activation: str, status: int
) -> None:
    """Three explicit 2 × 2 tanh layers each solve their own mean field (MEANFIELD_LAYER flops each): over a limit
    between the two estimates they are refused, where ReLU layers (closed forms) are under it."""
    layer = {"weight": [[1.0, 0.5], [-0.5, 1.0]], "bias": [0.1, -0.1]}
    body = {"network": {"activation": activation, "layers": [layer] * 3}, "inputs": {"count": 2}}
    layers = tuple(dense_layer(2, 2) for _ in range(3))
    relu, tanh = estimate_flops(Declared(layers, 2)), estimate_flops(Declared(layers, 2, meanfield=3))
    async with make_client(max_flops=(relu + tanh) / 2) as client:
        response = await client.post("/v1/analyses", json=body)
        assert response.status_code == status, response.text
        blob = save_numpy({f"{j}.weight": np.eye(2) for j in range(3)})
        upload: dict[str, Any] = {
            "weights": ("m.safetensors", blob, "application/octet-stream"),
            "request": (None, json.dumps({"network": {"activation": activation}}), "application/json"),
        }
        assert (await client.post("/v1/analyses", files=upload)).status_code == status
