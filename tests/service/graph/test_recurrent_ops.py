"""service.graph.recurrent against torch.nn.RNN/LSTM/GRU (float64, batch_first, the same weights): the forward pass,
torch.func.jvp and torch.func.vjp on random tangents and cotangents, and autograd's gradients of ⟨u, y⟩ with respect
to every parameter; the rnn's Lipschitz bound against the spectral norm of torch.func.jacrev's dense Jacobian."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from service.errors import InvalidInputError
from service.graph.recurrent import GRU, LSTM, RNN

Array = NDArray[np.float64]

EXACT = 1e-12
"""Relative error allowed for the forward pass: the same sums in another order."""
DERIVATIVE = 1e-10
"""Relative error allowed for the JVP, the VJP and the parameters' cotangents (issue 19's tolerance)."""

PROBES = 3


def _relative(actual: Array, expected: Array) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _module(kind: str, input_size: int, hidden: int, **options: Any) -> torch.nn.RNNBase:
    torch.manual_seed(0)
    classes: dict[str, Any] = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    module: torch.nn.RNNBase = classes[kind](input_size, hidden, batch_first=True, dtype=torch.float64, **options)
    return module


def _op(kind: str, module: torch.nn.RNNBase, **options: Any) -> RNN | LSTM | GRU:
    parameters = {name: p.detach().numpy() for name, p in module.named_parameters()}
    common: dict[str, Any] = {
        "num_layers": module.num_layers,
        "bias": module.bias,
        "bidirectional": module.bidirectional,
    }
    if kind == "rnn":
        return RNN(parameters, nonlinearity=str(module.nonlinearity), **common, **options)
    return (LSTM if kind == "lstm" else GRU)(parameters, **common, **options)


CASES: list[tuple[str, dict[str, Any]]] = [
    ("lstm", {"num_layers": 2}),
    ("gru", {"num_layers": 2}),
    ("rnn", {"num_layers": 2, "nonlinearity": "tanh"}),
    ("rnn", {"num_layers": 2, "nonlinearity": "relu"}),
    ("lstm", {"num_layers": 2, "bidirectional": True}),
    ("gru", {"num_layers": 3, "bidirectional": True}),
    ("rnn", {"num_layers": 1, "bidirectional": True}),
    ("lstm", {"num_layers": 1, "bias": False}),
    ("gru", {"num_layers": 2, "bias": False}),
]
STEPS, INPUT, HIDDEN = 20, 5, 7


def _setup(kind: str, options: dict[str, Any]) -> tuple[torch.nn.RNNBase, RNN | LSTM | GRU, Array]:
    module = _module(kind, INPUT, HIDDEN, **options)
    x = np.random.default_rng(1).standard_normal((PROBES, STEPS, INPUT))
    return module, _op(kind, module), x


def _torch_output(module: torch.nn.RNNBase) -> Any:
    return lambda x: module(x)[0]


@pytest.mark.parametrize(("kind", "options"), CASES)
def test_forward_matches_torch(kind: str, options: dict[str, Any]) -> None:
    module, op, x = _setup(kind, options)
    expected = module(torch.from_numpy(x))[0].detach().numpy()
    assert op.output_shape([x.shape[1:]]) == expected.shape[1:]
    assert _relative(op.forward([x]), expected) < EXACT


@pytest.mark.parametrize(("kind", "options"), CASES)
def test_jvp_and_vjp_match_torch_func(kind: str, options: dict[str, Any]) -> None:
    module, op, x = _setup(kind, options)
    rng = np.random.default_rng(2)
    linearised = op.linearise([x])
    v = rng.standard_normal(x.shape)
    u = rng.standard_normal(linearised.output.shape)
    with torch.no_grad():
        jv = torch.func.jvp(_torch_output(module), (torch.from_numpy(x),), (torch.from_numpy(v),))[1]
        pullback = torch.func.vjp(_torch_output(module), torch.from_numpy(x))[1]
        (uj,) = pullback(torch.from_numpy(u))
    assert _relative(linearised.jvp([v]), jv.numpy()) < DERIVATIVE
    (vjp,) = linearised.vjp(u)
    assert _relative(vjp, uj.numpy()) < DERIVATIVE


@pytest.mark.parametrize(("kind", "options"), CASES)
def test_parameter_cotangents_match_autograd(kind: str, options: dict[str, Any]) -> None:
    module, op, x = _setup(kind, options)
    linearised = op.linearise([x])
    u = np.random.default_rng(3).standard_normal(linearised.output.shape)
    (module(torch.from_numpy(x))[0] * torch.from_numpy(u)).sum().backward()
    grads = linearised.vjp_parameters(u)
    assert list(grads) == [name for name, _ in module.named_parameters()]
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None
        assert _relative(grads[name], parameter.grad.numpy()) < DERIVATIVE, name


def test_adjoint_identity_on_a_long_sequence() -> None:
    """⟨u, J·v⟩ = ⟨Jᵀ·u, v⟩ over 60 steps: the JVP and the VJP are transposes of one another."""
    module = _module("lstm", 3, 4, num_layers=2)
    op = _op("lstm", module)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 60, 3))
    linearised = op.linearise([x])
    v, u = rng.standard_normal(x.shape), rng.standard_normal(linearised.output.shape)
    left, right = float(np.sum(u * linearised.jvp([v]))), float(np.sum(linearised.vjp(u)[0] * v))
    assert abs(left - right) < 1e-12 * abs(left)


def _weight(module: torch.nn.Module, name: str) -> torch.Tensor:
    return dict(module.named_parameters())[name]


def _rnn_jacobian_norm(module: torch.nn.RNNBase, x: Array) -> float:
    """‖∂y/∂x‖₂ at one probe x (T, n), from torch.func.jacrev's dense Jacobian."""
    jacobian = torch.func.jacrev(lambda s: module(s[None])[0][0])(torch.from_numpy(x)).detach().numpy()
    return float(np.linalg.norm(jacobian.reshape(jacobian.shape[0] * jacobian.shape[1], -1), 2))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    steps=st.integers(1, 6),
    layers=st.integers(1, 2),
    scale=st.floats(0.1, 3.0),
    nonlinearity=st.sampled_from(["tanh", "relu"]),
    bidirectional=st.booleans(),
)
def test_rnn_lipschitz_bound_dominates_the_true_jacobian_norm(
    seed: int, steps: int, layers: int, scale: float, nonlinearity: str, bidirectional: bool
) -> None:
    torch.manual_seed(seed)
    module = torch.nn.RNN(
        3,
        4,
        num_layers=layers,
        nonlinearity=nonlinearity,
        bidirectional=bidirectional,
        batch_first=True,
        dtype=torch.float64,
    )
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(scale)
    op = _op("rnn", module, steps=steps)
    bound = op.lipschitz()
    assert bound is not None
    x = np.random.default_rng(seed).standard_normal((steps, 3)) * scale
    assert _rnn_jacobian_norm(module, x) <= bound * (1 + 1e-12)


