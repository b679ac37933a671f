"""Property-based fuzzing of every request the service reads: never a 5xx; always a 200 with a valid report, or
problem+json that names a field.

Three families, each against one in-process app (a 5xx surfaces as the exception behind it):

- JSON bodies: small valid requests that between them hold every numeric and string field of every request model
  (checked against the models' JSON schema), with one value replaced by a hostile one — ±1e308, 1e-308, -0.0,
  10^400 written out as a JSON integer, integers beyond int64, long and non-ASCII strings, markup, wrong types,
  long lists — or one unknown key added.
- .safetensors files: random headers (tensor names, dtypes, shapes, offsets that lie), header lengths that lie,
  random buffers.
- multipart framing: boundaries of every length and alphabet, missing or doubled parts, odd part headers, bodies
  cut short.

The networks are tiny, so the examples that are valid compute in milliseconds; the example counts keep the file
to well under a minute.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as save_numpy

from jacspec.models import AnalysisReport, AnalysisRequest, BoundsRequest, SafetensorsRequest, SurveyReport
from tests.helpers import app_client

PROBLEM_JSON = "application/problem+json"
WORK_LIMIT = 2e7
"""JACSPEC_MAX_FLOPS of the fuzzed app: a valid example that would compute for long (steps = 50000, a width of
2^20 with a spectrum) is a 413 instead, which the fuzz checks like any other answer."""
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

W2 = [[0.5, -0.25], [0.125, 1.0]]


def _t(shape: list[int], value: float = 0.1) -> dict[str, Any]:
    """A contract tensor of ``shape`` holding ``value`` (a small alternating pattern)."""
    size = math.prod(shape)
    return {"shape": shape, "data": [value * (-1) ** k for k in range(size)] if value != 1.0 else [1.0] * size}


def _attention() -> dict[str, Any]:
    return {f"{p}.weight": _t([4, 4]) for p in ("q_proj", "k_proj", "v_proj", "out_proj")}


BASES: list[tuple[str, dict[str, Any]]] = [
    (
        "/v1/analyses",
        {
            "network": {
                "activation": {"name": "leaky_relu", "negative_slope": 0.1},
                "output_activation": {"name": "hard_tanh", "min_val": -1.0, "max_val": 1.0},
                "init": {
                    "widths": [3, 4, 2],
                    "scheme": "gaussian",
                    "gain": 1.0,
                    "std": 1.0,
                    "bias_std": 0.1,
                    "seed": 1,
                },
            },
            "inputs": {"count": 2, "scale": 1.0, "seed": 0},
            "options": {
                "rtol": 1e-6,
                "spectrum": "summary",
                "max_seconds": 30.0,
                "thresholds": {"vanishing_log10": -2, "exploding_log10": 2},
            },
            "run": "fuzz",
            "step": 1,
        },
    ),
    (
        "/v1/analyses",
        {
            "network": {
                "activation": {"name": "elu", "alpha": 1.0},
                "layers": [
                    {
                        "type": "dense",
                        "weight": {"name": "w", "shape": [2, 2], "datatype": "FP32", "data": W2},
                        "bias": [0.0, 0.1],
                        "residual": True,
                        "projection": W2,
                    },
                    {
                        "weight": {
                            "shape": [2, 2],
                            "datatype": "FP64",
                            "b64": "AAAAAAAA4D8AAAAAAADwvw" * 2 + "AAAAAAAAAAA=",
                        },
                        "activation": {"name": "softplus", "beta": 2.0},
                    },
                ],
            },
            "inputs": {"data": [[1.0, -1.0]], "targets": [[0.5, 0.5]]},
        },
    ),
    (
        "/v1/analyses",
        {
            "network": {
                "activation": "relu",
                "layers": [
                    {
                        "type": "conv2d",
                        "kernel": {"shape": [1, 1, 2, 2], "data": [0.5, -0.1, 0.2, 0.0]},
                        "input_size": [3, 3],
                        "padding": "circular",
                        "bias": [0.1],
                        "activation": {"name": "hard_tanh", "min_val": -2.0, "max_val": 2.0},
                    }
                ],
            },
            "inputs": {"count": 1},
        },
    ),
    (
        "/v1/analyses",
        {
            "network": {
                "recurrent": {
                    "steps": 3,
                    "activation": "tanh",
                    "init": {
                        "hidden_size": 3,
                        "input_size": 2,
                        "scheme": "orthogonal",
                        "gain": 0.9,
                        "std": 1.0,
                        "bias_std": 0.1,
                        "seed": 2,
                    },
                }
            },
            "inputs": {"count": 2},
        },
    ),
    (
        "/v1/analyses",
        {"network": {"recurrent": {"steps": 2, "weight": W2, "input_weight": [[1.0], [0.5]], "bias": [0.0, 0.0]}}},
    ),
    (
        "/v1/analyses",
        {
            "network": {
                "graph": {
                    "input_shape": [2, 4, 4],
                    "nodes": [
                        {
                            "id": "conv",
                            "op": "conv2d",
                            "params": {"weight": _t([2, 2, 3, 3]), "bias": _t([2])},
                            "stride": 1,
                            "padding": "same",
                            "dilation": [1, 1],
                            "groups": 1,
                            "padding_mode": "zeros",
                        },
                        {"id": "gn", "op": "group_norm", "num_groups": 1, "num_channels": 2, "eps": 1e-5},
                        {
                            "id": "bn",
                            "op": "batch_norm",
                            "eps": 1e-5,
                            "params": {"running_mean": _t([2]), "running_var": _t([2], 1.0)},
                        },
                        {"id": "max", "op": "max_pool2d", "kernel_size": 2, "stride": 1, "padding": 0, "dilation": 1},
                        {"id": "avg", "op": "avg_pool2d", "kernel_size": [1, 1], "divisor_override": 1},
                        {"id": "ada", "op": "adaptive_avg_pool2d", "output_size": [1, None]},
                        {"id": "flat", "op": "flatten", "start_dim": 0, "end_dim": -1},
                        {"id": "fc", "op": "linear", "params": {"weight": _t([2, 6])}},
                        {"id": "half", "op": "mul", "constant": 0.5},
                        {"id": "act", "op": "activation", "activation": {"name": "leaky_relu", "negative_slope": 0.1}},
                        {"id": "cat", "op": "concat", "inputs": ["act", "fc"], "dim": 0},
                        {"id": "square", "op": "reshape", "shape": [2, -1]},
                        {"id": "swap", "op": "transpose", "dim0": 0, "dim1": 1},
                        {"id": "back", "op": "permute", "dims": [1, 0]},
                        {"id": "sum", "op": "add", "inputs": ["back", "square"]},
                    ],
                    "output": "sum",
                }
            },
            "inputs": {"count": 2},
        },
    ),
    (
        "/v1/analyses",
        {
            "network": {
                "graph": {
                    "input_shape": [3, 4],
                    "nodes": [
                        {"id": "ln", "op": "layer_norm", "normalized_shape": [4], "eps": 1e-5},
                        {"id": "attn", "op": "attention", "num_heads": 2, "causal": True, "params": _attention()},
                        {"id": "rms", "op": "rms_norm", "normalized_shape": [4], "eps": None},
                        {"id": "c1", "op": "conv1d", "params": {"weight": _t([3, 3, 1])}},
                        {
                            "id": "rnn",
                            "op": "rnn",
                            "hidden_size": 2,
                            "num_layers": 1,
                            "nonlinearity": "relu",
                            "bias": False,
                            "bidirectional": False,
                            "params": {"weight_ih_l0": _t([2, 4]), "weight_hh_l0": _t([2, 2])},
                        },
                    ],
                }
            },
            "inputs": {"count": 1},
        },
    ),
    ("/v1/bounds", {"factors": [1.2, 0.9], "thresholds": {"vanishing_log10": -2.0, "exploding_log10": 2.0}}),
    ("/v1/bounds", {"factor": 0.5, "depth": 10}),
]
"""(path, body): valid requests that between them hold every numeric and string field of the request models."""

SAFETENSORS_REQUEST = {
    "network": {"activation": "tanh", "output_activation": "linear", "activations": None, "layers": ["0", "1"]},
    "inputs": {"count": 2, "scale": 1.0, "seed": 0},
    "options": {"rtol": 1e-6},
}

HOSTILE_VALUES = st.sampled_from(
    [
        1e308,
        -1e308,
        1.7976931348623157e308,
        1e-308,
        5e-324,
        -0.0,
        0,
        0.0,
        -1,
        1,
        2**31,
        2**53 + 1,
        2**63,
        -(2**63) - 1,
        2**64,
        10**400,
        -(10**400),
        1e-100,
        1e100,
        1e6,
        1e6 + 1,
        2**20,
        2**20 + 1,
        "",
        "0",
        "1e400",
        "٣",
        "²",
        "<script>alert(1)</script>",
        "a\x00b\r\n",
        "x" * 5000,
        "é" * 300,
        None,
        True,
        False,
        [],
        {},
        [1.0] * 2000,
        [[1.0]],
        {"name": "tanh"},
        "tanh",
    ]
)
VALUES = st.one_of(
    HOSTILE_VALUES,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=80),
    st.lists(st.integers(min_value=-3, max_value=2**21), max_size=6),
)


def leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every value in a JSON document (its containers too, so a list can be replaced whole)."""
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))


