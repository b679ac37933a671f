"""POST /v1/analyses with network.graph: a residual MLP's report (checked against a dense numpy Jacobian), 422s
naming the field for bad references, shapes, parameters and ops, and a 413 for a graph too large to analyse."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save as save_numpy

from tests.api.test_fuzz import BASES

pytestmark = pytest.mark.anyio

RNG = np.random.default_rng(7)
W1 = RNG.normal(0, 0.5, size=(4, 4))
W2 = RNG.normal(0, 0.5, size=(2, 4))
X = RNG.standard_normal((3, 4))


def _body() -> dict[str, Any]:
    """x → h = x + tanh(W1 x) → y = W2 h."""
    return {
        "network": {
            "graph": {
                "input_shape": [4],
                "nodes": [
                    {"id": "fc1", "op": "linear", "params": {"weight": {"shape": [4, 4], "data": W1.ravel().tolist()}}},
                    {"id": "act", "op": "activation", "activation": "tanh"},
                    {"id": "res", "op": "add", "inputs": ["input", "act"]},
                    {"id": "fc2", "op": "linear", "params": {"weight": {"shape": [2, 4], "data": W2.ravel().tolist()}}},
                ],
            }
        },
        "inputs": {"data": X.tolist()},
        "options": {"rtol": 1e-10},
    }


def _block_norms() -> tuple[float, float]:
    """max over probes of ‖I + diag(1 − tanh²(W1 x))·W1‖₂ and of ‖W2·(that)‖₂, densely."""
    first, whole = 0.0, 0.0
    for x in X:
        jacobian = np.eye(4) + (1 - np.tanh(W1 @ x) ** 2)[:, None] * W1
        first = max(first, float(np.linalg.norm(jacobian, 2)))
        whole = max(whole, float(np.linalg.norm(W2 @ jacobian, 2)))
    return first, whole


async def test_a_residual_graph_is_analysed_block_by_block(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/analyses", json=_body())
    assert response.status_code == 200, response.text
    report = response.json()
    first, second = report["layers"]
    assert first["type"] == "block"
    assert first["nodes"] == ["fc1", "act", "res"]
    assert second["nodes"] == ["fc2"]
    assert second["shape"] == [2, 4]
    block, whole = _block_norms()
    assert first["jacobian_norm"] == pytest.approx(block, rel=1e-8)
    assert first["backward_norm"] == pytest.approx(float(np.linalg.norm(W2, 2)), rel=1e-8)
    assert report["summary"]["input_norm"] == pytest.approx(whole, rel=1e-8)
    assert set(first["parameter_gradient_norms"]) == {"fc1.weight"}
    assert first["meanfield"] is None
    assert first["activation"] is None
    assert first["jacobian_norm_bound"] >= first["jacobian_norm"]


async def test_every_matrix_of_a_graph_gets_its_row_of_the_weight_survey(client: httpx.AsyncClient) -> None:
    """σ_max, σ_min, ‖W‖_F and the stable rank ‖W‖_F²/σ_max² of each weight, against numpy's dense SVD; a report of
    another network has no such key."""
    report = (await client.post("/v1/analyses", json=_body())).json()
    rows = {row["name"]: row for row in report["weights"]}
    assert list(rows) == ["fc1.weight", "fc2.weight"]
    for name, weight in (("fc1.weight", W1), ("fc2.weight", W2)):
        s = np.linalg.svd(weight, compute_uv=False)
        row = rows[name]
        assert row["shape"] == list(weight.shape)
        assert row["sigma_max"] == pytest.approx(s[0], rel=1e-12)
        assert row["sigma_min"] == pytest.approx(s[-1], rel=1e-12)
        assert row["frobenius_norm"] == pytest.approx(np.linalg.norm(weight), rel=1e-12)
        assert row["stable_rank"] == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-12)
        assert "singular_values" not in row
    chain = {"network": {"activation": "tanh", "layers": [{"weight": W1.tolist()}]}, "inputs": {"count": 2}}
    assert "weights" not in (await client.post("/v1/analyses", json=chain)).json()


def _edited(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(_body())
    target = body["network"]["graph"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "pointer"),
    [
        (["nodes", 2, "inputs"], ["input", "nowhere"], "/network/graph/nodes/2/inputs/1"),
        (["nodes", 2, "inputs"], ["input", "fc2"], "/network/graph/nodes/2/inputs/1"),
        (["nodes", 3, "params", "weight"], {"shape": [2, 3], "data": [0.0] * 6}, "/network/graph/nodes/3/inputs/0"),
        (["nodes", 1, "op"], "softmax2d", "/network/graph/nodes/1"),
        (["nodes", 0, "params", "bogus"], {"shape": [4], "data": [0.0] * 4}, "/network/graph/nodes/0/params/bogus"),
        (["nodes", 0, "params", "bias"], "fc1.bias", "/network/graph/nodes/0/params/bias"),
        (["nodes", 1, "id"], "fc1", "/network/graph/nodes/1/id"),
        (["nodes", 1, "id"], "has space", "/network/graph/nodes/1/id"),
        (["output"], "act", "/network/graph/output"),
        (["nodes", 2, "inputs"], ["input", "fc1"], "/network/graph/nodes/1"),
    ],
)
async def test_bad_graphs_are_422_at_the_field(
    client: httpx.AsyncClient, path: list[Any], value: Any, pointer: str
) -> None:
    response = await client.post("/v1/analyses", json=_edited(path, value))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == pointer


KERNEL = {"shape": [1, 1, 1, 1], "data": [1.0]}


@pytest.mark.parametrize(
    ("node", "pointer"),
    [
        ({"op": "conv2d", "padding": -1, "params": {"weight": KERNEL}}, "/network/graph/nodes/0/padding"),
        ({"op": "conv2d", "padding": [1, -1], "params": {"weight": KERNEL}}, "/network/graph/nodes/0/padding/1"),
        ({"op": "conv2d", "padding": "full", "params": {"weight": KERNEL}}, "/network/graph/nodes/0/padding"),
        ({"op": "max_pool2d", "kernel_size": [2, 2, 2]}, "/network/graph/nodes/0/kernel_size"),
        ({"op": "adaptive_avg_pool2d", "output_size": [0, 2]}, "/network/graph/nodes/0/output_size/0"),
    ],
)
async def test_an_int_or_list_field_is_422_at_the_field_itself(
    client: httpx.AsyncClient, node: dict[str, Any], pointer: str
) -> None:
    """The unions of an int, a list and a word are located at the field (or its entry), no union tag in between."""
    body = {"network": {"graph": {"input_shape": [1, 4, 4], "nodes": [{"id": "n", **node}]}}}
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 422, response.text
    assert [error["pointer"] for error in response.json()["errors"]] == [pointer]


async def test_a_graph_too_large_is_413_before_any_work(client: httpx.AsyncClient) -> None:
    body = {
        "network": {
            "graph": {
                "input_shape": [1024, 1024],
                "nodes": [{"id": f"h{k}", "op": "activation", "activation": "tanh"} for k in range(64)],
            }
        },
        "inputs": {"count": 4096},
    }
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 413, response.text
    assert any(error["pointer"] == "/network/graph" for error in response.json()["errors"])


async def test_a_forward_pass_that_overflows_is_reported_not_refused(client: httpx.AsyncClient) -> None:
    body = _body()
    nodes = body["network"]["graph"]["nodes"]
    nodes[3]["params"]["weight"]["data"] = [1e200] * 8
    nodes.append({"id": "fc3", "op": "linear", "params": {"weight": {"shape": [2, 2], "data": [1e200] * 4}}})
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["summary"]["verdict"] == "exploding"
    assert "overflow" in report["summary"]["flags"]
    assert report["layers"][-1]["flags"][-1] == "overflow"
    assert report["layers"][0]["jacobian_norm"] is None


def _upload(blob: bytes, request: dict[str, Any]) -> dict[str, Any]:
    return {
        "files": {
            "weights": ("model.safetensors", blob, "application/octet-stream"),
            "request": (None, json.dumps(request), "application/json"),
        }
    }


def _named_graph() -> dict[str, Any]:
    """The residual graph of _body with its weights named as a state dict names them."""
    graph: dict[str, Any] = copy.deepcopy(_body()["network"]["graph"])
    graph["nodes"][0]["params"] = {"weight": "block.fc1.weight"}
    graph["nodes"][3]["params"] = {"weight": "head.weight"}
    return graph


async def test_an_upload_with_a_graph_naming_its_tensors_gives_the_json_numbers(client: httpx.AsyncClient) -> None:
    blob = save_numpy({"block.fc1.weight": W1, "head.weight": W2, "unused.scale": np.ones(3)})
    request = {"network": {"graph": _named_graph()}, "inputs": {"data": X.tolist()}, "options": {"rtol": 1e-10}}
    uploaded = await client.post("/v1/analyses", **_upload(blob, request))
    assert uploaded.status_code == 200, uploaded.text
    inline = (await client.post("/v1/analyses", json=_body())).json()
    for got, expected in zip(uploaded.json()["layers"], inline["layers"], strict=True):
        assert got["jacobian_norm"] == pytest.approx(expected["jacobian_norm"], rel=1e-12)
        assert got["backward_norm"] == pytest.approx(expected["backward_norm"], rel=1e-12)
        assert list(got["parameter_gradient_norms"].values()) == pytest.approx(
            list(expected["parameter_gradient_norms"].values()), rel=1e-12
        )


@pytest.mark.parametrize(
    ("tensors", "pointer"),
    [
        ({"block.fc1.weight": W1}, "/request/network/graph/nodes/3/params/weight"),
        ({"block.fc1.weight": W1, "head.weight": np.ones((2, 3))}, "/request/network/graph/nodes/3/inputs/0"),
    ],
)
async def test_an_upload_graph_naming_a_missing_or_misshapen_tensor_is_422(
    client: httpx.AsyncClient, tensors: dict[str, Any], pointer: str
) -> None:
    request = {"network": {"graph": _named_graph()}}
    response = await client.post("/v1/analyses", **_upload(save_numpy(tensors), request))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == pointer


@pytest.mark.parametrize("body", [body for _, body in BASES if "graph" in body.get("network", {})])
async def test_the_fuzz_bases_of_every_op_are_answered(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """The fuzz's graph bases (every op and field) are valid requests, answered with one block report each."""
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
    layers = response.json()["layers"]
    nodes = [node for layer in layers for node in layer["nodes"]]
    assert nodes == [node["id"] for node in body["network"]["graph"]["nodes"]]
