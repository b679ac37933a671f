"""service.meanfield against published values (Poole et al. 2016; Schoenholz et al. 2017), against scipy's adaptive
quadrature, against closed forms written out here, and against a wide random network simulated with numpy."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.integrate import quad
from scipy.special import expit, ndtr

from service import meanfield as mf
from service.activations import SELU_ALPHA, SELU_SCALE, Activation, make_activation
from service.linear import Dense
from service.network import InitRecipe, Layer, build_network, network_from_layers

Array = NDArray[np.float64]
Fn = Callable[[Array], Array]

pytestmark = pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
"""scipy's quad, asked for 1e-13 on every panel of the references, warns of roundoff where a panel's integral is
negligible; the references are checked by the comparisons themselves."""

PUBLISHED_TOL = 1e-4
"""The issue's tolerance on the published values (given to 5–6 significant digits)."""
QUADRATURE_RTOL = 1e-10
"""Our expectations against scipy's adaptive quad (itself good to ~1e-13 here)."""


def tanh() -> Activation:
    return make_activation("tanh")


# --- published values -------------------------------------------------------------------------------------------


def test_tanh_chaotic_fixed_point() -> None:
    """tanh, σ_w = 1.5, σ_b = 0: q* = 0.79335, χ₁ = 1.13932 (Poole et al. 2016, Fig. 1; Schoenholz et al. 2017)."""
    theory = mf.layer_theory(tanh(), 1.5, 0.0)
    assert theory.q_star == pytest.approx(0.79335, abs=PUBLISHED_TOL)
    assert theory.chi1 == pytest.approx(1.13932, abs=PUBLISHED_TOL)
    assert theory.status == "converged"


def test_tanh_ordered_depth_scale() -> None:
    """tanh, σ_w = 1, σ_b = 0.05: χ₁ = 0.934059 (to 1e-4) and ξ = −1/ln χ₁ = 14.66, published to two decimals
    (so to 0.005); ξ is exactly −1/ln χ₁ of our χ₁ (to 1e-12)."""
    theory = mf.layer_theory(tanh(), 1.0, 0.05)
    assert theory.chi1 is not None
    assert theory.chi1 == pytest.approx(0.934059, abs=PUBLISHED_TOL)
    assert theory.depth_scale is not None
    assert theory.depth_scale == pytest.approx(14.66, abs=0.005)
    assert theory.depth_scale == pytest.approx(-1.0 / math.log(theory.chi1), rel=1e-12)
    assert theory.growth_log10 == pytest.approx(0.5 * math.log10(theory.chi1), rel=1e-12)


@pytest.mark.parametrize(
    ("sigma_w", "sigma_b"), [(0.5, 0.0), (1.0, 0.3), (1.3, 1.0), (math.sqrt(2.0), 0.0), (2.0, 0.1)]
)
def test_relu_chi1_is_half_sigma_w_squared(sigma_w: float, sigma_b: float) -> None:
    """ReLU: E[h'(√q·z)²] = P(z > 0) = 1/2 at every q, so χ₁ = σ_w²/2 (Schoenholz et al. 2017), whether q* exists
    or not (σ_w² ≥ 2 with σ_b > 0 diverges)."""
    theory = mf.layer_theory(make_activation("relu"), sigma_w, sigma_b)
    assert theory.chi1 == pytest.approx(sigma_w**2 / 2.0, rel=1e-15)


@pytest.mark.parametrize(("name", "sigma_b", "published"), [("tanh", 0.3, 1.39558), ("hard_tanh", 0.1, 1.02570)])
def test_critical_sigma_w_published(name: str, sigma_b: float, published: float) -> None:
    """The edge of chaos: σ_w = 1.39558 for tanh at σ_b = 0.3, 1.02570 for hard-tanh at σ_b = 0.1; and there
    χ₁ = 1 to 1e-10."""
    activation = make_activation(name)
    critical = mf.critical_sigma_w(activation, sigma_b)
    assert critical is not None
    assert critical == pytest.approx(published, abs=PUBLISHED_TOL)
    assert mf.chi1(activation, critical, sigma_b) == pytest.approx(1.0, abs=1e-10)


# --- the Gaussian expectations ----------------------------------------------------------------------------------