def replaced(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of ``document`` with the value at ``path`` replaced."""
    copy = json.loads(json.dumps(document))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


def scalar_fields(schema: dict[str, Any]) -> set[str]:
    """Every property name of a number, integer or string type anywhere in a JSON schema (with its $defs)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if _is_scalar(prop):
                    names.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return names


def _is_scalar(prop: dict[str, Any]) -> bool:
    kinds = [prop.get("type")] + [option.get("type") for option in prop.get("anyOf", []) if isinstance(option, dict)]
    items = prop.get("items", {})
    kinds.append(items.get("type") if isinstance(items, dict) else None)
    return any(kind in ("number", "integer", "string") for kind in kinds)


def keys(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            found |= keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= keys(value)
    return found


def test_the_bases_hold_every_scalar_field_of_every_request_model() -> None:
    """The fuzz reaches every numeric and string field: each is a key of some base document."""
    wanted = set()
    for model in (AnalysisRequest, BoundsRequest, SafetensorsRequest):
        wanted |= scalar_fields(model.model_json_schema())
    held = set().union(*(keys(body) for _, body in BASES), keys(SAFETENSORS_REQUEST))
    assert wanted - held == set()


@pytest.fixture(scope="module")
def portal_client() -> Iterator[tuple[BlockingPortal, httpx.AsyncClient]]:
    """One app for the whole file, driven from hypothesis' synchronous examples through a blocking portal."""
    app = app_client(max_flops=WORK_LIMIT)
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(app) as client:
        yield portal, client


def check(response: httpx.Response) -> None:
    """A 200 with a valid AnalysisReport or SurveyReport (or bounds answer), or a 4xx problem+json naming a field."""
    assert response.status_code < 500, response.text[:300]
    if response.status_code == 200:
        if response.request.url.path == "/v1/analyses":
            survey = response.json().get("kind") == "survey"
            (SurveyReport if survey else AnalysisReport).model_validate_json(response.content)
        return
    assert response.headers["content-type"] == PROBLEM_JSON, response.text[:300]
    problem = response.json()
    assert problem["status"] == response.status_code
    assert len(response.content) < 16_000, "a problem repeats the request"
    assert "<script" not in response.text
    if response.status_code in (400, 413, 422):
        assert isinstance(problem["errors"][0]["pointer"], str), problem


def post(client: tuple[BlockingPortal, httpx.AsyncClient], path: str, **kwargs: Any) -> httpx.Response:
    portal, http = client
    return portal.call(lambda: http.post(path, **kwargs))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    path, base = draw(st.sampled_from(BASES))
    if draw(st.integers(0, 9)) == 0:  # an unknown key somewhere
        document = json.loads(json.dumps(base))
        containers = [p for p in leaves(document) if isinstance(_at(document, p), dict)] + [()]
        where = draw(st.sampled_from(containers))
        _at(document, where)[draw(st.text(min_size=1, max_size=300))] = draw(VALUES)
    else:
        where = draw(st.sampled_from(list(leaves(base))))
        document = replaced(base, where, draw(VALUES))
    return path, json.dumps(document, ensure_ascii=draw(st.booleans())).encode()


def _at(document: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


@FUZZ
@given(case=mutated())
def test_json_fields_never_5xx(
    portal_client: tuple[BlockingPortal, httpx.AsyncClient], case: tuple[str, bytes]
) -> None:
    path, body = case
    check(post(portal_client, path, content=body, headers={"content-type": "application/json"}))


JSON_SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.just(10**400), st.text(max_size=20), st.none(), st.booleans()
)
NAMES = st.one_of(
    st.sampled_from(
        [
            "0.weight",
            "1.weight",
            "0.bias",
            "1.bias",
            "٣.weight",
            "².weight",
            "9" * 5000 + ".weight",
            "__metadata__",
            "<b>.weight",
        ]
    ),
    st.text(max_size=30).map(lambda s: s + ".weight"),
)
DTYPES = st.sampled_from(["F64", "F32", "F16", "BF16", "I32", "F8", "", None, 5])
SHAPES = st.one_of(
    st.lists(st.integers(min_value=-2, max_value=4), min_size=0, max_size=4),
    st.lists(st.sampled_from([0, 2, 2**20, 2**20 + 1, 2**62, 2**64, 10**400]), min_size=1, max_size=3),
    JSON_SCALARS,
)
OFFSETS = st.one_of(
    st.lists(st.integers(min_value=-8, max_value=80), min_size=0, max_size=3), JSON_SCALARS, st.just([0, 10**400])
)
ENTRY = st.one_of(
    st.fixed_dictionaries({"dtype": DTYPES, "shape": SHAPES, "data_offsets": OFFSETS}),
    JSON_SCALARS,
    st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=3),
)


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    header: dict[str, Any] = draw(st.dictionaries(NAMES, ENTRY, max_size=4))
    if draw(st.booleans()):  # one honest entry, so that many files get past the header
        header["0.weight"] = {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]}
    text = json.dumps(header).encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=40))
    length = draw(st.one_of(st.just(len(text)), st.integers(min_value=0, max_value=2**64 - 1)))
    buffer = draw(st.one_of(st.just(b"\x00" * 32), st.binary(max_size=96), st.just(struct.pack("<4d", *[1e308] * 4))))
    return (struct.pack("<Q", length) + text + buffer)[: draw(st.integers(min_value=0, max_value=10_000))]