def test_rnn_lipschitz_bound_is_attained_for_one_step_at_zero() -> None:
    """T = 1, zero bias, x = 0: tanh'(0) = 1, so J = W_ih and the bound ‖W_ih‖₂ is the truth."""
    module = _module("rnn", 3, 4, bias=False)
    op = _op("rnn", module, steps=1)
    bound = op.lipschitz()
    assert bound is not None
    expected = float(np.linalg.norm(_weight(module, "weight_ih_l0").detach().numpy(), 2))
    assert abs(bound - expected) < 1e-14 * expected
    assert abs(_rnn_jacobian_norm(module, np.zeros((1, 3))) - expected) < 1e-12 * expected


def test_rnn_lipschitz_without_steps_is_the_infinite_series_or_none() -> None:
    module = _module("rnn", 3, 4)
    with torch.no_grad():
        recurrent = _weight(module, "weight_hh_l0")
        recurrent.mul_(0.5 / torch.linalg.matrix_norm(recurrent, 2))
    a = float(np.linalg.norm(_weight(module, "weight_ih_l0").detach().numpy(), 2))
    assert _op("rnn", module).lipschitz() == pytest.approx(a / (1 - 0.5), rel=1e-12)
    assert _op("rnn", module, steps=3).lipschitz() == pytest.approx(a * (1 + 0.5 + 0.25), rel=1e-12)
    with torch.no_grad():
        recurrent.mul_(4.0)
    assert _op("rnn", module).lipschitz() is None
    assert _op("rnn", module, steps=3).lipschitz() == pytest.approx(a * (1 + 2 + 4), rel=1e-12)


def test_gated_cells_give_no_bound() -> None:
    for kind in ("lstm", "gru"):
        op = _op(kind, _module(kind, 3, 4))
        assert op.lipschitz() is None
        assert op.lipschitz_note


def _parameters(kind: str, **options: Any) -> dict[str, Array]:
    return {name: p.detach().numpy() for name, p in _module(kind, 3, 4, **options).named_parameters()}


def test_bad_parameters_are_refused_with_their_name() -> None:
    parameters = _parameters("lstm", num_layers=2)
    with pytest.raises(InvalidInputError) as missing:
        LSTM({k: v for k, v in parameters.items() if k != "bias_hh_l1"}, num_layers=2, location=("node",))
    assert missing.value.location == ("node", "bias_hh_l1")
    with pytest.raises(InvalidInputError) as unknown:
        LSTM({**parameters, "weight_hr_l0": np.zeros((4, 4))}, num_layers=2, location=("node",))
    assert unknown.value.location == ("node", "weight_hr_l0")
    with pytest.raises(InvalidInputError) as shape:
        LSTM({**parameters, "weight_ih_l1": np.zeros((16, 5))}, num_layers=2)
    assert shape.value.location == ("weight_ih_l1",)
    with pytest.raises(InvalidInputError) as gates:
        GRU(parameters, num_layers=2)  # an LSTM's 4·H rows are not a GRU's 3·H
    assert gates.value.location == ("weight_ih_l0",)
    with pytest.raises(InvalidInputError) as nan:
        LSTM({**parameters, "bias_ih_l0": np.full(16, np.nan)}, num_layers=2)
    assert nan.value.location == ("bias_ih_l0",)
    with pytest.raises(InvalidInputError):
        LSTM(parameters, num_layers=0)
    with pytest.raises(InvalidInputError):
        RNN(_parameters("rnn"), nonlinearity="sigmoid")


def test_bad_inputs_are_refused() -> None:
    op = LSTM(_parameters("lstm"), steps=5)
    assert op.output_shape([(5, 3)]) == (5, 4)
    for shapes in ([(5, 2)], [(5,)], [(0, 3)], [(6, 3)], [(5, 3), (5, 3)]):
        with pytest.raises(InvalidInputError):
            op.output_shape(shapes)