def _reference(f: Fn, q: float, width: float) -> float:
    """E[f(x)], x ~ N(0, q), by scipy's adaptive quad in x over panels: width/2 wide where f varies, growing by 1.2
    where only the Gaussian does."""
    s = math.sqrt(q)

    def integrand(x: float) -> float:
        return float(f(np.array([x]))[0]) * math.exp(-0.5 * x * x / q) / (s * math.sqrt(2.0 * math.pi))

    inner = list(np.linspace(-30.0 * width, 30.0 * width, 121))
    outer = [30.0 * width]
    while outer[-1] < 12.0 * s:
        outer.append(1.2 * outer[-1])
    points = sorted({*inner, *outer, *(-o for o in outer)})
    points = [p for p in points if abs(p) <= max(12.0 * s, 30.0 * width)]
    return math.fsum(
        quad(integrand, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0] for a, b in itertools.pairwise(points)
    )


def _logistic(beta: float) -> Fn:
    def slope(x: Array) -> Array:
        return np.asarray(expit(beta * x))

    return slope


def _power(f: Fn, k: int) -> Fn:
    def power(x: Array) -> Array:
        return f(x) ** k

    return power


def _sech2(x: Array) -> Array:
    """tanh' = 1/cosh², without the cancellation of 1 − tanh² (which makes quad's reference noisy)."""
    with np.errstate(over="ignore"):
        return np.asarray(1.0 / np.cosh(x) ** 2)


def _gelu(x: Array) -> Array:
    return np.asarray(x * ndtr(x))


def _gelu_prime(x: Array) -> Array:
    return np.asarray(ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi))


SMOOTH: dict[str, tuple[Fn, Fn]] = {
    "tanh": (np.tanh, _sech2),
    "sigmoid": (expit, lambda x: np.asarray(expit(x) * expit(-x))),
    "gelu": (_gelu, _gelu_prime),
    "silu": (lambda x: np.asarray(x * expit(x)), lambda x: np.asarray(expit(x) * (1.0 + x * expit(-x)))),
    "softplus": (lambda x: np.logaddexp(0.0, x), lambda x: np.asarray(expit(x))),
}
# q spanning Gauss–Hermite (√q ≤ width/4), the trapezoidal rule and composite Gauss–Legendre (√q ≳ 24·width)
Q_GRID = [1e-6, 0.1, 2.0, 100.0, 1e5]


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_quadrature_against_scipy_quad(name: str) -> None:
    """E[h²], E[h'²], E[h'⁴] by our quadrature (every regime) against scipy's adaptive quad on h and h' written out
    here, to 1e-10 relative."""
    activation = make_activation(name)
    h, dh = SMOOTH[name]
    width = mf.analytic_width(activation)
    for q in Q_GRID:
        got = mf.moments(activation, q)
        expected = (
            _reference(lambda x: h(x) ** 2, q, width),
            _reference(lambda x: dh(x) ** 2, q, width),
            _reference(lambda x: dh(x) ** 4, q, width),
        )
        assert (got.m, got.d1, got.d2) == pytest.approx(expected, rel=QUADRATURE_RTOL), q


def test_softplus_sharp_and_flat() -> None:
    """Softplus with β = 10 (singularities at ±iπ/10: a narrow strip) and β = 0.1, against quad, to 1e-10."""
    for beta in (10.0, 0.1):
        activation = make_activation("softplus", beta=beta)
        for q in (0.01, 1.0, 50.0):
            expected = _reference(_power(_logistic(beta), 2), q, math.pi / beta)
            assert mf.moments(activation, q).d1 == pytest.approx(expected, rel=QUADRATURE_RTOL)


def test_gauss_hermite_has_converged() -> None:
    """Where Gauss–Hermite is used (√q ≤ width/4), 64 nodes agree with 128 to 1e-14: the rule has converged."""
    from numpy.polynomial.hermite_e import hermegauss

    nodes, weights = hermegauss(128)
    weights = weights / math.sqrt(2.0 * math.pi)
    for name, (h, dh) in SMOOTH.items():
        width = mf.analytic_width(make_activation(name))
        q = (mf.GH_MAX_SCALE * width) ** 2
        for f in (_power(h, 2), _power(dh, 4)):
            assert mf.gaussian_expectation(f, q, width) == pytest.approx(
                float(weights @ f(math.sqrt(q) * nodes)), rel=1e-14, abs=1e-300
            )


def _elu(scale: float, alpha: float) -> tuple[Fn, Fn]:
    def value(x: Array) -> Array:
        return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))

    def slope(x: Array) -> Array:
        return scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))

    return value, slope


