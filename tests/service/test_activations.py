"""Activations: h' against finite differences of h, sup|h'| against a fine grid and closed forms, h against
PyTorch's documented formulas (written out here independently of service/), and make_activation's errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.optimize import brentq, minimize_scalar
from scipy.special import erf

from service.activations import ACTIVATIONS, Activation, make_activation
from service.errors import InvalidInputError

Array = NDArray[np.float64]

# Published SELU constants (Klambauer et al. 2017, as printed in the torch.nn.SELU docs).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946

FD_STEP = 1e-6
"""Central-difference step: truncation h²·|h'''|/6 ≲ 1e-11, round-off eps·|h(z)|/h ≲ 2e-9 for |z| ≤ 8."""
FD_TOL = 1e-7
"""|finite difference − h'(z)| ≤ FD_TOL·max(1, |h'(z)|)."""
KINK_CLEARANCE = 1e-3
"""Finite-difference points stay this far from kinks, so the stencil never straddles one."""
FORMULA_RTOL = 1e-12
FORMULA_ATOL = 1e-12
"""h against the torch formula: both are a few correctly rounded operations; atol covers the erf cancellation of
0.5·(1 + erf(z/√2)) for very negative z."""
GRID_RTOL = 1e-9
"""max over the grid vs sup|h'|: grid spacing 2e-5 costs at most ½|h'''|·(1e-5)² ≈ 1e-11 at a smooth maximum."""
NEVER_EXCEEDED_RTOL = 1e-14
"""sup|h'| may be exceeded on the grid by rounding only."""


def _sigmoid(z: Array) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-z))
    return out


