"""POST /v1/bounds: the seed's arithmetic over HTTP, checked against math.log10 and plain float products."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

PROBLEM_JSON = "application/problem+json"


async def bound(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/bounds", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    result: dict[str, Any] = response.json()
    return result


async def test_half_to_the_tenth(client: httpx.AsyncClient) -> None:
    result = await bound(client, {"factor": 0.5, "depth": 10})
    assert result["depth"] == 10
    assert result["log10"] == pytest.approx(-3.0103, abs=1e-4)
    assert result["log10"] == pytest.approx(10 * math.log10(0.5), abs=1e-12)
    assert result["value"] == pytest.approx(9.765625e-4, rel=1e-15)
    assert result["rate_log10"] == pytest.approx(math.log10(0.5), abs=1e-12)
    assert result["verdict"] == "vanishing"
    assert result["flags"] == []
    assert result["backward_bound_log10"] is None
    assert result["thresholds"] == {"vanishing_log10": -2.0, "exploding_log10": 2.0}


async def test_one_and_a_half_to_the_hundredth(client: httpx.AsyncClient) -> None:
    result = await bound(client, {"factor": 1.5, "depth": 100})
    assert result["value"] == pytest.approx(4.0656e17, rel=1e-4)
    assert result["value"] == pytest.approx(1.5**100, rel=1e-14)
    assert result["log10"] == pytest.approx(100 * math.log10(1.5), abs=1e-10)
    assert result["verdict"] == "exploding"


async def test_depth_2000_does_not_overflow(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/bounds", json={"factor": 1.5, "depth": 2000})
    assert response.status_code == 200
    result = response.json()
    assert result["log10"] == pytest.approx(352.18, abs=0.01)
    assert result["log10"] == pytest.approx(2000 * math.log10(1.5), rel=1e-12)
    assert result["value"] is None
    assert result["verdict"] == "exploding"
    for word in ("Infinity", "NaN", "inf"):
        assert word not in response.text


@pytest.mark.parametrize(
    ("factor", "depth"),
    [(1e-200, 2), (1e-160, 2), (1e308, 2)],
    ids=["underflow", "subnormal", "overflow"],
)
async def test_value_null_where_not_a_normal_float(client: httpx.AsyncClient, factor: float, depth: int) -> None:
    """The product underflows, lands among subnormals or overflows float64: value is null, log10 stays exact."""
    response = await client.post("/v1/bounds", json={"factor": factor, "depth": depth})
    assert response.status_code == 200
    result = response.json()
    assert result["value"] is None
    assert result["log10"] == pytest.approx(depth * math.log10(factor), rel=1e-12)
    for word in ("Infinity", "NaN", "inf"):
        assert word not in response.text


async def test_factors_give_suffix_sums(client: httpx.AsyncClient) -> None:
    factors = [1.2, 0.9, 0.25, 3.0, 1.0, 0.7]
    result = await bound(client, {"factors": factors})
    logs = [math.log10(f) for f in factors]
    expected_suffix = [math.fsum(logs[j + 1 :]) for j in range(len(factors))]
    assert result["depth"] == len(factors)
    assert len(result["backward_bound_log10"]) == len(factors)
    for got, want in zip(result["backward_bound_log10"], expected_suffix, strict=True):
        assert got == pytest.approx(want, abs=1e-12)
    assert result["backward_bound_log10"][-1] == 0.0
    assert result["log10"] == pytest.approx(math.fsum(logs), abs=1e-12)
    assert result["value"] == pytest.approx(math.prod(factors), rel=1e-13)
    assert result["rate_log10"] == pytest.approx(math.fsum(logs) / len(factors), abs=1e-12)
    assert result["flags"] == []


async def test_factors_with_a_zero(client: httpx.AsyncClient) -> None:
    """Suffixes that include the zero are null (log10 0); the ones after it are still numbers."""
    factors = [2.0, 0.5, 0.0, 3.0, 4.0]
    result = await bound(client, {"factors": factors})
    suffix = result["backward_bound_log10"]
    assert suffix[0] is None
    assert suffix[1] is None
    assert suffix[2] == pytest.approx(math.log10(12.0), abs=1e-12)
    assert suffix[3] == pytest.approx(math.log10(4.0), abs=1e-12)
    assert suffix[4] == 0.0
    assert result["log10"] is None
    assert result["rate_log10"] is None
    assert result["value"] == 0.0
    assert result["flags"] == ["zero_factor"]
    assert result["verdict"] == "vanishing"


async def test_zero_factor(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/bounds", json={"factor": 0, "depth": 7})
    assert response.status_code == 200
    result = response.json()
    assert result["log10"] is None
    assert result["rate_log10"] is None
    assert result["value"] == 0.0
    assert result["flags"] == ["zero_factor"]
    assert result["verdict"] == "vanishing"
    assert "Infinity" not in response.text


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        ({"factor": 1.0, "depth": 1000}, "stable"),
        ({"factor": 0.5, "depth": 10}, "vanishing"),  # 10^-3.01 < 10^-2
        ({"factor": 0.5, "depth": 6}, "stable"),  # 10^-1.81
        ({"factor": 2.0, "depth": 10}, "exploding"),  # 10^3.01 > 10^2
        ({"factor": 2.0, "depth": 6}, "stable"),  # 10^1.81
        ({"factor": 10.0, "depth": 2}, "stable"),  # exactly 10^2: not above the threshold
        ({"factor": 0.5, "depth": 10, "thresholds": {"vanishing_log10": -4.0, "exploding_log10": 4.0}}, "stable"),
        ({"factor": 2.0, "depth": 3, "thresholds": {"vanishing_log10": -0.5, "exploding_log10": 0.5}}, "exploding"),
        ({"factors": [0.1, 0.1, 0.1]}, "vanishing"),
        ({"factors": [10.0, 10.0, 10.0]}, "exploding"),
        ({"factors": [10.0, 0.1, 3.0]}, "stable"),
    ],
)
async def test_verdicts(client: httpx.AsyncClient, body: dict[str, Any], verdict: str) -> None:
    result = await bound(client, body)
    assert result["verdict"] == verdict
    thresholds = body.get("thresholds", {"vanishing_log10": -2.0, "exploding_log10": 2.0})
    assert result["thresholds"] == thresholds


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"factor": 0.5, "depth": 10, "factors": [0.5]}, ""),
        ({}, ""),
        ({"factor": 0.5}, ""),
        ({"factor": -0.5, "depth": 10}, "/factor"),
        ({"factor": 0.5, "depth": 0}, "/depth"),
        ({"factor": 0.5, "depth": -3}, "/depth"),
        ({"factor": 0.5, "depth": 2.5}, "/depth"),
        ({"factor": "half", "depth": 2}, "/factor"),
        ({"factors": [1.0, -2.0]}, "/factors/1"),
        ({"factors": []}, "/factors"),
        ({"factor": 0.5, "depth": 10, "thresholds": {"vanishing_log10": 1.0, "exploding_log10": -1.0}}, "/thresholds"),
        ({"factor": 0.5, "depth": 10, "extra": 1}, "/extra"),
    ],
    ids=[
        "both-forms",
        "neither-form",
        "factor-without-depth",
        "negative-factor",
        "depth-0",
        "negative-depth",
        "fractional-depth",
        "factor-not-a-number",
        "negative-entry-in-factors",
        "empty-factors",
        "thresholds-out-of-order",
        "extra-field",
    ],
)
async def test_invalid_bodies(client: httpx.AsyncClient, body: dict[str, Any], pointer: str) -> None:
    response = await client.post("/v1/bounds", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["status"] == 422
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert [e["pointer"] for e in problem["errors"]] == [pointer]


async def test_both_and_neither_name_the_forms(client: httpx.AsyncClient) -> None:
    """A cross-field error points at the whole body, so its message must name the fields involved."""
    for body in ({"factor": 0.5, "depth": 10, "factors": [0.5]}, {}):
        response = await client.post("/v1/bounds", json=body)
        assert response.status_code == 422
        detail = response.json()["errors"][0]["detail"]
        assert "factors" in detail
        assert "depth" in detail
