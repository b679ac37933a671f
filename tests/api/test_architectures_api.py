"""POST /v1/analyses with convolutional, residual and recurrent networks: the report's new fields, checked against
dense numpy computations, and bad input refused with a pointer at the field."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from jacspec.models import KernelTensor, Tensor
from service import conv, lanczos
from tests.helpers import compute_in_this_process

pytestmark = pytest.mark.anyio

Array = NDArray[np.float64]


def _conv_body(padding: str = "circular", **layer: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 2, 3, 3)) / 4
    conv = {
        "type": "conv2d",
        "kernel": KernelTensor.from_numpy(kernel).model_dump(exclude_none=True),
        "input_size": [5, 6],
        "padding": padding,
        "bias": [0.1, 0.0, -0.1],
        "activation": "tanh",
        **layer,
    }
    head = {"weight": (rng.standard_normal((2, 90)) / 10).tolist(), "activation": "linear"}
    return {"network": {"layers": [conv, head]}, "inputs": {"count": 4}, "options": {"rtol": 1e-10}}


async def test_a_conv_network_reports_the_operator_norm_and_its_dft(client: httpx.AsyncClient) -> None:
    body = _conv_body()
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    conv, head = report["layers"]
    assert (conv["type"], head["type"]) == ("conv2d", "dense")
    assert conv["shape"] == [90, 60]
    kernel = np.asarray(body["network"]["layers"][0]["kernel"]["data"]).reshape(3, 2, 3, 3)
    padded = np.zeros((3, 2, 5, 6))
    padded[:, :, :3, :3] = kernel
    symbols = np.fft.fft2(padded).transpose(2, 3, 0, 1).reshape(30, 3, 2)
    expected = max(np.linalg.svd(symbols, compute_uv=False).max(axis=1))  # Sedghi et al.: the DFT's blocks
    assert conv["weight_norm"] == pytest.approx(expected, rel=1e-12)
    assert conv["conv"] == {
        "kernel_shape": [3, 2, 3, 3],
        "input_size": [5, 6],
        "padding": "circular",
        "fft_norm": conv["weight_norm"],
        "padded_fft_norm": None,
        "weight_norm_method": "fft",
    }
    assert head["conv"] is None
    assert report["meta"]["methods"]["weight_norms_fft"] == 1
    assert report["recurrent"] is None
    assert conv["meanfield"]["sigma_w"] == pytest.approx(math.sqrt(2 * 9) * float(np.std(kernel)), rel=1e-12)


async def test_a_zero_padded_conv_gives_its_dft_value_as_an_estimate(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/analyses", json=_conv_body("zeros"))
    assert response.status_code == 200, response.text
    conv = response.json()["layers"][0]
    assert conv["conv"]["padding"] == "zeros"
    assert conv["conv"]["weight_norm_method"] == "dense"
    assert conv["weight_norm"] <= conv["conv"]["padded_fft_norm"] * (1 + 1e-12)
    assert conv["weight_norm"] != conv["conv"]["fft_norm"]


@pytest.mark.parametrize("padding", ["circular", "zeros"])
async def test_a_conv_network_has_spectra(client: httpx.AsyncClient, padding: str) -> None:
    """options.spectrum on a conv network: the operator's singular values (the largest its weight_norm) and the
    input–output Jacobian's; the free-probability prediction, which assumes dense layers, is null and flagged."""
    body = _conv_body(padding)
    body["options"]["spectrum"] = "full"
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    conv, head = report["layers"]
    assert len(conv["weight_spectrum"]["singular_values"]) == 60  # min(90, 60)
    assert conv["weight_spectrum"]["singular_values"][0] == pytest.approx(conv["weight_norm"], rel=1e-9)
    assert head["weight_spectrum"]["singular_values"][0] == pytest.approx(head["weight_norm"], rel=1e-9)
    spectrum = report["spectrum"]
    assert len(spectrum["probes"]) == 4
    assert spectrum["flags"] == ["prediction_unknown"]
    assert spectrum["predicted_eigenvalue_mean_log10"] is None


