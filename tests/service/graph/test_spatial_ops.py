"""conv1d/conv2d, group_norm and the pooling ops against torch (float64): forward to 1e-12, jvp/vjp against
torch.func to 1e-10, parameter cotangents against torch.func.vjp on the parameters, and every lipschitz() ≥ the dense
Jacobian's ‖J‖₂ from torch.func.jacrev (hypothesis over small shapes); where a bound is exact, equal to it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import InvalidInputError
from service.graph.convolution import Conv1d, Conv2d, Convolution
from service.graph.normalisation import GroupNorm
from service.graph.op import Array
from service.graph.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from tests.service.graph.test_ops import EXACT, PRODUCT, _check, _close, _jacobian_norm

F = torch.nn.functional

CONV2D_CASES: list[dict[str, Any]] = [
    {},
    {"stride": 2, "padding": 1},
    {"stride": (1, 2), "padding": (2, 0), "dilation": (2, 1)},
    {"padding": "same", "dilation": 2},
    {"padding": "same"},
    {"padding": "valid", "stride": 3},
    {"groups": 2, "padding": 1},
    {"groups": 4, "stride": 2, "dilation": 2, "padding": (1, 3)},
]


def _conv_case(op: Convolution, fn: Any, x: Array, bias: bool, seed: int) -> None:
    """Forward, jvp, vjp, parameter cotangents and bound of a convolution op against torch's ``fn(x, w, b)``."""
    tw = torch.tensor(op.weight)
    tb = None if op.bias is None else torch.tensor(op.bias)
    _check(op, lambda z: fn(z, tw, tb), [x], seed)
    lin = op.linearise([x])
    u = np.random.default_rng(seed + 1).standard_normal(lin.output.shape)
    params = (tw,) if tb is None else (tw, tb)
    pull = torch.func.vjp(lambda *p: fn(torch.tensor(x), *p) if bias else fn(torch.tensor(x), p[0], None), *params)[1]
    mine = lin.vjp_parameters(u)
    assert set(mine) == set(op.parameters)
    for name, theirs in zip(["weight", "bias"], pull(torch.tensor(u)), strict=False):
        _close(mine[name], theirs, PRODUCT)
    assert op.lipschitz() >= _jacobian_norm(lambda z: fn(z, tw, None), [x[:1]])


