"""POST /v1/analyses with a .safetensors file that is no chain of layers: the weight survey of every matrix.

Files are written by the `safetensors` package (its numpy writer), laid out like the state dicts people have: a
small BERT encoder (HuggingFace's names, LayerNorm vectors, embeddings, pooler) and a CNN (kernels, BatchNorm's
statistics and its I64 counter). Every number is checked against numpy's dense SVD of the same matrix. The same
BERT file with a graph naming its tensors gets the full analysis, checked against torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as save_numpy
from torch.nn import functional

import jacspec
from jacspec.models import AnalysisReport, SurveyReport
from jacspec.models._examples import SURVEY_REPORT, SURVEY_TENSORS
from tests.api.test_examples import _close
from tests.helpers import ClientFactory, app_client

pytestmark = pytest.mark.anyio

RTOL = 1e-12
"""σ's and stable ranks against numpy.linalg.svd of the float64 matrix."""
HIDDEN, INTERMEDIATE, LAYERS, VOCAB, POSITIONS = 16, 32, 2, 50, 20


def bert_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """A BertModel's state_dict at small sizes, HuggingFace's names and shapes (nn.Linear weights [out, in])."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": rng.standard_normal((VOCAB, HIDDEN)),
        "embeddings.position_embeddings.weight": rng.standard_normal((POSITIONS, HIDDEN)),
        "embeddings.token_type_embeddings.weight": rng.standard_normal((2, HIDDEN)),
        "embeddings.LayerNorm.weight": np.ones(HIDDEN),
        "embeddings.LayerNorm.bias": np.zeros(HIDDEN),
        "embeddings.position_ids": np.arange(POSITIONS, dtype=np.int64)[None, :],
        "pooler.dense.weight": rng.standard_normal((HIDDEN, HIDDEN)),
        "pooler.dense.bias": rng.standard_normal(HIDDEN),
    }
    for n in range(LAYERS):
        layer = f"encoder.layer.{n}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            tensors[layer + name + ".weight"] = rng.standard_normal((HIDDEN, HIDDEN)) * 0.02
            tensors[layer + name + ".bias"] = rng.standard_normal(HIDDEN)
        tensors[layer + "intermediate.dense.weight"] = rng.standard_normal((INTERMEDIATE, HIDDEN))
        tensors[layer + "intermediate.dense.bias"] = rng.standard_normal(INTERMEDIATE)
        tensors[layer + "output.dense.weight"] = rng.standard_normal((HIDDEN, INTERMEDIATE))
        tensors[layer + "output.dense.bias"] = rng.standard_normal(HIDDEN)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[layer + norm + ".weight"] = rng.standard_normal(HIDDEN)
            tensors[layer + norm + ".bias"] = rng.standard_normal(HIDDEN)
    return tensors


def cnn_state_dict() -> dict[str, np.ndarray]:
    """A conv–BatchNorm–linear model's state_dict: a 4-D and a 3-D kernel, BatchNorm's statistics and counter."""
    rng = np.random.default_rng(5)
    return {
        "features.0.weight": rng.standard_normal((8, 3, 3, 3)),
        "features.0.bias": rng.standard_normal(8),
        "features.1.weight": np.ones(8),
        "features.1.bias": np.zeros(8),
        "features.1.running_mean": rng.standard_normal(8),
        "features.1.running_var": rng.random(8) + 0.5,
        "features.1.num_batches_tracked": np.array(7, dtype=np.int64),
        "temporal.weight": rng.standard_normal((4, 8, 5)).astype(np.float32),
        "classifier.weight": rng.standard_normal((10, 8)),
    }


def _upload(blob: bytes, request: dict[str, Any] | None = None) -> dict[str, Any]:
    parts: dict[str, Any] = {"weights": ("model.safetensors", blob, "application/octet-stream")}
    if request is not None:
        parts["request"] = (None, json.dumps(request), "application/json")
    return {"files": parts}


def _check_rows(report: SurveyReport, tensors: dict[str, np.ndarray]) -> None:
    """Every row's numbers against numpy's SVD of the tensor as the matrix [shape[0], rest]."""
    for row in report.weights:
        tensor = tensors[row.name].astype(np.float64)
        matrix = tensor.reshape(tensor.shape[0], -1)
        s = np.linalg.svd(matrix, compute_uv=False)
        frobenius = float(np.linalg.norm(matrix))
        assert row.shape == list(tensor.shape)
        assert row.matrix_shape == list(matrix.shape)
        assert row.sigma_max == pytest.approx(s[0], rel=RTOL)
        assert row.sigma_min == pytest.approx(s[-1], rel=RTOL)
        assert row.frobenius_norm == pytest.approx(frobenius, rel=RTOL)
        assert row.stable_rank == pytest.approx(frobenius**2 / s[0] ** 2, rel=RTOL)
        assert row.rank == np.linalg.matrix_rank(matrix)


async def test_a_bert_encoder_gets_the_survey_by_default(client: httpx.AsyncClient) -> None:
    tensors = bert_state_dict()
    response = await client.post("/v1/analyses", **_upload(save_numpy(tensors)))
    assert response.status_code == 200, response.text
    assert "singular_values" not in response.json()["weights"][0]  # only with options.spectrum
    report = SurveyReport.model_validate_json(response.content)
    assert report.kind == "survey"
    matrices = {name for name, t in tensors.items() if t.ndim == 2 and name != "embeddings.position_ids"}
    assert {row.name for row in report.weights} == matrices
    assert all(row.type == "matrix" for row in report.weights)
    _check_rows(report, tensors)
    skipped = {row.name: row for row in report.skipped}
    assert set(skipped) == set(tensors) - matrices
    assert "vector" in skipped["encoder.layer.1.attention.output.LayerNorm.weight"].reason
    assert skipped["embeddings.position_ids"].dtype == "I64"
    assert "not floating point" in skipped["embeddings.position_ids"].reason
    names = [row.name for row in report.weights]
    assert names.index("encoder.layer.0.output.dense.weight") < names.index("encoder.layer.1.attention.self.key.weight")
    s = report.summary
    assert (s.matrices, s.skipped) == (len(matrices), len(tensors) - len(matrices))
    assert s.parameters == sum(tensors[name].size for name in matrices)
    largest = max(report.weights, key=lambda row: row.sigma_max)
    assert (s.largest_sigma_max, s.largest_sigma_max_name) == (largest.sigma_max, largest.name)
    least = min(report.weights, key=lambda row: row.stable_rank or np.inf)
    assert (s.smallest_stable_rank, s.smallest_stable_rank_name) == (least.stable_rank, least.name)
    assert set(report.meta.timings_ms) == {"parse", "decode", "compute", "total"}


SEQUENCE, HEADS = 8, 4


def bert_encoder_graph() -> dict[str, Any]:
    """BERT's encoder layers (post-LN) on the embeddings' output, [SEQUENCE, HIDDEN], as a graph naming the tensors
    of bert_state_dict; the embeddings (a lookup) and the pooler are left out."""
    nodes: list[dict[str, Any]] = []
    stream = "input"
    for n in range(LAYERS):
        layer = f"encoder.layer.{n}."
        projections = {"q_proj": "attention.self.query", "k_proj": "attention.self.key"}
        projections |= {"v_proj": "attention.self.value", "out_proj": "attention.output.dense"}
        params = {
            f"{p}.{kind}": f"{layer}{name}.{kind}" for p, name in projections.items() for kind in ("weight", "bias")
        }
        norm = {"op": "layer_norm", "normalized_shape": [HIDDEN], "eps": 1e-12}
        nodes += [
            {"id": f"l{n}.attention", "op": "attention", "inputs": [stream], "num_heads": HEADS, "params": params},
            {"id": f"l{n}.residual1", "op": "add", "inputs": [stream, f"l{n}.attention"]},
            {"id": f"l{n}.norm1", **norm, "params": _affine(layer + "attention.output.LayerNorm")},
            {"id": f"l{n}.intermediate", "op": "linear", "params": _affine(layer + "intermediate.dense")},
            {"id": f"l{n}.gelu", "op": "activation", "activation": "gelu"},
            {"id": f"l{n}.output", "op": "linear", "params": _affine(layer + "output.dense")},
            {"id": f"l{n}.residual2", "op": "add", "inputs": [f"l{n}.norm1", f"l{n}.output"]},
            {"id": f"l{n}.norm2", **norm, "params": _affine(layer + "output.LayerNorm")},
        ]
        stream = f"l{n}.norm2"
    return {"input_shape": [SEQUENCE, HIDDEN], "nodes": nodes}


def _affine(prefix: str) -> dict[str, str]:
    return {"weight": prefix + ".weight", "bias": prefix + ".bias"}


def bert_encoder_torch(t: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The same encoder written with torch (HuggingFace's BertLayer in eval mode, float64) on one [T, d] input."""
    d = HIDDEN // HEADS
    for n in range(LAYERS):
        p = f"encoder.layer.{n}."

        def dense(x: torch.Tensor, name: str, p: str = p) -> torch.Tensor:
            return x @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        q, k, v = (
            dense(x, f"attention.self.{w}").reshape(SEQUENCE, HEADS, d).transpose(0, 1)
            for w in ("query", "key", "value")
        )
        mixed = torch.softmax(q @ k.transpose(1, 2) / d**0.5, dim=-1) @ v
        attended = dense(mixed.transpose(0, 1).reshape(SEQUENCE, HIDDEN), "attention.output.dense")
        norm1 = p + "attention.output.LayerNorm"
        x = functional.layer_norm(x + attended, (HIDDEN,), t[norm1 + ".weight"], t[norm1 + ".bias"], eps=1e-12)
        out = dense(functional.gelu(dense(x, "intermediate.dense")), "output.dense")
        norm2 = p + "output.LayerNorm"
        x = functional.layer_norm(x + out, (HIDDEN,), t[norm2 + ".weight"], t[norm2 + ".bias"], eps=1e-12)
    return x


