"""Property: on random small networks the true norms never exceed the seed's bounds.

‖diag(h'(z))W‖₂ ≤ max|h'|·‖W‖₂ ≤ sup|h'|·σ, and ‖J_L⋯J_{j+1}‖₂ ≤ ∏ ‖J_i‖₂ ≤ ∏ σ_i·sup|h_i'| by
submultiplicativity; the slack below only absorbs float64 rounding.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.activations import ACTIVATIONS, make_activation
from service.analysis import Options, analyse
from service.linear import Dense
from service.network import Layer, network_from_layers

LOG_SLACK = 1e-9
"""log10 rounding slack: a handful of products and SVDs of O(1) matrices."""
JACOBIAN_RTOL = 1e-9
DERIVATIVE_RTOL = 1e-12


@st.composite
def networks(draw: st.DrawFn) -> tuple[list[int], list[str], float, int, int, list[bool]]:
    depth = draw(st.integers(1, 4))
    widths = draw(st.lists(st.integers(1, 6), min_size=depth + 1, max_size=depth + 1))
    acts = draw(st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=depth, max_size=depth))
    scale = draw(st.floats(0.1, 3.0))
    probes = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    biases = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
    return widths, acts, scale, probes, seed, biases


@settings(max_examples=150, deadline=None)
@given(networks())
def test_true_norms_never_exceed_bounds(spec: tuple[list[int], list[str], float, int, int, list[bool]]) -> None:
    """backward_norm ≤ backward_bound, input_norm ≤ input_bound (in log10, + LOG_SLACK), jacobian_norm ≤
    jacobian_norm_bound·(1 + JACOBIAN_RTOL), derivative_max ≤ derivative_bound·(1 + DERIVATIVE_RTOL)."""
    widths, acts, scale, probes, seed, biases = spec
    rng = np.random.default_rng(seed)
    layers = [
        Layer(
            Dense(scale * rng.standard_normal((n_out, n_in))),
            rng.standard_normal(n_out) if bias else None,
            make_activation(act),
        )
        for n_in, n_out, act, bias in zip(widths[:-1], widths[1:], acts, biases, strict=True)
    ]
    net = network_from_layers(layers)
    x = rng.standard_normal((probes, widths[0]))
    y = rng.standard_normal((probes, widths[-1]))
    report = analyse(net, x, y, Options())
    for layer, rep in zip(net.layers, report.layers, strict=True):
        assert math.isclose(rep.weight_norm, float(np.linalg.norm(layer.weight.dense(), 2)), rel_tol=1e-12)
        assert rep.derivative_max is not None
        assert rep.derivative_max <= rep.derivative_bound * (1.0 + DERIVATIVE_RTOL)
        assert rep.jacobian_norm is not None
        assert rep.jacobian_norm <= rep.jacobian_norm_bound * (1.0 + JACOBIAN_RTOL)
        if rep.backward_norm_log10 is not None and rep.backward_bound_log10 is not None:
            assert rep.backward_norm_log10 <= rep.backward_bound_log10 + LOG_SLACK
        if rep.backward_bound_log10 is None:  # a zero bound forces a zero true norm
            assert rep.backward_norm_log10 is None
    s = report.summary
    if s.input_norm_log10 is not None and s.input_bound_log10 is not None:
        assert s.input_norm_log10 <= s.input_bound_log10 + LOG_SLACK
    if s.input_bound_log10 is None:
        assert s.input_norm_log10 is None
