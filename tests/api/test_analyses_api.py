"""POST /v1/analyses with explicit weights and init recipes, checked against a dense numpy computation."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from api.routes import analyses
from api.work import AnalysisWork
from jacspec import __version__

pytestmark = pytest.mark.anyio

Array = NDArray[np.float64]

LAYER_FIELDS = {
    "index",
    "shape",
    "activation",
    "weight_norm",
    "derivative_bound",
    "derivative_max",
    "jacobian_norm_bound",
    "jacobian_norm",
    "backward_bound_log10",
    "backward_norm_log10",
    "gradient_norm",
}
SUMMARY_FIELDS = {
    "input_bound_log10",
    "input_norm_log10",
    "rate_log10",
    "observed_rate_log10",
    "verdict",
    "bound_verdict",
    "advice",
}

REL = 1e-10
"""Relative tolerance for dense-SVD quantities: both sides are float64 LAPACK on matrices of size ≤ 6."""


def _weights() -> list[Array]:
    """Three tanh layers 3 → 5 → 4 → 2, drawn once from a fixed seed (no server code involved)."""
    rng = np.random.default_rng(20240917)
    shapes = [(5, 3), (4, 5), (2, 4)]
    return [rng.normal(0.0, 0.9, size=s) for s in shapes]


WEIGHTS = _weights()
BIASES = [np.array([0.1, -0.2, 0.05, 0.0, 0.3]), np.array([0.0, 0.1, -0.1, 0.2]), np.array([0.05, -0.05])]
PROBES = np.array([[1.0, -0.5, 0.25], [0.3, 0.8, -1.2], [-0.7, 0.1, 0.9], [2.0, -1.0, 0.5]])
TARGETS = np.array([[0.5, -0.5], [0.1, 0.2], [-0.3, 0.0], [1.0, 1.0]])


@dataclass
class Dense:
    """Every reported quantity of a tanh network, computed the long way."""

    sigma: list[float]
    derivative_max: list[float]
    jacobian_norm: list[float]
    backward_norm_log10: list[float]
    input_norm_log10: float
    gradient_norm: list[float]


def dense_tanh(weights: list[Array], biases: list[Array], x: Array, y: Array) -> Dense:
    depth = len(weights)
    acts = [x]
    ders = []
    for w, b in zip(weights, biases, strict=True):
        z = acts[-1] @ w.T + b
        ders.append(1.0 - np.tanh(z) ** 2)
        acts.append(np.tanh(z))
    sigma = [float(np.linalg.svd(w, compute_uv=False)[0]) for w in weights]
    derivative_max = [float(np.abs(d).max()) for d in ders]
    jacobian_norm = [
        max(float(np.linalg.norm(np.diag(d[p]) @ w, 2)) for p in range(len(x)))
        for d, w in zip(ders, weights, strict=True)
    ]
    # ∂a_L/∂a_j per probe: the product J_L ⋯ J_{j+1}, formed densely from the output side.
    norms: list[list[float]] = [[0.0] * len(x) for _ in range(depth + 1)]
    for p in range(len(x)):
        product = np.eye(weights[-1].shape[0])
        norms[depth][p] = float(np.linalg.norm(product, 2))
        for j in range(depth - 1, -1, -1):
            product = product @ (np.diag(ders[j][p]) @ weights[j])
            norms[j][p] = float(np.linalg.norm(product, 2))
    backward = [math.log10(max(norms[j])) for j in range(1, depth + 1)]
    # MSE over probes and outputs; ∂ℓ/∂W_j = δ_jᵀ a_{j−1}.
    delta = 2.0 * (acts[-1] - y) / y.size * ders[-1]
    gradient = [0.0] * depth
    for j in range(depth - 1, -1, -1):
        gradient[j] = float(np.linalg.norm(delta.T @ acts[j], "fro"))
        if j > 0:
            delta = (delta @ weights[j]) * ders[j - 1]
    return Dense(sigma, derivative_max, jacobian_norm, backward, math.log10(max(norms[0])), gradient)


def b64(array: Array, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def tensor_forms(w: Array) -> dict[str, Any]:
    return {
        "nested_list": w.tolist(),
        "tensor_flat": {"shape": list(w.shape), "datatype": "FP64", "data": w.ravel().tolist()},
        "tensor_nested": {"shape": list(w.shape), "datatype": "FP64", "data": w.tolist()},
        "tensor_b64": {"shape": list(w.shape), "datatype": "FP64", "b64": b64(w, "<f8")},
    }


def request_body(weight_form: str, *, bias: bool = True) -> dict[str, Any]:
    layers = []
    for w, b in zip(WEIGHTS, BIASES, strict=True):
        layer: dict[str, Any] = {"weight": tensor_forms(w)[weight_form]}
        if bias:
            layer["bias"] = b.tolist()
        layers.append(layer)
    return {
        "network": {"activation": "tanh", "layers": layers},
        "inputs": {"data": PROBES.tolist(), "targets": TARGETS.tolist()},
    }


async def analyse(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert "Infinity" not in response.text
    assert "NaN" not in response.text
    report: dict[str, Any] = response.json()
    return report


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its wall-clock timings."""
    meta = {k: v for k, v in report["meta"].items() if k != "timings_ms"}
    return {"layers": report["layers"], "summary": report["summary"], "meta": meta}


