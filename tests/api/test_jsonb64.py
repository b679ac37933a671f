"""The road for large JSON bodies with ``b64`` tensors: the strings decoded straight from the bytes.

Its answer must be pydantic-core's road's answer, bit for bit, for every body: the same numbers for valid ones
and the same 4xx (taken from pydantic's road) for invalid ones.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pybase64
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import body, jsonb64
from api.problems import ProblemError
from jacspec.models import AnalysisRequest, Tensor
from jacspec.models.tensor import DecodedB64
from tests.api.test_jsonarrays import both_roads
from tests.helpers import app_client

pytestmark = pytest.mark.anyio

RNG = np.random.default_rng(11)
W1 = RNG.standard_normal((48, 32)) / 6
W2 = RNG.standard_normal((40, 48)) / 7
X = RNG.standard_normal((4, 32))
LIFT_MIN = 64


@pytest.fixture
async def fast(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose every JSON body takes the ``jsonb64`` road (then pydantic-core's when it gives up)."""
    monkeypatch.setattr(body, "INLINE_PARSE_BYTES", 0)
    monkeypatch.setattr(body, "LIFT_ABOVE", 0)
    monkeypatch.setattr(body, "COMMA_SHARE", 0)
    monkeypatch.setattr(jsonb64, "LIFT_MIN", LIFT_MIN)
    async with app_client() as client:
        yield client


