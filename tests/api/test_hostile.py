"""Hostile input: every case is answered 4xx as problem+json that names the field at fault, and never 5xx.

The table runs in-process, each case against a fresh app (so that a 5xx surfaces as the exception behind it),
then all of it over real HTTP against one `python -m api`. Cases where the transport matters (a lying
Content-Length, a chunked body over the limit) run against real servers only. After each case, and after the whole
table, the app or server still answers.

"Names the field" means: the problem's first `errors[].pointer` is the JSON pointer of the field at fault (for a
multipart body, `/weights` or `/request/...`), and the detail starts with it; where the fault is the body as a
whole (not JSON, wrong media type, too large) the detail names what is wrong with it instead.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import numpy as np
import pytest
from safetensors.numpy import save as save_numpy
from starlette.types import Message

from api import problems, work
from api.encode import analysis_report, report_json
from api.ingest import body as api_body
from api.main import create_app
from api.settings import Settings
from jacspec.models import AnalysisRequest
from tests.api.test_errors_api import resolves
from tests.api.test_overload import PATIENCE_S, slot_held
from tests.helpers import asgi_client, running_server, served

pytestmark = pytest.mark.anyio

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
Parts = tuple[tuple[str, tuple[str | None, bytes, str]], ...]
"""Multipart parts as httpx takes them: (name, (filename or None for a plain field, content, content type))."""


@dataclass(frozen=True)
class Hostile:
    """One hostile request and what the problem answering it must say."""

    id: str
    status: int
    pointer: str | None = None
    """errors[0].pointer, exactly; None where the problem names the body as a whole (then ``names`` is needed)."""
    names: tuple[str, ...] = ()
    """Words the detail must contain."""
    body: bytes = b""
    content_type: str | None = JSON
    parts: Parts = ()
    path: str = "/v1/analyses"

    def __post_init__(self) -> None:
        assert self.pointer is not None or self.names, f"{self.id}: say how the problem names the field"

    def request(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.AsyncClient.post`` that send this case."""
        if self.parts:
            return {"files": list(self.parts)}
        headers = {"content-type": self.content_type} if self.content_type is not None else {}
        return {"content": self.body, "headers": headers}


def js(document: Any) -> bytes:
    return json.dumps(document).encode()


def layers(*weights: Any, activation: Any = "tanh", **extra: Any) -> bytes:
    """An explicit network of the given weights; ``extra`` adds top-level fields (inputs, options, ...)."""
    return js({"network": {"activation": activation, "layers": [{"weight": w} for w in weights]}, **extra})


def layer_dicts(*layer_list: dict[str, Any], **extra: Any) -> bytes:
    return js({"network": {"activation": "tanh", "layers": list(layer_list)}, **extra})


def recipe(widths: list[int], **init: Any) -> dict[str, Any]:
    return {"activation": "tanh", "init": {"widths": widths, "scheme": "he_normal", **init}}


def init(widths: list[int], *, network: dict[str, Any] | None = None, **extra: Any) -> bytes:
    return js({"network": {**recipe(widths), **(network or {})}, **extra})


def activation(spec: Any) -> bytes:
    return js({"network": {"activation": spec, "layers": [{"weight": [[1.0, 2.0]]}]}})


def b64(values: Any, dtype: str = "<f8") -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def tensor(shape: list[int], values: Any, datatype: str = "FP64") -> dict[str, Any]:
    """A tensor sent as base64 bytes."""
    return {"shape": shape, "datatype": datatype, "b64": b64(values, "<f4" if datatype == "FP32" else "<f8")}


def safetensors_file(header: Any, buffer: bytes = b"", *, length: int | None = None) -> bytes:
    """A .safetensors file written by hand: 8 bytes of header length (``length`` may lie), header, buffer."""
    raw = header if isinstance(header, bytes) else js(header)
    return (len(raw) if length is None else length).to_bytes(8, "little") + raw + buffer


def upload(blob: bytes, request: Any = None) -> Parts:
    parts: Parts = (("weights", ("model.safetensors", blob, "application/octet-stream")),)
    if request is not None:
        raw = request if isinstance(request, bytes) else js(request)
        parts += (("request", (None, raw, JSON)),)
    return parts


def entry(shape: list[Any], begin: Any, end: Any, dtype: str = "F32") -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


GOOD_FILE = save_numpy({"0.weight": np.eye(2, dtype=np.float32), "2.weight": np.ones((1, 2), dtype=np.float32)})
ONE = np.float32(1.0).tobytes()
DEEP = 100_000

