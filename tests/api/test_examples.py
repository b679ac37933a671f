"""The response examples in the docs are real: the service still answers the request examples with them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jacspec.models import AnalysisReport, AnalysisRequest, BoundsRequest, BoundsResponse

pytestmark = pytest.mark.anyio


def _examples(model: type[Any]) -> list[dict[str, Any]]:
    extra = model.model_config["json_schema_extra"]
    assert isinstance(extra, dict)
    examples = extra["examples"]
    assert isinstance(examples, list)
    return examples


EXAMPLE_RTOL = 1e-12
"""The example's numbers may differ from a rerun in the last bits (BLAS kernels and thread counts vary)."""


def _close(got: Any, expected: Any) -> bool:
    """Equal structure and strings, floats equal to EXAMPLE_RTOL."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(_close(got[k], expected[k]) for k in got)
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(_close, got, expected))
    if isinstance(expected, float) and isinstance(got, float):
        return got == pytest.approx(expected, rel=EXAMPLE_RTOL, abs=1e-300)
    return bool(got == expected)


async def test_analysis_report_example_is_the_answer_to_the_request_example(client: httpx.AsyncClient) -> None:
    expected = _examples(AnalysisReport)[0]
    response = await client.post("/v1/analyses", json=_examples(AnalysisRequest)[1])
    assert response.status_code == 200
    got = response.json()
    assert _close(got["layers"], expected["layers"])
    assert _close(got["summary"], expected["summary"])
    assert _close(got["meta"]["methods"], expected["meta"]["methods"])
    assert set(got["meta"]["timings_ms"]) == set(expected["meta"]["timings_ms"])
    timings = got["meta"]["timings_ms"]
    assert timings["total"] == pytest.approx(timings["parse"] + timings["decode"] + timings["compute"], rel=1e-12)
    assert min(timings.values()) >= 0.0


async def test_bounds_response_example_is_the_answer_to_the_request_example(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/bounds", json=_examples(BoundsRequest)[0])
    assert response.status_code == 200
    assert response.json() == _examples(BoundsResponse)[0]


async def test_a_hundred_thousand_bad_values_are_refused_in_a_short_problem(client: httpx.AsyncClient) -> None:
    body = b'{"network": {"layers": [{"weight": [[' + b",".join([b"NaN"] * 100_000) + b"]]}]}}"
    response = await client.post("/v1/analyses", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    problem = response.json()
    assert [e["pointer"] for e in problem["errors"]] == ["/network/layers/0/weight/0/0"]  # lists fail fast
