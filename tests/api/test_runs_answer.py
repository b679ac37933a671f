"""api.runs against hand-computed values: alignment of layers over steps (null where a layer is missing), the
verdicts, the summary's numbers, a survey's σ_max as weight_norm, and log10_change (b − a for *_log10 metrics,
log10(b/a) for plain norms)."""

from __future__ import annotations

import json
import math

import pytest

from api.runs import comparison, log10_change, parse_point, run_answer


def chain(verdict: str, layers: list[dict[str, float | None]], norm: float) -> bytes:
    rows = [{"index": i, "type": "dense", **values} for i, values in enumerate(layers, start=1)]
    return json.dumps(
        {"layers": rows, "summary": {"verdict": verdict, "input_norm_log10": norm, "depth": len(rows)}}
    ).encode()


def test_run_answer_aligns_layers_and_steps() -> None:
    p0 = parse_point(0, "t0", chain("healthy", [{"weight_norm": 2.0, "backward_norm_log10": -1.0}], -1.0))
    p5 = parse_point(
        5,
        "t5",
        chain("vanishing", [{"weight_norm": 4.0, "backward_norm_log10": -3.0}, {"weight_norm": 1.0}], -3.0),
    )
    answer = run_answer("r", [p5, p0], [])
    assert answer["steps"] == [0, 5]
    assert answer["verdicts"] == ["healthy", "vanishing"]
    assert answer["created_at"] == ["t0", "t5"]
    first, second = answer["layers"]
    assert first["metrics"]["weight_norm"] == [2.0, 4.0]
    assert first["metrics"]["backward_norm_log10"] == [-1.0, -3.0]
    assert first["metrics"]["jacobian_norm"] == [None, None]
    assert second["index"] == 2
    assert second["metrics"]["weight_norm"] == [None, 1.0]
    assert answer["summary"] == {"depth": [1.0, 2.0], "input_norm_log10": [-1.0, -3.0]}


def test_survey_points_give_sigma_max_as_weight_norm() -> None:
    report = {"kind": "survey", "weights": [{"type": "matrix", "sigma_max": 3.0}, {"type": "kernel", "sigma_max": 0.5}]}
    point = parse_point(1, "t", json.dumps(report).encode())
    assert point.verdict == "survey"
    assert point.layers[2] == ("kernel", {**dict.fromkeys(point.layers[2][1]), "weight_norm": 0.5})


def test_log10_change_hand_computed() -> None:
    assert log10_change("backward_norm_log10", -1.0, -3.5) == -2.5
    assert log10_change("weight_norm", 2.0, 20.0) == pytest.approx(1.0, rel=1e-15)
    assert log10_change("weight_norm", 0.0, 20.0) is None
    assert log10_change("jacobian_norm", None, 1.0) is None
    a = parse_point(0, "t", chain("healthy", [{"weight_norm": 1.0, "gradient_norm_log10": 0.25}], 0.0))
    b = parse_point(3, "t", chain("exploding", [{"weight_norm": 1e3, "gradient_norm_log10": 4.0}], 3.0))
    answer = comparison("r", a, b)
    assert answer["verdicts"] == {"a": "healthy", "b": "exploding"}
    metrics = answer["layers"][0]["metrics"]
    assert metrics["weight_norm"] == {"a": 1.0, "b": 1e3, "log10_change": pytest.approx(3.0, rel=1e-15)}
    assert metrics["gradient_norm_log10"]["log10_change"] == 3.75
    assert math.isclose(metrics["weight_norm"]["log10_change"], math.log10(1e3 / 1.0))