NAN_AND_INFINITY = [
    Hostile(
        "nan-token-in-nested-weight",
        422,
        "/network/layers/0/weight/0/1",
        body=b'{"network":{"layers":[{"weight":[[1.0,NaN]]}]}}',
    ),
    Hostile(
        "infinity-token-in-tensor-data",
        422,
        "/network/layers/0/weight/data/1",
        body=b'{"network":{"layers":[{"weight":{"shape":[1,2],"data":[1.0,Infinity]}}]}}',
    ),
    Hostile(
        "minus-infinity-token-in-nested-tensor-data",
        422,
        "/network/layers/0/weight/data/1/0",
        body=b'{"network":{"layers":[{"weight":{"shape":[2,1],"data":[[1.0],[-Infinity]]}}]}}',
    ),
    Hostile(
        "nan-token-in-bias",
        422,
        "/network/layers/0/bias/0",
        body=b'{"network":{"layers":[{"weight":[[1.0]],"bias":[NaN]}]}}',
    ),
    Hostile(
        "infinity-token-in-probe-data",
        422,
        "/inputs/data/0/1",
        body=b'{"network":{"layers":[{"weight":[[1.0,2.0]]}]},"inputs":{"data":[[1.0,Infinity]]}}',
    ),
    Hostile(
        "minus-infinity-token-in-targets",
        422,
        "/inputs/targets/0/0",
        body=b'{"network":{"layers":[{"weight":[[1.0]]}]},"inputs":{"data":[[1.0]],"targets":[[-Infinity]]}}',
    ),
    Hostile(
        "nan-token-as-rtol",
        422,
        "/options/rtol",
        body=b'{"network":{"layers":[{"weight":[[1.0]]}]},"options":{"rtol":NaN}}',
    ),
    Hostile(
        "infinity-token-as-init-gain",
        422,
        "/network/init/gain",
        body=b'{"network":{"init":{"widths":[2,2],"scheme":"orthogonal","gain":Infinity}}}',
    ),
    Hostile(
        "nan-token-as-activation-parameter",
        422,
        "/network/activation/negative_slope",
        body=b'{"network":{"activation":{"name":"leaky_relu","negative_slope":NaN},"layers":[{"weight":[[1.0]]}]}}',
    ),
    Hostile(
        "infinity-token-as-threshold",
        422,
        "/options/thresholds/exploding_log10",
        body=b'{"network":{"layers":[{"weight":[[1.0]]}]},"options":{"thresholds":{"exploding_log10":Infinity}}}',
    ),
    Hostile("nan-token-in-bound-factors", 422, "/factors/1", body=b'{"factors":[0.5,NaN]}', path="/v1/bounds"),
    Hostile("infinity-token-as-bound-factor", 422, "/factor", body=b'{"factor":Infinity,"depth":3}', path="/v1/bounds"),
    Hostile(
        "1e400-overflows-to-infinity-in-bias",
        422,
        "/network/layers/0/bias/0",
        body=b'{"network":{"layers":[{"weight":[[1.0]],"bias":[-1e400]}]}}',
    ),
    Hostile(
        "fp32-value-beyond-float32-range",
        422,
        "/network/layers/0/weight",
        names=("finite",),
        body=layers({"shape": [1, 2], "datatype": "FP32", "data": [1.0, 1e39]}),
    ),
    Hostile(
        "b64-fp64-nan-in-weight",
        422,
        "/network/layers/0/weight",
        names=("finite",),
        body=layers(tensor([1, 2], [1.0, np.nan])),
    ),
    Hostile(
        "b64-fp64-infinity-in-bias",
        422,
        "/network/layers/0/bias",
        names=("finite",),
        body=layer_dicts({"weight": [[1.0]], "bias": tensor([1], [np.inf])}),
    ),
    Hostile(
        "b64-fp32-minus-infinity-in-weight",
        422,
        "/network/layers/0/weight",
        names=("finite",),
        body=layers(tensor([2, 1], [1.0, -np.inf], "FP32")),
    ),
    Hostile(
        "b64-fp64-signalling-nan-bits",
        422,
        "/network/layers/0/weight",
        names=("finite",),
        body=layers(
            {"shape": [1, 1], "datatype": "FP64", "b64": base64.b64encode(bytes.fromhex("0100000000fff07f")).decode()}
        ),
    ),
    Hostile(
        "b64-nan-in-probe-data",
        422,
        "/inputs/data",
        names=("finite",),
        body=layers([[1.0, 2.0]], inputs={"data": tensor([1, 2], [np.nan, 0.0])}),
    ),
    Hostile(
        "b64-fp32-nan-in-targets",
        422,
        "/inputs/targets",
        names=("finite",),
        body=layers([[1.0]], inputs={"data": [[1.0]], "targets": tensor([1, 1], [np.nan], "FP32")}),
    ),
]

SHAPES = [
    Hostile(
        "second-layer-does-not-chain",
        422,
        "/network/layers/1/weight",
        names=("chain",),
        body=layers([[1.0, 2.0]], [[1.0, 2.0]]),
    ),
    Hostile(
        "third-layer-does-not-chain",
        422,
        "/network/layers/2/weight",
        names=("chain",),
        body=layers(np.eye(3).tolist(), np.ones((2, 3)).tolist(), np.ones((1, 3)).tolist()),
    ),
    Hostile(
        "b64-tensors-do-not-chain",
        422,
        "/network/layers/1/weight",
        body=layers(tensor([2, 2], np.eye(2)), tensor([1, 3], [1.0, 2.0, 3.0])),
    ),
    Hostile(
        "bias-longer-than-the-outputs",
        422,
        "/network/layers/0/bias",
        body=layer_dicts({"weight": [[1.0]], "bias": [1.0, 2.0]}),
    ),
    Hostile(
        "bias-as-a-matrix", 422, "/network/layers/0/bias/0", body=layer_dicts({"weight": [[1.0]], "bias": [[1.0]]})
    ),
    Hostile("empty-shape", 422, "/network/layers/0/weight/shape", body=layers({"shape": [], "data": []})),
    Hostile(
        "three-dimensional-shape",
        422,
        "/network/layers/0/weight/shape",
        body=layers({"shape": [1, 1, 1], "data": [1.0]}),
    ),
    Hostile(
        "negative-dimension",
        422,
        "/network/layers/0/weight/shape/0",
        body=layers({"shape": [-1, 2], "data": [1.0, 2.0]}),
    ),
    Hostile(
        "zero-rows", 422, "/network/layers/0/weight", names=("non-empty",), body=layers({"shape": [0, 3], "data": []})
    ),
    Hostile("zero-columns", 422, "/network/layers/0/weight", names=("non-empty",), body=layers([[]])),
    Hostile("empty-nested-list", 422, "/network/layers/0/weight", body=layers([])),
    Hostile("one-dimensional-weight", 422, "/network/layers/0/weight", body=layers({"shape": [2], "data": [1.0, 2.0]})),
    Hostile(
        "shape-claims-a-trillion-values-holds-two",
        422,
        "/network/layers/0/weight",
        body=layers({"shape": [10**6, 10**6], "data": [1.0, 2.0]}),
    ),
    Hostile(
        "shape-of-10e30-with-empty-b64",
        422,
        "/network/layers/0/weight/shape/0",
        body=layers({"shape": [10**30, 1], "b64": ""}),
    ),
    Hostile("empty-probe-data", 422, "/inputs/data", body=layers([[1.0]], inputs={"data": []})),
    Hostile(
        "targets-with-more-rows-than-probes",
        422,
        "/inputs/targets",
        body=layers([[1.0]], inputs={"data": [[1.0]], "targets": [[1.0], [2.0]]}),
    ),
    Hostile("empty-layers-list", 422, "/network/layers", body=js({"network": {"layers": []}})),
    Hostile("layers-not-a-list", 422, "/network/layers", body=js({"network": {"layers": {"weight": [[1.0]]}}})),
    Hostile("layer-is-a-bare-matrix", 422, "/network/layers/0", body=js({"network": {"layers": [[[1.0]]]}})),
    Hostile("layers-null-and-no-init", 422, "/network", body=js({"network": {"layers": None}})),
]

WIDTHS = [
    Hostile("width-0", 422, "/network/init/widths/1", body=init([4, 0, 2])),
    Hostile("width-minus-1", 422, "/network/init/widths/1", body=init([4, -1, 2])),
    Hostile(
        "width-2^20", 413, "/network/init/widths", names=("JACSPEC_MAX_PARAMETERS",), body=init([2**20, 2**20, 10])
    ),
    Hostile("width-10e9", 422, "/network/init/widths/0", names=("1048576",), body=init([10**9, 10**9, 10])),
    Hostile("width-10e30", 422, "/network/init/widths/0", names=("1048576",), body=init([10**30, 2])),
    Hostile("width-as-a-fraction", 422, "/network/init/widths/0", body=init([2.5, 2])),  # type: ignore[list-item]
    Hostile("widths-empty", 422, "/network/init/widths", body=init([])),
    Hostile("widths-of-one-entry", 422, "/network/init/widths", body=init([4])),
    Hostile(
        "count-4096-on-a-wide-network",
        413,
        "/network/init/widths",
        names=("JACSPEC_MAX_FLOPS",),
        body=init([2048] * 8, inputs={"count": 4096}),
    ),
]