def _split(f: Fn, q: float, kinks: tuple[float, ...]) -> float:
    """E[f(√q·z)] by quad, split at z = 0, ±1, ±5 and at every kink x of f (z = x/√q)."""
    s = math.sqrt(q)

    def integrand(z: float) -> float:
        return float(f(np.array([s * z]))[0]) * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    inside = [k / s for k in kinks if abs(k / s) < 40.0]
    edges = sorted({-40.0, -5.0, -1.0, 0.0, 1.0, 5.0, 40.0, *inside})
    return math.fsum(
        quad(integrand, a, b, epsabs=1e-16, epsrel=1e-13, limit=200)[0] for a, b in itertools.pairwise(edges)
    )


EXACT: dict[str, tuple[Activation, Fn, Fn, tuple[float, ...]]] = {
    "elu": (make_activation("elu", alpha=1.3), *_elu(1.0, 1.3), ()),
    "selu": (make_activation("selu"), *_elu(SELU_SCALE, SELU_ALPHA), ()),
    "hard_tanh": (
        make_activation("hard_tanh", min_val=-0.5, max_val=2.0),
        lambda x: np.clip(x, -0.5, 2.0),
        lambda x: ((x > -0.5) & (x < 2.0)).astype(np.float64),
        (-0.5, 2.0),
    ),
    "hard_tanh_one_sided": (
        make_activation("hard_tanh", min_val=0.5, max_val=1.0),
        lambda x: np.clip(x, 0.5, 1.0),
        lambda x: ((x > 0.5) & (x < 1.0)).astype(np.float64),
        (0.5, 1.0),
    ),
    "leaky_relu": (
        make_activation("leaky_relu", negative_slope=0.2),
        lambda x: np.where(x > 0, x, 0.2 * x),
        lambda x: np.where(x > 0, 1.0, 0.2),
        (),
    ),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_forms_against_quad(name: str) -> None:
    """The closed forms (normal CDF, erfcx, and ELU's series below √q = 0.1) against quad, to 1e-10 relative or
    1e-15 absolute."""
    activation, h, dh, kinks = EXACT[name]
    for q in (1e-6, 0.003, 0.0099, 0.0101, 0.5, 1.0, 7.0, 400.0):
        got = mf.moments(activation, q)
        expected = (_split(lambda x: h(x) ** 2, q, kinks), _split(lambda x: dh(x) ** 2, q, kinks))
        assert (got.m, got.d1) == pytest.approx(expected, rel=QUADRATURE_RTOL, abs=1e-15), q
        assert got.d2 == pytest.approx(_split(lambda x: dh(x) ** 4, q, kinks), rel=QUADRATURE_RTOL, abs=1e-15), q


def test_limits_at_zero_and_infinity() -> None:
    """q → 0⁺: E[h'²] → (h'(0⁺)² + h'(0⁻)²)/2; q → ∞: (h'(+∞)² + h'(−∞)²)/2."""
    assert mf.moments(make_activation("relu"), 0.0).d1 == 0.5
    assert mf.moments(make_activation("elu", alpha=2.0), 0.0).d1 == pytest.approx(2.5)
    assert mf.moments(tanh(), 0.0).d1 == 1.0
    assert mf.moments(tanh(), math.inf).d1 == 0.0
    assert mf.moments(make_activation("gelu"), math.inf).d1 == 0.5
    assert mf.moments(make_activation("selu"), math.inf).d2 == pytest.approx(SELU_SCALE**4 / 2.0, rel=1e-15)
    assert mf.moments(make_activation("gelu"), 1e-20).d1 == pytest.approx(0.25, rel=1e-9)


# --- fixed points, χ₁, critical σ_w ------------------------------------------------------------------------------


def _iterate(activation: Activation, sigma_w: float, sigma_b: float, steps: int) -> float:
    q = sigma_w**2 + sigma_b**2
    for _ in range(steps):
        q = sigma_w**2 * mf.moments(activation, q).m + sigma_b**2
    return q


@pytest.mark.parametrize(
    ("name", "sigma_w", "sigma_b"),
    [("tanh", 2.5, 0.3), ("tanh", 0.8, 0.2), ("sigmoid", 3.0, 0.5), ("elu", 1.2, 0.4), ("gelu", 1.0, 0.5)],
)
def test_fixed_point_is_the_limit_of_the_iteration(name: str, sigma_w: float, sigma_b: float) -> None:
    """q* is a fixed point of V to 1e-12 and the limit of 400 steps of q ↦ V(q) from q^1 = σ_w² + σ_b² (to 1e-9:
    these maps contract)."""
    activation = make_activation(name)
    point = mf.fixed_point(activation, sigma_w, sigma_b)
    assert point.status == "converged"
    assert point.q is not None
    assert mf.variance_map(activation, sigma_w, sigma_b, point.q) == pytest.approx(point.q, rel=1e-12)
    assert _iterate(activation, sigma_w, sigma_b, 400) == pytest.approx(point.q, rel=1e-9)


def test_fixed_point_statuses() -> None:
    """ReLU: q* = σ_b²/(1 − σ_w²/2) below σ_w² = 2; marginal at σ_w² = 2, σ_b = 0 (q^1 reported); diverging at
    σ_w² = 2 with a bias and above. tanh and hard-tanh at σ_w ≤ 1, σ_b = 0 settle at 0."""
    relu = make_activation("relu")
    assert mf.fixed_point(relu, 1.2, 0.5) == mf.FixedPoint(0.25 / (1.0 - 0.72), "converged")
    assert mf.fixed_point(relu, math.sqrt(2.0), 0.0) == mf.FixedPoint(2.0000000000000004, "marginal")
    assert mf.fixed_point(relu, math.sqrt(2.0), 0.1).status == "diverges"
    assert mf.fixed_point(relu, 1.5, 0.0) == mf.FixedPoint(None, "diverges")
    assert mf.fixed_point(tanh(), 0.9, 0.0) == mf.FixedPoint(0.0, "converged")
    assert mf.fixed_point(tanh(), 1.0, 0.0) == mf.FixedPoint(0.0, "converged")
    assert mf.fixed_point(make_activation("hard_tanh"), 1.0, 0.0) == mf.FixedPoint(0.0, "converged")
    assert mf.fixed_point(make_activation("gelu"), 2.0, 0.0).status == "diverges"
    assert mf.fixed_point(make_activation("linear"), 0.5, 1.0) == mf.FixedPoint(1.0 / 0.75, "converged")


def test_diverging_and_zero_fixed_points_take_the_limits_of_chi1() -> None:
    """GELU at σ_w = 2 diverges: χ₁ = σ_w²·(1² + 0²)/2 = 2. tanh at σ_w = 0.9, σ_b = 0 settles at 0: χ₁ = 0.81."""
    diverging = mf.layer_theory(make_activation("gelu"), 2.0, 0.0)
    assert diverging.q_star is None
    assert diverging.chi1 == pytest.approx(2.0, rel=1e-15)
    assert mf.layer_theory(tanh(), 0.9, 0.0).chi1 == pytest.approx(0.81, rel=1e-15)


@pytest.mark.parametrize(
    ("name", "sigma_b"),
    [("tanh", 0.0), ("tanh", 0.05), ("tanh", 1.0), ("sigmoid", 0.3), ("elu", 0.3), ("selu", 0.0), ("hard_tanh", 0.5)],
)
def test_chi1_is_one_at_the_critical_sigma_w(name: str, sigma_b: float) -> None:
    """Wherever a critical σ_w is found along the critical line, χ₁ there is 1 to 1e-10 and the layer is flagged
    critical (no depth scale)."""
    activation = make_activation(name)
    critical = mf.critical_sigma_w(activation, sigma_b)
    assert critical is not None
    theory = mf.layer_theory(activation, critical, sigma_b)
    assert theory.chi1 == pytest.approx(1.0, abs=1e-10)
    assert theory.critical
    assert theory.depth_scale is None
    assert not theory.critical_discontinuous


def test_homogeneous_critical_sigma_w() -> None:
    """1/√E[h'(z)²]: 1 (linear), √2 (ReLU), √(2/(1 + s²)) (leaky ReLU), whatever σ_b."""
    assert mf.critical_sigma_w(make_activation("linear"), 0.5) == 1.0
    assert mf.critical_sigma_w(make_activation("relu"), 0.0) == pytest.approx(math.sqrt(2.0), rel=1e-15)
    leaky = make_activation("leaky_relu", negative_slope=0.3)
    assert mf.critical_sigma_w(leaky, 1.0) == pytest.approx(math.sqrt(2.0 / 1.09), rel=1e-15)


def test_gelu_without_bias_jumps_across_one() -> None:
    """GELU at σ_b = 0 has no fixed point with χ₁ = 1: from q^1 = σ_w² the variance either settles at 0
    (χ₁ = σ_w²/4 < 1) or diverges (χ₁ → σ_w²/2 > 1); the critical σ_w reported is the jump, where q^1 is itself a
    (repelling) fixed point, E[gelu(σ_w·z)²] = 1 (checked by quad), and it is flagged."""
    gelu = make_activation("gelu")
    theory = mf.layer_theory(gelu, 1.0, 0.0)
    critical = theory.critical_sigma_w
    assert critical is not None
    assert theory.critical_discontinuous
    assert mf.chi1(gelu, critical * (1 - 1e-6), 0.0) < 1.0 < mf.chi1(gelu, critical * (1 + 1e-6), 0.0)
    assert _reference(_power(_gelu, 2), critical**2, 2.0) == pytest.approx(1.0, abs=1e-10)


def test_softplus_critical_sigma_w_is_the_divergence_edge() -> None:
    """Softplus: below σ_w = √2 the variance settles (χ₁ < 1), above it diverges with χ₁ → σ_w²/2 > 1: the
    critical σ_w is √2 at every σ_b (to 1e-12)."""
    softplus = make_activation("softplus")
    for sigma_b in (0.0, 0.5):
        critical = mf.critical_sigma_w(softplus, sigma_b)
        assert critical == pytest.approx(math.sqrt(2.0), rel=1e-12)
        assert mf.chi1(softplus, 1.4, sigma_b) < 1.0 < mf.chi1(softplus, 1.43, sigma_b)


# --- against a simulated wide network ---------------------------------------------------------------------------


def test_q_star_and_chi1_match_a_wide_tanh_network() -> None:
    """A tanh network of width 1000, σ_w = 1.5, σ_b = 0.3, 30 layers, 4 probes: the measured mean z² of the last 15
    layers is q*, and the measured ‖diag(h'(z))·W·v‖²/‖v‖² for random unit v is χ₁ (both within 3%: finite-width
    fluctuations are O(1/√(n·probes)) per layer, averaged over 15 layers)."""
    n, depth, sigma_w, sigma_b = 1000, 30, 1.5, 0.3
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, n))
    variances, gains = [], []
    for j in range(depth):
        w = sigma_w / math.sqrt(n) * rng.standard_normal((n, n))
        z = a @ w.T + sigma_b * rng.standard_normal(n)
        if j >= depth // 2:
            v = rng.standard_normal((4, n))
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            pushed = (v @ w.T) * (1.0 - np.tanh(z) ** 2)
            variances.append(float(np.mean(z**2)))
            gains.append(float(np.mean(np.sum(pushed**2, axis=1))))
        a = np.tanh(z)
    theory = mf.layer_theory(tanh(), sigma_w, sigma_b)
    assert theory.q_star is not None
    assert float(np.mean(variances)) == pytest.approx(theory.q_star, rel=0.03)
    assert float(np.mean(gains)) == pytest.approx(theory.chi1, rel=0.03)