@FUZZ
@given(blob=safetensors_files(), request=st.one_of(st.none(), st.just(SAFETENSORS_REQUEST), st.just({"x": 1})))
def test_safetensors_headers_never_5xx(
    portal_client: tuple[BlockingPortal, httpx.AsyncClient], blob: bytes, request: dict[str, Any] | None
) -> None:
    files: list[tuple[str, tuple[str | None, bytes, str]]] = [
        ("weights", ("m.safetensors", blob, "application/octet-stream"))
    ]
    if request is not None:
        files.append(("request", (None, json.dumps(request).encode(), "application/json")))
    check(post(portal_client, "/v1/analyses", files=files))


GOOD_FILE = save_numpy({"0.weight": np.eye(2), "1.weight": np.ones((1, 2))})
BOUNDARIES = st.one_of(
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='";\\'), min_size=0, max_size=300
    ),
    st.sampled_from(["b" * 70, "b" * 256, "b" * 257, "é", "a b", "--", "x\x00y"]),
)
DISPOSITIONS = st.sampled_from(
    [
        b'form-data; name="weights"; filename="m.safetensors"',
        b'form-data; name="request"',
        b"form-data; name=weights; filename=m",
        b'form-data; filename="m"',
        b"form-data; name*=utf-8''w%C3%A9ights; filename=\"m\"",
        b'form-data; name="\xff\xfe"; filename="\xe9"',
        b"",
        b"attachment",
    ]
)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    boundary = draw(BOUNDARIES)
    declared = draw(st.one_of(st.just(boundary), BOUNDARIES))
    quoted = draw(st.booleans())
    content_type = (
        f'multipart/form-data; boundary="{declared}"' if quoted else f"multipart/form-data; boundary={declared}"
    )
    mark = boundary.encode("utf-8", "replace")
    body = b""
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        headers = b"Content-Disposition: " + draw(DISPOSITIONS) + b"\r\n"
        if draw(st.booleans()):
            headers += (
                b"Content-Type: "
                + draw(st.sampled_from([b"application/json", b"text/plain; charset=utf-7", b"\xff"]))
                + b"\r\n"
            )
        content = draw(st.sampled_from([GOOD_FILE, json.dumps(SAFETENSORS_REQUEST).encode(), b"", b"--" + mark]))
        body += b"--" + mark + b"\r\n" + headers + b"\r\n" + content + b"\r\n"
    if draw(st.booleans()):
        body += b"--" + mark + b"--\r\n"
    cut = draw(st.integers(min_value=0, max_value=len(body)))
    return content_type, body[: cut if draw(st.integers(0, 3)) == 0 else len(body)]


@FUZZ
@given(case=multipart_bodies())
def test_multipart_framing_never_5xx(
    portal_client: tuple[BlockingPortal, httpx.AsyncClient], case: tuple[str, bytes]
) -> None:
    content_type, body = case
    try:
        headers = {"content-type": content_type}
        httpx.Headers(headers)  # a boundary httpx cannot send as a header is not a request
    except (UnicodeEncodeError, ValueError):
        return
    check(post(portal_client, "/v1/analyses", content=body, headers=headers))
