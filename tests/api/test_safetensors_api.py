"""POST /v1/analyses with a .safetensors upload: the same numbers as JSON, and every malformed file refused.

Files are written by the `safetensors` package itself (numpy and torch writers), independently of our reader,
or by hand where the test needs a file that lies.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

import jacspec
from jacspec.models import Tensor
from tests.helpers import ClientFactory

pytestmark = pytest.mark.anyio

RNG = np.random.default_rng(7)
WEIGHTS = {
    "0.weight": RNG.standard_normal((8, 6)),
    "0.bias": RNG.standard_normal(8),
    "2.weight": RNG.standard_normal((5, 8)),
    "10.weight": RNG.standard_normal((3, 5)),
}
NETWORK = {"activation": "tanh", "output_activation": "linear"}


def _upload(blob: bytes, request: dict[str, Any] | None = None) -> dict[str, Any]:
    parts: dict[str, Any] = {"weights": ("model.safetensors", blob, "application/octet-stream")}
    if request is not None:
        parts["request"] = (None, json.dumps(request), "application/json")
    return {"files": parts}


def _json_body(weights: dict[str, np.ndarray], order: list[str]) -> dict[str, Any]:
    layers = []
    for i, prefix in enumerate(order):
        layer: dict[str, Any] = {"weight": Tensor.from_numpy(weights[prefix + ".weight"], b64=True).model_dump()}
        if prefix + ".bias" in weights:
            layer["bias"] = Tensor.from_numpy(weights[prefix + ".bias"], b64=True).model_dump()
        if i == len(order) - 1:
            layer["activation"] = "linear"
        layers.append(layer)
    return {"network": {"activation": "tanh", "layers": layers}, "inputs": {"count": 4}}


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["layers"] == b["layers"]
    assert a["summary"] == b["summary"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
async def test_safetensors_gives_the_numbers_of_the_json_route(client: httpx.AsyncClient, dtype: type) -> None:
    weights: dict[str, np.ndarray] = {name: value.astype(dtype) for name, value in WEIGHTS.items()}
    upload = await client.post(
        "/v1/analyses", **_upload(save_numpy(weights), {"network": NETWORK, "inputs": {"count": 4}})
    )
    assert upload.status_code == 200, upload.text
    sent = await client.post("/v1/analyses", json=_json_body(weights, ["0", "2", "10"]))
    assert sent.status_code == 200
    _same(upload.json(), sent.json())
    norms = [layer["weight_norm"] for layer in upload.json()["layers"]]
    exact = [float(np.linalg.norm(weights[p + ".weight"].astype(np.float64), 2)) for p in ("0", "2", "10")]
    assert norms == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
async def test_half_precision_widens_exactly(client: httpx.AsyncClient, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save as save_torch

    tensors = {name: torch.from_numpy(value).to(getattr(torch, dtype)) for name, value in WEIGHTS.items()}
    upload = await client.post(
        "/v1/analyses", **_upload(save_torch(tensors), {"network": NETWORK, "inputs": {"count": 4}})
    )
    assert upload.status_code == 200, upload.text
    widened = {name: t.to(torch.float64).numpy() for name, t in tensors.items()}
    sent = await client.post("/v1/analyses", json=_json_body(widened, ["0", "2", "10"]))
    _same(upload.json(), sent.json())


async def test_explicit_layer_names_set_the_order(client: httpx.AsyncClient) -> None:
    weights = {"enc.weight": WEIGHTS["0.weight"], "dec.weight": WEIGHTS["2.weight"]}
    request = {"network": {"activation": "relu", "layers": ["enc", "dec"]}, "inputs": {"count": 3}}
    response = await client.post("/v1/analyses", **_upload(save_numpy(weights), request))
    assert response.status_code == 200, response.text
    assert [layer["shape"] for layer in response.json()["layers"]] == [[8, 6], [5, 8]]
    natural = await client.post("/v1/analyses", **_upload(save_numpy(weights), {"network": {"activation": "relu"}}))
    assert natural.status_code == 422  # natural order puts dec (5×8) before enc (8×6): they do not chain
    assert "does not chain" in natural.json()["detail"]


def _raw(header: dict[str, Any], buffer: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + buffer


GOOD = {"0.weight": {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]}}
BUFFER = np.eye(2).tobytes()

VECTOR = {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}
HOLES: list[tuple[str, bytes, str]] = [
    (
        "a hole between tensors",
        _raw({**GOOD, "1.weight": {**VECTOR, "shape": [1], "data_offsets": [40, 48]}}, BUFFER + bytes(16)),
        "bytes 32–40 of the buffer, before tensor '1.weight', belong to no tensor",
    ),
    ("a hole before the first tensor", _raw({"0.weight": {**VECTOR, "data_offsets": [16, 32]}}, BUFFER), "bytes 0–16"),
    ("bytes after the last tensor", _raw(GOOD, BUFFER + bytes(8)), "bytes 32–40 of the buffer, after the last tensor"),
]
"""Files whose tensors do not cover the byte buffer exactly, one after another."""

BAD_FILES: list[tuple[str, bytes, str]] = [
    ("int32 dtype", save_numpy({"0.weight": np.ones((2, 2), dtype=np.int32)}), "dtype 'I32'"),
    ("empty", b"", "fewer than its 8-byte header"),
    ("truncated buffer", _raw(GOOD, BUFFER[:-3]), "lie outside"),
    ("header length lies", _raw(GOOD, BUFFER, length=10**9), "the header claims 1000000000 bytes"),
    ("header not JSON", b"\x05\x00\x00\x00\x00\x00\x00\x00{oops" + BUFFER, "not valid JSON"),
    ("header not an object", _raw([1, 2], BUFFER), "must be a JSON object"),  # type: ignore[arg-type]
    ("offsets past the end", _raw({"0.weight": {**GOOD["0.weight"], "data_offsets": [0, 64]}}, BUFFER), "lie outside"),
    ("shape and offsets disagree", _raw({"0.weight": {**GOOD["0.weight"], "shape": [3, 2]}}, BUFFER), "needs 48 bytes"),
    ("negative shape", _raw({"0.weight": {**GOOD["0.weight"], "shape": [-2, -2]}}, BUFFER), "integers 0 …"),
    ("a dimension beyond 2^20", _raw({"0.weight": {**GOOD["0.weight"], "shape": [2**62, 0]}}, BUFFER), "integers 0 …"),
    (
        "overlapping tensors",
        _raw(
            {
                "0.weight": {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]},
                "1.weight": {"dtype": "F64", "shape": [2], "data_offsets": [16, 32]},
            },
            BUFFER,
        ),
        "overlap",
    ),
    *HOLES,
    ("no weights", save_numpy({"0.scale": np.ones(3)}), "no tensor named like"),
    ("a vector weight", save_numpy({"0.weight": np.ones(3)}), "not a matrix"),
    ("not chaining", save_numpy({"0.weight": np.ones((3, 2)), "1.weight": np.ones((2, 4))}), "'1.weight': shape"),
    ("NaN", save_numpy({"0.weight": np.array([[1.0, np.nan]])}), "finite"),
]


@pytest.mark.parametrize(("case", "blob", "message"), BAD_FILES, ids=[case for case, _, _ in BAD_FILES])
async def test_malformed_files_are_refused(client: httpx.AsyncClient, case: str, blob: bytes, message: str) -> None:
    response = await client.post("/v1/analyses", **_upload(blob))
    assert response.status_code == 422, (case, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["pointer"] == "/weights"
    assert message in problem["detail"]
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(("case", "blob", "message"), HOLES, ids=[case for case, _, _ in HOLES])
def test_the_reference_library_refuses_a_buffer_with_holes_too(case: str, blob: bytes, message: str) -> None:
    with pytest.raises(SafetensorError, match=r"invalid offset|not fully covered"):
        load_numpy(blob)
    full = _raw(GOOD, BUFFER)
    assert load_numpy(full)["0.weight"].tolist() == np.eye(2).tolist()  # the same writer's file without the hole


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"network": {"activation": "foo"}}, "/request/network/activation"),
    ({"network": {"layers": ["missing"]}}, "/request/network/layers/0"),
    ({"network": {"activations": ["tanh"]}}, "/request/network/activations"),
    ({"inputs": {"count": 0}}, "/request/inputs/count"),
    ({"surprise": 1}, "/request/surprise"),
]


@pytest.mark.parametrize(("request_part", "pointer"), BAD_REQUESTS)
async def test_bad_request_parts_point_into_the_request(
    client: httpx.AsyncClient, request_part: dict[str, Any], pointer: str
) -> None:
    response = await client.post("/v1/analyses", **_upload(save_numpy(WEIGHTS), request_part))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == pointer


async def test_missing_file_part(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/analyses", files={"request": (None, "{}", "application/json")})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/weights"


async def test_request_part_that_is_not_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/analyses", files={**_upload(save_numpy(WEIGHTS))["files"], "request": (None, "{", "application/json")}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["pointer"] == "/request"


async def test_parameter_limit_is_checked_from_the_header(make_client: ClientFactory) -> None:
    """The header alone says 8·6 + 8 + 5·8 + 3·5 = 111 parameters: refused before any array is made."""
    async with make_client(max_parameters=110) as client:
        response = await client.post("/v1/analyses", **_upload(save_numpy(WEIGHTS)))
    assert response.status_code == 413
    assert "111 parameters" in response.json()["detail"]


async def test_body_limit_applies_to_uploads(make_client: ClientFactory) -> None:
    async with make_client(max_body_bytes=500) as client:
        response = await client.post("/v1/analyses", **_upload(save_numpy(WEIGHTS)))
    assert response.status_code == 413


async def test_sdk_analyze_safetensors_from_a_path_and_from_bytes(client: httpx.AsyncClient, tmp_path: Any) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(save_numpy(WEIGHTS))
    async with jacspec.AsyncClient(base_url=str(client.base_url), http_client=client) as sdk:
        from_path = await sdk.analyze_safetensors(path, network=NETWORK, inputs={"count": 4})
        from_bytes = await sdk.analyze_safetensors(path.read_bytes(), network=NETWORK, inputs={"count": 4})
        as_json = await sdk.analyze(_json_body(WEIGHTS, ["0", "2", "10"])["network"], inputs={"count": 4})
    assert from_path.layers == from_bytes.layers == as_json.layers


def test_sync_sdk_over_http(server_url: str) -> None:
    with jacspec.Client(base_url=server_url) as sdk:
        report = sdk.analyze_safetensors(save_numpy(WEIGHTS), network=NETWORK)
        with pytest.raises(jacspec.UnprocessableEntityError) as caught:
            sdk.analyze_safetensors(b"nope")
    assert [layer.shape for layer in report.layers] == [[8, 6], [5, 8], [3, 5]]
    assert caught.value.errors[0].pointer == "/weights"


def _multipart_body(boundary: bytes, *parts: tuple[bytes, bytes]) -> bytes:
    """A multipart body of (Content-Disposition, data) parts, closed by the final boundary."""
    body = b"".join(b"--%s\r\nContent-Disposition: %s\r\n\r\n%s\r\n" % (boundary, d, data) for d, data in parts)
    return body + b"--%s--\r\n" % boundary


async def test_file_bytes_that_look_like_the_boundary(client: httpx.AsyncClient) -> None:
    """The weights' bytes hold the boundary's start and a CR LF: they are read exactly, as the JSON route reads them."""
    boundary = b"jacspecBOUNDARY"
    raw = (b"\r\n--jacspecBOUN" + b"\x00\x00\x80?\r\n-\x00\x00\x00@" * 4)[:48]
    weight = np.frombuffer(raw, dtype="<f4").reshape(3, 4).copy()
    assert np.isfinite(weight).all()
    blob = save_numpy({"0.weight": weight})
    assert raw in blob
    body = _multipart_body(boundary, (b'form-data; name="weights"; filename="w.safetensors"', blob))
    headers = {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}
    upload = await client.post("/v1/analyses", content=body, headers=headers)
    as_json = await client.post("/v1/analyses", json={"network": {"layers": [{"weight": weight.tolist()}]}})
    assert as_json.status_code == 200, as_json.text
    assert upload.status_code == 200, upload.text
    _same(upload.json(), as_json.json())


MALFORMED_BODIES = {
    "no boundary": ("multipart/form-data", _multipart_body(b"b", (b'form-data; name="weights"', b"x"))),
    "truncated": ("multipart/form-data; boundary=b", _multipart_body(b"b", (b'form-data; name="weights"', b"x"))[:-9]),
    "three parts": (
        "multipart/form-data; boundary=b",
        _multipart_body(b"b", *[(b'form-data; name="p%d"' % i, b"x") for i in range(3)]),
    ),
    "a part without a name": ("multipart/form-data; boundary=b", _multipart_body(b"b", (b"form-data", b"x"))),
}


@pytest.mark.parametrize("case", MALFORMED_BODIES)
async def test_malformed_multipart_bodies_are_refused(client: httpx.AsyncClient, case: str) -> None:
    content_type, body = MALFORMED_BODIES[case]
    response = await client.post("/v1/analyses", content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("the multipart body could not be read")
