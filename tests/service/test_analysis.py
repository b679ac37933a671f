"""service.analysis.analyse against an independent computation: a forward pass with the activations written out
here, dense per-probe Jacobian products J_L⋯J_{j+1} with J_i = diag(h_i'(z_i))·W_i and LAPACK norms, and central
finite differences of the MSE loss for the weight gradients."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import erf

from service.activations import make_activation
from service.analysis import Analysis, Options, analyse
from service.linear import Dense, Identity
from service.network import InitRecipe, Layer, Network, build_network, network_from_layers
from service.probes import ProbeSpec, make_probes

Array = NDArray[np.float64]
Fn = Callable[[Array], Array]

LOG_TOL = 1e-10
"""Absolute tolerance on log10 of true norms: both sides are a few dozen float64 products of O(1) matrices."""
NORM_RTOL = 1e-12
"""Relative tolerance on single-matrix quantities (σ, ‖diag(d)W‖₂, max|h'|): LAPACK on both sides."""
FD_STEP = 1e-6
FD_RTOL = 1e-5
"""Central differences at step 1e-6: truncation O(h²) ≈ 1e-12, round-off eps·ℓ/h ≈ 1e-10, against gradients O(0.1)."""
DEEP_LOG_TOL = 1e-8
"""2000 layers: rounding of 2000 σ's and matrix products accumulates to ~1e-12 in log10; 1e-8 is generous."""


def _sig(z: Array) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-z))
    return out


def _cdf(z: Array) -> Array:
    out: Array = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
    return out


def _pdf(z: Array) -> Array:
    out: Array = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return out


@dataclass(frozen=True)
class Ref:
    """An activation written out independently: value, derivative and closed-form sup|h'|."""

    value: Fn
    derivative: Fn
    sup: float


REF: dict[str, Ref] = {
    "linear": Ref(lambda z: z, np.ones_like, 1.0),
    "relu": Ref(lambda z: np.where(z > 0, z, 0.0), lambda z: np.where(z > 0, 1.0, 0.0), 1.0),
    "tanh": Ref(lambda z: np.sinh(z) / np.cosh(z), lambda z: 1.0 / np.cosh(z) ** 2, 1.0),
    "sigmoid": Ref(_sig, lambda z: np.exp(-z) / (1.0 + np.exp(-z)) ** 2, 0.25),
    "softplus": Ref(lambda z: np.log1p(np.exp(z)), _sig, 1.0),
    "gelu": Ref(
        lambda z: z * _cdf(z),
        lambda z: _cdf(z) + z * _pdf(z),
        float(_cdf(np.array(math.sqrt(2.0))) + math.sqrt(2.0) * _pdf(np.array(math.sqrt(2.0)))),
    ),
}


def _random_network(seed: int, widths: list[int], acts: list[str], biases: list[bool], scale: float) -> Network:
    rng = np.random.default_rng(seed)
    layers = [
        Layer(
            weight=Dense(scale * rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)),
            bias=0.3 * rng.standard_normal(n_out) if bias else None,
            activation=make_activation(act),
        )
        for n_in, n_out, act, bias in zip(widths[:-1], widths[1:], acts, biases, strict=True)
    ]
    return network_from_layers(layers)


@dataclass(frozen=True)
class Setup:
    network: Network
    x: Array
    y: Array


SETUPS: dict[str, Callable[[], Setup]] = {}


def _setup(name: str, seed: int, widths: list[int], acts: list[str], biases: list[bool], scale: float) -> None:
    def make() -> Setup:
        net = _random_network(seed, widths, acts, biases, scale)
        rng = np.random.default_rng(seed + 100)
        return Setup(net, rng.standard_normal((6, widths[0])), rng.standard_normal((6, widths[-1])))

    SETUPS[name] = make


_setup("mixed_5_7_4_3", 1, [5, 7, 4, 3], ["tanh", "relu", "gelu"], [True, True, True], 1.3)
_setup(
    "mixed_4_6_6_5_2", 2, [4, 6, 6, 5, 2], ["sigmoid", "softplus", "tanh", "linear"], [False, True, False, True], 2.0
)
_setup("narrow_3_8_1", 3, [3, 8, 1], ["relu", "sigmoid"], [True, False], 0.8)
_setup("single_6_4", 4, [6, 4], ["tanh"], [True], 1.0)