async def test_every_weight_encoding_gives_the_same_report(client: httpx.AsyncClient) -> None:
    reports = {form: await analyse(client, request_body(form)) for form in tensor_forms(WEIGHTS[0])}
    reference = comparable(reports["nested_list"])
    assert len(reference["layers"]) == 3
    for form, report in reports.items():
        assert comparable(report) == reference, form


async def test_fp32_b64_equals_fp32_data(client: httpx.AsyncClient) -> None:
    def body(kind: str) -> dict[str, Any]:
        layers = []
        for w in WEIGHTS:
            payload: dict[str, Any] = (
                {"b64": b64(w, "<f4")} if kind == "b64" else {"data": w.astype(np.float32).tolist()}
            )
            layers.append({"weight": {"shape": list(w.shape), "datatype": "FP32", **payload}})
        return {"network": {"activation": "tanh", "layers": layers}, "inputs": {"data": PROBES.tolist()}}

    from_b64 = await analyse(client, body("b64"))
    from_data = await analyse(client, body("data"))
    assert comparable(from_b64) == comparable(from_data)
    for layer, w in zip(from_b64["layers"], WEIGHTS, strict=True):
        rounded = w.astype(np.float32).astype(np.float64)
        assert layer["weight_norm"] == pytest.approx(float(np.linalg.norm(rounded, 2)), rel=1e-12)


async def test_fp32_data_is_rounded_to_float32(client: httpx.AsyncClient) -> None:
    """FP32 data given with more digits than float32 holds is rounded on arrival, as the caller's model holds it."""
    w = WEIGHTS[0]
    body = {"network": {"layers": [{"weight": {"shape": list(w.shape), "datatype": "FP32", "data": w.tolist()}}]}}
    report = await analyse(client, body)
    rounded = w.astype(np.float32).astype(np.float64)
    assert report["layers"][0]["weight_norm"] == pytest.approx(float(np.linalg.norm(rounded, 2)), rel=1e-12)