B64 = [
    Hostile(
        "b64-too-short",
        422,
        "/network/layers/0/weight",
        names=("b64",),
        body=layers({"shape": [2, 2], "b64": b64([1.0, 2.0])}),
    ),
    Hostile(
        "b64-too-long",
        422,
        "/network/layers/0/weight",
        names=("b64",),
        body=layers({"shape": [1, 1], "b64": b64([1.0, 2.0])}),
    ),
    Hostile(
        "b64-fp32-bytes-declared-fp64",
        422,
        "/network/layers/0/weight",
        names=("b64",),
        body=layers({"shape": [1, 2], "datatype": "FP64", "b64": b64([1.0, 2.0], "<f4")}),
    ),
    Hostile(
        "b64-invalid-characters",
        422,
        "/network/layers/0/weight/b64",
        body=layers({"shape": [1, 2], "b64": "!" * 22 + "=="}),
    ),
    Hostile(
        "b64-non-ascii-characters",
        422,
        "/network/layers/0/weight/b64",
        body=layers({"shape": [1, 1], "b64": "AAAAAAAA8D\u00e9"}),
    ),
    Hostile(
        "b64-padding-in-the-middle",
        422,
        "/network/layers/0/weight/b64",
        body=layers({"shape": [1, 3], "datatype": "FP32", "b64": "AAAAAAA=AAAAAAAA"}),
    ),
    Hostile(
        "b64-url-safe-alphabet",
        422,
        "/network/layers/0/weight/b64",
        body=layers({"shape": [1, 3], "datatype": "FP32", "b64": "____-___AAAAAAAA"}),
    ),
    Hostile("b64-not-a-string", 422, "/network/layers/0/weight/b64", body=layers({"shape": [1, 1], "b64": 12345678})),
    Hostile(
        "b64-and-data-both",
        422,
        "/network/layers/0/weight",
        body=layers({"shape": [1, 1], "b64": b64([1.0]), "data": [1.0]}),
    ),
    Hostile("neither-b64-nor-data", 422, "/network/layers/0/weight", body=layers({"shape": [1, 1]})),
    Hostile(
        "unknown-datatype",
        422,
        "/network/layers/0/weight/datatype",
        body=layers({"shape": [1, 1], "datatype": "FP16", "b64": "AAA="}),
    ),
]