# --- a whole network ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "gain", "std", "expected"),
    [
        ("he_normal", 1.0, 1.0, math.sqrt(2.0)),
        ("he_uniform", 0.5, 1.0, 0.5 * math.sqrt(2.0)),
        ("xavier_normal", 1.3, 1.0, 1.3),
        ("lecun_normal", 0.9, 1.0, 0.9),
        ("orthogonal", 1.2, 1.0, 1.2),
        ("gaussian", 2.0, 0.05, 2.0 * 0.05 * 8.0),
        ("uniform", 1.0, 0.1, 0.8),
    ],
)
def test_recipe_sigma_w(scheme: str, gain: float, std: float, expected: float) -> None:
    """σ_w = √fan_in·std of the scheme, for square layers of width 64: he √2·gain, xavier and lecun and orthogonal
    the gain, gaussian and uniform gain·std·√64; σ_b the bias_std."""
    recipe = InitRecipe((64, 64, 64), scheme, tanh(), gain=gain, std=std, bias_std=0.2)
    network = build_network(recipe)
    m = mf.network_meanfield(network)
    for layer in m.layers:
        assert layer.theory.sigma_w == pytest.approx(expected, rel=1e-14)
        assert layer.theory.sigma_b == 0.2


def test_explicit_weights_use_empirical_variances() -> None:
    """σ_w² = n_in·Var(W) and σ_b² = Var(b) over the entries (0 without a bias), computed here with statistics."""
    rng = np.random.default_rng(3)
    w1, b1 = 0.7 * rng.standard_normal((30, 20)) + 0.1, 0.4 * rng.standard_normal(30)
    w2 = rng.uniform(-1.0, 1.0, (5, 30))
    network = network_from_layers([Layer(Dense(w1), b1, tanh()), Layer(Dense(w2), None, make_activation("relu"))])
    first, second = mf.network_meanfield(network).layers
    entries = w1.ravel()
    assert first.theory.sigma_w**2 == pytest.approx(20 * sum((x - entries.mean()) ** 2 for x in entries) / 600)
    assert first.theory.sigma_b == pytest.approx(float(np.std(b1)), rel=1e-12)
    assert second.theory.sigma_b == 0.0
    assert second.theory.chi1 == pytest.approx(30 * float(np.var(w2)) / 2.0, rel=1e-12)


