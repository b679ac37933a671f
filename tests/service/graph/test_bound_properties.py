"""Hypothesis properties: lipschitz() ≥ the dense Jacobian's ‖J‖₂ (torch.func.jacrev, float64) at random inputs and
small random shapes, for the elementwise, shape and batch_norm ops (the other ops' properties sit beside their
tests). The bounds of add, mul and the shape ops are exact, so there they must also equal the truth (to rounding)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.activations import ACTIVATIONS
from service.graph.elementwise import ActivationOp, Add, Mul
from service.graph.normalisation import BatchNorm
from service.graph.op import Op
from service.graph.shape import Concat, Flatten, Permute, Reshape, Transpose
from tests.service.graph.test_ops import EXACT, TORCH_ACTIVATIONS, _jacobian_norm

SEEDS = st.integers(0, 2**31 - 1)
SHAPES = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(ACTIVATIONS)), st.floats(1e-3, 1e2), SHAPES, SEEDS)
def test_activation_bound_holds(name: str, scale: float, shape: tuple[int, ...], seed: int) -> None:
    """sup|h'| ≥ max_x |h'(x)| = ‖diag(h'(x))‖₂ at inputs of any scale."""
    x = np.random.default_rng(seed).standard_normal((2, *shape)) * scale
    truth = _jacobian_norm(TORCH_ACTIVATIONS[name], [x])
    assert ActivationOp(ACTIVATIONS[name]()).lipschitz() >= truth * (1 - EXACT)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), SHAPES, SEEDS)
def test_add_bound_holds(count: int, shape: tuple[int, ...], seed: int) -> None:
    """√k = ‖[I … I]‖₂ for k inputs."""
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal((1, *shape)) for _ in range(count)]
    op = Add()
    op.output_shape([shape] * count)
    bound = op.lipschitz()
    assert bound is not None
    truth = _jacobian_norm(lambda *xs: torch.stack(xs).sum(0), inputs)
    assert bound == pytest.approx(truth, rel=EXACT)
    assert bound >= truth * (1 - EXACT)
    assert Add(count).lipschitz() == bound


@settings(max_examples=20, deadline=None)
@given(st.floats(-1e3, 1e3), SHAPES, SEEDS)
def test_mul_bound_holds(constant: float, shape: tuple[int, ...], seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal((1, *shape))
    truth = _jacobian_norm(lambda z: constant * z, [x])
    assert Mul(constant).lipschitz() == pytest.approx(truth, rel=EXACT, abs=1e-300)


@settings(max_examples=25, deadline=None)
@given(SHAPES, st.integers(1, 3), st.data(), SEEDS)
def test_concat_bound_holds(shape: tuple[int, ...], count: int, data: st.DataObject, seed: int) -> None:
    """‖J‖₂ = 1 for concat along any axis, inputs of different lengths along it."""
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    lengths = data.draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
    inputs = []
    for length in lengths:
        own = list(shape)
        own[axis] = length
        inputs.append(rng.standard_normal((1, *own)))
    torch_axis = axis + 1 if axis >= 0 else axis
    truth = _jacobian_norm(lambda *xs: torch.cat(xs, dim=torch_axis), inputs)
    assert Concat(axis).lipschitz() == pytest.approx(truth, rel=EXACT)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple), st.data(), SEEDS)
def test_shape_op_bounds_hold(shape: tuple[int, ...], data: st.DataObject, seed: int) -> None:
    """Reshape, flatten, permute and transpose are permutations of the entries: ‖J‖₂ = 1 = the bound."""
    x = np.random.default_rng(seed).standard_normal((1, *shape))
    ndim = len(shape)
    dims = data.draw(st.permutations(range(ndim)))
    dim0, dim1 = data.draw(st.integers(0, ndim - 1)), data.draw(st.integers(0, ndim - 1))
    start = data.draw(st.integers(0, ndim - 1))
    end = data.draw(st.integers(start, ndim - 1))
    cases: list[tuple[Op, Callable[[torch.Tensor], torch.Tensor]]] = [
        (Reshape((-1,)), lambda z: z.reshape(1, -1)),
        (Reshape((shape[-1], -1)), lambda z: z.reshape(1, shape[-1], -1)),
        (Flatten(start, end), lambda z: torch.flatten(z, start + 1, end + 1)),
        (Permute(tuple(dims)), lambda z: z.permute(0, *(d + 1 for d in dims))),
        (Transpose(dim0, dim1), lambda z: z.transpose(dim0 + 1, dim1 + 1)),
    ]
    for op, fn in cases:
        assert op.output_shape([shape]) == tuple(fn(torch.tensor(x)).shape[1:])
        assert op.lipschitz() == pytest.approx(_jacobian_norm(fn, [x]), rel=EXACT)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 3), st.floats(1e-6, 1.0), st.booleans(), st.floats(1e-8, 1e2), SEEDS)
def test_batch_norm_bound_holds(
    channels: int, extra: int, eps: float, affine: bool, var_scale: float, seed: int
) -> None:
    """max_c |γ_c|/√(σ²_c + ε) ≥ ‖J‖₂, running variances from near 0 to large."""
    rng = np.random.default_rng(seed)
    mean, var = rng.standard_normal(channels), rng.random(channels) * var_scale
    weight, bias = (rng.standard_normal(channels), rng.standard_normal(channels)) if affine else (None, None)
    x = rng.standard_normal((1, channels, *([2] * extra)))
    op = BatchNorm(mean, var, weight, bias, eps)
    t = [None if a is None else torch.tensor(a) for a in (mean, var, weight, bias)]
    truth = _jacobian_norm(
        lambda z: torch.nn.functional.batch_norm(z, t[0], t[1], t[2], t[3], training=False, eps=eps), [x]
    )
    assert op.lipschitz() >= truth * (1 - EXACT)
    assert math.isfinite(op.lipschitz())