@pytest.fixture(params=sorted(SETUPS))
def setup(request: pytest.FixtureRequest) -> Setup:
    name: str = request.param
    return SETUPS[name]()


@dataclass
class Reference:
    """Independent forward pass: z_j, h_j'(z_j) and a_j per layer (rows are probes)."""

    z: list[Array]
    d: list[Array]
    a: list[Array]


def _forward(net: Network, x: Array) -> Reference:
    a, zs, ds, acts = x, [], [], [x]
    for layer in net.layers:
        ref = REF[layer.activation.name]
        z = a @ layer.weight.dense().T + (0.0 if layer.bias is None else layer.bias)
        a = ref.value(z)
        zs.append(z)
        ds.append(ref.derivative(z))
        acts.append(a)
    return Reference(zs, ds, acts)


def _loss(net: Network, weights: list[Array], x: Array, y: Array) -> float:
    """ℓ = mean over probes and outputs of (a_L − y)², with the given weights in place of the network's."""
    a = x
    for layer, w in zip(net.layers, weights, strict=True):
        a = REF[layer.activation.name].value(a @ w.T + (0.0 if layer.bias is None else layer.bias))
    return float(np.mean((a - y) ** 2))


def _backward_products(net: Network, ref: Reference, b: int) -> list[Array]:
    """For probe b: [∂a_L/∂a_0, ∂a_L/∂a_1, …, ∂a_L/∂a_L = I] as dense products of J_i = diag(h_i')·W_i."""
    n_out = net.layers[-1].weight.dense().shape[0]
    products = [np.eye(n_out)]
    for j in range(len(net.layers) - 1, -1, -1):
        jac = np.diag(ref.d[j][b]) @ net.layers[j].weight.dense()
        products.append(products[-1] @ jac)
    return products[::-1]


def test_per_layer_norms(setup: Setup) -> None:
    """index, shape, activation, σ_j, sup|h_j'|, max|h_j'(z_j)|, σ_j·sup|h_j'| and max_b ‖diag(h_j'(z_b))·W_j‖₂
    against LAPACK and the independent forward pass."""
    net, x = setup.network, setup.x
    report = analyse(net, x, setup.y, Options())
    ref = _forward(net, x)
    assert len(report.layers) == len(net.layers)
    for j, (layer, rep) in enumerate(zip(net.layers, report.layers, strict=True)):
        sigma = float(np.linalg.norm(layer.weight.dense(), 2))
        sup = REF[layer.activation.name].sup
        assert rep.index == j + 1
        assert rep.shape == layer.weight.dense().shape
        assert rep.activation == layer.activation.name
        assert rep.weight_norm == pytest.approx(sigma, rel=NORM_RTOL)
        assert rep.derivative_bound == pytest.approx(sup, rel=1e-14)
        assert rep.derivative_max == pytest.approx(float(np.abs(ref.d[j]).max()), rel=NORM_RTOL)
        assert rep.jacobian_norm_bound == pytest.approx(sigma * sup, rel=NORM_RTOL)
        jac = max(float(np.linalg.norm(np.diag(ref.d[j][b]) @ layer.weight.dense(), 2)) for b in range(len(x)))
        assert rep.jacobian_norm == pytest.approx(jac, rel=NORM_RTOL)
        assert rep.flags == ()
    assert report.methods.probes == len(x)
    assert report.methods.dense_svd == len(net.layers)
    assert report.methods.lanczos == 0


