"""Graph ops against torch autograd (float64): forward vs torch, jvp vs torch.func.jvp, vjp vs torch.func.vjp,
parameter vjp vs torch.func.vjp on the parameters, and lipschitz() ≥ the dense Jacobian's ‖J‖₂ (jacrev)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.activations import ACTIVATIONS
from service.errors import InvalidInputError
from service.graph.dense import Linear
from service.graph.elementwise import ActivationOp, Add, Mul
from service.graph.normalisation import BatchNorm, LayerNorm, RMSNorm
from service.graph.op import Array, Op
from service.graph.shape import Concat, Flatten, Permute, Reshape, Transpose

EXACT = 1e-12
"""Relative error where only rounding separates numpy's and torch's sums."""
PRODUCT = 1e-10
"""Relative error allowed for the JVP/VJP products."""

TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda z: z,
    "relu": torch.relu,
    "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.01),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_tanh": torch.nn.functional.hardtanh,
    "elu": torch.nn.functional.elu,
    "selu": torch.nn.functional.selu,
    "gelu": torch.nn.functional.gelu,
    "silu": torch.nn.functional.silu,
    "softplus": torch.nn.functional.softplus,
}


def _close(a: Array, b: torch.Tensor, rtol: float) -> None:
    expected = b.detach().numpy()
    scale = max(float(np.abs(expected).max()), 1e-300)
    assert float(np.abs(a - expected).max()) <= rtol * scale


def _check(op: Op, fn: Callable[..., torch.Tensor], inputs: list[Array], seed: int = 0) -> None:
    """Forward, jvp and vjp of ``op`` at ``inputs`` against torch's ``fn`` (per batch, probes on axis 0)."""
    rng = np.random.default_rng(seed)
    lin = op.linearise(inputs)
    xs = tuple(torch.tensor(x) for x in inputs)
    _close(lin.output, fn(*xs), EXACT)
    assert op.output_shape([x.shape[1:] for x in inputs]) == lin.output.shape[1:]
    tangents = [rng.standard_normal(x.shape) for x in inputs]
    jvp = torch.func.jvp(fn, xs, tuple(torch.tensor(t) for t in tangents))[1]
    _close(lin.jvp(tangents), jvp, PRODUCT)
    u = rng.standard_normal(lin.output.shape)
    pull = torch.func.vjp(fn, *xs)[1]
    for mine, theirs in zip(lin.vjp(u), pull(torch.tensor(u)), strict=True):
        _close(mine, theirs, PRODUCT)