NESTING = [
    Hostile("100000-open-brackets", 400, "", names=("JSON",), body=b"[" * DEEP),
    Hostile(
        "100000-open-brackets-in-a-weight",
        400,
        "",
        names=("JSON",),
        body=b'{"network":{"layers":[{"weight":' + b"[" * DEEP,
    ),
    Hostile("100000-nested-objects", 400, "", names=("JSON",), body=b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    Hostile("100000-nested-brackets-balanced", 400, "", names=("JSON",), body=b"[" * DEEP + b"]" * DEEP),
    Hostile("100000-open-brackets-to-bounds", 400, "", names=("JSON",), body=b"[" * DEEP, path="/v1/bounds"),
    Hostile(
        "150-nested-brackets-in-an-unknown-field",
        422,
        "/x",
        body=b'{"network":{"layers":[{"weight":[[1.0]]}]},"x":' + b"[" * 150 + b"]" * 150 + b"}",
    ),
    Hostile(
        "100000-open-brackets-in-the-multipart-request",
        400,
        "/request",
        names=("JSON",),
        parts=upload(GOOD_FILE, b"[" * DEEP),
    ),
]

MEDIA_TYPES = [
    Hostile("text-plain", 415, names=("Content-Type",), body=layers([[1.0]]), content_type="text/plain"),
    Hostile("no-content-type", 415, names=("Content-Type", "none"), body=layers([[1.0]]), content_type=None),
    Hostile("application-xml", 415, names=("Content-Type",), body=b"<network/>", content_type="application/xml"),
    Hostile(
        "form-urlencoded",
        415,
        names=("Content-Type",),
        body=b"network=1",
        content_type="application/x-www-form-urlencoded",
    ),
    Hostile(
        "multipart-to-bounds",
        415,
        names=("Content-Type",),
        body=b"--x--\r\n",
        content_type="multipart/form-data; boundary=x",
        path="/v1/bounds",
    ),
    Hostile(
        "json-in-utf-16",
        400,
        "",
        names=("JSON",),
        body=layers([[1.0]]).decode().encode("utf-16"),
        content_type="application/json; charset=utf-16",
    ),
    Hostile("byte-order-mark", 400, "", names=("JSON",), body=b"\xef\xbb\xbf" + layers([[1.0]])),
    Hostile("invalid-utf-8", 400, "", names=("JSON",), body=b'{"network":{"activation":"\xff\xfe"}}'),
    Hostile("lone-surrogate-escape", 400, "", names=("JSON",), body=b'{"network":{"activation":"\\ud800"}}'),
    Hostile("empty-body", 400, "", names=("JSON",), body=b""),
    Hostile("body-is-a-list", 422, "", names=("object",), body=b"[]"),
    Hostile("body-is-null", 422, "", names=("object",), body=b"null"),
    Hostile(
        "number-of-5000-digits",
        400,
        "",
        names=("JSON", "number"),
        body=b'{"network":{"init":{"widths":[2,2],"scheme":"orthogonal","seed":' + b"9" * 5000 + b"}}}",
    ),
    Hostile(
        "multipart-without-boundary", 400, names=("multipart",), body=b"--x\r\n", content_type="multipart/form-data"
    ),
    Hostile(
        "multipart-garbage", 400, names=("multipart",), body=b"garbage", content_type="multipart/form-data; boundary=x"
    ),
    Hostile("multipart-without-the-file", 422, "/weights", parts=(("request", (None, b"{}", JSON)),)),
    Hostile(
        "multipart-file-under-another-name",
        422,
        "/weights",
        parts=(("file", ("m.safetensors", GOOD_FILE, "application/octet-stream")),),
    ),
    Hostile(
        "multipart-weights-as-a-text-field", 422, "/weights", parts=(("weights", (None, b"0.weight", "text/plain")),)
    ),
    Hostile(
        "multipart-two-weights-parts",
        400,
        names=("multipart", "'weights'"),
        parts=(
            ("weights", ("a", GOOD_FILE, "application/octet-stream")),
            ("weights", ("b", GOOD_FILE, "application/octet-stream")),
        ),
    ),
    Hostile(
        "multipart-request-not-json", 400, "/request", names=("JSON",), parts=upload(GOOD_FILE, b"activation=tanh")
    ),
]

SAFETENSORS = [
    Hostile("safetensors-empty-file", 422, "/weights", parts=upload(b"")),
    Hostile("safetensors-seven-bytes", 422, "/weights", parts=upload(b"\x08\0\0\0\0\0\0")),
    Hostile(
        "safetensors-header-length-2e64",
        422,
        "/weights",
        names=("header",),
        parts=upload(safetensors_file({}, length=2**64 - 1)),
    ),
    Hostile("safetensors-header-cut-short", 422, "/weights", names=("truncated",), parts=upload(GOOD_FILE[:40])),
    Hostile("safetensors-header-not-json", 422, "/weights", parts=upload(safetensors_file(b"{not json}"))),
    Hostile("safetensors-header-a-list", 422, "/weights", parts=upload(safetensors_file([]))),
    Hostile("safetensors-header-100000-deep", 422, "/weights", parts=upload(safetensors_file(b"[" * DEEP))),
    Hostile("safetensors-entry-not-an-object", 422, "/weights", parts=upload(safetensors_file({"0.weight": 5}))),
    Hostile(
        "safetensors-dtype-i64",
        422,
        "/weights",
        names=("I64",),
        parts=upload(safetensors_file({"0.weight": entry([1, 1], 0, 8, "I64")}, bytes(8))),
    ),
    Hostile(
        "safetensors-dtype-missing",
        422,
        "/weights",
        parts=upload(safetensors_file({"0.weight": {"shape": [1, 1], "data_offsets": [0, 4]}}, ONE)),
    ),
    Hostile(
        "safetensors-negative-shape",
        422,
        "/weights",
        parts=upload(safetensors_file({"0.weight": entry([-1, 1], 0, 4)}, ONE)),
    ),
    Hostile(
        "safetensors-boolean-shape",
        422,
        "/weights",
        names=("shape",),
        parts=upload(safetensors_file({"0.weight": entry([True, 1], 0, 4)}, ONE)),
    ),
    Hostile(
        "safetensors-boolean-offsets",
        422,
        "/weights",
        names=("data_offsets",),
        parts=upload(safetensors_file({"0.weight": entry([1, 1], False, 4)}, ONE)),
    ),
    Hostile(
        "safetensors-fractional-offsets",
        422,
        "/weights",
        parts=upload(safetensors_file({"0.weight": entry([1, 1], 0.0, 4.0)}, ONE)),
    ),
    Hostile("safetensors-buffer-cut-short", 422, "/weights", names=("2.weight",), parts=upload(GOOD_FILE[:-4])),
    Hostile(
        "safetensors-offsets-reversed",
        422,
        "/weights",
        parts=upload(safetensors_file({"0.weight": entry([1, 1], 4, 0)}, ONE * 2)),
    ),
    Hostile(
        "safetensors-offsets-lie-about-the-size",
        422,
        "/weights",
        names=("bytes",),
        parts=upload(safetensors_file({"0.weight": entry([2, 2], 0, 12)}, ONE * 4)),
    ),
    Hostile(
        "safetensors-shape-of-2e80-values",
        422,
        "/weights",
        parts=upload(safetensors_file({"0.weight": entry([2**40, 2**40], 0, 16)}, ONE * 4)),
    ),
    Hostile(
        "safetensors-overlapping-tensors",
        422,
        "/weights",
        names=("overlap",),
        parts=upload(safetensors_file({"0.weight": entry([2, 2], 0, 16), "2.weight": entry([1, 2], 8, 16)}, ONE * 4)),
    ),
    Hostile(
        "safetensors-3d-weight",
        422,
        "/weights",
        names=("0.weight",),
        parts=upload(save_numpy({"0.weight": np.ones((2, 2, 1), np.float32)})),
    ),
    Hostile(
        "safetensors-1d-weight",
        422,
        "/weights",
        names=("0.weight",),
        parts=upload(save_numpy({"0.weight": np.ones(2, np.float32)})),
    ),
    Hostile(
        "safetensors-zero-row-weight",
        422,
        "/weights",
        names=("0.weight",),
        parts=upload(save_numpy({"0.weight": np.ones((0, 2), np.float32)})),
    ),
    Hostile(
        "safetensors-bias-of-wrong-shape",
        422,
        "/weights",
        names=("0.bias",),
        parts=upload(save_numpy({"0.weight": np.eye(2, dtype=np.float32), "0.bias": np.ones((2, 1), np.float32)})),
    ),
    Hostile(
        "safetensors-nan-in-f32-weight",
        422,
        "/weights",
        names=("finite",),
        parts=upload(save_numpy({"0.weight": np.array([[np.nan]], np.float32)})),
    ),
    Hostile(
        "safetensors-infinity-in-f16-bias",
        422,
        "/weights",
        names=("0.bias", "finite"),
        parts=upload(save_numpy({"0.weight": np.eye(1, dtype=np.float16), "0.bias": np.array([np.inf], np.float16)})),
    ),
    Hostile(
        "safetensors-nan-in-bf16-weight",
        422,
        "/weights",
        names=("finite",),
        parts=upload(safetensors_file({"0.weight": entry([1, 1], 0, 2, "BF16")}, b"\xc0\x7f")),
    ),
    Hostile(
        "safetensors-layers-do-not-chain",
        422,
        "/weights",
        names=("2.weight", "chain"),
        parts=upload(save_numpy({"0.weight": np.eye(2, dtype=np.float32), "2.weight": np.ones((1, 3), np.float32)})),
    ),
    Hostile(
        "safetensors-no-weight-tensor",
        422,
        "/weights",
        parts=upload(save_numpy({"0.kernel": np.eye(2, dtype=np.float32)})),
    ),
    Hostile(
        "safetensors-request-names-a-missing-layer",
        422,
        "/request/network/layers/1",
        parts=upload(GOOD_FILE, {"network": {"layers": ["0", "4"]}}),
    ),
    Hostile(
        "safetensors-request-unknown-activation",
        422,
        "/request/network/activations/0",
        parts=upload(GOOD_FILE, {"network": {"activations": ["swish", "relu"]}}),
    ),
    Hostile(
        "safetensors-request-too-few-activations",
        422,
        "/request/network/activations",
        parts=upload(GOOD_FILE, {"network": {"activations": ["relu"]}}),
    ),
    Hostile(
        "safetensors-request-probe-data-too-wide",
        422,
        "/request/inputs/data",
        parts=upload(GOOD_FILE, {"inputs": {"data": [[1.0, 2.0, 3.0]]}}),
    ),
    Hostile("safetensors-request-unknown-field", 422, "/request/extra", parts=upload(GOOD_FILE, {"extra": 1})),
    Hostile(
        "safetensors-request-count-0", 422, "/request/inputs/count", parts=upload(GOOD_FILE, {"inputs": {"count": 0}})
    ),
]

ACTIVATIONS = [
    Hostile("unknown-activation-name", 422, "/network/activation", body=activation("swish")),
    Hostile("unknown-activation-object", 422, "/network/activation", body=activation({"name": "swish"})),
    Hostile("activation-name-in-the-wrong-case", 422, "/network/activation", body=activation("ReLU")),
    Hostile("activation-a-number", 422, "/network/activation", body=activation(42)),
    Hostile("activation-null", 422, "/network/activation", body=activation(None)),
    Hostile("activation-object-without-a-name", 422, "/network/activation", body=activation({"negative_slope": 0.1})),
    Hostile(
        "unknown-parameter-of-leaky-relu",
        422,
        "/network/activation/slope",
        body=activation({"name": "leaky_relu", "slope": 0.1}),
    ),
    Hostile(
        "parameter-of-a-parameterless-activation",
        422,
        "/network/activation/alpha",
        body=activation({"name": "tanh", "alpha": 1.0}),
    ),
    Hostile(
        "parameter-of-the-wrong-type",
        422,
        "/network/activation/alpha",
        body=activation({"name": "elu", "alpha": "big"}),
    ),
    Hostile("negative-elu-alpha", 422, "/network/activation/alpha", body=activation({"name": "elu", "alpha": -1.0})),
    Hostile("softplus-beta-0", 422, "/network/activation/beta", body=activation({"name": "softplus", "beta": 0})),
    Hostile(
        "hard-tanh-with-equal-clip-points",
        422,
        "/network/activation",
        names=("min_val",),
        body=activation({"name": "hard_tanh", "min_val": 1, "max_val": 1}),
    ),
    Hostile(
        "unknown-layer-activation",
        422,
        "/network/layers/1/activation",
        body=layer_dicts({"weight": [[1.0]]}, {"weight": [[1.0]], "activation": "swish"}),
    ),
    Hostile(
        "unknown-output-activation",
        422,
        "/network/output_activation",
        body=init([2, 2], network={"output_activation": "softmax"}),
    ),
    Hostile(
        "unknown-parameter-named-like-its-activation",
        422,
        "/network/activation/relu",
        body=activation({"name": "relu", "relu": {"relu": 1}}),
    ),
    Hostile(
        "unknown-parameter-named-object",
        422,
        "/network/activation/object",
        body=activation({"name": "relu", "object": {"name": 1}}),
    ),
    Hostile(
        "unknown-tensor-field-named-tensor",
        422,
        "/network/layers/0/weight/tensor",
        body=layers({"shape": [1, 1], "data": [1.0], "tensor": {"tensor": 1}}),
    ),
    Hostile(
        "unknown-tensor-field-named-nested",
        422,
        "/network/layers/0/weight/nested",
        body=layers({"shape": [1, 1], "data": [1.0], "nested": [[1]]}),
    ),
    Hostile(
        "tensor-name-not-a-string",
        422,
        "/network/layers/0/weight/name",
        body=layers({"name": 5, "shape": [1, 1], "data": [1.0]}),
    ),
    Hostile(
        "tensor-data-an-object-with-a-tag-key",
        422,
        "/network/layers/0/weight/data",
        body=layers({"shape": [1, 1], "data": {"flat": [1.0]}}),
    ),
]

EXTRA_FIELDS = [
    Hostile("unknown-top-level-field", 422, "/extra", body=layers([[1.0]], extra=1)),
    Hostile("unknown-network-field", 422, "/network/depth", body=init([2, 2], network={"depth": 3})),
    Hostile(
        "unknown-init-field",
        422,
        "/network/init/bias",
        body=js({"network": {"init": {"widths": [2, 2], "scheme": "orthogonal", "bias": 0.1}}}),
    ),
    Hostile("unknown-inputs-field", 422, "/inputs/batch", body=init([2, 2], inputs={"batch": 4})),
    Hostile("unknown-options-field", 422, "/options/tolerance", body=init([2, 2], options={"tolerance": 1e-3})),
    Hostile(
        "unknown-thresholds-field",
        422,
        "/options/thresholds/middle_log10",
        body=init([2, 2], options={"thresholds": {"middle_log10": 0}}),
    ),
    Hostile(
        "dtype-instead-of-datatype",
        422,
        "/network/layers/0/weight/dtype",
        body=layers({"shape": [1, 1], "dtype": "FP64", "data": [1.0]}),
    ),
    Hostile(
        "unknown-layer-field", 422, "/network/layers/0/wieght", body=layer_dicts({"weight": [[1.0]], "wieght": [[1.0]]})
    ),
    Hostile(
        "unknown-bounds-field", 422, "/extra", body=js({"factor": 0.5, "depth": 2, "extra": True}), path="/v1/bounds"
    ),
    Hostile("field-name-with-slash-and-tilde", 422, "/a~1b~0c", body=layers([[1.0]], **{"a/b~c": 1})),
]

NUMBERS = [
    Hostile(
        "init-seed-2e64",
        422,
        "/network/init/seed",
        body=init([2, 2], network={"init": {"widths": [2, 2], "scheme": "orthogonal", "seed": 2**64}}),
    ),
    Hostile(
        "init-seed-10e30",
        422,
        "/network/init/seed",
        body=init([2, 2], network={"init": {"widths": [2, 2], "scheme": "orthogonal", "seed": 10**30}}),
    ),
    Hostile(
        "init-seed-negative",
        422,
        "/network/init/seed",
        body=init([2, 2], network={"init": {"widths": [2, 2], "scheme": "orthogonal", "seed": -1}}),
    ),
    Hostile(
        "init-seed-a-fraction",
        422,
        "/network/init/seed",
        body=init([2, 2], network={"init": {"widths": [2, 2], "scheme": "orthogonal", "seed": 1.5}}),
    ),
    Hostile("inputs-seed-2e64", 422, "/inputs/seed", body=init([2, 2], inputs={"seed": 2**64})),
    Hostile("inputs-seed-10e30", 422, "/inputs/seed", body=init([2, 2], inputs={"seed": 10**30})),
    Hostile("rtol-0", 422, "/options/rtol", body=init([2, 2], options={"rtol": 0})),
    Hostile("rtol-negative", 422, "/options/rtol", body=init([2, 2], options={"rtol": -1e-6})),
    Hostile("rtol-above-0.1", 422, "/options/rtol", body=init([2, 2], options={"rtol": 0.5})),
    Hostile("rtol-a-word", 422, "/options/rtol", body=init([2, 2], options={"rtol": "tight"})),
    Hostile(
        "thresholds-out-of-order",
        422,
        "/options/thresholds",
        body=init([2, 2], options={"thresholds": {"vanishing_log10": 3, "exploding_log10": -3}}),
    ),
    Hostile("count-0", 422, "/inputs/count", body=init([2, 2], inputs={"count": 0})),
    Hostile("count-negative", 422, "/inputs/count", body=init([2, 2], inputs={"count": -5})),
    Hostile("count-4097", 422, "/inputs/count", body=init([2, 2], inputs={"count": 4097})),
    Hostile("count-10e30", 422, "/inputs/count", body=init([2, 2], inputs={"count": 10**30})),
    Hostile("scale-0", 422, "/inputs/scale", body=init([2, 2], inputs={"scale": 0})),
    Hostile("gain-negative", 422, "/network/init/gain", body=js({"network": recipe([2, 2], gain=-1.0)})),
    Hostile(
        "unknown-scheme",
        422,
        "/network/init/scheme",
        body=js({"network": {"init": {"widths": [2, 2], "scheme": "kaiming"}}}),
    ),
    Hostile(
        "both-layers-and-init",
        422,
        "/network",
        body=js({"network": {**recipe([1, 1]), "layers": [{"weight": [[1.0]]}]}}),
    ),
    Hostile("bounds-depth-0", 422, "/depth", body=js({"factor": 0.5, "depth": 0}), path="/v1/bounds"),
    Hostile("bounds-depth-10e13", 422, "/depth", body=js({"factor": 0.5, "depth": 10**13}), path="/v1/bounds"),
    Hostile("bounds-negative-factor", 422, "/factors/1", body=js({"factors": [0.5, -0.5]}), path="/v1/bounds"),
    Hostile("bounds-empty-factors", 422, "/factors", body=js({"factors": []}), path="/v1/bounds"),
    Hostile(
        "bounds-both-forms",
        422,
        "",
        names=("factors", "factor", "depth"),
        body=js({"factors": [0.5], "factor": 0.5, "depth": 1}),
        path="/v1/bounds",
    ),
    Hostile("bounds-factor-without-depth", 422, "", names=("depth",), body=js({"factor": 0.5}), path="/v1/bounds"),
]

CASES = (
    NAN_AND_INFINITY
    + SHAPES
    + WIDTHS
    + B64
    + NESTING
    + MEDIA_TYPES
    + SAFETENSORS
    + ACTIVATIONS
    + EXTRA_FIELDS
    + NUMBERS
)


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


def check_problem(case: Hostile, response: httpx.Response) -> None:
    """The response is the case's 4xx, as problem+json naming the field at fault."""
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == case.status
    assert isinstance(problem["title"], str)
    assert problem["title"]
    detail = problem["detail"]
    assert isinstance(detail, str)
    assert detail
    if case.pointer is not None:
        pointers = [error["pointer"] for error in problem["errors"]]
        assert pointers[0] == case.pointer, pointers
        assert all(error["detail"] for error in problem["errors"])
        if case.status != 413:
            assert detail.startswith(case.pointer or "/"), detail
        if not case.parts and case.status == 422:
            document = json.loads(case.body)
            assert all(resolves(document, p) for p in pointers), f"{pointers} name no field of the request"
    for word in case.names:
        assert word in detail, detail
    assert len(response.content) < 4000, "a problem stays short, whatever the body held"


async def still_answers(client: httpx.AsyncClient) -> None:
    """The app is healthy, ready and analyses a small network."""
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json()["status"] == "ready"
    response = await client.post("/v1/analyses", content=init([4, 4, 2]), headers={"content-type": JSON})
    assert response.status_code == 200


def still_answers_over_http(url: str) -> None:
    """The server at ``url`` is healthy, ready and analyses a small network."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json()["status"] == "ready"
        response = client.post("/v1/analyses", content=init([4, 4, 2]), headers={"content-type": JSON})
        assert response.status_code == 200


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_hostile_input_is_a_problem_naming_the_field(client: httpx.AsyncClient, case: Hostile) -> None:
    """Each case on a fresh app, which answers afterwards as before."""
    response = await client.post(case.path, **case.request())
    check_problem(case, response)
    await still_answers(client)


async def test_a_hundred_thousand_bad_values_are_refused_at_the_first(client: httpx.AsyncClient) -> None:
    """100000 invalid entries of a numeric list: one short problem pointing at the first (lists of numbers are
    validated fail-fast, so that a body of bad values costs microseconds, not seconds, to refuse)."""
    n = 100_000
    body = b'{"factors":[0.5,' + b",".join([b"-1"] * n) + b"]}"
    response = await client.post("/v1/bounds", content=body, headers={"content-type": JSON})
    assert response.status_code == 422
    problem = response.json()
    assert [e["pointer"] for e in problem["errors"]] == ["/factors/1"]
    assert len(response.content) < 4000


async def test_many_bad_fields_are_refused_with_twenty_pointers(client: httpx.AsyncClient) -> None:
    """Bad values in 100 different fields: the first 20 pointers, and the total in the detail."""
    layers = [{"weight": [[0.5]], "activation": "no-such-activation"} for _ in range(100)]
    body = json.dumps({"network": {"layers": layers}}).encode()
    response = await client.post("/v1/analyses", content=body, headers={"content-type": JSON})
    assert response.status_code == 422
    problem = response.json()
    assert len(problem["errors"]) == 20
    assert problem["errors"][0]["pointer"].startswith("/network/layers/0/activation")
    assert "more)" in problem["detail"]
    assert len(response.content) < 4000


# Extreme but finite numbers: valid input, so the answer is a report whose numbers are right (or a 4xx that names
# the field); never a 5xx, and never a null where the schema promises a number.

RNG = np.random.default_rng(0)
WIDE = RNG.standard_normal((300, 300))


@dataclass(frozen=True)
class Extreme:
    id: str
    body: bytes
    weight_norms: list[float]
    """σ_j of every layer, computed here by numpy's SVD."""


def extreme_weights(id_: str, weight: np.ndarray) -> Extreme:
    body = js({"network": {"layers": [{"weight": tensor(list(weight.shape), weight)}]}, "inputs": {"count": 2}})
    return Extreme(id_, body, [float(np.linalg.norm(weight, 2))])


EXTREMES = [
    extreme_weights("2x2-entries-of-1e200", np.full((2, 2), 1e200)),
    extreme_weights("1x1-entry-of-1e300", np.full((1, 1), 1e300)),
    extreme_weights("2x2-entries-of-1e-200", np.full((2, 2), 1e-200)),
    extreme_weights("300x300-gaussian-times-1e-10", WIDE * 1e-10),
    extreme_weights("300x300-gaussian-times-1e-30", WIDE * 1e-30),
    extreme_weights("300x300-gaussian-times-1e-170", WIDE * 1e-170),
    extreme_weights("300x300-gaussian-times-1e18", WIDE * 1e18),
    extreme_weights("300x300-gaussian-times-1e150", WIDE * 1e150),
    Extreme(
        "orthogonal-init-of-gain-1e200",
        js({"network": recipe([4, 4], scheme="orthogonal", gain=1e200), "inputs": {"count": 2}}),
        [1e200],
    ),
]


@pytest.mark.parametrize("case", EXTREMES, ids=[case.id for case in EXTREMES])
async def test_extreme_finite_weights_get_true_norms(client: httpx.AsyncClient, case: Extreme) -> None:
    response = await client.post("/v1/analyses", content=case.body, headers={"content-type": JSON})
    assert response.status_code < 500
    if response.status_code != 200:  # a refusal is acceptable if it names the field
        assert 400 <= response.status_code < 500
        assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
        assert response.json()["errors"][0]["pointer"].startswith("/network/")
        return
    norms = [layer["weight_norm"] for layer in response.json()["layers"]]
    assert all(isinstance(norm, float) for norm in norms), f"weight_norm must be a number: {norms}"
    assert norms == pytest.approx(case.weight_norms, rel=1e-6, abs=0.0)


async def test_a_deep_network_of_tiny_layers_is_answered(client: httpx.AsyncClient) -> None:
    """12000 layers of 1 × 1 (a 36 KB body, 2·10⁶ estimated flops) are cheap work: answered, not refused."""
    body = js({"network": {"init": {"widths": [1] * 12001, "scheme": "orthogonal"}}, "inputs": {"count": 1}})
    response = await client.post("/v1/analyses", content=body, headers={"content-type": JSON})
    assert response.status_code == 200, response.text
    assert len(response.json()["layers"]) == 12000


def _calls_to_answer(depth: int) -> int:
    """Python and C function calls made decoding, analysing and encoding a network of ``depth`` layers of 1 × 1."""
    body = AnalysisRequest.model_validate(
        {"network": {"init": {"widths": [1] * (depth + 1), "scheme": "orthogonal"}}, "inputs": {"count": 1}}
    )
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        result, _ = work.analyse_request(body)
        report_json(analysis_report(result, "test", {}))
    finally:
        sys.setprofile(None)
    return calls


def test_the_work_of_a_deep_network_grows_linearly_with_its_depth() -> None:
    """Twice the layers, at most 2.2 times the calls (a count, not a clock): a cost that grows with the square of
    the depth let one small request hold a compute slot for minutes (20000 layers took 66 s)."""
    assert _calls_to_answer(2000) <= 2.2 * _calls_to_answer(1000)


# Over real HTTP: the table again, then what only a socket can send.


def test_the_table_over_real_http(server_url: str) -> None:
    """Every case against one `python -m api`, which answers afterwards as before."""
    with httpx.Client(base_url=server_url, timeout=30.0) as client:
        for case in CASES:
            response = client.post(case.path, **case.request())
            assert 400 <= response.status_code < 500, (case.id, response.status_code)
            check_problem(case, response)
    still_answers_over_http(server_url)


def raw_exchange(url: str, head: bytes, body: bytes = b"", timeout: float = 10.0) -> bytes:
    """Send ``head`` and ``body`` on a fresh socket and read the response until the server closes or pauses."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        received = b""
        try:
            while b"\r\n\r\n" not in received or not _complete(received):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def parse_raw(response: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


def test_a_2_gb_content_length_with_a_short_body_is_refused_at_once(server_url: str) -> None:
    """The declared length alone is over JACSPEC_MAX_BODY_BYTES: 413 before a byte of the body is awaited."""
    head = (
        b"POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2147483648\r\n\r\n"
    )
    status, headers, problem = parse_raw(raw_exchange(server_url, head, b'{"network": {'))
    assert status == 413  # answered with 13 of the 2 GB sent: the body was never awaited
    assert headers["content-type"].split(";")[0] == PROBLEM_JSON
    assert problem["status"] == 413
    assert "JACSPEC_MAX_BODY_BYTES" in problem["detail"]
    still_answers_over_http(server_url)


LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_server() -> Iterator[str]:
    """`python -m api` that takes bodies of at most 64 KiB (each test checks that it still answers after)."""
    with running_server(JACSPEC_MAX_BODY_BYTES=str(LIMIT)) as url:
        yield url


def _chunks(first: bytes, filler: bytes, total: int) -> Iterator[bytes]:
    yield first
    sent = len(first)
    while sent < total:
        yield filler
        sent += len(filler)


@pytest.mark.parametrize(
    ("path", "content_type", "first"),
    [
        ("/v1/analyses", JSON, b'{"network": {"layers": [{"weight": [[' + b"0.5, " * 10),
        ("/v1/bounds", JSON, b'{"factors": [' + b"0.5, " * 10),
        (
            "/v1/analyses",
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="weights"; filename="m.safetensors"\r\n\r\n',
        ),
    ],
    ids=["json-analysis", "json-bounds", "multipart-upload"],
)
def test_a_chunked_body_over_the_limit_is_refused(
    small_server: str, path: str, content_type: str, first: bytes
) -> None:
    """No Content-Length: the limit is counted while the chunks stream in (1 MiB sent, 64 KiB allowed)."""
    with httpx.Client(base_url=small_server, timeout=30.0) as client:
        try:
            response = client.post(
                path, content=_chunks(first, b"0.5, " * 1000, 2**20), headers={"content-type": content_type}
            )
        except httpx.WriteError:
            pytest.fail("the server closed the connection instead of answering 413")
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    assert "JACSPEC_MAX_BODY_BYTES" in response.json()["detail"]
    still_answers_over_http(small_server)


def test_an_upload_with_a_content_length_over_the_limit_is_refused(small_server: str) -> None:
    blob = save_numpy({"0.weight": np.ones((200, 100), np.float32)})
    assert len(blob) > LIMIT
    response = httpx.post(f"{small_server}/v1/analyses", files={"weights": ("m.safetensors", blob)}, timeout=30.0)
    assert response.status_code == 413
    assert "JACSPEC_MAX_BODY_BYTES" in response.json()["detail"]
    still_answers_over_http(small_server)


async def test_half_a_million_bad_values_are_refused_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2 MB body of 500000 invalid values is parsed, and its problem built, in a worker thread: the event loop
    (this test's thread) never spends the seconds that pydantic's list of errors takes, and keeps answering."""
    n = 500_000
    body = b'{"factors":[' + b",".join([b'"x"'] * n) + b"]}"
    threads: list[int] = []
    original = problems.from_validation

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(api_body, "from_validation", recorded)
    response = await client.post("/v1/bounds", content=body, headers={"content-type": JSON})
    assert response.status_code == 422
    assert threads
    assert threading.get_ident() not in threads
    assert (await client.get("/healthz")).status_code == 200


async def test_a_content_length_over_the_limit_is_413_even_when_the_queue_is_full() -> None:
    """The declared length alone says the body is too large: 413, not a 503 that the client would retry."""
    settings = {"compute_workers": 1, "queue_timeout": 600, "queue_size": 0, "max_body_bytes": 1000}
    async with served(**settings) as (app, client), slot_held(app.state.compute):
        with anyio.fail_after(PATIENCE_S):
            too_large = await client.post("/v1/analyses", content=b" " * 1001, headers={"content-type": JSON})
            small = await client.post("/v1/analyses", content=init([2, 2]), headers={"content-type": JSON})
    assert too_large.status_code == 413
    assert "JACSPEC_MAX_BODY_BYTES" in too_large.json()["detail"]
    assert small.status_code == 503  # read and checked, then refused: every worker is busy and the queue full


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/v1/analyses", JSON), ("/v1/bounds", JSON), ("/v1/analyses", "multipart/form-data; boundary=xyz")],
)
async def test_a_client_gone_mid_body_is_a_400_not_a_logged_500(
    path: str, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a body, then the ASGI ``http.disconnect``: nobody reads the answer, but logs and metrics see a 400."""
    app = create_app(Settings())
    messages: list[Message] = [
        {"type": "http.request", "body": b"{" * 100_000, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-type", content_type.encode()), (b"content-length", b"200000")]
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("jacspec.test", 80),
             "client": ("127.0.0.1", 1), "root_path": ""}  # fmt: skip
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [400]
    assert "connection" in json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["detail"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


# Issue 17's classes: what each example now gets.


def acting(activation: dict[str, Any], **init: Any) -> dict[str, Any]:
    """A [4, 4] init recipe with ``activation`` as the network's."""
    return {**recipe([4, 4], **init), "activation": activation}


ISSUE_17_500S = {
    "elu-alpha-1e300": (acting({"name": "elu", "alpha": 1e300}), "/network/activation/alpha"),
    "negative-slope-1e150": (
        acting({"name": "leaky_relu", "negative_slope": 1e150}),
        "/network/activation/negative_slope",
    ),
    "negative-slope-minus-1e150": (
        acting({"name": "leaky_relu", "negative_slope": -1e150}),
        "/network/activation/negative_slope",
    ),
    "softplus-beta-1e-300": (
        acting({"name": "softplus", "beta": 1e-300}),
        "/network/activation/beta",
    ),
    "softplus-beta-1e300-gain-1e10": (
        acting({"name": "softplus", "beta": 1e300}, gain=1e10),
        "/network/activation/beta",
    ),
    "hard-tanh-bounds-1e300": (
        acting({"name": "hard_tanh", "min_val": -1e300, "max_val": 1e300}),
        "/network/activation/min_val",
    ),
    "hard-tanh-interval-1e-10-bias-std-1": (
        acting({"name": "hard_tanh", "min_val": 0.0, "max_val": 1e-10}, bias_std=1.0),
        "/network/activation",
    ),
    "gain-1e300": (recipe([4, 4], gain=1e300), "/network/init/gain"),
    "std-1e200": (recipe([4, 4], scheme="gaussian", std=1e200), "/network/init/std"),
    "width-beyond-int64": (recipe([2**64, 2]), "/network/init/widths/0"),
    "hidden-size-beyond-int64": (
        {"recurrent": {"steps": 2, "init": {"hidden_size": 10**30, "input_size": 1, "scheme": "gaussian"}}},
        "/network/recurrent/init/hidden_size",
    ),
    "weights-of-1e308": ({"layers": [{"weight": [[1e308, 1e308], [1e308, 1e308]]}]}, "/network/layers/0/weight"),
}


@pytest.mark.parametrize("case", ISSUE_17_500S)
async def test_issue_17_500s_are_422s_naming_the_field(client: httpx.AsyncClient, case: str) -> None:
    network, pointer = ISSUE_17_500S[case]
    response = await client.post("/v1/analyses", json={"network": network, "inputs": {"count": 2}})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"][0]["pointer"] == pointer


def _file(names: list[str]) -> bytes:
    return save_numpy({name: np.eye(2) for name in names})


@pytest.mark.parametrize(
    "names", [["٣.weight", "1.weight"], ["².weight", "1.weight"], ["9" * 5000 + ".weight", "1.weight"]]
)
async def test_safetensors_names_with_odd_digits_are_ordered(client: httpx.AsyncClient, names: list[str]) -> None:
    """Non-ASCII digits sort as text, after ASCII numbers; 5000 ASCII digits sort as the number they write."""
    response = await client.post("/v1/analyses", files={"weights": ("m.safetensors", _file(names), "x/y")})
    assert response.status_code == 200, response.text
    assert len(response.json()["layers"]) == 2


async def test_a_safetensors_shape_of_2_62_by_0_is_refused(client: httpx.AsyncClient) -> None:
    header = json.dumps({"0.weight": {"dtype": "F64", "shape": [2**62, 0], "data_offsets": [0, 0]}}).encode()
    blob = len(header).to_bytes(8, "little") + header
    response = await client.post("/v1/analyses", files={"weights": ("m.safetensors", blob, "x/y")})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/weights"
    assert "1048576" in response.json()["detail"]


async def test_a_multipart_boundary_of_300_characters_is_a_400(client: httpx.AsyncClient) -> None:
    boundary = "b" * 300
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="weights"; filename="m"\r\n\r\nx\r\n--{boundary}--\r\n'
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post("/v1/analyses", content=body.encode(), headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "256" in response.json()["detail"]


async def test_an_unexpected_error_is_problem_json_that_closes_the_connection() -> None:
    app = create_app(Settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async with asgi_client(app, raise_app_exceptions=False) as c:
        response = await c.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["connection"] == "close"
    assert "boom" not in response.text


MARKUP_KEY = "<script>alert(1)</script>" + "k" * 1_000_000


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (js({"network": recipe([2, 2]), MARKUP_KEY: 1}), {"content-type": JSON}),
        (js({"network": acting({"name": MARKUP_KEY})}), {"content-type": JSON}),
        (b"{}", {"content-type": MARKUP_KEY[:5000]}),
    ],
    ids=["unknown-key", "activation-tag", "content-type"],
)
async def test_echoed_text_is_cut_and_inert(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> None:
    response = await client.post("/v1/analyses", content=body, headers=headers)
    assert response.status_code in (415, 422)
    assert len(response.content) < 2000
    assert "<" not in response.text
    assert "kkk" * 30 not in response.text
    assert "\\u003cscript\\u003e" in response.json()["detail"]  # named, escaped: the client can tell what it sent
    assert "…" in response.json()["detail"]


async def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/analyses/", content=b"{}", headers={"host": "evil.example", "content-type": JSON})
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "location" not in response.headers


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/activations", "/v1/init-schemes", "/openapi.json"])
async def test_head_answers_every_get_route_without_a_body(client: httpx.AsyncClient, path: str) -> None:
    got, head = await client.get(path), await client.head(path)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.headers["content-type"] == got.headers["content-type"]


async def test_with_both_key_headers_both_must_be_valid() -> None:
    async with served(api_keys=["right"]) as (_, c):
        one_wrong = await c.get("/v1/activations", headers={"Authorization": "Bearer right", "X-API-Key": "wrong"})
        malformed = await c.get("/v1/activations", headers={"Authorization": "Basic right", "X-API-Key": "right"})
        both = await c.get("/v1/activations", headers={"Authorization": "Bearer right", "X-API-Key": "right"})
    assert (one_wrong.status_code, malformed.status_code, both.status_code) == (401, 401, 200)