def test_backward_norms_and_bounds(setup: Setup) -> None:
    """backward_norm_log10 (layer j) and input_norm_log10 (j = 0) equal log10 max_b ‖J_L⋯J_{j+1}‖₂ built densely
    (to LOG_TOL); backward_bound_log10 equals Σ_{i>j} log10(σ_i·sup|h_i'|), input_bound_log10 the full sum."""
    net, x = setup.network, setup.x
    report = analyse(net, x, setup.y, Options())
    ref = _forward(net, x)
    per_probe = [_backward_products(net, ref, b) for b in range(len(x))]
    depth = len(net.layers)
    true_log = [
        math.log10(max(float(np.linalg.norm(per_probe[b][j], 2)) for b in range(len(x)))) for j in range(depth + 1)
    ]
    factor_log = [
        math.log10(float(np.linalg.norm(layer.weight.dense(), 2)) * REF[layer.activation.name].sup)
        for layer in net.layers
    ]
    for j, rep in enumerate(report.layers, start=1):
        assert rep.backward_norm_log10 == pytest.approx(true_log[j], abs=LOG_TOL)
        assert rep.backward_bound_log10 == pytest.approx(math.fsum(factor_log[j:]), abs=LOG_TOL)
        assert rep.backward_norm is not None
        assert rep.backward_norm == pytest.approx(10.0 ** true_log[j], rel=1e-9)
    assert report.layers[-1].backward_norm_log10 == 0.0
    assert report.layers[-1].backward_bound_log10 == 0.0
    s = report.summary
    assert s.input_norm_log10 == pytest.approx(true_log[0], abs=LOG_TOL)
    assert s.input_bound_log10 == pytest.approx(math.fsum(factor_log), abs=LOG_TOL)
    assert s.rate_log10 == pytest.approx(math.fsum(factor_log) / depth, abs=LOG_TOL)
    assert s.observed_rate_log10 == pytest.approx(true_log[0] / depth, abs=LOG_TOL)
    assert s.depth == depth


def _classify(total: float) -> str:
    """The default thresholds of the design: below 10^−2 vanishes, above 10^2 explodes."""
    return "vanishing" if total < -2.0 else "exploding" if total > 2.0 else "stable"


def test_summary_verdicts_and_suggested_scale(setup: Setup) -> None:
    """The verdicts follow the default ±2 thresholds on the true and bound totals; for explicit weights the bound's
    factor b scales every W_j so that the bound's growth is 1 per layer, i.e. re-analysing b·W gives
    input_bound_log10 = 0 (to LOG_TOL), and the suggested factor s so that the true growth is stable: re-analysing
    s·W gives the growth the suggestion quoted (to LOG_TOL)."""
    net = setup.network
    report = analyse(net, setup.x, setup.y, Options())
    s = report.summary
    assert s.input_norm_log10 is not None
    assert s.input_bound_log10 is not None
    assert s.verdict == _classify(s.input_norm_log10)
    assert s.bound_verdict == _classify(s.input_bound_log10)
    assert s.gain is None
    assert s.bound_gain is not None
    assert s.suggested_gain is not None

    def scaled(factor: float) -> Analysis:
        layers = tuple(Layer(Dense(factor * la.weight.dense()), la.bias, la.activation) for la in net.layers)
        return analyse(Network(layers), setup.x, setup.y, Options())

    bound = scaled(s.bound_gain).summary
    assert bound.input_bound_log10 == pytest.approx(0.0, abs=LOG_TOL)
    assert bound.rate_log10 == pytest.approx(0.0, abs=LOG_TOL)
    fixed = scaled(s.suggested_gain).summary
    assert fixed.verdict == "stable"
    assert s.suggested_growth_log10 is not None
    assert fixed.input_norm_log10 == pytest.approx(s.suggested_growth_log10, abs=LOG_TOL)