@pytest.mark.parametrize("config", CONV2D_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_against_torch(config: dict[str, Any], bias: bool) -> None:
    rng = np.random.default_rng(len(str(config)))
    groups = config.get("groups", 1)
    weight = rng.standard_normal((4, 4 // groups, 3, 2))
    b = rng.standard_normal(4) if bias else None
    x = rng.standard_normal((3, 4, 7, 6))
    op = Conv2d(weight, b, **config)
    _conv_case(op, lambda z, w, c: F.conv2d(z, w, c, **config), x, bias, 11)


@pytest.mark.parametrize(
    "config", [{}, {"stride": 2, "padding": 2}, {"padding": "same", "dilation": 3}, {"groups": 3, "stride": 3}]
)
def test_conv1d_against_torch(config: dict[str, Any]) -> None:
    rng = np.random.default_rng(21)
    groups = config.get("groups", 1)
    weight, b = rng.standard_normal((6, 6 // groups, 4)), rng.standard_normal(6)
    x = rng.standard_normal((2, 6, 11))
    op = Conv1d(weight, b, **config)
    _conv_case(op, lambda z, w, c: F.conv1d(z, w, c, **config), x, True, 22)


def test_conv_one_by_one_bound_is_the_matrix_norm() -> None:
    """A 1×1 convolution is W on every pixel alone: ‖J‖₂ = ‖W‖₂, and the tap bound is exactly that."""
    weight = np.random.default_rng(23).standard_normal((5, 3, 1, 1))
    assert Conv2d(weight).lipschitz() == pytest.approx(float(np.linalg.norm(weight[:, :, 0, 0], 2)), rel=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "shape", "field"),
    [
        ({"groups": 3}, (4, 3, 3, 3), ("groups",)),
        ({"padding": "same", "stride": 2}, (4, 3, 3, 3), ("padding",)),
        ({"padding": "full"}, (4, 3, 3, 3), ("padding",)),
        ({"stride": 0}, (4, 3, 3, 3), ("stride",)),
        ({"dilation": (1, 1, 1)}, (4, 3, 3, 3), ("dilation",)),
        ({"padding_mode": "reflect"}, (4, 3, 3, 3), ("padding_mode",)),
        ({}, (4, 3, 3), ("weight",)),
        ({"bias": np.ones(3)}, (4, 3, 3, 3), ("bias",)),
    ],
)
def test_conv_refuses_bad_arguments(kwargs: dict[str, Any], shape: tuple[int, ...], field: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Conv2d(np.ones(shape), **kwargs)
    assert caught.value.location == field


def test_conv_refuses_bad_inputs() -> None:
    op = Conv2d(np.ones((4, 3, 3, 3)))
    for shape in [(2, 5, 5), (3, 5), (3, 2, 5)]:
        with pytest.raises(InvalidInputError) as caught:
            op.output_shape([shape])
        assert caught.value.location == ("inputs", 0)
    with pytest.raises(InvalidInputError) as caught:
        Conv2d(np.full((4, 3, 3, 3), np.nan))
    assert caught.value.location == ("weight",)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 2),
    st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(1, 2), st.integers(1, 2)),
    st.tuples(st.integers(0, 2), st.integers(0, 2)),
    st.integers(0, 2**31 - 1),
)
def test_conv2d_bound_holds(
    c_in: int,
    c_out: int,
    groups: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    padding: tuple[int, int],
    seed: int,
) -> None:
    """lipschitz() ≥ σ_max of the convolution's dense matrix (its Jacobian anywhere), small shapes."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((c_out * groups, c_in, *kernel)) * rng.choice([1e-3, 1.0, 1e3])
    size = [dl * (k - 1) + 1 + int(rng.integers(0, 5)) for k, dl in zip(kernel, dilation, strict=True)]
    x = rng.standard_normal((1, c_in * groups, *size))
    op = Conv2d(weight, stride=stride, padding=padding, dilation=dilation, groups=groups)
    tw = torch.tensor(weight)
    truth = _jacobian_norm(lambda z: F.conv2d(z, tw, None, stride, padding, dilation, groups), [x])
    assert op.lipschitz() >= truth


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(("groups", "shape"), [(2, (2, 4, 3, 2)), (1, (2, 4, 5)), (4, (3, 4, 2, 2)), (3, (2, 6))])
def test_group_norm_against_torch(affine: bool, groups: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(31)
    channels = shape[1]
    weight, bias = (rng.standard_normal(channels), rng.standard_normal(channels)) if affine else (None, None)
    x = rng.standard_normal(shape) * 3 + 1
    op = GroupNorm(groups, channels, weight, bias, eps=1e-3)
    tw, tb = (None, None) if weight is None or bias is None else (torch.tensor(weight), torch.tensor(bias))

    def fn(z: torch.Tensor) -> torch.Tensor:
        return F.group_norm(z, groups, tw, tb, eps=1e-3)

    _check(op, fn, [x])
    assert op.lipschitz() >= _jacobian_norm(fn, [x])
    mine = op.linearise([x]).vjp_parameters(u := rng.standard_normal(shape))
    assert set(mine) == set(op.parameters)
    if tw is not None and tb is not None:
        pull = torch.func.vjp(lambda w, b: F.group_norm(torch.tensor(x), groups, w, b, eps=1e-3), tw, tb)[1]
        for name, theirs in zip(["weight", "bias"], pull(torch.tensor(u)), strict=True):
            _close(mine[name], theirs, PRODUCT)


def test_group_norm_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidInputError) as caught:
        GroupNorm(3, 4)
    assert caught.value.location == ("num_channels",)
    with pytest.raises(InvalidInputError) as caught:
        GroupNorm(2, weight=np.ones(4))
    assert caught.value.location == ("bias",)
    with pytest.raises(InvalidInputError) as caught:
        GroupNorm(2).output_shape([(5, 3)])
    assert caught.value.location == ("inputs", 0)
    assert GroupNorm(2).output_shape([(6, 3)]) == (6, 3)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 4), st.floats(1e-3, 10.0), st.floats(1e-4, 1.0),
       st.integers(0, 2**31 - 1))  # fmt: skip
def test_group_norm_bound_holds(groups: int, per_group: int, pixels: int, spread: float, eps: float, seed: int) -> None:
    """max|γ|/√ε ≥ ‖J‖₂ at random inputs, near-constant groups included (small spread)."""
    rng = np.random.default_rng(seed)
    channels = groups * per_group
    weight, bias = rng.standard_normal(channels), rng.standard_normal(channels)
    x = rng.standard_normal((2, channels, pixels)) * spread + rng.standard_normal()
    tw, tb = torch.tensor(weight), torch.tensor(bias)
    truth = _jacobian_norm(lambda z: F.group_norm(z, groups, tw, tb, eps=eps), [x])
    assert GroupNorm(groups, channels, weight, bias, eps).lipschitz() >= truth * (1 - EXACT)


MAX_POOL_CASES: list[dict[str, Any]] = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0), "dilation": (2, 1)},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True},
    {"kernel_size": 3, "stride": 1, "dilation": 2, "padding": 1},
]


@pytest.mark.parametrize("config", MAX_POOL_CASES)
def test_max_pool2d_against_torch(config: dict[str, Any]) -> None:
    x = np.random.default_rng(41).standard_normal((2, 3, 7, 8))
    op = MaxPool2d(**config)
    _check(op, lambda z: F.max_pool2d(z, **config), [x])
    assert op.lipschitz() >= _jacobian_norm(lambda z: F.max_pool2d(z, **config), [x]) * (1 - EXACT)


def test_max_pool2d_bound_is_attained() -> None:
    """An entry larger than all others is selected by every window it lies in: ‖J‖₂ = √(that count) = the bound."""
    for k, s, at in [(3, 1, 4), (3, 2, 4), (2, 2, 4), (4, 3, 3)]:
        x = np.zeros((1, 1, 9, 9))
        x[0, 0, at, at] = 1.0
        truth = _jacobian_norm(lambda z, k=k, s=s: F.max_pool2d(z, k, s), [x])
        assert MaxPool2d(k, s).lipschitz() == pytest.approx(truth, rel=EXACT)


AVG_POOL_CASES: list[dict[str, Any]] = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1), "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    {"kernel_size": 2, "stride": 1, "divisor_override": 3},
]


@pytest.mark.parametrize("config", AVG_POOL_CASES)
def test_avg_pool2d_against_torch(config: dict[str, Any]) -> None:
    x = np.random.default_rng(42).standard_normal((2, 3, 7, 6))
    fn = lambda z: F.avg_pool2d(z, **config)  # noqa: E731
    _check(AvgPool2d(**config), fn, [x])
    truth = _jacobian_norm(fn, [x[:1]])
    assert AvgPool2d(**config).lipschitz() >= truth
    assert AvgPool2d(**config, input_size=(7, 6)).lipschitz() == pytest.approx(truth, rel=1e-8)


@pytest.mark.parametrize("output_size", [1, (3, 2), (None, 2), (7, 4), (2, None)])
def test_adaptive_avg_pool2d_against_torch(output_size: Any) -> None:
    x = np.random.default_rng(43).standard_normal((2, 3, 5, 6))
    fn = lambda z: F.adaptive_avg_pool2d(z, output_size)  # noqa: E731
    _check(AdaptiveAvgPool2d(output_size), fn, [x])
    truth = _jacobian_norm(fn, [x[:1]])
    assert AdaptiveAvgPool2d(output_size).lipschitz() >= truth
    assert AdaptiveAvgPool2d(output_size, input_size=(5, 6)).lipschitz() == pytest.approx(truth, rel=1e-8)


def test_pools_refuse_bad_input() -> None:
    with pytest.raises(InvalidInputError) as caught:
        MaxPool2d(2, padding=2)
    assert caught.value.location == ("padding",)
    with pytest.raises(InvalidInputError) as caught:
        MaxPool2d(5).output_shape([(1, 3, 3)])
    assert caught.value.location == ("inputs", 0)
    with pytest.raises(InvalidInputError) as caught:
        AvgPool2d(2, input_size=(4, 4)).output_shape([(1, 4, 5)])
    assert caught.value.location == ("inputs", 0)
    with pytest.raises(InvalidInputError) as caught:
        AdaptiveAvgPool2d((0, 2))
    assert caught.value.location == ("output_size",)
    with pytest.raises(InvalidInputError) as caught:
        AvgPool2d(2, divisor_override=0)
    assert caught.value.location == ("divisor_override",)


@settings(max_examples=30, deadline=None)
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.integers(1, 2), st.integers(1, 2)),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_pool_bounds_hold(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
    count_include_pad: bool,
    seed: int,
) -> None:
    """Every pool's lipschitz() (with and without input_size) ≥ ‖J‖₂ from jacrev, at random small sizes."""
    padding = (min(padding[0], kernel[0] // 2), min(padding[1], kernel[1] // 2))
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(kernel[0] * dilation[0], 8)), int(rng.integers(kernel[1] * dilation[1], 8)))
    x = rng.standard_normal((1, 2, *size))
    pool = MaxPool2d(kernel, stride, padding, dilation, ceil_mode)
    truth = _jacobian_norm(lambda z: F.max_pool2d(z, kernel, stride, padding, dilation, ceil_mode), [x])
    assert pool.lipschitz() >= truth * (1 - EXACT)
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    truth = _jacobian_norm(lambda z: F.avg_pool2d(z, *args), [x])
    assert AvgPool2d(*args).lipschitz() >= truth
    assert AvgPool2d(*args, input_size=size).lipschitz() >= truth
    out = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    truth = _jacobian_norm(lambda z: F.adaptive_avg_pool2d(z, out), [x])
    assert AdaptiveAvgPool2d(out).lipschitz() >= truth
    assert AdaptiveAvgPool2d(out, input_size=size).lipschitz() >= truth