def test_network_prediction_and_critical_gain() -> None:
    """He ReLU (the issue's example): χ₁ = 1, predicted growth 10^0, critical gain 1, every layer flagged critical.
    tanh orthogonal at gain 0.5 with σ_b = 0: q* = 0, χ₁ = 0.25, growth ½·L·log10 0.25, critical gain 1."""
    he = mf.network_meanfield(build_network(InitRecipe((32,) * 5, "he_normal", make_activation("relu"))))
    assert he.predicted_growth_log10 == pytest.approx(0.0, abs=1e-14)
    assert he.critical_gain == pytest.approx(1.0, rel=1e-14)
    assert all("critical" in layer.flags and "q_marginal" in layer.flags for layer in he.layers)
    half = mf.network_meanfield(build_network(InitRecipe((32,) * 5, "orthogonal", tanh(), gain=0.5)))
    assert half.predicted_growth_log10 == pytest.approx(0.5 * 4 * math.log10(0.25), rel=1e-14)
    assert half.critical_gain == pytest.approx(1.0, rel=1e-12)
    assert half.chi1_geometric_mean == pytest.approx(0.25, rel=1e-12)


def test_extreme_sigmas_are_carried_in_log10_or_out_of_range() -> None:
    """σ_w = 1e200 (init gain 1e200): for ReLU χ₁ = σ_w²/2 = 10^399.7 does not fit a float64, but its log10 does
    (growth_log10 = 200 + ½·log10 ½); for tanh q* ≈ 10^400 cannot be followed: out of range, χ₁ unknown. σ_w =
    1e-200: χ₁ = 10^-400 underflows but is not 0 (growth_log10 = −200)."""
    relu = mf.layer_theory(make_activation("relu"), 1e200, 0.0)
    assert relu.status == "out_of_range"
    assert relu.chi1 is None
    assert relu.growth_log10 is not None
    assert relu.growth_log10 == pytest.approx(200.0 + 0.5 * math.log10(0.5), rel=1e-15)
    assert relu.depth_scale == pytest.approx(1.0 / (2.0 * math.log(10.0) * relu.growth_log10), rel=1e-12)
    huge = mf.layer_theory(tanh(), 1e200, 0.0)
    assert (huge.status, huge.chi1, huge.growth_log10, huge.depth_scale) == ("out_of_range", None, None, None)
    assert huge.critical_sigma_w == 1.0
    tiny = mf.layer_theory(tanh(), 1e-200, 0.0)
    assert tiny.chi1 is None
    assert tiny.growth_log10 == pytest.approx(-200.0, rel=1e-15)
    network = build_network(InitRecipe((4, 4, 4), "orthogonal", tanh(), gain=1e200))
    m = mf.network_meanfield(network)
    assert not m.known
    assert m.predicted_growth_log10 is None
    assert all("out_of_range" in layer.flags and "chi1_zero" not in layer.flags for layer in m.layers)
    huge_weights = network_from_layers([Layer(Dense(1e300 * np.eye(3)[::-1] * [1.0, -1.0, 1.0]), None, tanh())])
    # entries 1e300·(1, −1, 1) and six zeros: variance 1e600·(3/9 − 1/81) = 1e600·26/81, without overflow
    assert mf.layer_sigmas(huge_weights)[0][0] == pytest.approx(math.sqrt(3.0) * 1e300 * math.sqrt(26.0) / 9.0)
