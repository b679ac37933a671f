"""A hypothesis property of the blocks' bounds (service.graph.analysis._block_bound): on random DAGs of linear,
activation, mul, layer_norm and add nodes (every dangling tensor summed into the output), each block's
jacobian_norm_bound is at least its true Jacobian norm on the probes (torch.func.jacrev, dense SVD), and each
backward bound at least the true backward norm; the true norms agree with the report's to 1e-6."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional

from api.ingest.graph import build, inline
from jacspec.models import GraphNetwork
from service.graph.analysis import analyse_graph
from service.probes import ProbeSpec, make_probes
from service.verdict import Thresholds
from tests.service.graph.export import Exported, relative

WIDTH, PROBES = 3, 2
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


@st.composite
def models(draw: st.DrawFn) -> Exported:
    """A random DAG on (WIDTH,) tensors: each node reads earlier tensors; the dangling ones are summed last."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    model = Exported((WIDTH,))
    names = ["input"]
    for k in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["linear", "activation", "mul", "layer_norm", "add"]))
        reads = [names[draw(st.integers(0, len(names) - 1))]]
        node_id = f"n{k}"
        if kind == "linear":
            weight = torch.tensor(rng.normal(0.0, draw(st.floats(0.05, 2.0)), (WIDTH, WIDTH)))
            model.add(node_id, "linear", lambda x, w=weight: x @ w.T, reads, {"weight": weight})
        elif kind == "activation":
            name = draw(st.sampled_from(sorted(ACTIVATIONS)))
            model.add(node_id, "activation", ACTIVATIONS[name], reads, activation=name)
        elif kind == "mul":
            c = draw(st.floats(-3.0, 3.0))
            model.add(node_id, "mul", lambda x, c=c: c * x, reads, constant=c)
        elif kind == "layer_norm":
            eps = draw(st.sampled_from([1e-5, 0.1, 1.0]))
            fn = lambda x, eps=eps: functional.layer_norm(x, (WIDTH,), eps=eps)  # noqa: E731
            model.add(node_id, "layer_norm", fn, reads, normalized_shape=[WIDTH], eps=eps)
        else:
            reads.append(names[draw(st.integers(0, len(names) - 1))])
            model.add(node_id, "add", lambda a, b: a + b, reads)
        names.append(node_id)
    read = {name for node in model.nodes for name in node.get("inputs", [])}
    dangling = [name for name in names[1:-1] if name not in read] + [names[-1]]
    if len(dangling) > 1:
        model.add("out", "add", lambda *xs: sum(xs[1:], xs[0]), dangling)
    return model


@settings(max_examples=40, deadline=None)
@given(models(), st.integers(0, 1000))
def test_block_bounds_hold(model: Exported, seed: int) -> None:
    graph = build(GraphNetwork.model_validate(model.contract()), inline)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, (PROBES, WIDTH))
    result = analyse_graph(graph, x, rng.standard_normal((PROBES, WIDTH)), 1e-10, Thresholds())
    xs = torch.tensor(x)
    for report, block in zip(result.blocks, graph.blocks(), strict=True):
        truth = model.jacobian_norm(block.start, block.stop, xs)
        assert report.jacobian_norm is not None
        assert relative(report.jacobian_norm, truth) < 1e-6 or truth < 1e-12
        if report.jacobian_norm_bound is not None:
            assert report.jacobian_norm_bound >= truth * (1 - 1e-9)
        backward = model.jacobian_norm(block.stop, graph.output, xs) if block.stop < graph.output else 1.0
        if report.backward_bound_log10 is not None:
            assert 10**report.backward_bound_log10 >= backward * (1 - 1e-9)


def test_a_layer_norm_block_on_the_default_probes_gets_its_true_norm() -> None:
    """The default probes are ``default_rng(0)``'s draws. Lanczos started from the probe itself would stay in the
    span of 1 and x − mean, orthogonal to layer_norm's top singular vector, and report the smaller singular value
    (it did: 1.22 for 1.40 at eps 0.1); its start vectors come from a seed of their own."""
    for eps in (1e-5, 0.1, 1.0):
        node = {"id": "ln", "op": "layer_norm", "normalized_shape": [WIDTH], "eps": eps}
        graph = build(GraphNetwork.model_validate({"input_shape": [WIDTH], "nodes": [node]}), inline)
        x, y = make_probes(ProbeSpec(count=PROBES), WIDTH, WIDTH)
        result = analyse_graph(graph, x, y, 1e-10, Thresholds())
        jacobian = torch.func.jacrev(lambda v, eps=eps: functional.layer_norm(v, (WIDTH,), eps=eps))
        truth = max(float(np.linalg.norm(jacobian(torch.tensor(row)).numpy(), 2)) for row in x)
        assert result.blocks[0].jacobian_norm is not None
        assert relative(result.blocks[0].jacobian_norm, truth) < 1e-8


def _chain(scales: list[float]) -> dict[str, object]:
    """Linear layers of orthogonal 8 × 8 weights times ``scales``, each followed by tanh."""
    rng = np.random.default_rng(11)
    nodes: list[dict[str, object]] = []
    for k, scale in enumerate(scales):
        q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
        nodes.append(
            {
                "id": f"fc{k}",
                "op": "linear",
                "params": {"weight": {"shape": [8, 8], "data": (scale * q).ravel().tolist()}},
            }
        )
        nodes.append({"id": f"act{k}", "op": "activation", "activation": "tanh"})
    return {"input_shape": [8], "nodes": nodes}


@pytest.mark.parametrize(("scale", "verdict"), [(1e-4, "vanishing"), (1e4, "exploding")])
def test_the_advice_names_the_block_to_fix_and_fixing_it_makes_the_graph_stable(scale: float, verdict: str) -> None:
    """Closed loop: one layer scaled by 1e-4 (or 1e4) among orthogonal ones; the advice names its block, and
    dividing that block's weight by the Jacobian norm the advice quotes makes the verdict stable."""
    scales = [1.0, scale, 1.0]
    x, y = make_probes(ProbeSpec(count=4, scale=0.1), 8, 8)
    result = analyse_graph(build(GraphNetwork.model_validate(_chain(scales)), inline), x, y, 1e-8, Thresholds())
    assert result.summary.verdict == verdict
    named = re.search(r"block (\d+) \((\S+)\), whose Jacobian norm (\S+) is", result.summary.advice)
    assert named is not None, result.summary.advice
    block = result.blocks[int(named.group(1)) - 1]
    assert block.nodes == (named.group(2),) == ("fc1",)
    scales[1] /= float(named.group(3))
    fixed = analyse_graph(build(GraphNetwork.model_validate(_chain(scales)), inline), x, y, 1e-8, Thresholds())
    assert fixed.summary.verdict == "stable"