async def test_numbers_match_a_dense_computation(client: httpx.AsyncClient) -> None:
    report = await analyse(client, request_body("nested_list"))
    dense = dense_tanh(WEIGHTS, BIASES, PROBES, TARGETS)
    layers = report["layers"]
    depth = len(WEIGHTS)
    bound_logs = [math.log10(s) for s in dense.sigma]  # sup|tanh'| = 1
    for j, layer in enumerate(layers):
        assert layer["index"] == j + 1
        assert layer["shape"] == list(WEIGHTS[j].shape)
        assert layer["activation"] == "tanh"
        assert layer["weight_norm"] == pytest.approx(float(np.linalg.norm(WEIGHTS[j], 2)), rel=1e-12)
        assert layer["derivative_bound"] == 1.0
        assert layer["derivative_max"] == pytest.approx(dense.derivative_max[j], rel=REL)
        assert layer["jacobian_norm_bound"] == pytest.approx(dense.sigma[j], rel=REL)
        assert layer["jacobian_norm"] == pytest.approx(dense.jacobian_norm[j], rel=REL)
        assert layer["jacobian_norm"] <= layer["jacobian_norm_bound"] * (1 + 1e-12)
        assert layer["backward_bound_log10"] == pytest.approx(math.fsum(bound_logs[j + 1 :]), abs=1e-10)
        assert layer["backward_norm_log10"] == pytest.approx(dense.backward_norm_log10[j], abs=1e-10)
        assert layer["backward_norm_log10"] <= layer["backward_bound_log10"] + 1e-12
        assert layer["gradient_norm"] == pytest.approx(dense.gradient_norm[j], rel=REL)
    assert layers[-1]["backward_bound_log10"] == 0.0
    assert layers[-1]["backward_norm_log10"] == pytest.approx(0.0, abs=1e-12)

    summary = report["summary"]
    input_bound = math.fsum(bound_logs)
    assert summary["depth"] == depth
    assert summary["input_bound_log10"] == pytest.approx(input_bound, abs=1e-10)
    assert summary["input_norm_log10"] == pytest.approx(dense.input_norm_log10, abs=1e-10)
    assert summary["rate_log10"] == pytest.approx(input_bound / depth, abs=1e-10)
    assert summary["observed_rate_log10"] == pytest.approx(dense.input_norm_log10 / depth, abs=1e-10)
    assert summary["gain"] is None
    assert summary["bound_gain"] == pytest.approx(10 ** (-input_bound / depth), rel=1e-9)
    if summary["verdict"] == "stable":
        assert (summary["suggested_gain"], summary["suggestion"]) == (1.0, "unchanged")
    assert report["meta"]["methods"]["probes"] == len(PROBES)


async def test_report_has_every_contract_field(client: httpx.AsyncClient) -> None:
    report = await analyse(client, request_body("tensor_b64"))
    for layer in report["layers"]:
        assert layer.keys() >= LAYER_FIELDS, LAYER_FIELDS - layer.keys()
    assert report["summary"].keys() >= SUMMARY_FIELDS, SUMMARY_FIELDS - report["summary"].keys()
    assert report["summary"]["verdict"] in {"vanishing", "exploding", "stable"}
    assert report["summary"]["bound_verdict"] in {"vanishing", "exploding", "stable"}
    assert isinstance(report["summary"]["advice"], str)
    assert report["summary"]["advice"]
    assert report["meta"]["version"] == __version__
    assert set(report["meta"]["timings_ms"]) >= {"parse", "compute", "total"}


async def test_a_layer_activation_overrides_the_network_one(client: httpx.AsyncClient) -> None:
    """Last layer linear, the others sigmoid: the bound multiplies sup|h'| = 1/4 for each sigmoid layer only."""
    layers: list[dict[str, Any]] = [{"weight": w.tolist()} for w in WEIGHTS]
    layers[-1]["activation"] = "linear"
    body = {"network": {"activation": "sigmoid", "layers": layers}, "inputs": {"count": 3}}
    report = await analyse(client, body)
    assert [layer["activation"] for layer in report["layers"]] == ["sigmoid", "sigmoid", "linear"]
    assert [layer["derivative_bound"] for layer in report["layers"]] == [0.25, 0.25, 1.0]
    sigma = [float(np.linalg.norm(w, 2)) for w in WEIGHTS]
    expected = math.log10(sigma[0] * 0.25) + math.log10(sigma[1] * 0.25) + math.log10(sigma[2])
    assert report["summary"]["input_bound_log10"] == pytest.approx(expected, abs=1e-10)
    assert report["layers"][-1]["derivative_max"] == 1.0