def test_gradient_norms_match_finite_differences(setup: Setup) -> None:
    """gradient_norm of layer j equals ‖∂ℓ/∂W_j‖_F with ℓ = mean((a_L − y)²), every entry of ∂ℓ/∂W_j taken by
    central differences (relative error < FD_RTOL)."""
    net, x, y = setup.network, setup.x, setup.y
    ref = _forward(net, x)
    for layer, z in zip(net.layers, ref.z, strict=True):
        if layer.activation.name == "relu":  # the stencil must not straddle ReLU's kink
            assert float(np.abs(z).min()) > 100 * FD_STEP
    report = analyse(net, x, y, Options())
    weights = [layer.weight.dense().copy() for layer in net.layers]
    for j, rep in enumerate(report.layers):
        grad = np.zeros_like(weights[j])
        for idx in np.ndindex(grad.shape):
            keep = weights[j][idx]
            weights[j][idx] = keep + FD_STEP
            up = _loss(net, weights, x, y)
            weights[j][idx] = keep - FD_STEP
            down = _loss(net, weights, x, y)
            weights[j][idx] = keep
            grad[idx] = (up - down) / (2.0 * FD_STEP)
        expected = float(np.linalg.norm(grad))
        assert rep.gradient_norm is not None
        assert rep.gradient_norm == pytest.approx(expected, rel=FD_RTOL)
        assert rep.gradient_norm_log10 == pytest.approx(math.log10(expected), abs=FD_RTOL)