async def test_a_bert_encoder_with_a_graph_gets_the_full_analysis(client: httpx.AsyncClient) -> None:
    """The same BERT file with a graph naming its tensors: a report block by block (not the survey), whose
    input–output Jacobian norm is torch's (jacrev, dense SVD) to 1e-6 and whose gradient norms are autograd's."""
    tensors = bert_state_dict()
    x = np.random.default_rng(3).standard_normal((2, SEQUENCE * HIDDEN))
    request = {"network": {"graph": bert_encoder_graph()}, "inputs": {"data": x.tolist()}, "options": {"rtol": 1e-10}}
    response = await client.post("/v1/analyses", **_upload(save_numpy(tensors), request))
    assert response.status_code == 200, response.text
    report = AnalysisReport.model_validate(response.json())
    assert {layer.type for layer in report.layers} == {"block"}
    t = {name: torch.tensor(value, requires_grad=True) for name, value in tensors.items() if value.dtype == np.float64}
    truth = 0.0
    for row in x:
        jacobian = torch.func.jacrev(lambda v: bert_encoder_torch(t, v.reshape(SEQUENCE, HIDDEN)).reshape(-1))
        truth = max(truth, float(np.linalg.norm(jacobian(torch.tensor(row)).detach().numpy(), 2)))
    assert report.summary.input_norm is not None
    assert report.summary.input_norm == pytest.approx(truth, rel=1e-6)
    # the MSE loss on the targets the server drew: none given, so y ~ N(0, 1) from default_rng(0) (service.probes)
    y = torch.tensor(np.random.default_rng(0).standard_normal((2, SEQUENCE * HIDDEN)))
    out = torch.stack([bert_encoder_torch(t, torch.tensor(row).reshape(SEQUENCE, HIDDEN)).reshape(-1) for row in x])
    pairs = {
        "l1.attention.q_proj.weight": "encoder.layer.1.attention.self.query.weight",
        "l0.attention.out_proj.bias": "encoder.layer.0.attention.output.dense.bias",
        "l0.norm1.weight": "encoder.layer.0.attention.output.LayerNorm.weight",
        "l1.intermediate.weight": "encoder.layer.1.intermediate.dense.weight",
        "l1.norm2.bias": "encoder.layer.1.output.LayerNorm.bias",
    }
    names = list(pairs.values())
    grads = dict(zip(names, torch.autograd.grad((out - y).square().mean(), [t[name] for name in names]), strict=True))
    gradients = {
        name: value for layer in report.layers for name, value in (layer.parameter_gradient_norms or {}).items()
    }
    for node_param, tensor in pairs.items():
        assert gradients[node_param] == pytest.approx(float(torch.linalg.norm(grads[tensor])), rel=1e-6)