async def test_dead_relu_layer_gives_null_logs_with_flags(client: httpx.AsyncClient) -> None:
    """A ReLU layer whose pre-activations are all negative: ∂a_L/∂a_0 is exactly 0, reported as null, never -Inf."""
    body = {
        "network": {
            "activation": "relu",
            "layers": [
                {"weight": [[1.0, 1.0], [1.0, 1.0]], "bias": [-100.0, -100.0]},
                {"weight": [[1.0, 0.5]], "activation": "linear"},
            ],
        },
        "inputs": {"data": [[1.0, 2.0], [-1.0, 0.5]]},
    }
    report = await analyse(client, body)
    first = report["layers"][0]
    assert first["derivative_max"] == 0.0
    assert "dead" in first["flags"]
    assert report["summary"]["input_norm_log10"] is None
    assert report["summary"]["verdict"] == "vanishing"
    assert "input_norm_zero" in report["summary"]["flags"]


async def test_orthogonal_init_has_every_singular_value_equal_to_the_gain(client: httpx.AsyncClient) -> None:
    body = {
        "network": {
            "activation": "tanh",
            "init": {"widths": [32, 64, 48, 48, 10], "scheme": "orthogonal", "gain": 0.7},
        },
        "inputs": {"count": 4},
    }
    report = await analyse(client, body)
    assert [layer["shape"] for layer in report["layers"]] == [[64, 32], [48, 64], [48, 48], [10, 48]]
    for layer in report["layers"]:
        assert layer["weight_norm"] == pytest.approx(0.7, rel=1e-10)
    assert report["summary"]["gain"] == 0.7
    assert report["summary"]["input_bound_log10"] == pytest.approx(4 * math.log10(0.7), abs=1e-9)


async def test_init_recipe_is_reproducible(client: httpx.AsyncClient) -> None:
    body = {"network": {"activation": "relu", "init": {"widths": [20, 30, 5], "scheme": "he_normal", "seed": 7}}}
    first = comparable(await analyse(client, body))
    second = comparable(await analyse(client, body))
    assert first == second
    reseeded = {"network": {"activation": "relu", "init": {"widths": [20, 30, 5], "scheme": "he_normal", "seed": 8}}}
    other = comparable(await analyse(client, reseeded))
    assert other["layers"][0]["weight_norm"] != first["layers"][0]["weight_norm"]


async def test_gaussian_512_has_spectral_norm_near_two(client: httpx.AsyncClient) -> None:
    """Marchenko–Pastur: an n × n matrix of N(0, 1/n) entries has largest singular value → 2."""
    body = {
        "network": {"init": {"widths": [512, 512], "scheme": "gaussian", "std": 1 / math.sqrt(512)}},
        "inputs": {"count": 1},
    }
    report = await analyse(client, body)
    assert report["layers"][0]["weight_norm"] == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(("gain", "verdict"), [(0.5, "vanishing"), (2.0, "exploding")])
async def test_deep_tanh_network_verdicts(client: httpx.AsyncClient, gain: float, verdict: str) -> None:
    depth = 50
    body = {
        "network": {
            "activation": "tanh",
            "init": {"widths": [256] * (depth + 1), "scheme": "orthogonal", "gain": gain},
        },
        "inputs": {"count": 4},
    }
    report = await analyse(client, body)
    summary = report["summary"]
    assert summary["verdict"] == verdict
    assert summary["bound_verdict"] == verdict
    # σ_j = gain exactly and sup|tanh'| = 1, so the bound is gain^L and the critical gain is 1.
    assert summary["input_bound_log10"] == pytest.approx(depth * math.log10(gain), abs=1e-8)
    assert summary["rate_log10"] == pytest.approx(math.log10(gain), abs=1e-10)
    assert summary["bound_gain"] == pytest.approx(1.0, rel=1e-9)
    assert f"Use an init gain of {summary['suggested_gain']:.3g}" in summary["advice"]
    assert summary["input_norm_log10"] <= summary["input_bound_log10"] + 1e-9
    assert len(report["layers"]) == depth