def _b64(array: np.ndarray, dtype: str = "<f4") -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _tensor(array: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {
        "shape": list(array.shape),
        "datatype": datatype,
        "b64": _b64(array, "<f4" if datatype == "FP32" else "<f8"),
    }


def _request(first: Any, second: Any = None, **inputs: Any) -> dict[str, Any]:
    layers = [{"weight": first, "bias": _tensor(W1[:, 0] / 3, "FP64")}, {"weight": second or _tensor(W2)}]
    return {
        "network": {"activation": "tanh", "layers": layers},
        "inputs": inputs or {"count": 3, "seed": 5},
        "options": {"rtol": 1e-10},
    }


def _with_weight(text: str) -> str:
    """A request whose first weight's JSON text is ``text``."""
    return json.dumps(_request("@")).replace('"@"', text)


def _with_b64(text: str, shape: str = "[48, 32]") -> str:
    """A request whose first weight is an FP32 tensor of ``shape`` whose ``b64`` JSON string is ``text``."""
    return _with_weight(f'{{"shape": {shape}, "datatype": "FP32", "b64": "{text}"}}')


B64 = _b64(W1)

VALID = {
    "FP32 weights": json.dumps(_request(_tensor(W1))),
    "FP64 weights": json.dumps(_request(_tensor(W1, "FP64"))),
    "b64 before the shape": _with_weight(f'{{"b64": "{B64}", "datatype": "FP32", "shape": [48, 32]}}'),
    "spaces around the colon": _with_weight(f'{{"shape": [48, 32], "datatype": "FP32", "b64"\n\t :\r "{B64}"}}'),
    "probe inputs as b64": json.dumps(_request(_tensor(W1), data=_tensor(X, "FP64"), targets=_tensor(X[:, :40]))),
    "a nested list beside b64": json.dumps(_request(W1.tolist())),
    "an escaped slash in the string": _with_b64(B64.replace("/", "\\/")),
    "an escaped letter in the string": _with_b64(f"\\u{ord(B64[0]):04x}" + B64[1:]),
    "a name that mentions b64": _with_weight(json.dumps({"name": 'the "b64": "AAAA" key', **_tensor(W1)})),
    "small b64 strings only": json.dumps(_request(_tensor(W1[:2, :2]), _tensor(W2[:3, :2]))),
}


@pytest.mark.parametrize("case", VALID)
async def test_valid_bodies_give_pydantics_numbers(
    fast: httpx.AsyncClient, client: httpx.AsyncClient, case: str
) -> None:
    await both_roads(fast, client, VALID[case])


async def test_the_weights_are_lifted(fast: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    payload = VALID["FP32 weights"].encode()
    answer = await both_roads(fast, client, payload)
    assert answer["summary"]["depth"] == 2
    document = jsonb64.lift(payload)
    assert isinstance(document, dict)
    weight = document["network"]["layers"][0]["weight"]
    assert weight["b64"] == DecodedB64(np.asarray(W1, "<f4").tobytes())
    assert weight["shape"] == [48, 32]


MARKER = "jacspec-b64-" + "0" * 32 + "-0"

INVALID = {
    "b64 of the wrong length": _with_b64(B64[:-8]),
    "b64 of the wrong shape": _with_b64(B64, "[32, 48, 1]"),
    "a character outside the alphabet": _with_b64(B64[:100] + "*" + B64[101:]),
    "a space inside": _with_b64(B64[:100] + " " + B64[101:]),
    "a line break escaped inside": _with_b64(B64[:76] + "\\n" + B64[76:]),
    "bad padding": _with_b64(B64[:-2] + "=A"),
    "a raw control character inside": _with_b64(B64[:100] + "\x01" + B64[101:]),
    "a non-ASCII letter inside": _with_b64(B64[:100] + "é" + B64[101:]),
    "an escaped quote inside": _with_b64(B64[:100] + '\\"' + B64[100:]),
    "NaN in the decoded weights": _with_weight(json.dumps(_tensor(np.full((48, 32), np.nan)))),
    "b64 given twice, the large one last": _with_weight(f'{{"shape": [48, 32], "b64": "AAAA", "b64": "{B64}"}}'),
    "b64 given twice, the large one first": _with_weight(f'{{"shape": [48, 32], "b64": "{B64}", "b64": "AAAA"}}'),
    "b64 and data": _with_weight(f'{{"shape": [48, 32], "datatype": "FP32", "b64": "{B64}", "data": [1.0]}}'),
    "b64 where no tensor may be": json.dumps({**_request(_tensor(W1)), "options": {"rtol": 1e-9, "b64": B64}}),
    "b64 as a key's only text": json.dumps({**_request(_tensor(W1)), "extra": {"b64": B64}}),
    "b64 as a number": _with_weight('{"shape": [1, 1], "b64": 12345}'),
    "an unterminated b64 string": _with_weight(f'{{"shape": [48, 32], "b64": "{B64}'),
    "a key that only looks like b64": _with_weight(f'{{"shape": [48, 32], "b64 ": "{B64}"}}'),
    "a key that ends in an escaped b64": _with_weight(f'{{"shape": [48, 32], "x\\"b64": "{B64}"}}'),
    "a marker in the body": _with_weight(f'{{"shape": [48, 32], "datatype": "FP32", "b64": "{MARKER}"}}'),
    "truncated": json.dumps(_request(_tensor(W1)))[:-40],
    "not JSON around the b64": "{" + _with_b64(B64),
}


@pytest.mark.parametrize("case", INVALID)
async def test_other_bodies_get_pydantics_answer(fast: httpx.AsyncClient, client: httpx.AsyncClient, case: str) -> None:
    answer = await both_roads(fast, client, INVALID[case].encode("utf-8"))
    assert "layers" not in answer


async def test_invalid_utf8_inside_b64_gets_pydantics_answer(
    fast: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    payload = _with_b64(B64[:100] + "@" + B64[101:]).encode().replace(b"@", b"\xff")
    answer = await both_roads(fast, client, payload)
    assert answer["status"] == 400


def test_escapes_and_stray_characters_send_the_body_to_pydantic() -> None:
    for case in ("an escaped slash in the string", "a space inside", "a character outside the alphabet", "bad padding"):
        payload = (VALID | INVALID)[case].encode()
        assert jsonb64.lift(payload) is None, case


def test_a_key_that_ends_in_an_escaped_b64_is_not_lifted() -> None:
    """``"x\\"b64": "…"``: the bytes ``"b64"`` end a key that is not ``b64``; its value is left to pydantic."""
    payload = b'{"x\\"b64": "' + B64.encode() + b'"}'
    assert json.loads(payload) == {'x"b64': B64}
    assert jsonb64.lift(payload) is None


def test_too_many_b64_keys_send_the_body_to_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = VALID["FP32 weights"].encode()  # three b64 keys: two weights and a bias
    monkeypatch.setattr(jsonb64, "LIFT_MIN", LIFT_MIN)
    monkeypatch.setattr(jsonb64, "MAX_KEYS", 3)
    assert jsonb64.lift(payload) is not None
    monkeypatch.setattr(jsonb64, "MAX_KEYS", 2)
    assert jsonb64.lift(payload) is None


def _normal(document: object) -> object:
    """``document`` with every ``b64`` string decoded to bytes, as ``DecodedB64`` holds them."""
    if isinstance(document, dict):
        return {k: _normal(v) for k, v in document.items()}
    if isinstance(document, list):
        return [_normal(v) for v in document]
    if isinstance(document, DecodedB64):
        return document.data
    return document


def _validated(raw: bytes, lift: bool) -> object:
    """The request as either road validates it (b64 as decoded bytes), or its problem."""
    outcome = body._validate_large(AnalysisRequest, raw, lift)
    if isinstance(outcome, ProblemError):
        return outcome.problem.model_dump()
    weights = [getattr(layer, "weight", None) for layer in outcome.network.layers or []]
    return [_normal(weight) if isinstance(weight, list) else _decoded(weight) for weight in weights]


def _decoded(weight: object) -> object:
    """A tensor's shape, datatype and bytes; a ``b64`` string that does not decode is kept as the string."""
    assert isinstance(weight, Tensor)
    b64 = weight.b64
    if isinstance(b64, DecodedB64):
        return weight.shape, weight.datatype, b64.data
    try:
        data: object = None if b64 is None else pybase64.b64decode(b64, validate=True)
    except ValueError:
        data = b64
    return weight.shape, weight.datatype, data


@settings(max_examples=300, deadline=None)
@given(
    values=st.binary(min_size=48, max_size=400).map(lambda b: b[: len(b) // 4 * 4]),
    position=st.integers(0, 2000),
    replacement=st.sampled_from(['"', "\\", " ", "=", "*", "/", "\\/", "\x00", "é", ":", "}", '"b64": "']),
)
def test_any_body_with_one_change_validates_alike(values: bytes, position: int, replacement: str) -> None:
    """A valid body, and the same with a few characters changed near or inside its b64 string: same outcome."""
    tensor = {"shape": [len(values) // 4, 1], "datatype": "FP32", "b64": base64.b64encode(values).decode()}
    text = json.dumps({"network": {"layers": [{"weight": tensor}]}})
    at = min(position, len(text))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(body, "LIFT_ABOVE", 0)
        patch.setattr(body, "COMMA_SHARE", 0)
        patch.setattr(jsonb64, "LIFT_MIN", 16)
        for variant in (text, text[:at] + replacement + text[at + 1 :]):
            raw = variant.encode()
            assert _validated(raw, lift=True) == _validated(raw, lift=False)


def _whole_or_error(text: bytes, decoder: Callable[[memoryview], bytes | memoryview]) -> object:
    try:
        return bytes(decoder(memoryview(text)))
    except ValueError:
        return "refused"


INSERTIONS = ["=", "==", "A", "/", "+", " ", "*", "\n", ""]


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=100),
    edits=st.lists(st.tuples(st.integers(0, 140), st.sampled_from(INSERTIONS)), max_size=3),
    chunk=st.sampled_from([4, 8, 12, 64]),
)
def test_decoding_in_pieces_is_decoding_whole(data: bytes, edits: list[tuple[int, str]], chunk: int) -> None:
    """Valid base64, and the same with characters inserted (padding among them): the pieces decode to the
    bytes one call of pybase64 gives, and refuse what it refuses."""
    text = base64.b64encode(data)
    for at, inserted in edits:
        text = text[:at] + inserted.encode() + text[at:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonb64, "DECODE_CHUNK", chunk)
        pieces = _whole_or_error(text, jsonb64.decode)
    assert pieces == _whole_or_error(text, lambda view: pybase64.b64decode(view, validate=True))
