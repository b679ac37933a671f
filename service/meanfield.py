"""Mean-field signal propagation through a deep random network (Poole et al. 2016; Schoenholz et al. 2017).

A layer z = W a + b with W_ik of variance σ_w²/n_in and b_i of variance σ_b², fed by a = h(z') whose units are
N(0, q) in the wide limit, has pre-activations of variance

    q ↦ V(q) = σ_w²·E[h(√q·z)²] + σ_b²,        z ~ N(0, 1),

and its Jacobian diag(h'(z))·W multiplies the mean squared length of a backpropagated vector by

    χ₁ = σ_w²·E[h'(√q*·z)²]

at the fixed point q* = V(q*) the variance settles to. Over L such layers the mean squared singular value of
∂a_L/∂a_0 is χ₁^L, so a typical gradient grows by χ₁^{L/2}: it vanishes over ξ = −1/ln χ₁ layers where χ₁ < 1
(the ordered phase), explodes where χ₁ > 1, and is preserved on the critical line χ₁ = 1 (the edge of chaos).

Definitions used here, for one layer (h, σ_w, σ_b):

- q* is the limit of q^{l+1} = V(q^l) from q^1 = σ_w² + σ_b², the variance of a layer fed standardised inputs
  (E[a_i²] = 1). V is increasing for every activation here (checked on q from 1e-8 to 1e8 at their default
  parameters), so the iteration moves monotonically to the nearest fixed point in its direction: that is the one
  reported. Status ``diverges`` where q grows without bound (no fixed point below Q_MAX_RATIO·max(q^1, 1)),
  ``marginal`` where every q is a fixed point (σ_w²·E[h'(z)²] = 1 with σ_b = 0 for a
  positively homogeneous h: linear, ReLU, leaky ReLU), when q* is reported as q^1.
- χ₁ is taken at q*; at q* = 0 it is the limit q → 0⁺, σ_w²·(h'(0⁺)² + h'(0⁻)²)/2; where q diverges, the limit
  q → ∞, σ_w²·(h'(+∞)² + h'(−∞)²)/2 (for ReLU-like h both equal the q-independent σ_w²·E[h'(z)²]).
- the depth scale is 1/|ln χ₁|, the layers over which the mean squared gradient changes by a factor e (it shrinks
  where χ₁ < 1: Schoenholz et al.'s ξ_∇ = −1/ln χ₁; it grows where χ₁ > 1); none on the critical line.
- the critical σ_w is the one at which χ₁ = 1 for the layer's activation and σ_b.

Gaussian expectations are exact where a closed form exists (linear, ReLU, leaky ReLU and hard-tanh through the
normal CDF; ELU and SELU through erfcx) and by quadrature elsewhere (tanh, sigmoid, GELU, SiLU, softplus), to
about 1e-13 relative: see :func:`gaussian_expectation`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import erfcx, gamma, ndtr

from service.activations import (
    ELU,
    GELU,
    SELU,
    SELU_ALPHA,
    SELU_SCALE,
    Activation,
    HardTanh,
    LeakyReLU,
    Linear,
    ReLU,
    Softplus,
    Tanh,
)
from service.initializers import SCHEMES
from service.logscale import normal_or_none, plain
from service.network import Network

Array = NDArray[np.float64]
Status = Literal["converged", "marginal", "diverges", "out_of_range"]

GH_NODES = 64
"""Gauss–Hermite nodes (probabilists', ``hermegauss``) used while √q ≤ GH_MAX_SCALE·width."""
GH_MAX_SCALE = 0.25
"""Gauss–Hermite is exact for polynomials; it converges fast only while h(√q·z) varies slowly on the nodes' spacing,
i.e. while √q is small beside the distance ``width`` from the real axis to h's nearest complex singularity (tanh
at q = 5 still misses 1e-10 with 400 nodes). Up to √q = width/4, 64 nodes reach 1e-15 (tests/service)."""
TRAPEZOID_Z = 10.0
"""The trapezoidal rule integrates z over [−10, 10]: the Gaussian tail beyond carries < 1e-21 of the weight."""
TRAPEZOID_MAX_NODES = 4096
"""Past this many trapezoid nodes (√q ≈ 24·width) the expectation is taken by composite Gauss–Legendre in x, whose
≈ 3000 nodes do not grow with q."""
LEGENDRE_NODES = 16
Q_MAX_RATIO = 1e6
"""An iteration from q^1 that passes Q_MAX_RATIO·max(q^1, 1) is reported as diverging (only unbounded h get there:
for bounded h, V(q) ≤ σ_w²·sup h² + σ_b²)."""
Q_MIN_RATIO = 1e-12
"""Searching down from q^1, a fixed point below Q_MIN_RATIO·q^1 of a map with V(0) = 0 is reported as 0."""
MAX_SIGMA = 1e50
"""σ_w or σ_b above this (q* near 10^100) is out of range: the variance is not followed there."""
CRITICAL_RTOL = 1e-9
"""|χ₁ − 1| ≤ CRITICAL_RTOL is critical (He-initialised ReLU has σ_w² = 2 only to rounding); the same tolerance
decides a marginal homogeneous map. It is above the quadrature's accuracy."""


@dataclass(frozen=True)
class Moments:
    """Gaussian moments at variance q: ``m`` = E[h(√q·z)²], ``d1`` = E[h'(√q·z)²], ``d2`` = E[h'(√q·z)⁴]."""

    m: float
    d1: float
    d2: float


@cache
def _hermite() -> tuple[Array, Array]:
    nodes, weights = hermegauss(GH_NODES)
    return nodes, weights / math.sqrt(2.0 * math.pi)


def gaussian_expectation(f: Callable[[Array], Array], q: float, width: float) -> float:
    """E[f(√q·z)], z ~ N(0, 1), for f analytic in the strip |Im x| < ``width`` (and of moderate size there).

    While √q ≤ GH_MAX_SCALE·width: Gauss–Hermite with GH_NODES nodes. Above: the trapezoidal rule in z with step
    h = 2πτ/(40 + τ²/2), τ = min(0.75·width/√q, 4), which converges like e^{−2πτ/h}·e^{τ²/2} ≈ e^{−40} for
    integrands analytic in |Im z| < τ (Trefethen & Weideman 2014); past TRAPEZOID_MAX_NODES nodes, composite
    Gauss–Legendre in x = √q·z (:func:`_composite_legendre`).
    """
    s = math.sqrt(q)
    if s <= GH_MAX_SCALE * width:
        nodes, weights = _hermite()
        return float(weights @ f(s * nodes))
    tau = min(0.75 * width / s, 4.0)
    step = 2.0 * math.pi * tau / (40.0 + tau * tau / 2.0)
    half = math.ceil(TRAPEZOID_Z / step)
    if 2 * half + 1 <= TRAPEZOID_MAX_NODES:
        z = step * np.arange(-half, half + 1, dtype=np.float64)
        weights = step * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return float(weights @ f(s * z))

    return _composite_legendre(f, s, width)


@cache
def _legendre() -> tuple[Array, Array]:
    nodes, weights = np.polynomial.legendre.leggauss(LEGENDRE_NODES)
    return nodes, weights


def _composite_legendre(f: Callable[[Array], Array], s: float, width: float) -> float:
    """E[f(x)], x ~ N(0, s²), for large s: Gauss–Legendre on panels of x, width/2 wide for |x| ≤ 40·width (where f
    varies), then growing by a factor 1.25 out to 10·s (where only the Gaussian varies)."""
    inner = np.arange(-80, 81) * (width / 2.0)
    outer = [40.0 * width]
    while outer[-1] < TRAPEZOID_Z * s:
        outer.append(min(1.25 * outer[-1], TRAPEZOID_Z * s))
    edges = np.concatenate([-np.array(outer[:0:-1]), inner, np.array(outer[1:])])
    nodes, weights = _legendre()
    half = np.diff(edges)[:, None] / 2.0
    x = (edges[:-1, None] + half * (nodes[None, :] + 1.0)).ravel()
    w = (half * weights[None, :]).ravel()
    density = np.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2.0 * math.pi))
    return float((w * density) @ f(x))