async def test_suggested_gain_with_sigmoid(client: httpx.AsyncClient) -> None:
    """Orthogonal gain 2 with sigmoid: each factor of the bound is 2·(1/4) = 1/2, so the bound's gain is 2/(1/2) = 4;
    the suggested gain, from the true growth, re-analysed over HTTP, is stable with the growth it quoted."""

    def body(gain: float) -> dict[str, Any]:
        init = {"widths": [16] * 13, "scheme": "orthogonal", "gain": gain}
        return {"network": {"activation": "sigmoid", "init": init}, "inputs": {"count": 2}}

    summary = (await analyse(client, body(2.0)))["summary"]
    assert summary["rate_log10"] == pytest.approx(math.log10(0.5), abs=1e-10)
    assert summary["bound_gain"] == pytest.approx(4.0, rel=1e-9)
    assert summary["verdict"] == "vanishing"
    assert summary["suggestion"] == "search"
    assert f"Use an init gain of {summary['suggested_gain']:.3g} (now 2)" in summary["advice"]
    again = (await analyse(client, body(summary["suggested_gain"])))["summary"]
    assert again["verdict"] == "stable"
    assert again["input_norm_log10"] == pytest.approx(summary["suggested_growth_log10"], abs=1e-9)


async def test_the_request_is_released_after_the_answer_is_sent(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's pending work (its body and weights) is handed to a background task, run once the answer is sent."""
    held: list[object] = []

    async def release(*work: object) -> None:
        held.extend(work)

    monkeypatch.setattr(analyses, "_release", release)
    body = {"network": {"layers": [{"weight": [[0.5, 0.1], [0.2, 0.3]]}]}, "inputs": {"count": 2}}
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200
    assert len(held) == 1
    assert isinstance(held[0], AnalysisWork)
    assert held[0].payload is not None  # the parsed body, held until the answer is sent


async def test_tiny_weights_are_carried_not_read_as_dead(client: httpx.AsyncClient) -> None:
    """Issue 18: three bias-free ReLU (and leaky ReLU) layers of 1e−150·I on x = [1, 1]: a_3 = 10^−450·x and
    ∂a_3/∂a_0 = 10^−450·I, so input_norm_log10 = 3·log10(1e−150) (to 1e-12), no dead or zero flag; two tanh layers
    of 1e−300·I cannot be carried (z_2 = 10^−600) and are flagged underflow, never zero."""
    weight = [[1e-150, 0.0], [0.0, 1e-150]]
    for activation in ("relu", "leaky_relu"):
        body = {
            "network": {"activation": activation, "layers": [{"weight": weight}] * 3},
            "inputs": {"data": [[1.0, 1.0]], "targets": [[0.0, 0.0]]},
        }
        report = await analyse(client, body)
        assert report["summary"]["input_norm_log10"] == pytest.approx(3 * math.log10(1e-150), abs=1e-12)
        assert report["summary"]["flags"] == []
        assert all(layer["flags"] == [] for layer in report["layers"])
    tanh = {
        "network": {"activation": "tanh", "layers": [{"weight": [[1e-300, 0.0], [0.0, 1e-300]]}] * 2},
        "inputs": {"data": [[1.0, 1.0]]},
    }
    report = await analyse(client, tanh)
    assert report["summary"]["flags"] == ["underflow"]
    assert report["summary"]["input_norm_log10"] is None
    assert report["summary"]["input_norm"] is None
    assert [layer["flags"] for layer in report["layers"]] == [["downstream_underflow"], ["underflow"]]
