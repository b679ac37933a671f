"""progress(done, total) of the analysis, the graph analysis and the survey: called 1, 2, …, total in order, with
the total each function states (counted independently here), and the numbers identical to a run without it."""

from __future__ import annotations

import itertools

import numpy as np

from api.encode import encoded_report
from api.ingest.graph import build, inline
from jacspec.models import GraphNetwork
from service.activations import make_activation
from service.analysis import Analysis, Options, analyse
from service.graph.analysis import GraphAnalysis, analyse_graph
from service.linear import Dense
from service.network import Layer, Network
from service.probes import ProbeSpec, make_probes
from service.survey import survey
from service.verdict import Thresholds
from tests.service.graph.test_block_bounds import _chain


def recorder() -> tuple[list[tuple[int, int]], object]:
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def test_chain_progress_counts_weights_layers_and_the_backward_pass() -> None:
    rng = np.random.default_rng(3)
    widths = [12, 10, 10, 8, 6]
    layers = tuple(
        Layer(Dense(rng.standard_normal((n, m)) / np.sqrt(m)), rng.standard_normal(n), make_activation("tanh"))
        for m, n in itertools.pairwise(widths)
    )
    network = Network(layers)
    x, y = make_probes(ProbeSpec(count=5, scale=1.0), widths[0], widths[-1])
    calls, progress = recorder()
    told = analyse(network, x, y, Options(), progress=progress)  # type: ignore[arg-type]
    plain = analyse(network, x, y, Options())
    total = 2 * len(layers) + 1  # four distinct weights, four Jacobians, one backward pass
    assert calls == [(k, total) for k in range(1, total + 1)]
    assert json(told) == json(plain)


def json(result: Analysis | GraphAnalysis) -> bytes:
    """The report's JSON (the same timings for both): every number the analysis gives."""
    return encoded_report(result, "test", {}).json


def test_graph_progress_counts_blocks() -> None:
    graph = build(GraphNetwork.model_validate(_chain([1.0, 0.5, 2.0, 1.0])), inline)
    x, y = make_probes(ProbeSpec(count=4, scale=0.1), 8, 8)
    calls, progress = recorder()
    told = analyse_graph(graph, x, y, 1e-8, Thresholds(), progress=progress)  # type: ignore[arg-type]
    plain = analyse_graph(graph, x, y, 1e-8, Thresholds())
    blocks = len(graph.blocks())
    assert blocks == len(told.blocks) > 1
    assert calls == [(k, blocks) for k in range(1, blocks + 1)]
    assert json(told) == json(plain)


def test_survey_progress_counts_tensors() -> None:
    rng = np.random.default_rng(4)
    named = {"a.weight": rng.standard_normal((6, 4)), "a.bias": rng.standard_normal(6), "b.weight": np.eye(3)}
    calls, progress = recorder()
    told = survey(named, progress=progress)  # type: ignore[arg-type]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert told == survey(named)