def _jacobian_norm(fn: Callable[..., torch.Tensor], inputs: list[Array]) -> float:
    """max over probes of ‖∂f_b/∂(x_1, …, x_k)‖₂ from the dense Jacobian (torch.func.jacrev)."""
    worst = 0.0
    for b in range(len(inputs[0])):
        xs = tuple(torch.tensor(x[b : b + 1]) for x in inputs)
        jac = torch.func.jacrev(fn, argnums=tuple(range(len(xs))))(*xs)
        out = fn(*xs).numel()
        dense = torch.cat([j.reshape(out, -1) for j in jac], dim=1)
        worst = max(worst, float(torch.linalg.matrix_norm(dense, 2)))
    return worst


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_against_torch(name: str) -> None:
    x = np.random.default_rng(1).standard_normal((3, 4, 5)) * 2
    op = ActivationOp(ACTIVATIONS[name]())
    _check(op, TORCH_ACTIVATIONS[name], [x])
    assert op.lipschitz() >= _jacobian_norm(TORCH_ACTIVATIONS[name], [x]) * (1 - EXACT)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_add_against_torch(k: int) -> None:
    rng = np.random.default_rng(k)
    inputs = [rng.standard_normal((2, 3, 4)) for _ in range(k)]
    op = Add()

    def total(*xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(xs).sum(0)

    _check(op, total, inputs)
    bound = op.lipschitz()
    assert bound is not None
    assert bound == pytest.approx(_jacobian_norm(total, inputs), rel=EXACT)


def test_add_refuses_unequal_shapes() -> None:
    with pytest.raises(InvalidInputError) as caught:
        Add().output_shape([(3,), (4,)])
    assert caught.value.location == ("inputs", 1)


def test_mul_against_torch() -> None:
    x = np.random.default_rng(2).standard_normal((2, 5))
    op = Mul(-2.5)
    _check(op, lambda z: -2.5 * z, [x])
    assert op.lipschitz() == pytest.approx(_jacobian_norm(lambda z: -2.5 * z, [x]), rel=EXACT)


@pytest.mark.parametrize("shape", [(2, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_against_torch(shape: tuple[int, ...], bias: bool) -> None:
    rng = np.random.default_rng(3)
    weight, b = rng.standard_normal((5, 4)), rng.standard_normal(5) if bias else None
    x = rng.standard_normal(shape)
    op = Linear(weight, b)
    tw, tb = torch.tensor(weight), None if b is None else torch.tensor(b)
    _check(op, lambda z: torch.nn.functional.linear(z, tw, tb), [x])
    u = rng.standard_normal((*shape[:-1], 5))
    lin = op.linearise([x])
    params = (tw, tb) if tb is not None else (tw,)
    pull = torch.func.vjp(lambda *p: torch.nn.functional.linear(torch.tensor(x), *p), *params)[1]
    grads = pull(torch.tensor(u))
    mine = lin.vjp_parameters(u)
    for name, theirs in zip(["weight", "bias"], grads, strict=False):
        _close(mine[name], theirs, PRODUCT)
    assert set(mine) == set(op.parameters)


def test_linear_refuses_bad_shapes() -> None:
    with pytest.raises(InvalidInputError) as caught:
        Linear(np.ones((2, 3)), np.ones(3))
    assert caught.value.location == ("bias",)
    with pytest.raises(InvalidInputError) as caught:
        Linear(np.ones((2, 3))).output_shape([(4,)])
    assert caught.value.location == ("inputs", 0)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_linear_bound_holds(out: int, inp: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((out, inp))
    x = rng.standard_normal((2, inp))
    tw = torch.tensor(weight)
    truth = _jacobian_norm(lambda z: torch.nn.functional.linear(z, tw), [x])
    assert Linear(weight).lipschitz() >= truth


SHAPE_CASES: list[tuple[Op, Callable[..., torch.Tensor], int]] = [
    (Reshape((3, -1)), lambda z: z.reshape(len(z), 3, -1), 1),
    (Flatten(), lambda z: torch.flatten(z, 1), 1),
    (Flatten(1, 2), lambda z: torch.flatten(z, 2, 3), 1),
    (Permute((2, 0, 1)), lambda z: z.permute(0, 3, 1, 2), 1),
    (Transpose(0, -1), lambda z: z.transpose(1, 3), 1),
    (Concat(1), lambda *zs: torch.cat(zs, dim=2), 3),
]


@pytest.mark.parametrize(("op", "fn", "count"), SHAPE_CASES)
def test_shape_ops_against_torch(op: Op, fn: Callable[..., torch.Tensor], count: int) -> None:
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((2, 3, 2, 4)) for _ in range(count)]
    _check(op, fn, inputs)
    bound = op.lipschitz()
    assert bound is not None
    assert bound == pytest.approx(_jacobian_norm(fn, inputs), rel=EXACT)


def test_shape_ops_refuse_bad_input() -> None:
    with pytest.raises(InvalidInputError) as caught:
        Reshape((5, -1)).output_shape([(3, 4)])
    assert caught.value.location == ("shape",)
    with pytest.raises(InvalidInputError) as caught:
        Concat(0).output_shape([(3, 4), (3, 5)])
    assert caught.value.location == ("inputs", 1)
    with pytest.raises(InvalidInputError) as caught:
        Permute((0, 0)).output_shape([(3, 4)])
    assert caught.value.location == ("dims",)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_against_torch(affine: bool) -> None:
    rng = np.random.default_rng(5)
    mean, var = rng.standard_normal(3), rng.random(3) + 0.1
    weight, bias = (rng.standard_normal(3), rng.standard_normal(3)) if affine else (None, None)
    x = rng.standard_normal((2, 3, 4, 2))
    op = BatchNorm(mean, var, weight, bias, eps=1e-3)
    t = [None if a is None else torch.tensor(a) for a in (mean, var, weight, bias)]

    def fn(z: torch.Tensor, *p: torch.Tensor) -> torch.Tensor:
        w, b = (p[0], p[1]) if p else (t[2], t[3])
        return torch.nn.functional.batch_norm(z, t[0], t[1], w, b, training=False, eps=1e-3)

    _check(op, fn, [x])
    assert op.lipschitz() >= _jacobian_norm(fn, [x]) * (1 - EXACT)
    if affine:
        u = rng.standard_normal(x.shape)
        pull = torch.func.vjp(lambda w, b: fn(torch.tensor(x), w, b), t[2], t[3])[1]
        mine = op.linearise([x]).vjp_parameters(u)
        for name, theirs in zip(["weight", "bias"], pull(torch.tensor(u)), strict=True):
            _close(mine[name], theirs, PRODUCT)


def test_batch_norm_refuses_bad_input() -> None:
    with pytest.raises(InvalidInputError) as caught:
        BatchNorm(np.zeros(3), np.ones(2))
    assert caught.value.location == ("running_var",)
    with pytest.raises(InvalidInputError) as caught:
        BatchNorm(np.zeros(3), np.ones(3)).output_shape([(4, 2)])
    assert caught.value.location == ("inputs", 0)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_against_torch(affine: bool) -> None:
    rng = np.random.default_rng(6)
    weight, bias = (rng.standard_normal((3, 4)), rng.standard_normal((3, 4))) if affine else (None, None)
    x = rng.standard_normal((2, 5, 3, 4))
    op = LayerNorm((3, 4), weight, bias, eps=1e-2)
    tw, tb = (None, None) if weight is None or bias is None else (torch.tensor(weight), torch.tensor(bias))

    def fn(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(z, (3, 4), tw, tb, eps=1e-2)

    _check(op, fn, [x])
    assert op.lipschitz() >= _jacobian_norm(fn, [x])
    if tw is not None and tb is not None:
        u = rng.standard_normal(x.shape)
        pull = torch.func.vjp(
            lambda w, b: torch.nn.functional.layer_norm(torch.tensor(x), (3, 4), w, b, eps=1e-2), tw, tb
        )[1]
        mine = op.linearise([x]).vjp_parameters(u)
        for name, theirs in zip(["weight", "bias"], pull(torch.tensor(u)), strict=True):
            _close(mine[name], theirs, PRODUCT)


@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_against_torch(affine: bool) -> None:
    rng = np.random.default_rng(7)
    weight = rng.standard_normal(4) if affine else None
    x = rng.standard_normal((2, 3, 4))
    op = RMSNorm((4,), weight, eps=1e-2)
    tw = None if weight is None else torch.tensor(weight)

    def fn(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.rms_norm(z, (4,), tw, eps=1e-2)

    _check(op, fn, [x])
    assert op.lipschitz() >= _jacobian_norm(fn, [x])
    if tw is not None:
        u = rng.standard_normal(x.shape)
        pull = torch.func.vjp(lambda w: torch.nn.functional.rms_norm(torch.tensor(x), (4,), w, eps=1e-2), tw)[1]
        mine = op.linearise([x]).vjp_parameters(u)
        assert set(mine) == {"weight"}
        _close(mine["weight"], pull(torch.tensor(u))[0], PRODUCT)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.floats(1e-3, 10.0), st.floats(1e-4, 1.0), st.integers(0, 2**31 - 1))
def test_norm_bounds_hold(n: int, spread: float, eps: float, seed: int) -> None:
    """max|γ|/√ε ≥ ‖J‖₂ for layer and RMS norm at random inputs, near-constant ones included (small spread)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(n)
    x = rng.standard_normal((2, n)) * spread + rng.standard_normal()
    tw = torch.tensor(weight)
    for op, fn in (
        (LayerNorm((n,), weight, np.zeros(n), eps), lambda z: torch.nn.functional.layer_norm(z, (n,), tw, eps=eps)),
        (RMSNorm((n,), weight, eps), lambda z: torch.nn.functional.rms_norm(z, (n,), tw, eps=eps)),
    ):
        assert op.lipschitz() >= _jacobian_norm(fn, [x]) * (1 - EXACT)