async def test_a_circular_convs_spectrum_costs_its_dft_not_its_matrix(client: httpx.AsyncClient) -> None:
    """16 channels on 24 × 24: the 9216 × 9216 matrix's SVD (8·9216³ flops) is over the work limit, the DFT's
    576 SVDs of 16 × 16 are not. Zero padding needs the matrix: a 413 that names the spectrum."""
    kernel = np.random.default_rng(5).standard_normal((16, 16, 3, 3)) / 12
    conv = {"type": "conv2d", "kernel": KernelTensor.from_numpy(kernel).model_dump(exclude_none=True)}
    head = {"weight": np.full((1, 9216), 1e-3).tolist()}
    layers: list[dict[str, Any]] = [{**conv, "input_size": [24, 24], "padding": "circular"}, head]
    body = {"network": {"layers": layers}, "inputs": {"count": 1}, "options": {"spectrum": "summary"}}
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    circular = response.json()["layers"][0]
    assert circular["weight_spectrum"]["singular_values"][-1] == pytest.approx(circular["weight_norm"], rel=1e-12)
    layers[0]["padding"] = "zeros"
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 413, response.text
    assert "spectrum" in response.json()["detail"]


async def test_an_uncertifiable_norm_refuses_the_rtol(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should Lanczos not certify a zero-padded conv's norm, the answer is a 422 at options.rtol."""
    compute_in_this_process(monkeypatch)
    monkeypatch.setattr(lanczos, "top_eigenvalues", lambda gram, count, *args: (np.full(count, np.nan), 0))
    monkeypatch.setattr(conv, "DENSE_MAX_ENTRIES", 0)
    response = await client.post("/v1/analyses", json=_conv_body("zeros"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["pointer"] == "/options/rtol"
    assert "could not be certified to rtol 1e-10" in problem["detail"]


async def test_a_residual_layer_reports_its_skip(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 4)) / 2
    x = rng.standard_normal((3, 4))
    body = {
        "network": {"activation": "tanh", "layers": [{"weight": w.tolist(), "residual": True}]},
        "inputs": {"data": x.tolist()},
        "options": {"rtol": 1e-10},
    }
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    (layer,) = response.json()["layers"]
    expected = max(np.linalg.norm(np.eye(4) + (1 - np.tanh(w @ xb) ** 2)[:, None] * w, 2) for xb in x)
    assert layer["skip_norm"] == 1.0
    assert layer["jacobian_norm"] == pytest.approx(expected, rel=1e-12)
    assert layer["jacobian_norm_bound"] == pytest.approx(1 + np.linalg.norm(w, 2), rel=1e-12)
    assert "residual" in layer["meanfield"]["flags"]


async def test_a_recurrent_network_walks_back_through_time(client: httpx.AsyncClient) -> None:
    body = {
        "network": {
            "recurrent": {
                "steps": 30,
                "activation": "tanh",
                "init": {"hidden_size": 16, "input_size": 3, "scheme": "orthogonal", "gain": 0.9, "seed": 3},
            }
        },
        "inputs": {"count": 5},
    }
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert [layer["index"] for layer in report["layers"]] == list(range(1, 31))
    assert {layer["type"] for layer in report["layers"]} == {"recurrent"}
    assert report["summary"]["input_bound_log10"] == pytest.approx(30 * math.log10(0.9), abs=1e-9)
    assert report["summary"]["input_norm_log10"] < report["summary"]["input_bound_log10"]
    recurrent = report["recurrent"]
    assert recurrent["steps"] == 30
    assert (recurrent["hidden_size"], recurrent["input_size"]) == (16, 3)
    assert recurrent["weight_norm"] == pytest.approx(0.9, rel=1e-6)
    assert recurrent["vanishing_sufficient"] is True
    assert recurrent["exploding_necessary"] is False
    assert "sufficient for vanishing" in recurrent["statement"]
    assert report["summary"]["gain"] == 0.9


async def test_explicit_recurrent_weights_and_given_sequences(client: httpx.AsyncClient) -> None:
    """h_t = tanh(W h_{t−1} + U x_t + b) by hand for one probe: ‖∂h_T/∂h_0‖ = ‖∏ diag(h')·W‖."""
    rng = np.random.default_rng(4)
    w, u, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), rng.standard_normal(3)
    x = rng.standard_normal((1, 8))  # T = 4 steps of n_in = 2
    body = {
        "network": {"recurrent": {"steps": 4, "weight": w.tolist(), "input_weight": u.tolist(), "bias": b.tolist()}},
        "inputs": {"data": x.tolist()},
        "options": {"rtol": 1e-10},
    }
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    h, product = np.zeros(3), np.eye(3)
    jacobians = []
    for x_t in x[0].reshape(4, 2):
        z = w @ h + u @ x_t + b
        h = np.tanh(z)
        jacobians.append((1 - h**2)[:, None] * w)
    for jacobian in reversed(jacobians):
        product = product @ jacobian
    assert response.json()["summary"]["input_norm_log10"] == pytest.approx(
        math.log10(np.linalg.norm(product, 2)), abs=1e-12
    )


def _rnn(**recurrent: Any) -> dict[str, Any]:
    return {"network": {"recurrent": {"steps": 3, **recurrent}}}


BAD: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "circular-padding-wraps-twice",
        _conv_body(kernel=KernelTensor.from_numpy(np.ones((3, 2, 5, 5))).model_dump(), input_size=[1, 6]),
        422,
        "/network/layers/0/kernel",
    ),
    ("conv-bias-not-c-out", _conv_body(bias=[0.0, 1.0]), 422, "/network/layers/0/bias"),
    (
        "conv-kernel-not-4d",
        _conv_body(kernel={"shape": [3, 18], "data": [0.0] * 54}),
        422,
        "/network/layers/0/kernel/shape",
    ),
    ("conv-projection-shape", _conv_body(projection=[[1.0, 0.0]]), 422, "/network/layers/0/projection"),
    ("conv-residual-channels", _conv_body(residual=True), 422, "/network/layers/0/residual"),
    ("unknown-layer-type", {"network": {"layers": [{"type": "lstm", "weight": [[1.0]]}]}}, 422, "/network/layers/0"),
    (
        "residual-not-square",
        {"network": {"layers": [{"weight": [[1.0, 2.0]], "residual": True}]}},
        422,
        "/network/layers/0/residual",
    ),
    (
        "projection-wrong-shape",
        {"network": {"layers": [{"weight": [[1.0, 2.0]], "projection": [[1.0]]}]}},
        422,
        "/network/layers/0/projection",
    ),
    (
        "projection-not-finite",
        {
            "network": {
                "layers": [
                    {
                        "weight": [[1.0, 2.0]],
                        "projection": {
                            "shape": [1, 2],
                            "b64": Tensor.from_numpy(np.array([[np.inf, 0.0]]), b64=True).b64,
                        },
                    }
                ]
            }
        },
        422,
        "/network/layers/0/projection",
    ),
    ("rnn-weight-not-square", _rnn(weight=[[1.0, 2.0]], input_weight=[[1.0]]), 422, "/network/recurrent/weight"),
    (
        "rnn-input-weight-rows",
        _rnn(weight=[[1.0]], input_weight=[[1.0], [2.0]]),
        422,
        "/network/recurrent/input_weight",
    ),
    ("rnn-bias-shape", _rnn(weight=[[1.0]], input_weight=[[1.0]], bias=[1.0, 2.0]), 422, "/network/recurrent/bias"),
    (
        "rnn-init-and-weights",
        _rnn(weight=[[1.0]], input_weight=[[1.0]], init={"hidden_size": 1, "input_size": 1, "scheme": "orthogonal"}),
        422,
        "/network/recurrent",
    ),
    ("rnn-no-input-weight", _rnn(weight=[[1.0]]), 422, "/network/recurrent"),
    (
        "rnn-zero-steps",
        {"network": {"recurrent": {"steps": 0, "weight": [[1.0]], "input_weight": [[1.0]]}}},
        422,
        "/network/recurrent/steps",
    ),
    (
        "rnn-data-width",
        {**_rnn(weight=[[1.0]], input_weight=[[1.0, 1.0]]), "inputs": {"data": [[1.0, 2.0]]}},
        422,
        "/inputs/data",
    ),
    (
        "two-sources",
        {"network": {"layers": [{"weight": [[1.0]]}], **_rnn(weight=[[1.0]], input_weight=[[1.0]])["network"]}},
        422,
        "/network",
    ),
    (
        "huge-conv-work",
        {
            "network": {
                "layers": [
                    {
                        "type": "conv2d",
                        "kernel": {
                            "shape": [64, 64, 3, 3],
                            "b64": Tensor.from_numpy(np.zeros((64, 64 * 9)), b64=True).b64,
                        },
                        "input_size": [4096, 4096],
                    }
                ]
            }
        },
        413,
        "/network/layers",
    ),
    (
        "huge-rnn-work",
        _rnn(steps=100_000, init={"hidden_size": 2048, "input_size": 1, "scheme": "orthogonal"}),
        413,
        "/network/recurrent/steps",
    ),
]


@pytest.mark.parametrize(("body", "status", "pointer"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
async def test_bad_architectures_are_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, pointer: str
) -> None:
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["errors"][0]["pointer"] == pointer, problem
