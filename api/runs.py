"""A run's answers from its points' reports: each layer's metrics over the steps, the verdicts, the summary's
numbers, and the comparison of two steps. Pure: report JSON in, the answer's dict out (no database, no HTTP).

Each point's report is parsed once (:func:`parse_point`). A chain or graph report gives its ``layers`` (by their
1-based ``index``) and ``summary.verdict``; a weight survey (``kind`` "survey") gives its ``weights`` as layers
1…n with ``weight_norm`` = σ_max (the other metrics null) and the verdict ``survey``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jacspec.models.runs import METRICS

SURVEY_VERDICT = "survey"

Values = dict[str, float | None]


@dataclass(frozen=True)
class Point:
    """One step of a run, its report read: ``layers[index] = (kind, {metric: value})``, ``summary`` its numbers."""

    step: int
    created_at: str
    verdict: str
    layers: dict[int, tuple[str, Values]]
    summary: Values


def _number(value: object) -> float | None:
    """A JSON number as a float (bools and everything else are None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_point(step: int, created_at: str, report: bytes) -> Point:
    """The point of ``report`` (the stored bytes of an AnalysisReport or a SurveyReport), parsed once."""
    document: dict[str, Any] = json.loads(report)
    summary = document.get("summary") or {}
    numbers = {key: _number(value) for key, value in summary.items() if _number(value) is not None}
    if document.get("kind") == SURVEY_VERDICT:
        layers = {
            i: (
                str(w.get("type", "matrix")),
                {m: _number(w.get("sigma_max")) if m == "weight_norm" else None for m in METRICS},
            )
            for i, w in enumerate(document.get("weights", []), start=1)
        }
        return Point(step, created_at, SURVEY_VERDICT, layers, numbers)
    layers = {
        int(layer["index"]): (str(layer.get("type", "dense")), {m: _number(layer.get(m)) for m in METRICS})
        for layer in document.get("layers", [])
    }
    return Point(step, created_at, str(summary.get("verdict", "")), layers, numbers)


def run_answer(run: str, points: Sequence[Point], events: list[dict[str, Any]]) -> dict[str, Any]:
    """GET /v1/runs/{run}: ``points`` sorted by step; every list aligned with ``steps`` (null where absent)."""
    ordered = sorted(points, key=lambda p: p.step)
    indices = sorted({index for point in ordered for index in point.layers})
    layers = []
    for index in indices:
        kinds = [point.layers[index][0] for point in ordered if index in point.layers]
        metrics = {m: [_metric(point, index, m) for point in ordered] for m in METRICS}
        layers.append({"index": index, "kind": kinds[-1], "metrics": metrics})
    keys = sorted({key for point in ordered for key in point.summary})
    return {
        "run": run,
        "steps": [point.step for point in ordered],
        "verdicts": [point.verdict for point in ordered],
        "created_at": [point.created_at for point in ordered],
        "layers": layers,
        "summary": {key: [point.summary.get(key) for point in ordered] for key in keys},
        "events": events,
    }


def _metric(point: Point, index: int, metric: str) -> float | None:
    layer = point.layers.get(index)
    return None if layer is None else layer[1][metric]


def log10_change(metric: str, a: float | None, b: float | None) -> float | None:
    """b − a for a ``*_log10`` metric; log10(b/a) = log10 b − log10 a for a plain norm (null unless a, b > 0);
    null where either is absent."""
    if a is None or b is None:
        return None
    if metric.endswith("_log10"):
        return b - a
    if a <= 0 or b <= 0:
        return None
    return math.log10(b) - math.log10(a)


def comparison(run: str, a: Point, b: Point) -> dict[str, Any]:
    """GET /v1/runs/{run}/compare: every layer of either step, each metric at a and at b and its log10 change."""
    layers = []
    for index in sorted(set(a.layers) | set(b.layers)):
        metrics = {}
        for metric in METRICS:
            x, y = _metric(a, index, metric), _metric(b, index, metric)
            metrics[metric] = {"a": x, "b": y, "log10_change": log10_change(metric, x, y)}
        layers.append({"index": index, "metrics": metrics})
    return {"run": run, "a": a.step, "b": b.step, "verdicts": {"a": a.verdict, "b": b.verdict}, "layers": layers}
