"""Bad input, table-driven: each answered 4xx as RFC 9457 problem+json with a pointer to the offending field."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest

from api.compute import ComputePool
from tests.helpers import ClientFactory

pytestmark = pytest.mark.anyio

PROBLEM_JSON = "application/problem+json"
MARKER = "x" * 5000


def fp64_b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f8").tobytes()).decode("ascii")


def layers_body(*weights: Any, **extra: Any) -> bytes:
    layers = [{"weight": w} for w in weights]
    return json.dumps({"network": {"activation": "tanh", "layers": layers}, **extra}).encode()


def init_body(widths: list[int], **extra: Any) -> bytes:
    return json.dumps(
        {"network": {"activation": "tanh", "init": {"widths": widths, "scheme": "he_normal"}}, **extra}
    ).encode()


def with_activation(activation: Any) -> bytes:
    return json.dumps({"network": {"activation": activation, "layers": [{"weight": [[1.0, 2.0]]}]}}).encode()


def resolves(document: Any, pointer: str) -> bool:
    """Whether an RFC 6901 pointer names a value of ``document``, or a missing key of an object in it."""
    if pointer == "":
        return True
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    node = document
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(node, dict):
            if token not in node:
                return last
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


@dataclass(frozen=True)
class Case:
    id: str
    content: bytes
    status: int
    pointer: str | None = None
    """Every errors[].pointer must equal this (None: the problem need not carry errors)."""
    content_type: str = "application/json"
    path: str = "/v1/analyses"
    settings: dict[str, Any] = field(default_factory=dict)
    detail_contains: tuple[str, ...] = ()


CASES = [
    Case(
        "shapes-do-not-chain",
        layers_body([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0, 3.0]]),
        422,
        "/network/layers/1/weight",
        detail_contains=("chain",),
    ),
    Case(
        "nan-literal-in-weight",
        b'{"network":{"layers":[{"weight":[[1.0,NaN]]}]}}',
        422,
        "/network/layers/0/weight/0/1",
    ),
    Case(
        "1e400-overflows-to-inf",
        b'{"network":{"layers":[{"weight":[[1.0,1e400]]}]}}',
        422,
        "/network/layers/0/weight/0/1",
    ),
    Case(
        "infinity-literal-in-tensor-data",
        b'{"network":{"layers":[{"weight":{"shape":[1,2],"datatype":"FP64","data":[1.0,Infinity]}}]}}',
        422,
        "/network/layers/0/weight/data/1",
    ),
    Case(
        "nan-inside-b64",
        layers_body({"shape": [1, 2], "datatype": "FP64", "b64": fp64_b64([1.0, float("nan")])}),
        422,
        "/network/layers/0/weight",
        detail_contains=("finite",),
    ),
    Case(
        "inf-inside-fp32-b64",
        layers_body(
            {
                "shape": [1, 2],
                "datatype": "FP32",
                "b64": base64.b64encode(np.asarray([1.0, np.inf], "<f4").tobytes()).decode(),
            }
        ),
        422,
        "/network/layers/0/weight",
    ),
    Case("unknown-activation-name", with_activation("foo"), 422, "/network/activation"),
    Case("unknown-activation-object", with_activation({"name": "foo"}), 422, "/network/activation"),
    Case(
        "unknown-activation-parameter",
        with_activation({"name": "tanh", "slope": 1}),
        422,
        "/network/activation/slope",
    ),
    Case(
        "invalid-activation-parameter",
        with_activation({"name": "softplus", "beta": 0}),
        422,
        "/network/activation/beta",
    ),
    Case(
        "hard-tanh-clip-points-out-of-order",
        with_activation({"name": "hard_tanh", "min_val": 1.0, "max_val": -1.0}),
        422,
        "/network/activation",
    ),
    Case(
        "layer-activation-unknown",
        json.dumps({"network": {"layers": [{"weight": [[1.0]], "activation": "foo"}]}}).encode(),
        422,
        "/network/layers/0/activation",
    ),
    Case("zero-width", init_body([4, 0, 2]), 422, "/network/init/widths/1"),
    Case("negative-width", init_body([4, -3, 2]), 422, "/network/init/widths/1"),
    Case(
        "b64-byte-count-does-not-match-shape",
        layers_body({"shape": [2, 2], "datatype": "FP64", "b64": fp64_b64([1.0, 2.0, 3.0])}),
        422,
        "/network/layers/0/weight",
        detail_contains=("b64",),
    ),
    Case(
        "b64-invalid-characters-of-the-right-length",
        layers_body({"shape": [1, 2], "datatype": "FP64", "b64": "!" * 22 + "=="}),
        422,
        "/network/layers/0/weight/b64",
    ),
    Case(
        "nested-data-does-not-match-shape",
        layers_body({"shape": [2, 3], "datatype": "FP64", "data": [[1.0, 2.0], [3.0, 4.0]]}),
        422,
        "/network/layers/0/weight",
    ),
    Case(
        "ragged-nested-list",
        layers_body([[1.0, 2.0], [3.0]]),
        422,
        "/network/layers/0/weight",
    ),
    Case(
        "bias-of-wrong-length",
        json.dumps({"network": {"layers": [{"weight": [[1.0, 2.0]], "bias": [0.0, 1.0]}]}}).encode(),
        422,
        "/network/layers/0/bias",
    ),
    Case(
        "probe-data-of-wrong-width",
        layers_body([[1.0, 2.0]], inputs={"data": [[1.0, 2.0, 3.0]]}),
        422,
        "/inputs/data",
    ),
    Case(
        "both-layers-and-init",
        json.dumps(
            {"network": {"layers": [{"weight": [[1.0]]}], "init": {"widths": [1, 1], "scheme": "orthogonal"}}}
        ).encode(),
        422,
        "/network",
    ),
    Case("neither-layers-nor-init", b'{"network":{"activation":"tanh"}}', 422, "/network"),
    Case("missing-network", b"{}", 422, "/network"),
    Case("body-not-json", b'{"network": [', 400),
    Case("empty-body", b"", 400),
    Case("text-plain", layers_body([[1.0]]), 415, content_type="text/plain"),
    Case("no-content-type", layers_body([[1.0]]), 415, content_type=""),
    Case("extra-top-level-field", layers_body([[1.0]], extra=1), 422, "/extra"),
    Case(
        "extra-layer-field",
        json.dumps({"network": {"layers": [{"weight": [[1.0]], "wieght": 1}]}}).encode(),
        422,
        "/network/layers/0/wieght",
    ),
    Case("rtol-zero", layers_body([[1.0]], options={"rtol": 0}), 422, "/options/rtol"),
    Case("rtol-negative", layers_body([[1.0]], options={"rtol": -1e-6}), 422, "/options/rtol"),
    Case("count-zero", init_body([2, 2], inputs={"count": 0}), 422, "/inputs/count"),
    Case("unknown-scheme", b'{"network":{"init":{"widths":[2,2],"scheme":"kaiming"}}}', 422, "/network/init/scheme"),
    Case(
        "huge-width-refused-by-parameter-limit",
        init_body([2**20, 2**20, 10]),
        413,
        detail_contains=("parameters", "JACSPEC_MAX_PARAMETERS"),
    ),
    Case(
        "max-flops",
        init_body([64, 64, 64, 64], inputs={"count": 16}),
        413,
        settings={"max_flops": 1e6},
        detail_contains=("floating-point operations", "JACSPEC_MAX_FLOPS"),
    ),
    Case(
        "max-body-bytes",
        layers_body([[0.125] * 200]),
        413,
        settings={"max_body_bytes": 1000},
        detail_contains=("1000",),
    ),
    Case(
        "bounds-body-too-large",
        json.dumps({"factors": [0.5] * 400}).encode(),
        413,
        path="/v1/bounds",
        settings={"max_body_bytes": 1000},
    ),
    Case("bounds-not-json", b"factor=0.5", 400, path="/v1/bounds"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_a_problem(make_client: ClientFactory, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"content-type": case.content_type} if case.content_type else {}
    computed: list[object] = []
    run = ComputePool.run

    async def recorded(self: ComputePool, function: Callable[..., Any], *args: Any) -> Any:
        computed.append(function)
        return await run(self, function, *args)

    monkeypatch.setattr(ComputePool, "run", recorded)
    async with make_client(**case.settings) as client:
        response = await client.post(case.path, content=case.content, headers=headers)
        assert response.status_code == case.status, response.text
        assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
        problem = response.json()
        assert {"type", "title", "status", "detail"} <= problem.keys()
        assert problem["status"] == case.status
        assert isinstance(problem["title"], str)
        assert problem["title"]
        assert isinstance(problem["detail"], str)
        assert problem["detail"]
        if case.pointer is not None:
            pointers = [e["pointer"] for e in problem["errors"]]
            assert pointers
            assert pointers[0] == case.pointer, pointers
            document = json.loads(case.content)
            for p in pointers:
                assert resolves(document, p), f"{p} names no field of the request"
            assert all(e["detail"] for e in problem["errors"])
            assert problem["detail"].startswith(case.pointer)
        for text in case.detail_contains:
            assert text in problem["detail"]
        if case.status == 413:
            assert not computed, "a refused request must be refused before any work"
        # After a bad request the server still answers.
        assert (await client.get("/healthz")).status_code == 200


async def test_flops_estimate_is_in_the_detail(make_client: ClientFactory) -> None:
    """The refused estimate is at least the forward pass alone, 2·count·Σ n_j·n_{j−1}, and above the limit."""
    widths, count = [64, 64, 64, 64], 16
    async with make_client(max_flops=1e6) as client:
        response = await client.post(
            "/v1/analyses",
            content=init_body(widths, inputs={"count": count}),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    detail = response.json()["detail"]
    match = re.search(r"about ([0-9.]+(?:e[+-]?\d+)?) floating-point operations", detail)
    assert match, detail
    estimate = float(match.group(1))
    forward = 2 * count * sum(a * b for a, b in itertools.pairwise(widths))
    assert estimate >= forward
    assert estimate > 1e6


async def test_chunked_body_over_the_limit(make_client: ClientFactory) -> None:
    """No Content-Length: the limit is enforced while streaming."""

    async def chunks() -> Any:
        yield b'{"factor": 0.5, "depth": 10'
        for _ in range(10):
            yield b" " * 200
        yield b"}"

    async with make_client(max_body_bytes=1000) as client:
        response = await client.post("/v1/bounds", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON


async def test_body_just_under_the_limit_is_accepted(make_client: ClientFactory) -> None:
    body = json.dumps({"factor": 0.5, "depth": 10}).encode()
    body = body[:-1] + b" " * (1000 - len(body)) + b"}"
    assert len(body) == 1000
    async with make_client(max_body_bytes=1000) as client:
        response = await client.post("/v1/bounds", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 404
    assert problem["title"]


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/analyses")
    assert response.status_code == 405
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    assert response.json()["status"] == 405


@pytest.mark.parametrize(
    "body",
    [
        # b64 of the wrong length, with a huge ignored name beside it.
        {"network": {"layers": [{"weight": {"name": MARKER, "shape": [2, 2], "datatype": "FP64", "b64": "AAAA"}}]}},
        # shapes that do not chain (rejected by the numerics, not the contract).
        {
            "network": {
                "layers": [
                    {"weight": {"name": MARKER, "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}},
                    {"weight": [[1.0, 2.0]]},
                ]
            }
        },
        # a wrong type in a field right next to the marker.
        {"network": {"layers": [{"weight": {"name": MARKER, "shape": [1, 1], "datatype": "FP16", "data": [1.0]}}]}},
        # an unknown field whose value is the marker.
        {"network": {"layers": [{"weight": [[1.0]]}]}, "comment": MARKER},
        # a marker as the bad value itself.
        {"network": {"activation": MARKER, "layers": [{"weight": [[1.0]]}]}},
    ],
    ids=["b64-length", "chain", "datatype", "extra-field", "bad-value"],
)
async def test_errors_never_echo_the_body(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/v1/analyses", json=body)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    assert "x" * 100 not in response.text
    assert len(response.text) < 3000


async def test_server_survives_the_whole_table(client: httpx.AsyncClient) -> None:
    """Every default-settings case, one after the other against one app; then it is still live and ready."""
    for case in CASES:
        if case.settings:
            continue
        headers = {"content-type": case.content_type} if case.content_type else {}
        response = await client.post(case.path, content=case.content, headers=headers)
        assert 400 <= response.status_code < 500, (case.id, response.status_code)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    ok = await client.post("/v1/bounds", json={"factor": 0.5, "depth": 10})
    assert ok.status_code == 200


RECIPE = {"activation": "tanh", "init": {"widths": [3, 2], "scheme": "orthogonal"}}
LOOSE_TYPES = [
    ("/v1/bounds", {"factors": [False]}, "/factors/0"),
    ("/v1/bounds", {"factor": "0.5", "depth": 3}, "/factor"),
    ("/v1/analyses", {"network": {"layers": [{"weight": [[True, False]]}]}}, "/network/layers/0/weight"),
    ("/v1/analyses", {"network": {**RECIPE, "init": {"widths": ["3", "2"], "scheme": "orthogonal"}}}, "/network"),
    ("/v1/analyses", {"network": RECIPE, "inputs": {"count": "1"}}, "/inputs/count"),
    ("/v1/analyses", {"network": RECIPE, "inputs": {"count": 2.0}}, "/inputs/count"),
    ("/v1/analyses", {"network": RECIPE, "options": {"thresholds": {"exploding_log10": False}}}, "/options"),
]


@pytest.mark.parametrize(("path", "body", "pointer"), LOOSE_TYPES, ids=[str(b) for _, b, _ in LOOSE_TYPES])
async def test_json_types_are_strict(client: httpx.AsyncClient, path: str, body: Any, pointer: str) -> None:
    """A number must be a JSON number and an integer an integral one: no booleans, no numeric strings."""
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"].startswith(pointer)


async def test_an_integer_is_a_number(client: httpx.AsyncClient) -> None:
    """Where a number is declared, a JSON integer is one."""
    network = {**RECIPE, "init": {"widths": [3, 2], "scheme": "orthogonal", "gain": 1}}
    body = {"network": network, "options": {"thresholds": {"vanishing_log10": -3}}}
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200, response.text
