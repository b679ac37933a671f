"""The fast road for large JSON bodies: numeric arrays parsed by simdjson, the rest validated strictly.

Its answer must be the JSON road's answer, bit for bit, for every body: the same numbers for valid ones and the
same 4xx (taken from pydantic's road) for invalid ones.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import body, jsonarrays
from jacspec.models import AnalysisRequest, Layer, Tensor
from jacspec.models.tensor import ParsedArray
from tests.helpers import app_client

pytestmark = pytest.mark.anyio

RNG = np.random.default_rng(7)
W1 = RNG.standard_normal((48, 32)) / 6
W2 = RNG.standard_normal((40, 48)) / 7
X = RNG.standard_normal((40, 32))


@pytest.fixture(params=["simdjson", "pydantic-core"])
async def fast(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose every JSON body is parsed first, by simdjson or pydantic-core, then validated strictly."""
    monkeypatch.setattr(body, "INLINE_PARSE_BYTES", 0)
    monkeypatch.setattr(body, "LIFT_ABOVE", 0)
    monkeypatch.setattr(body, "COMMA_SHARE", 10**12 if request.param == "simdjson" else 0)
    monkeypatch.setattr(jsonarrays, "LIFT_MIN", 64)
    async with app_client() as client:
        yield client


async def both_roads(fast: httpx.AsyncClient, client: httpx.AsyncClient, payload: str | bytes) -> dict[str, Any]:
    """POST ``payload`` by both roads; the answers must be equal but for timings and request ids. Returns the
    fast one."""
    headers = {"content-type": "application/json"}
    answers = [await c.post("/v1/analyses", content=payload, headers=headers) for c in (fast, client)]
    bodies = [a.json() for a in answers]
    for b in bodies:
        b.get("meta", {}).pop("timings_ms", None)
        b.pop("request_id", None)
    assert answers[0].status_code == answers[1].status_code
    assert bodies[0] == bodies[1]
    return dict(bodies[0])


def _request(**network: Any) -> dict[str, Any]:
    return {
        "network": {"activation": "tanh", **network},
        "inputs": {"data": X.tolist(), "targets": RNG.standard_normal((40, 40)).tolist()},
        "options": {"rtol": 1e-10},
    }


def _layers(first: Any, second: Any = None) -> list[dict[str, Any]]:
    return [{"weight": first, "bias": (W1[:, 0] / 3).tolist()}, {"weight": second or W2.tolist()}]


VALID = {
    "nested lists": _request(layers=_layers(W1.tolist())),
    "FP32 nested data": _request(
        layers=_layers({"shape": [48, 32], "datatype": "FP32", "data": W1.astype(np.float32).tolist()})
    ),
    "FP64 flat data": _request(layers=_layers({"shape": [48, 32], "data": W1.ravel().tolist()})),
    "b64 FP32": _request(layers=_layers(Tensor.from_numpy(W1.astype(np.float32), b64=True).model_dump())),
    "integers among the floats": _request(layers=_layers(np.round(W1 * 4).tolist())),
    "integers where floats are declared": {
        **_request(layers=_layers(W1.tolist())),
        "options": {"thresholds": {"vanishing_log10": -3, "exploding_log10": 3}},
    },
}


@pytest.mark.parametrize("case", VALID)
async def test_valid_bodies_give_the_json_roads_numbers(
    fast: httpx.AsyncClient, client: httpx.AsyncClient, case: str
) -> None:
    payload = json.dumps(VALID[case])
    answer = await both_roads(fast, client, payload)
    assert answer["summary"]["depth"] == 2
    taken = AnalysisRequest.model_validate(jsonarrays.lift(payload.encode()), strict=True)  # the fast road
    assert taken.network.layers is not None
    weight: object = cast(Layer, taken.network.layers[0]).weight
    lifted = weight if isinstance(weight, ParsedArray) else getattr(weight, "data", None)
    assert isinstance(lifted, ParsedArray) or case == "b64 FP32"


def _with_weight(text: str) -> str:
    """A request whose first weight's JSON text is ``text``."""
    return json.dumps(_request(layers=_layers("@"))).replace('"@"', text)


ROWS = ",".join(json.dumps(row) for row in W1.tolist())


def _first_row_ends_with(text: str) -> str:
    """The first weight's rows, ``text`` appended to the first."""
    return _with_weight("[" + ROWS.replace("]", ", " + text + "]", 1) + "]")