async def test_convolution_kernels_are_surveyed_as_their_reshaped_matrix(client: httpx.AsyncClient) -> None:
    tensors = cnn_state_dict()
    response = await client.post("/v1/analyses", **_upload(save_numpy(tensors), {"options": {"spectrum": "full"}}))
    assert response.status_code == 200, response.text
    report = SurveyReport.model_validate_json(response.content)
    rows = {row.name: row for row in report.weights}
    assert set(rows) == {"features.0.weight", "temporal.weight", "classifier.weight"}
    assert rows["features.0.weight"].type == "kernel"
    assert rows["features.0.weight"].matrix_shape == [8, 27]
    assert rows["temporal.weight"].matrix_shape == [4, 40]
    _check_rows(report, tensors)
    for name, row in rows.items():
        tensor = tensors[name].astype(np.float64)
        full = np.linalg.svd(tensor.reshape(tensor.shape[0], -1), compute_uv=False)
        assert row.singular_values == pytest.approx(list(full), rel=RTOL)
    assert {row.name for row in report.skipped} == set(tensors) - set(rows)
    assert report.summary.spectrum == "full"


async def test_summary_spectrum_gives_quantiles(client: httpx.AsyncClient) -> None:
    tensors = cnn_state_dict()
    response = await client.post("/v1/analyses", **_upload(save_numpy(tensors), {"options": {"spectrum": "summary"}}))
    report = SurveyReport.model_validate_json(response.content)
    levels = report.summary.quantile_levels
    assert levels is not None
    row = report.weights[0]
    tensor = tensors[row.name].astype(np.float64)
    s = np.linalg.svd(tensor.reshape(tensor.shape[0], -1), compute_uv=False)
    assert row.singular_values == pytest.approx(list(np.quantile(s, levels)), rel=RTOL)