def _floats(obj: object) -> Iterator[float]:
    """Every float inside a (nested) dataclass/dict/list/tuple."""
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _floats(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _floats(v)


def _all_finite(report: Analysis) -> bool:
    return all(math.isfinite(v) for v in _floats(asdict(report)))


DEPTH, WIDTH, GAIN = 2000, 4, 1.5


@pytest.fixture(scope="module")
def deep() -> Network:
    """2000 linear layers of width 4, orthogonal init with gain 1.5: every product of k of them has every
    singular value 1.5^k, so ‖∂a_L/∂a_j‖₂ = 1.5^(L−j) exactly, up to 10^352 for j = 0."""
    return build_network(
        InitRecipe(widths=(WIDTH,) * (DEPTH + 1), scheme="orthogonal", activation=make_activation("linear"), gain=GAIN)
    )


def test_deep_network_logs_do_not_overflow(deep: Network) -> None:
    """Probes of scale 1e-300 keep the forward pass finite (‖a_L‖ ≈ 10^52); then backward norms and bounds are
    (L − j)·log10 1.5 to DEEP_LOG_TOL (1.5^2000 ≈ 10^352.18 has no float64), and no field is inf or nan."""
    x, y = make_probes(ProbeSpec(count=4, scale=1e-300, seed=1), WIDTH, WIDTH)
    report = analyse(deep, x, y, Options())
    rate = math.log10(GAIN)
    s = report.summary
    assert s.input_bound_log10 == pytest.approx(DEPTH * rate, abs=DEEP_LOG_TOL)
    assert s.input_norm_log10 == pytest.approx(DEPTH * rate, abs=DEEP_LOG_TOL)
    assert s.input_bound is None
    assert s.input_norm is None
    assert s.rate_log10 == pytest.approx(rate, abs=1e-12)
    assert s.verdict == s.bound_verdict == "exploding"
    assert s.bound_gain == pytest.approx(1.0, rel=1e-9)
    assert s.flags == ()
    for j, rep in enumerate(report.layers, start=1):
        assert rep.weight_norm == pytest.approx(GAIN, rel=NORM_RTOL)
        assert rep.jacobian_norm == pytest.approx(GAIN, rel=NORM_RTOL)
        assert rep.derivative_max == 1.0
        assert rep.backward_norm_log10 == pytest.approx((DEPTH - j) * rate, abs=DEEP_LOG_TOL)
        assert rep.backward_bound_log10 == pytest.approx((DEPTH - j) * rate, abs=DEEP_LOG_TOL)
    assert _all_finite(report)


def _fro_log10(m: Array) -> float:
    """log10 ‖m‖_F computed as log10(s) + log10 ‖m/s‖_F with s = max|m|, so that squaring tiny entries cannot
    underflow (np.linalg.norm squares them as they are)."""
    s = float(np.abs(m).max())
    return math.log10(s) + math.log10(float(np.linalg.norm(m / s)))


def _orthogonal_linear_gradient_log10(net: Network, gain: float, x: Array, y: Array) -> list[float]:
    """log10 ‖∂ℓ/∂W_j‖_F for a linear network whose W_i = gain·U_i with U_i orthogonal, computed with the U_i
    alone: with â_j = U_j⋯U_1 x, a_j = gain^j·â_j; with δ̂_j = δ_L U_L⋯U_{j+1}, δ_j = gain^(L−j)·δ̂_j; so
    ∂ℓ/∂W_j = δ_jᵀ a_{j−1} = gain^(L−1)·δ̂_jᵀ â_{j−1}, every factor O(1) or O(a_L)."""
    depth = len(net.layers)
    units = [layer.weight.dense() / gain for layer in net.layers]
    a_hat = [x]
    for u in units:
        a_hat.append(a_hat[-1] @ u.T)
    # a_L = gain^L·â_L, formed as (â_L/s)·10^(L·log10 gain + log10 s) to stay inside float64.
    s = float(np.abs(a_hat[-1]).max())
    a_out = (a_hat[-1] / s) * 10.0 ** (depth * math.log10(gain) + math.log10(s))
    delta = 2.0 * (a_out - y) / a_out.size
    expected = [0.0] * depth
    for j in range(depth - 1, -1, -1):
        expected[j] = (depth - 1) * math.log10(gain) + _fro_log10(delta.T @ a_hat[j])
        delta = delta @ units[j]
    return expected


def test_deep_network_gradient_norms(deep: Network) -> None:
    """‖∂ℓ/∂W_j‖_F through 2000 linear layers of gain 1.5 (probes of scale 1e-300), against the orthogonal
    factorisation computed here, to DEEP_LOG_TOL in log10; the plain value is given where it is a float."""
    x, y = make_probes(ProbeSpec(count=4, scale=1e-300, seed=1), WIDTH, WIDTH)
    report = analyse(deep, x, y, Options())
    expected = _orthogonal_linear_gradient_log10(deep, GAIN, x, y)
    for rep, want in zip(report.layers, expected, strict=True):
        assert rep.gradient_norm_log10 == pytest.approx(want, abs=DEEP_LOG_TOL), f"layer {rep.index}"
        assert "gradient_zero" not in rep.flags


def test_vanishing_network_gradient_norms_are_not_zero() -> None:
    """A realistic vanishing case: 600 linear orthogonal layers of gain 0.5 and unit probes. Activations shrink
    to a_j ≈ 0.5^j (10^−180 at the end) and every ‖∂ℓ/∂W_j‖_F ≈ 10^−180.5 is a tiny but normal float64, never
    exactly 0: the report must give its log10 (to DEEP_LOG_TOL) and no gradient_zero flag."""
    gain, depth = 0.5, 600
    net = build_network(
        InitRecipe(widths=(WIDTH,) * (depth + 1), scheme="orthogonal", activation=make_activation("linear"), gain=gain)
    )
    x, y = make_probes(ProbeSpec(count=4, seed=3), WIDTH, WIDTH)
    report = analyse(net, x, y, Options())
    expected = _orthogonal_linear_gradient_log10(net, gain, x, y)
    for rep, want in zip(report.layers, expected, strict=True):
        assert rep.gradient_norm_log10 == pytest.approx(want, abs=DEEP_LOG_TOL), f"layer {rep.index}"
        assert rep.gradient_norm == pytest.approx(10.0**want, rel=1e-7)
        assert "gradient_zero" not in rep.flags


def test_deep_network_with_unit_probes_is_carried_exactly(deep: Network) -> None:
    """With unit-scale probes the activations 1.5^k·‖x‖ leave float64 near k ≈ 1750, but linear layers are carried
    scaled (service.forward): ‖∂a_L/∂a_j‖₂ = 1.5^(L−j) to DEEP_LOG_TOL, 10^352.18 at the input, no flag."""
    x, y = make_probes(ProbeSpec(count=4, seed=2), WIDTH, WIDTH)
    report = analyse(deep, x, y, Options())
    assert report.summary.input_norm_log10 == pytest.approx(DEPTH * math.log10(GAIN), abs=DEEP_LOG_TOL)
    assert report.summary.flags == ()
    for rep in report.layers:
        assert rep.backward_norm_log10 == pytest.approx((DEPTH - rep.index) * math.log10(GAIN), abs=DEEP_LOG_TOL)
        assert rep.flags == ()
    assert _all_finite(report)


def test_deep_network_forward_overflow() -> None:
    """1100 softplus layers W = 2·I on positive probes. Softplus cannot carry a scale (softplus(z) ≈ z for large
    z: the activations double each layer and leave float64 near layer 1024). The first layer k whose z_k is not
    finite is flagged "overflow", earlier ones "downstream_overflow"; true norms are null, bounds are still
    given, the verdict is "exploding" and nothing is inf or nan. k is found here by a plain float64 forward pass."""
    layer = Layer(Dense(2.0 * np.eye(WIDTH)), None, make_activation("softplus"))
    net = network_from_layers([layer] * 1100)
    x, y = make_probes(ProbeSpec(count=4, seed=2), WIDTH, WIDTH)
    x = np.abs(x) + 1.0
    a, first = x, None
    with np.errstate(over="ignore"):
        for k, layer in enumerate(net.layers, start=1):
            z = a @ layer.weight.dense().T
            if not np.isfinite(z).all():
                first = k
                break
            a = np.logaddexp(0.0, z)
    assert first is not None
    report = analyse(net, x, y, Options())
    assert report.summary.verdict == "exploding"
    assert "overflow" in report.summary.flags
    assert report.summary.input_norm_log10 is None
    bound = sum(math.log10(float(np.linalg.norm(layer.weight.dense(), 2))) for layer in net.layers)
    assert report.summary.input_bound_log10 == pytest.approx(bound, abs=1e-9)
    assert f"layer {first}" in report.summary.advice
    for rep in report.layers:
        assert rep.backward_norm_log10 is None
        assert rep.gradient_norm_log10 is None
        if rep.index < first:
            assert "downstream_overflow" in rep.flags
            assert rep.jacobian_norm is not None
        else:
            assert "overflow" in rep.flags
            assert rep.derivative_max is None
            assert rep.jacobian_norm is None
    assert _all_finite(report)


def _dead_setup() -> Setup:
    """tanh → ReLU with bias −100 (|W_2 a_1| ≤ ‖W_2‖·√5 ≪ 100, so every z_2 < 0) → linear."""
    rng = np.random.default_rng(9)
    layers = [
        Layer(Dense(rng.standard_normal((5, 4))), rng.standard_normal(5), make_activation("tanh")),
        Layer(Dense(rng.standard_normal((3, 5))), np.full(3, -100.0), make_activation("relu")),
        Layer(Dense(rng.standard_normal((2, 3))), rng.standard_normal(2), make_activation("linear")),
    ]
    return Setup(network_from_layers(layers), rng.standard_normal((5, 4)), rng.standard_normal((5, 2)))


def test_dead_relu_layer() -> None:
    """A ReLU layer with every pre-activation negative has h' ≡ 0, so J_2 = 0: derivative_max 0 and flag "dead";
    ‖∂a_L/∂a_j‖ = 0 for j < 2 (null log10 with a flag), ‖∂a_L/∂a_2‖ = ‖W_3‖₂; the verdict is "vanishing"."""
    setup = _dead_setup()
    net = setup.network
    assert float(_forward(net, setup.x).z[1].max()) < 0
    report = analyse(net, setup.x, setup.y, Options())
    first, dead, last = report.layers
    assert dead.derivative_max == 0.0
    assert dead.jacobian_norm == 0.0
    assert "dead" in dead.flags
    assert first.backward_norm_log10 is None
    assert "backward_norm_zero" in first.flags
    assert dead.backward_norm_log10 == pytest.approx(
        math.log10(float(np.linalg.norm(net.layers[2].weight.dense(), 2))), abs=LOG_TOL
    )
    assert last.backward_norm_log10 == 0.0
    assert first.backward_bound_log10 is not None  # the bound uses sup ReLU' = 1, not the data
    s = report.summary
    assert s.input_norm_log10 is None
    assert s.observed_rate_log10 is None
    assert s.verdict == "vanishing"
    assert "input_norm_zero" in s.flags
    assert _all_finite(report)


def test_dead_relu_zero_quantities_follow_contract() -> None:
    """The contract (sdk jacspec/models/report.py, LayerReport.flags) says an exactly-zero quantity has a null
    log10, a plain value 0 and a flag (backward_norm_zero, gradient_zero). Behind a dead layer ‖∂a_L/∂a_1‖ = 0;
    ∂ℓ/∂W_j = δ_jᵀ a_{j−1} = 0 for j = 1, 2 (δ_2 = 0) and j = 3 (a_2 = 0), by the chain rule."""
    setup = _dead_setup()
    report = analyse(setup.network, setup.x, setup.y, Options())
    first = report.layers[0]
    assert first.backward_norm_log10 is None
    assert first.backward_norm == 0.0
    for rep in report.layers:
        assert rep.gradient_norm_log10 is None
        assert rep.gradient_norm == 0.0
        assert "gradient_zero" in rep.flags


def test_zero_weight_layer() -> None:
    """A zero W_2 gives σ_2 = 0: flag "zero_weight", the bound below it is exactly 0 (null log10, flag
    "backward_bound_zero"), and the summary flags "input_bound_zero"; the verdicts are "vanishing"."""
    rng = np.random.default_rng(4)
    net = network_from_layers(
        [
            Layer(Dense(rng.standard_normal((3, 3))), None, make_activation("tanh")),
            Layer(Dense(np.zeros((3, 3))), rng.standard_normal(3), make_activation("tanh")),
            Layer(Dense(rng.standard_normal((2, 3))), None, make_activation("linear")),
        ]
    )
    report = analyse(net, rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), Options())
    first, zero, _ = report.layers
    assert zero.weight_norm == 0.0
    assert "zero_weight" in zero.flags
    assert first.backward_bound_log10 is None
    assert "backward_bound_zero" in first.flags
    assert zero.backward_bound_log10 == pytest.approx(
        math.log10(float(np.linalg.norm(net.layers[2].weight.dense(), 2))), abs=LOG_TOL
    )
    s = report.summary
    assert s.input_bound_log10 is None
    assert s.rate_log10 is None
    assert s.bound_gain is None
    assert "input_bound_zero" in s.flags
    assert s.verdict == s.bound_verdict == "vanishing"
    assert _all_finite(report)