def _derivative_at(activation: Activation, x: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(activation.derivative(np.array([x]))[0])


def _limits(activation: Activation, x: float) -> tuple[float, float]:
    """((h'(x)² + h'(−x)²)/2, (h'(x)⁴ + h'(−x)⁴)/2): at x = 1e-300 the q → 0⁺ limit of (E[h'²], E[h'⁴]), at 1e300
    the q → ∞ one (z is symmetric, so √q·z lands on either side of 0 with probability ½)."""
    up, down = _derivative_at(activation, x), _derivative_at(activation, -x)
    return (up**2 + down**2) / 2.0, (up**4 + down**4) / 2.0


def homogeneous_constant(activation: Activation) -> float | None:
    """E[h(z)²] = E[h'(z)²] for a positively homogeneous h (h(cx) = c·h(x), c > 0): then E[h(√q·z)²] is that
    times q, and E[h'(√q·z)²] does not depend on q. 1 (linear), 1/2 (ReLU), (1 + s²)/2 (leaky ReLU); else None."""
    if isinstance(activation, Linear):
        return 1.0
    if isinstance(activation, ReLU):
        return 0.5
    if isinstance(activation, LeakyReLU):
        return (1.0 + activation.negative_slope**2) / 2.0
    return None


def moments(activation: Activation, q: float) -> Moments:
    """E[h²], E[h'²] and E[h'⁴] at √q·z, z ~ N(0, 1); q = ∞ gives the limits of the last two (and m = ∞)."""
    if q == math.inf:
        d1, d2 = _limits(activation, 1e300)
        return Moments(math.inf, d1, d2)
    if q == 0.0:
        d1, d2 = _limits(activation, 1e-300)
        return Moments(float(activation.value(np.zeros(1))[0]) ** 2, d1, d2)
    exact = _exact_moments(activation, q)
    if exact is not None:
        return exact
    return Moments(
        _quadrature(activation, q, lambda x: activation.value(x) ** 2),
        _quadrature(activation, q, lambda x: activation.derivative(x) ** 2),
        _quadrature(activation, q, lambda x: activation.derivative(x) ** 4),
    )


def second_moment(activation: Activation, q: float) -> float:
    """E[h(√q·z)²] alone (one quadrature where ``moments`` takes three)."""
    if q == 0.0 or q == math.inf or _exact_moments(activation, 1.0) is not None:
        return moments(activation, q).m
    return _quadrature(activation, q, lambda x: activation.value(x) ** 2)


def slope_moment(activation: Activation, q: float) -> float:
    """E[h'(√q·z)²] alone."""
    if q == 0.0 or q == math.inf or _exact_moments(activation, 1.0) is not None:
        return moments(activation, q).d1
    return _quadrature(activation, q, lambda x: activation.derivative(x) ** 2)


def analytic_width(activation: Activation) -> float:
    """How far from the real axis h and h' stay analytic and of moderate size, for the quadrature's step: tanh has
    poles at ±iπ/2, the logistic function (sigmoid, SiLU) at ±iπ, softplus log(1 + e^{βx})/β branch points at ±iπ/β;
    GELU is entire, but Φ(x + iy) grows like e^{y²/2}, so it is given 2."""
    if isinstance(activation, Tanh):
        return math.pi / 2.0
    if isinstance(activation, Softplus):
        return math.pi / activation.beta
    if isinstance(activation, GELU):
        return 2.0
    return math.pi  # sigmoid, SiLU (the other activations have exact forms)


def _quadrature(activation: Activation, q: float, f: Callable[[Array], Array]) -> float:
    width = analytic_width(activation)
    with np.errstate(over="ignore", under="ignore"):
        return gaussian_expectation(f, q, width)


def _exact_moments(activation: Activation, q: float) -> Moments | None:
    c = homogeneous_constant(activation)
    if c is not None:
        fourth = (1.0 + activation.negative_slope**4) / 2.0 if isinstance(activation, LeakyReLU) else c
        return Moments(c * q, c, fourth)
    if isinstance(activation, HardTanh):
        return _hard_tanh_moments(activation.min_val, activation.max_val, q)
    if isinstance(activation, ELU):
        return _elu_moments(1.0, activation.alpha, q)
    if isinstance(activation, SELU):
        return _elu_moments(SELU_SCALE, SELU_ALPHA, q)
    return None


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _hard_tanh_moments(a: float, b: float, q: float) -> Moments:
    """h = clip(x, a, b) at x = √q·z ~ N(0, q), with α = a/√q, β = b/√q:

    P(a < x < b) = ∫_α^β φ = E[h'²] = E[h'⁴];  E[h²] = q·∫_α^β t²φ(t) dt + a²·Φ(α) + b²·Φ(−β),
    a sum of non-negative terms (the integrals from :func:`_normal_integrals`), so no cancellation at any q.
    """
    s = math.sqrt(q)
    alpha, beta = a / s, b / s
    inside, second = _normal_integrals(alpha, beta)
    m = q * second + a * a * float(ndtr(alpha)) + b * b * float(ndtr(-beta))
    return Moments(m, inside, inside)


def _normal_integrals(alpha: float, beta: float) -> tuple[float, float]:
    """(∫_α^β φ(t) dt, ∫_α^β t²φ(t) dt) for α < β.

    Over an interval shorter than 1 (where the closed forms Φ(β) − Φ(α) and that minus [tφ(t)]_α^β cancel, e.g.
    α, β near 0), by Gauss–Legendre with LEGENDRE_NODES nodes: both integrands are entire and positive there, so
    the rule is exact to rounding. Otherwise by the closed forms, taking the probability on the side of 0 where it
    does not cancel."""
    if beta - alpha < 1.0:
        nodes, weights = _legendre()
        half = (beta - alpha) / 2.0
        t = alpha + half * (nodes + 1.0)
        density = half * weights * np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
        return float(density.sum()), float(density @ (t * t))
    inside = float(ndtr(-alpha) - ndtr(-beta)) if alpha >= 0 else float(ndtr(beta) - ndtr(alpha))
    return inside, inside + alpha * _phi(alpha) - beta * _phi(beta)


def _negative_exponential(u: float) -> float:
    """E[e^{u·z}; z < 0] = e^{u²/2}·Φ(−u) = erfcx(u/√2)/2, for u ≥ 0 (no overflow at any u)."""
    return float(erfcx(u / math.sqrt(2.0))) / 2.0


def _negative_square(s: float) -> float:
    """E[(e^{s·z} − 1)²; z < 0] = G(2s) − 2G(s) + 1/2 with G(u) = E[e^{u·z}; z < 0]; for s < 0.1, where those
    terms cancel to s²/2, the series Σ_{k≥2} (2^k − 2)·s^k·E[z^k; z < 0]/k!, E[z^k; z < 0] = (−1)^k·E|z|^k/2,
    E|z|^k = 2^{k/2}·Γ((k+1)/2)/√π."""
    if s >= 0.1:
        return _negative_exponential(2.0 * s) - 2.0 * _negative_exponential(s) + 0.5
    total = 0.0
    for k in range(2, 24):
        absolute = 2.0 ** (k / 2.0) * float(gamma((k + 1) / 2.0)) / math.sqrt(math.pi)
        total += (2.0**k - 2.0) * s**k * (-1.0) ** k * absolute / (2.0 * math.factorial(k))
    return total


def _elu_moments(scale: float, alpha: float, q: float) -> Moments:
    """h = λ·x for x > 0, λ·α·(e^x − 1) for x ≤ 0 (ELU: λ = 1; SELU: λ, α fixed), at x = √q·z:

    E[h²] = λ²·(q/2 + α²·E[(e^{√q·z} − 1)²; z < 0]),  E[h'²] = λ²·(1/2 + α²·G(2√q)),  E[h'⁴] = λ⁴·(1/2 + α⁴·G(4√q)),
    with G(u) = E[e^{u·z}; z < 0] = e^{u²/2}·Φ(−u).
    """
    s = math.sqrt(q)
    m = scale**2 * (q / 2.0 + alpha**2 * _negative_square(s))
    d1 = scale**2 * (0.5 + alpha**2 * _negative_exponential(2.0 * s))
    d2 = scale**4 * (0.5 + alpha**4 * _negative_exponential(4.0 * s))
    return Moments(m, d1, d2)


def variance_map(activation: Activation, sigma_w: float, sigma_b: float, q: float) -> float:
    """V(q) = σ_w²·E[h(√q·z)²] + σ_b²."""
    return sigma_w**2 * second_moment(activation, q) + sigma_b**2


@dataclass(frozen=True)
class FixedPoint:
    """q* (None where the variance diverges) and how it was reached."""

    q: float | None
    status: Status


def fixed_point(activation: Activation, sigma_w: float, sigma_b: float) -> FixedPoint:
    """The fixed point of V reached by iterating from q^1 = σ_w² + σ_b² (see the module's docstring)."""
    start = sigma_w * sigma_w + sigma_b * sigma_b
    c = homogeneous_constant(activation)
    if c is not None:
        rate = sigma_w * sigma_w * c
        if rate < 1.0 - CRITICAL_RTOL:
            return FixedPoint(sigma_b * sigma_b / (1.0 - rate), "converged")
        if rate <= 1.0 + CRITICAL_RTOL and sigma_b == 0.0:
            return FixedPoint(start, "marginal")
        return FixedPoint(None, "diverges")
    if start == 0.0:
        return FixedPoint(0.0, "converged")

    def excess(q: float) -> float:
        return variance_map(activation, sigma_w, sigma_b, q) - q

    gap = excess(start)
    if gap == 0.0:
        return FixedPoint(start, "converged")
    if gap > 0.0:  # the iteration climbs to the first fixed point above q^1
        low, high = start, 4.0 * start
        while excess(high) > 0.0:
            if high > Q_MAX_RATIO * max(start, 1.0):
                return FixedPoint(None, "diverges")
            low, high = high, 4.0 * high
    else:  # it descends to the first fixed point below q^1
        low, high = start / 4.0, start
        while excess(low) <= 0.0:  # V(q) = q to rounding (hard-tanh at σ_w = 1, small q) keeps descending
            if low < Q_MIN_RATIO * start:
                if excess(0.0) <= 0.0:  # V(0) = 0: the iteration reaches 0
                    return FixedPoint(0.0, "converged")
                low, high = 0.0, low
                break
            low, high = low / 4.0, low
    root = brentq(excess, low, high, xtol=1e-300, rtol=1e-14, maxiter=200)
    return FixedPoint(float(root), "converged")


@dataclass(frozen=True)
class LayerTheory:
    """The mean-field numbers of one layer (h, σ_w, σ_b); ``mu1``, ``mu2`` are E[h'²], E[h'⁴] where χ₁ is taken.

    ``growth_log10`` = log10 χ₁^{1/2} = log10 σ_w + ½·log10 μ₁ is carried in log10 (χ₁ itself may not fit a
    float64); None where χ₁ = 0, or where the layer is out of range (status ``out_of_range``: σ_w or σ_b above
    MAX_SIGMA, for an activation whose q* would have to be found: then q*, χ₁ and the growth are unknown)."""

    sigma_w: float
    sigma_b: float
    q_star: float | None
    status: Status
    chi1: float | None
    """χ₁ = σ_w²·μ₁ where it is a normal float64 or exactly 0, else None (``growth_log10`` carries it)."""
    growth_log10: float | None
    mu1: float
    mu2: float
    critical_sigma_w: float | None
    critical_discontinuous: bool
    """Whether χ₁ jumps across 1 at ``critical_sigma_w`` (the fixed point reached from q^1 changes branch there)."""

    @property
    def known(self) -> bool:
        """Whether χ₁ is known (always, but for an out-of-range layer of a non-homogeneous activation)."""
        return self.growth_log10 is not None or self.status != "out_of_range"

    @property
    def critical(self) -> bool:
        """|χ₁ − 1| ≤ CRITICAL_RTOL, as |ln χ₁| = 2·ln 10·|growth_log10|."""
        return self.growth_log10 is not None and 2.0 * math.log(10.0) * abs(self.growth_log10) <= CRITICAL_RTOL

    @property
    def depth_scale(self) -> float | None:
        """1/|ln χ₁| (0 where χ₁ = 0); None on the critical line, and where χ₁ is unknown."""
        if self.growth_log10 is None:
            return 0.0 if self.known else None
        return None if self.critical else 1.0 / (2.0 * math.log(10.0) * abs(self.growth_log10))


@lru_cache(maxsize=4096)
def layer_theory(activation: Activation, sigma_w: float, sigma_b: float) -> LayerTheory:
    """q*, χ₁ = σ_w²·E[h'(√q*·z)²] and the critical σ_w of a layer (h, σ_w, σ_b)."""
    c = homogeneous_constant(activation)
    critical, discontinuous = critical_point(activation, sigma_b) if sigma_b <= MAX_SIGMA else (None, False)
    if not (sigma_w <= MAX_SIGMA and sigma_b <= MAX_SIGMA):  # also NaN
        growth = None
        if c is not None and math.isfinite(sigma_w) and sigma_w > 0.0:  # χ₁ = σ_w²·c at every q
            growth = math.log10(sigma_w) + 0.5 * math.log10(c)
        mu = (c, moments(activation, 1.0).d2) if c is not None else (0.0, 0.0)
        value = None if growth is None else plain(2.0 * growth)
        return LayerTheory(sigma_w, sigma_b, None, "out_of_range", value, growth, *mu, critical, discontinuous)
    point = fixed_point(activation, sigma_w, sigma_b)
    q = math.inf if point.q is None else point.q
    at = moments(activation, 1.0 if c is not None else q)  # homogeneous: the same at every q
    growth = math.log10(sigma_w) + 0.5 * math.log10(at.d1) if sigma_w > 0.0 and at.d1 > 0.0 else None
    value = sigma_w * sigma_w * at.d1
    return LayerTheory(
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        q_star=point.q,
        status=point.status,
        chi1=value if normal_or_none(value) is not None else (0.0 if growth is None else None),
        growth_log10=growth,
        mu1=at.d1,
        mu2=at.d2,
        critical_sigma_w=critical,
        critical_discontinuous=discontinuous,
    )


def chi1(activation: Activation, sigma_w: float, sigma_b: float) -> float:
    """χ₁ = σ_w²·E[h'(√q*·z)²] at the fixed point reached from q^1 (or its limits, see the module's docstring)."""
    point = fixed_point(activation, sigma_w, sigma_b)
    return sigma_w**2 * slope_moment(activation, math.inf if point.q is None else point.q)


def critical_sigma_w(activation: Activation, sigma_b: float) -> float | None:
    """The σ_w at which χ₁ = 1 for this activation and σ_b; None where χ₁ never crosses 1 (see critical_point)."""
    return critical_point(activation, sigma_b)[0]


@lru_cache(maxsize=1024)
def critical_point(activation: Activation, sigma_b: float) -> tuple[float | None, bool]:
    """The critical σ_w, and whether χ₁ jumps across 1 there rather than passing through it.

    Positively homogeneous h: 1/√E[h'(z)²] (1 linear, √2 ReLU), whatever σ_b. Otherwise first along the critical
    line parametrised by q (Schoenholz et al. 2017): a fixed point q with χ₁ = 1 has σ_w² = 1/E[h'(√q·z)²] and
    q = σ_w²·E[h(√q·z)²] + σ_b², i.e. G(q) = (q − σ_b²)·E[h'²] − E[h²] = 0; the first root of G above σ_b² is
    accepted when the iteration from q^1 does reach that q at that σ_w. Failing that, with σ_b = 0 and h(0) = 0,
    the zero fixed point: σ_w = 1/√E[h'²] at q → 0⁺ (tanh: 1), when it is reached. Failing both, χ₁ may cross 1
    where it jumps: (a) where q^1 = σ_w² + σ_b² is itself a repelling fixed point, V(q^1) = q^1 ⇔ E[h(√q^1·z)²] = 1,
    on either side of which the iteration falls to a fixed point or diverges (GELU, SiLU at small σ_b); (b) at
    σ_w = 1/√E[h'²] in the limit q → ∞, where the variance starts to diverge (softplus). The smallest of (a), (b)
    across which χ₁ − 1 changes sign is taken; failing all, a bracketed root of χ₁(σ_w) − 1 over [0.01, 100].
    """
    c = homogeneous_constant(activation)
    if c is not None:
        return (1.0 / math.sqrt(c) if c > 0.0 else None), False
    floor = sigma_b**2

    def g(q: float) -> float:
        return (q - floor) * slope_moment(activation, q) - second_moment(activation, q)

    low, step = floor, max(floor, 1.0) * 1e-8
    while step <= Q_MAX_RATIO * max(floor, 1.0):
        high = floor + step
        if g(high) > 0.0:
            q = float(brentq(g, low, high, xtol=1e-300, rtol=1e-14, maxiter=200))
            sigma = _critical_at(activation, sigma_b, q)
            if sigma is not None:
                return sigma, False
            break
        low, step = high, 4.0 * step
    if sigma_b == 0.0 and float(activation.value(np.zeros(1))[0]) == 0.0:
        sigma = _critical_at(activation, 0.0, 0.0)
        if sigma is not None:
            return sigma, False
    jumps = [s for s in (_repelling_start(activation, sigma_b), _divergence_edge(activation)) if s is not None]
    crossing = [s for s in sorted(jumps) if _crosses(activation, s, sigma_b)]
    if crossing:
        return crossing[0], True
    sigma = _critical_by_bisection(activation, sigma_b)
    return sigma, sigma is not None and abs(chi1(activation, sigma, sigma_b) - 1.0) > 1e-6


def _repelling_start(activation: Activation, sigma_b: float) -> float | None:
    """σ_w = √(q − σ_b²) for the first q > σ_b² with E[h(√q·z)²] = 1, where V(q^1) = q^1; None if there is none."""
    floor = sigma_b**2

    def excess(q: float) -> float:
        return second_moment(activation, q) - 1.0

    if excess(floor) >= 0.0:
        return None
    low, step = floor, max(floor, 1.0) * 1e-4
    while step <= Q_MAX_RATIO * max(floor, 1.0):
        high = floor + step
        if excess(high) >= 0.0:
            q = float(brentq(excess, low, high, xtol=1e-300, rtol=1e-14, maxiter=200))
            return math.sqrt(q - floor) if q > floor else None
        low, step = high, 4.0 * step
    return None


def _divergence_edge(activation: Activation) -> float | None:
    """1/√E[h'²] in the limit q → ∞; None for h' → 0 there (bounded h)."""
    limit = moments(activation, math.inf).d1
    return 1.0 / math.sqrt(limit) if limit > 0.0 else None


def _crosses(activation: Activation, sigma: float, sigma_b: float) -> bool:
    """Whether χ₁ − 1 changes sign between σ_w = σ·(1 − 1e-7) and σ·(1 + 1e-7)."""
    below = chi1(activation, sigma * (1.0 - 1e-7), sigma_b) - 1.0
    above = chi1(activation, sigma * (1.0 + 1e-7), sigma_b) - 1.0
    return below * above <= 0.0


def _critical_at(activation: Activation, sigma_b: float, q: float) -> float | None:
    """σ_w = 1/√E[h'(√q·z)²] if the iteration from q^1 at that σ_w does settle at q (to 1e-8), else None."""
    d1 = slope_moment(activation, q)
    if not d1 > 0.0:
        return None
    sigma = 1.0 / math.sqrt(d1)
    reached = fixed_point(activation, sigma, sigma_b).q
    if reached is None or abs(reached - q) > 1e-8 * max(q, 1e-12):
        return None
    return sigma


def _critical_by_bisection(activation: Activation, sigma_b: float) -> float | None:
    grid = np.geomspace(1e-2, 1e2, 17)
    values = [chi1(activation, float(s), sigma_b) - 1.0 for s in grid]
    for k in range(len(grid) - 1):
        if values[k] == 0.0:
            return float(grid[k])
        if values[k] * values[k + 1] < 0.0:
            root = brentq(lambda s: chi1(activation, s, sigma_b) - 1.0, grid[k], grid[k + 1], xtol=1e-14, rtol=1e-13)
            return float(root)
    return None


@dataclass(frozen=True)
class LayerMeanField:
    """One layer's mean-field numbers and the flags that qualify them."""

    theory: LayerTheory
    flags: tuple[str, ...]


@dataclass(frozen=True)
class NetworkMeanField:
    """Every layer's mean-field numbers and the network's: ``predicted_growth_log10`` = ½·Σ_j log10 χ₁,j, the
    predicted log10 of the root-mean-square singular value of ∂a_L/∂a_0 (None where some χ₁ = 0 or is unknown:
    ``known`` tells which), and
    ``critical_gain``, the median over layers of gain·σ_w,crit/σ_w (gain 1 for explicit weights)."""

    layers: tuple[LayerMeanField, ...]
    predicted_growth_log10: float | None
    critical_gain: float | None
    modelled: bool = True
    """False for a network with residual layers, whose skips the prediction does not model."""

    @property
    def known(self) -> bool:
        """Whether the prediction is modelled and every layer's χ₁ is known (see LayerTheory.known)."""
        return self.modelled and all(layer.theory.known for layer in self.layers)

    @property
    def chi1_geometric_mean(self) -> float | None:
        """(∏_j χ₁,j)^{1/L} where it is a normal float64; None where some χ₁ = 0 or is unknown."""
        if self.predicted_growth_log10 is None:
            return None
        return plain(2.0 * self.predicted_growth_log10 / len(self.layers))

    @property
    def uniform(self) -> bool:
        """Whether every layer has the same χ₁."""
        first = self.layers[0].theory.chi1
        return all(layer.theory.chi1 == first for layer in self.layers)


def layer_sigmas(network: Network, drive: float = 0.0) -> list[tuple[float, float]]:
    """(σ_w, σ_b) of each layer: for an init recipe from its formulas, σ_w = √fan_in·std(scheme, fan_in, fan_out,
    gain) and σ_b = bias_std; for explicit weights the empirical σ_w = √(fan_in·Var(A_j)), σ_b = √Var(b_j) (0 without
    a bias), variances over all entries (a convolution's fan_in is c_in·kh·kw and its entries the kernel's: the
    same mean field as a dense layer, Xiao et al. 2018). A recurrent network's input drive U x_t adds its mean
    square ``drive`` to σ_b², as a bias of that variance would (Chen, Pennington & Schoenholz 2018)."""
    recipe = network.recipe
    sigmas = []
    for layer in network.layers:
        n_out, n_in = layer.weight.shape
        if recipe is not None:
            std = SCHEMES[recipe.scheme].std(n_in, n_out, recipe.gain, recipe.std)
            sigmas.append((std * math.sqrt(n_in), recipe.bias_std))
        else:
            sigma_b = 0.0 if layer.bias is None else _std(layer.bias)
            sigma_w = math.sqrt(layer.weight.fan_in) * _std(layer.weight.entries)
            sigmas.append((sigma_w, math.hypot(sigma_b, math.sqrt(drive))))
    return sigmas


def _std(values: Array) -> float:
    """The population std of all entries, scaled by the largest |entry| first so that squares cannot overflow."""
    largest = float(np.abs(values).max())
    return largest * float(np.std(values / largest)) if largest > 0.0 else 0.0


def network_meanfield(network: Network, drive: float = 0.0) -> NetworkMeanField:
    """The mean-field numbers of every layer (see :func:`layer_theory`) and of the whole network.

    A residual layer's numbers are its branch h(A a + b)'s, as if repeated without the skip (flag ``residual``):
    the network's prediction, which does not model skips, is then unknown."""
    layers = []
    for layer, (sigma_w, sigma_b) in zip(network.layers, layer_sigmas(network, drive), strict=True):
        theory = layer_theory(layer.activation, sigma_w, sigma_b)
        residual = ("residual",) if layer.skip is not None else ()
        layers.append(LayerMeanField(theory, _flags(theory) + residual))
    modelled = all(layer.skip is None for layer in network.layers)
    growths = [layer.theory.growth_log10 for layer in layers]
    total = None if any(g is None for g in growths) or not modelled else math.fsum(g for g in growths if g is not None)
    gain = 1.0 if network.gain is None else network.gain
    ratios = sorted(
        layer.theory.critical_sigma_w / layer.theory.sigma_w
        for layer in layers
        if layer.theory.critical_sigma_w is not None and 0.0 < layer.theory.sigma_w < math.inf
    )
    critical_gain = None
    if ratios:
        middle = len(ratios) // 2
        median = ratios[middle] if len(ratios) % 2 else math.sqrt(ratios[middle - 1] * ratios[middle])
        critical_gain = normal_or_none(gain * median)
    return NetworkMeanField(tuple(layers), total, critical_gain if modelled else None, modelled)


def _flags(theory: LayerTheory) -> tuple[str, ...]:
    """q_diverges, q_marginal, out_of_range (σ_w or σ_b above MAX_SIGMA), critical (|χ₁ − 1| ≤ CRITICAL_RTOL),
    chi1_zero, no_critical_sigma_w, critical_sigma_w_discontinuous (χ₁ jumps across 1 there: the fixed point
    reached from q^1 changes branch)."""
    flags = []
    if theory.status == "out_of_range":
        flags.append("out_of_range")
    if theory.status == "diverges":
        flags.append("q_diverges")
    if theory.status == "marginal":
        flags.append("q_marginal")
    if theory.critical:
        flags.append("critical")
    if theory.growth_log10 is None and theory.known:
        flags.append("chi1_zero")
    if theory.critical_sigma_w is None:
        flags.append("no_critical_sigma_w")
    elif theory.critical_discontinuous:
        flags.append("critical_sigma_w_discontinuous")
    return tuple(flags)