async def test_a_chain_shaped_file_keeps_the_chain_analysis(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(7)
    chain = {"0.weight": rng.standard_normal((8, 6)), "0.bias": rng.standard_normal(8), "2.weight": rng.random((3, 8))}
    request = {"network": {"activation": "tanh"}, "inputs": {"count": 4}}
    default = await client.post("/v1/analyses", **_upload(save_numpy(chain), request))
    forced = await client.post("/v1/analyses", **_upload(save_numpy(chain), {**request, "survey": False}))
    assert default.status_code == forced.status_code == 200
    analysed = AnalysisReport.model_validate_json(default.content)
    assert [layer.shape for layer in analysed.layers] == [[8, 6], [3, 8]]
    assert default.json()["layers"] == forced.json()["layers"]
    surveyed = await client.post("/v1/analyses", **_upload(save_numpy(chain), {"survey": True}))
    assert surveyed.status_code == 200, surveyed.text
    report = SurveyReport.model_validate_json(surveyed.content)
    assert [row.sigma_max for row in report.weights] == pytest.approx(
        [layer.weight_norm for layer in analysed.layers], rel=RTOL
    )


async def test_naming_layers_keeps_the_chain_analysis_of_any_file(client: httpx.AsyncClient) -> None:
    """A BERT file with layers named: the chain of those matrices, as today (query 16 × 16, then intermediate)."""
    layers = ["encoder.layer.0.attention.self.query", "encoder.layer.0.intermediate.dense"]
    request = {"network": {"layers": layers}, "inputs": {"count": 2}}
    response = await client.post("/v1/analyses", **_upload(save_numpy(bert_state_dict()), request))
    assert response.status_code == 200, response.text
    assert [layer["shape"] for layer in response.json()["layers"]] == [[HIDDEN, HIDDEN], [INTERMEDIATE, HIDDEN]]


async def test_survey_false_refuses_a_file_that_is_no_chain(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/analyses", **_upload(save_numpy(bert_state_dict()), {"survey": False}))
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/weights"


async def test_survey_with_layers_is_refused(client: httpx.AsyncClient) -> None:
    request = {"survey": True, "network": {"layers": ["pooler.dense"]}}
    response = await client.post("/v1/analyses", **_upload(save_numpy(bert_state_dict()), request))
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"].startswith("/request")
    assert "survey" in response.json()["detail"]


def _raw(header: dict[str, Any], buffer: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + buffer


NORM = {"dtype": "F64", "shape": [2], "data_offsets": [32, 48]}
BAD_SURVEY_FILES: list[tuple[str, bytes, str]] = [
    (
        "a matrix of NaN",
        save_numpy({"a.weight": np.array([[1.0, np.nan]]), "a.scale": np.ones(2)}),
        "tensor 'a.weight': ",
    ),
    (
        "a header that lies about a kernel's size",
        _raw({"k": {"dtype": "F64", "shape": [2, 2, 2], "data_offsets": [0, 32]}, "n.weight": NORM}, bytes(48)),
        "needs 64 bytes",
    ),
    (
        "offsets past the end",
        _raw(
            {"k": {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]}, "n": {**NORM, "data_offsets": [32, 64]}},
            bytes(48),
        ),
        "lie outside",
    ),
    (
        "a negative dimension",
        _raw({"k": {"dtype": "F64", "shape": [2, -2], "data_offsets": [0, 32]}, "n.weight": NORM}, bytes(48)),
        "integers 0 …",
    ),
    ("an unknown dtype", _raw({"k": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)), "'C64'"),
]


@pytest.mark.parametrize(("case", "blob", "message"), BAD_SURVEY_FILES, ids=[c for c, _, _ in BAD_SURVEY_FILES])
async def test_bad_files_are_refused_with_a_pointer(
    client: httpx.AsyncClient, case: str, blob: bytes, message: str
) -> None:
    response = await client.post("/v1/analyses", **_upload(blob, {"survey": True}))
    assert response.status_code == 422, (case, response.text)
    problem = response.json()
    assert problem["errors"][0]["pointer"] == "/weights"
    assert message in problem["detail"]


async def test_work_beyond_the_limit_is_refused_from_the_header(make_client: ClientFactory) -> None:
    """The SVDs of the intermediate matrices (32 × 16) are the costliest: named, 413, before any array is made."""
    async with make_client(max_flops=1e5) as client:
        response = await client.post("/v1/analyses", **_upload(save_numpy(bert_state_dict())))
    assert response.status_code == 413
    problem = response.json()
    assert problem["errors"][0]["pointer"] == "/weights"
    assert "JACSPEC_MAX_FLOPS" in problem["detail"]
    assert "intermediate.dense.weight" in problem["detail"] or "word_embeddings" in problem["detail"]
    async with make_client(max_parameters=100) as client:
        response = await client.post("/v1/analyses", **_upload(save_numpy(bert_state_dict())))
    assert response.status_code == 413
    assert "JACSPEC_MAX_PARAMETERS" in response.json()["detail"]


async def test_the_survey_example_is_the_answer_to_its_tensors(client: httpx.AsyncClient) -> None:
    tensors = {name: np.array(value, dtype=np.float64) for name, value in SURVEY_TENSORS.items()}
    request = {"survey": True, "options": {"spectrum": "full"}}
    response = await client.post("/v1/analyses", **_upload(save_numpy(tensors), request))
    assert response.status_code == 200
    got = response.json()
    for key in ("kind", "weights", "skipped", "summary"):
        assert _close(got[key], SURVEY_REPORT[key]), key
    assert got["meta"]["methods"] == SURVEY_REPORT["meta"]["methods"]
    assert set(got["meta"]["timings_ms"]) == set(SURVEY_REPORT["meta"]["timings_ms"])


async def test_sdk_survey_safetensors(client: httpx.AsyncClient) -> None:
    tensors = bert_state_dict()
    async with jacspec.AsyncClient(base_url=str(client.base_url), http_client=client) as sdk:
        report = await sdk.survey_safetensors(save_numpy(tensors), options={"spectrum": "summary"})
        with pytest.raises(jacspec.UnprocessableEntityError):
            await sdk.analyze_safetensors(save_numpy(tensors))  # a chain's analysis, which this file is not
    assert isinstance(report, SurveyReport)
    _check_rows(report, tensors)
    frame = report.to_dataframe()
    assert list(frame.index) == [row.name for row in report.weights]


# ------------------------------------------------------------------ any small state dict: never a 5xx

NAMES = st.sampled_from(["0.weight", "0.bias", "a.LayerNorm.weight", "conv.weight", "x", "emb.weight", "9.bias"])
SHAPES = st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=5).map(tuple)
DTYPES = st.sampled_from(["float64", "float32", "float16", "int64"])
VALUES = st.sampled_from([1.0, 1e-300, 1e300, np.nan, np.inf, 0.0])


@st.composite
def state_dicts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    tensors = {}
    for name in draw(st.lists(NAMES, max_size=5, unique=True)):
        shape = draw(SHAPES)
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        values = np.asarray(rng.standard_normal(shape) * draw(VALUES))
        with np.errstate(invalid="ignore", over="ignore"):
            tensors[name] = values.astype(draw(DTYPES)) if np.isfinite(values).all() else values
    return tensors


REQUESTS = st.sampled_from(
    [
        None,
        {"survey": True},
        {"survey": False},
        {"survey": True, "options": {"spectrum": "full"}},
        {"options": {"spectrum": "summary"}},
    ]
)


@pytest.fixture(scope="module")
def portal_client() -> Iterator[tuple[BlockingPortal, httpx.AsyncClient]]:
    app = app_client()
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(app) as client:
        yield portal, client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(tensors=state_dicts(), request=REQUESTS)
def test_random_state_dicts_never_5xx(
    portal_client: tuple[BlockingPortal, httpx.AsyncClient], tensors: dict[str, np.ndarray], request: Any
) -> None:
    portal, http = portal_client
    blob = save_numpy(tensors) if tensors else b"\x02\x00\x00\x00\x00\x00\x00\x00{}"
    response = portal.call(lambda: http.post("/v1/analyses", **_upload(blob, request)))
    assert response.status_code in (200, 413, 422), response.text[:300]
    if response.status_code != 200:
        assert response.json()["errors"][0]["pointer"].startswith(("/weights", "/request"))
        return
    body = response.json()
    if body.get("kind") == "survey":
        report = SurveyReport.model_validate_json(response.content)
        assert report.summary.matrices + report.summary.skipped == len(tensors)
    else:
        AnalysisReport.model_validate_json(response.content)


async def test_kernels_alone_need_survey_true(client: httpx.AsyncClient) -> None:
    """A file without a 2-D matrix keeps today's refusal (a kernel is no chain's layer), which says how to ask for the
    survey; asked for, it is given."""
    kernels = {"0.weight": np.ones((2, 3, 3, 3)), "0.bias": np.zeros(2)}
    refused = await client.post("/v1/analyses", **_upload(save_numpy(kernels)))
    assert refused.status_code == 422
    assert '"survey": true' in refused.json()["detail"]
    surveyed = await client.post("/v1/analyses", **_upload(save_numpy(kernels), {"survey": True}))
    assert surveyed.status_code == 200
    assert SurveyReport.model_validate_json(surveyed.content).weights[0].matrix_shape == [2, 27]