@pytest.mark.parametrize("widths", [[40, 30, 20], [300, 320, 280]])
def test_identity_activation_reuses_the_weight_norm(widths: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """h(z) = z: J_b = A for every probe, so ‖J_b‖₂ is σ, the weight's norm, which service.jacobian is not asked
    for again; both are LAPACK's ‖W‖₂ (dense SVD) to 1e-9 relative, densely (≤ 256) and by Lanczos (> 256). A
    residual layer with the identity activation, J_b = I + W, still takes its own solve."""
    rng = np.random.default_rng(9)
    weights = [rng.standard_normal((m, n)) / math.sqrt(n) for n, m in itertools.pairwise(widths)]
    plain = network_from_layers([Layer(Dense(w), None, make_activation("linear")) for w in weights])
    monkeypatch.setattr("service.analysis.jacobian_max", _refused)
    x = rng.standard_normal((3, widths[0]))
    report = analyse(plain, x, rng.standard_normal((3, widths[-1])), Options(rtol=1e-12))
    for layer, w in zip(report.layers, weights, strict=True):
        assert layer.jacobian_norm == layer.weight_norm
        assert layer.weight_norm == pytest.approx(float(np.linalg.norm(w, 2)), rel=1e-9)
    square = rng.standard_normal((5, 5)) / 3
    residual = network_from_layers([Layer(Dense(square), None, make_activation("linear"), Identity(5))])
    with pytest.raises(AssertionError, match=r"service\.jacobian"):
        analyse(residual, rng.standard_normal((2, 5)), rng.standard_normal((2, 5)), Options())


def _refused(*_: object) -> tuple[float, int]:
    raise AssertionError("service.jacobian was asked for a norm")