def _phi(z: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _cdf(z: float) -> float:
    """Standard normal CDF via erf."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _silu_sup() -> float:
    """sup SiLU' from h'' = 0 ⇔ z·tanh(z/2) = 2, solved here with brentq; h'(z) = s(z)(1 + z(1 − s(z)))."""
    z_star: float = brentq(lambda z: z * math.tanh(z / 2.0) - 2.0, 0.5, 5.0, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    s = 1.0 / (1.0 + math.exp(-z_star))
    return s * (1.0 + z_star * (1.0 - s))


@dataclass(frozen=True)
class Case:
    """One activation with its reference formula (torch docs), its kinks and its closed-form sup|h'|."""

    id: str
    activation: Activation
    reference: Callable[[Array], Array]
    sup: float
    kinks: tuple[float, ...] = ()


def _softplus_ref(beta: float) -> Callable[[Array], Array]:
    def f(z: Array) -> Array:
        out: Array = np.log1p(np.exp(beta * z)) / beta
        return out

    return f


def _leaky_ref(slope: float) -> Callable[[Array], Array]:
    def f(z: Array) -> Array:
        out: Array = np.maximum(0.0, z) + slope * np.minimum(0.0, z)
        return out

    return f


def _elu_ref(alpha: float) -> Callable[[Array], Array]:
    def f(z: Array) -> Array:
        out: Array = np.maximum(0.0, z) + np.minimum(0.0, alpha * (np.exp(z) - 1.0))
        return out

    return f


def _hardtanh_ref(lo: float, hi: float) -> Callable[[Array], Array]:
    def f(z: Array) -> Array:
        out: Array = np.minimum(np.maximum(z, lo), hi)
        return out

    return f


def _selu_ref(z: Array) -> Array:
    out: Array = SELU_LAMBDA * (np.maximum(0.0, z) + np.minimum(0.0, SELU_ALPHA * (np.exp(z) - 1.0)))
    return out


def _gelu_ref(z: Array) -> Array:
    out: Array = 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
    return out


def _silu_ref(z: Array) -> Array:
    out: Array = z / (1.0 + np.exp(-z))
    return out


def _identity(z: Array) -> Array:
    return z


def _relu_ref(z: Array) -> Array:
    out: Array = np.maximum(0.0, z)
    return out


def _tanh_ref(z: Array) -> Array:
    out: Array = np.sinh(z) / np.cosh(z)
    return out


CASES = [
    Case("linear", make_activation("linear"), _identity, 1.0),
    Case("relu", make_activation("relu"), _relu_ref, 1.0, (0.0,)),
    Case("leaky_relu", make_activation("leaky_relu"), _leaky_ref(0.01), 1.0, (0.0,)),
    Case("leaky_relu-0.2", make_activation("leaky_relu", negative_slope=0.2), _leaky_ref(0.2), 1.0, (0.0,)),
    Case("leaky_relu-3", make_activation("leaky_relu", negative_slope=3.0), _leaky_ref(3.0), 3.0, (0.0,)),
    Case("tanh", make_activation("tanh"), _tanh_ref, 1.0),
    Case("sigmoid", make_activation("sigmoid"), _sigmoid, 0.25),
    Case("hard_tanh", make_activation("hard_tanh"), _hardtanh_ref(-1.0, 1.0), 1.0, (-1.0, 1.0)),
    Case(
        "hard_tanh-2-0.5",
        make_activation("hard_tanh", min_val=-2.0, max_val=0.5),
        _hardtanh_ref(-2.0, 0.5),
        1.0,
        (-2.0, 0.5),
    ),
    Case("elu", make_activation("elu"), _elu_ref(1.0), 1.0, (0.0,)),
    Case("elu-0.5", make_activation("elu", alpha=0.5), _elu_ref(0.5), 1.0, (0.0,)),
    Case("elu-2", make_activation("elu", alpha=2.0), _elu_ref(2.0), 2.0, (0.0,)),
    Case("selu", make_activation("selu"), _selu_ref, SELU_LAMBDA * SELU_ALPHA, (0.0,)),
    Case("gelu", make_activation("gelu"), _gelu_ref, _cdf(math.sqrt(2.0)) + math.sqrt(2.0) * _phi(math.sqrt(2.0))),
    Case("silu", make_activation("silu"), _silu_ref, _silu_sup()),
    Case("softplus", make_activation("softplus"), _softplus_ref(1.0), 1.0),
    Case("softplus-3", make_activation("softplus", beta=3.0), _softplus_ref(3.0), 1.0),
]
IDS = [c.id for c in CASES]


@pytest.fixture(scope="module")
def grid() -> Array:
    """A 2e-5-spaced grid on [−20, 20] (it contains 0 and ±√2 to 1e-5) plus far tails, where softplus' and
    sigmoid-like derivatives approach their sup."""
    return np.concatenate([np.linspace(-20.0, 20.0, 2_000_001), [-100.0, -40.0, 40.0, 100.0]])


def test_every_registered_activation_is_covered() -> None:
    """The table below covers every activation name the service knows."""
    assert {c.activation.name for c in CASES} == set(ACTIVATIONS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_matches_central_difference(case: Case) -> None:
    """h'(z) = (h(z + δ) − h(z − δ)) / 2δ + O(δ²) at points clear of every kink."""
    z = np.linspace(-8.0, 8.0, 1601) + 0.000123  # offset keeps the grid off the kinks
    for kink in case.kinks:
        z = z[np.abs(z - kink) > KINK_CLEARANCE]
    act = case.activation
    fd = (act.value(z + FD_STEP) - act.value(z - FD_STEP)) / (2.0 * FD_STEP)
    d = act.derivative(z)
    assert d.shape == z.shape
    err = np.abs(fd - d) / np.maximum(1.0, np.abs(d))
    assert float(err.max()) < FD_TOL, f"{case.id}: max scaled error {err.max():.3e} at z={z[err.argmax()]}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_bound_is_the_grid_maximum(case: Case, grid: Array) -> None:
    """sup|h'| equals max over a fine grid of |h'| (to GRID_RTOL) and no grid point exceeds it."""
    bound = case.activation.derivative_bound
    grid_max = float(np.abs(case.activation.derivative(grid)).max())
    assert grid_max <= bound * (1.0 + NEVER_EXCEEDED_RTOL)
    assert grid_max == pytest.approx(bound, rel=GRID_RTOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_bound_closed_form(case: Case) -> None:
    """sup|h'| equals the closed form written in this file (1, 1/4, max(1, slope), max(1, α), λα, GELU, SiLU)."""
    assert case.activation.derivative_bound == pytest.approx(case.sup, rel=1e-14)


def test_documented_constants() -> None:
    """The rounded constants of the design note: sigmoid 1/4, SiLU ≈ 1.0998, GELU ≈ 1.1289, SELU λα ≈ 1.7581."""
    assert make_activation("sigmoid").derivative_bound == 0.25
    assert make_activation("silu").derivative_bound == pytest.approx(1.0998, abs=5e-5)
    assert make_activation("gelu").derivative_bound == pytest.approx(1.1289, abs=5e-5)
    assert make_activation("selu").derivative_bound == pytest.approx(1.7581, abs=5e-5)


def test_silu_and_gelu_sup_by_numerical_maximisation() -> None:
    """A second, derivative-free route to sup h': bounded scalar maximisation of h'(z) on [0, 5] (xatol 1e-10,
    so the maximum is found to ~1e-20 · |h'''|, well within 1e-12)."""
    for name in ("silu", "gelu"):
        act = make_activation(name)

        def neg(z: float, act: Activation = act) -> float:
            return -float(act.derivative(np.array([z]))[0])

        res = minimize_scalar(neg, bounds=(0.0, 5.0), method="bounded", options={"xatol": 1e-10})
        assert act.derivative_bound == pytest.approx(-res.fun, rel=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_matches_torch_formula(case: Case) -> None:
    """h(z) equals PyTorch's documented formula, evaluated here independently, on [−10, 10] and at the kinks."""
    z = np.concatenate([np.linspace(-10.0, 10.0, 4001), np.array(case.kinks, dtype=np.float64)])
    np.testing.assert_allclose(case.activation.value(z), case.reference(z), rtol=FORMULA_RTOL, atol=FORMULA_ATOL)


def test_derivative_at_kinks_follows_autograd() -> None:
    """At kinks the derivative is PyTorch autograd's: ReLU'(0) = 0, LeakyReLU'(0) = slope, ELU'(0) = α,
    Hardtanh' = 0 at the clip points."""
    zero = np.array([0.0])
    assert make_activation("relu").derivative(zero)[0] == 0.0
    assert make_activation("leaky_relu", negative_slope=0.2).derivative(zero)[0] == 0.2
    assert make_activation("elu", alpha=2.0).derivative(zero)[0] == 2.0
    ht = make_activation("hard_tanh", min_val=-2.0, max_val=0.5)
    np.testing.assert_array_equal(ht.derivative(np.array([-2.0, 0.5, 0.0])), [0.0, 0.0, 1.0])


def test_parameters_round_trip() -> None:
    """parameters() reports exactly the values given to make_activation, the others at their defaults."""
    assert make_activation("hard_tanh", min_val=-2.0).parameters() == {"min_val": -2.0, "max_val": 1.0}
    assert make_activation("leaky_relu", negative_slope=3.0).parameters() == {"negative_slope": 3.0}
    assert make_activation("tanh").parameters() == {}


def test_unknown_activation_names_the_field() -> None:
    """An unknown name raises InvalidInputError located at the name field, under the caller's location."""
    with pytest.raises(InvalidInputError) as info:
        make_activation("swish2", ("network", "activation"))
    assert info.value.location == ("network", "activation", "name")
    assert "swish2" in info.value.message


def test_unknown_parameter_names_the_field() -> None:
    """A parameter the activation lacks raises InvalidInputError located at that parameter."""
    with pytest.raises(InvalidInputError) as info:
        make_activation("relu", ("network", "layers", 3, "activation"), negative_slope=0.1)
    assert info.value.location == ("network", "layers", 3, "activation", "negative_slope")
    with pytest.raises(InvalidInputError) as info:
        make_activation("elu", (), beta=2.0)
    assert info.value.location == ("beta",)


def test_hard_tanh_needs_ordered_clip_points() -> None:
    """min_val ≥ max_val is refused, located at max_val under the caller's location."""
    with pytest.raises(InvalidInputError) as info:
        make_activation("hard_tanh", ("network", "activation"), min_val=1.0, max_val=1.0)
    assert info.value.location == ("network", "activation", "max_val")