INVALID = {
    "a ragged row": _with_weight("[" + ROWS[: ROWS.rindex(",")] + "]"),
    "an array inside a row": _first_row_ends_with("[0.5]"),
    "a string among the numbers": _first_row_ends_with('"0.5"'),
    "a number beyond float64": _first_row_ends_with("1e999"),
    "NaN": _first_row_ends_with("NaN"),
    "the wrong shape for the data": _with_weight(json.dumps({"shape": [32, 48], "data": W1.tolist()})),
    "a duplicated key": _with_weight(f'{{"shape": [48, 32], "shape": [48, 31], "data": [{ROWS}]}}'),
    "a huge seed": json.dumps({**_request(layers=_layers(W1.tolist())), "inputs": {"count": 2, "seed": 10**30}}),
    "a boolean for an integer": json.dumps({**_request(layers=_layers(W1.tolist())), "inputs": {"count": True}}),
    "a string for a number": json.dumps({**_request(layers=_layers(W1.tolist())), "options": {"rtol": "1e-9"}}),
    "unknown field": json.dumps({**_request(layers=_layers(W1.tolist())), "extra": [1.0] * 100}),
    "truncated": _with_weight(f"[{ROWS}]")[:-30],
    "b64 of the wrong length": _with_weight(json.dumps({"shape": [48, 32], "b64": "AAAA" * 100})),
    "b64 with a character outside the alphabet": _with_weight(
        json.dumps({"shape": [2], "datatype": "FP64", "b64": "AAAAAAAA4D8AAAAAAADwv*=="})
    ),
}


@pytest.mark.parametrize("case", INVALID)
async def test_other_bodies_get_the_json_roads_answer(
    fast: httpx.AsyncClient, client: httpx.AsyncClient, case: str
) -> None:
    await both_roads(fast, client, INVALID[case])


def test_lift_replaces_large_numeric_arrays_only() -> None:
    small = [[0.5, 1.5]]
    document = {"big": W1.tolist(), "flat": X.ravel().tolist(), "small": small, "shape": [48, 32], "name": "[x"}
    raw = json.dumps(document).replace('"[x"', '"x"').encode()
    skeleton = jsonarrays.lift(raw)
    assert isinstance(skeleton, dict)
    big, flat = skeleton["big"], skeleton["flat"]
    assert isinstance(big, ParsedArray)
    assert big.shape == (48, 32)
    assert np.array_equal(big.values, W1)
    assert isinstance(flat, ParsedArray)
    assert flat.shape == (X.size,)
    assert skeleton["small"] == small
    assert skeleton["shape"] == [48, 32]


def test_a_bracket_inside_a_string_sends_the_body_to_pydantic() -> None:
    assert jsonarrays.lift(json.dumps({"w": W1.tolist(), "name": "a[b"}).encode()) is None


def _double(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1).map(_double).filter(math.isfinite), min_size=1, max_size=64))
def test_numbers_parse_to_the_same_bits_as_python(drawn: list[float]) -> None:
    """simdjson rounds decimal text to float64 as Python's ``float`` does (correctly), for any double's repr."""
    values = (drawn * jsonarrays.LIFT_MIN)[: jsonarrays.LIFT_MIN]
    skeleton = jsonarrays.lift(json.dumps({"v": values}).encode())
    assert isinstance(skeleton, dict)
    assert skeleton["v"].values.tobytes() == np.array(values).tobytes()


@pytest.mark.parametrize("size", [5000, 200_000])
def test_the_comma_share_tells_numbers_from_base64(size: int) -> None:
    """Sampled in windows, a body of numbers still has a comma in every few bytes and a b64 body hardly any."""
    values = np.resize(W1.ravel(), size)
    numbers = json.dumps({"network": {"layers": [{"weight": values.tolist()}]}}).encode()
    text = json.dumps({"network": {"layers": [{"weight": Tensor.from_numpy(values, b64=True).model_dump()}]}})
    assert body._comma_share(numbers) * body.COMMA_SHARE >= 1
    assert body._comma_share(text.encode()) * body.COMMA_SHARE < 1


def test_a_small_body_is_sampled_whole() -> None:
    assert body._comma_share(b"[1,2,3]") == 2 / 7
