"""Verdicts and advice: the tanh/orthogonal textbook cases of vanishing and exploding gradients, the critical
gain (for orthogonal W every σ_j equals the gain, and sup tanh' = 1, so the bound's rate is log10(gain) and the
gain that makes it 0 is exactly 1), and the classify / critical_gain arithmetic."""

from __future__ import annotations

import math

import pytest

from service.activations import make_activation
from service.analysis import Analysis, Options, analyse
from service.network import InitRecipe, build_network
from service.probes import ProbeSpec, make_probes
from service.verdict import MeanFieldAdvice, Thresholds, advise, classify, critical_gain

WIDTH, DEPTH = 256, 50


def _tanh_network(gain: float) -> Analysis:
    net = build_network(
        InitRecipe(widths=(WIDTH,) * (DEPTH + 1), scheme="orthogonal", activation=make_activation("tanh"), gain=gain)
    )
    x, y = make_probes(ProbeSpec(count=4), WIDTH, WIDTH)
    return analyse(net, x, y, Options())


@pytest.fixture(scope="module")
def half() -> Analysis:
    return _tanh_network(0.5)


@pytest.fixture(scope="module")
def double() -> Analysis:
    return _tanh_network(2.0)


def test_gain_half_vanishes(half: Analysis) -> None:
    """Gain 0.5: every ‖J_j‖ ≤ 0.5, so ‖∂a_L/∂a_0‖ ≤ 0.5^50 ≈ 10^−15.05 — "vanishing" by the true norm and by the
    bound; the bound is exactly 50·log10 0.5 (to 1e-10) and the suggested gain 0.5·10^(log10 2) = 1 (to 1e-9)."""
    s = half.summary
    assert s.verdict == "vanishing"
    assert s.bound_verdict == "vanishing"
    assert s.input_bound_log10 == pytest.approx(DEPTH * math.log10(0.5), abs=1e-10)
    assert s.rate_log10 == pytest.approx(math.log10(0.5), abs=1e-12)
    assert s.input_norm_log10 is not None
    assert s.input_norm_log10 <= DEPTH * math.log10(0.5) + 1e-9
    assert s.gain == 0.5
    assert s.suggested_gain == pytest.approx(1.0, rel=1e-9)
    assert f"{s.suggested_gain:.4g}" in s.advice
    assert "(now 0.5)" in s.advice
    assert "vanish" in s.advice


def test_gain_two_explodes(double: Analysis) -> None:
    """Gain 2 puts tanh in its chaotic regime: the true ‖∂a_L/∂a_0‖ exceeds 10^2 ("exploding"); the bound is
    50·log10 2 ≈ 15.05 and the suggested gain 2·10^(−log10 2) = 1 (to 1e-9)."""
    s = double.summary
    assert s.input_norm_log10 is not None
    assert s.input_norm_log10 > 2.0
    assert s.verdict == "exploding"
    assert s.bound_verdict == "exploding"
    assert s.input_bound_log10 == pytest.approx(DEPTH * math.log10(2.0), abs=1e-10)
    assert s.input_norm_log10 <= DEPTH * math.log10(2.0) + 1e-9
    assert s.suggested_gain == pytest.approx(1.0, rel=1e-9)
    assert f"{s.suggested_gain:.4g}" in s.advice
    assert "explode" in s.advice


@pytest.mark.parametrize(
    ("total", "verdict"),
    [
        (None, "vanishing"),
        (-1e300, "vanishing"),
        (-2.0000001, "vanishing"),
        (-2.0, "stable"),
        (0.0, "stable"),
        (2.0, "stable"),
        (2.0000001, "exploding"),
        (352.18, "exploding"),
    ],
)
def test_classify_default_thresholds(total: float | None, verdict: str) -> None:
    """Below 10^−2 vanishes, above 10^2 explodes, the closed interval between is stable; an exact zero vanishes."""
    assert classify(total, Thresholds()) == verdict


def test_classify_custom_thresholds() -> None:
    """The thresholds are the caller's: with (−5, 1), −3 is stable and 1.5 explodes."""
    t = Thresholds(vanishing_log10=-5.0, exploding_log10=1.0)
    assert classify(-3.0, t) == "stable"
    assert classify(-5.5, t) == "vanishing"
    assert classify(1.5, t) == "exploding"
    assert classify(1.0, t) == "stable"


@pytest.mark.parametrize(("gain", "rate"), [(0.5, math.log10(0.5)), (2.0, math.log10(2.0)), (1.3, 0.1), (3.0, -0.7)])
def test_critical_gain(gain: float, rate: float) -> None:
    """σ_j scales linearly with the gain, so the gain that turns a per-layer factor 10^rate into 1 is
    gain·10^(−rate) (to 1e-12)."""
    got = critical_gain(gain, rate)
    assert got is not None
    assert got == pytest.approx(gain / 10.0**rate, rel=1e-12)
    assert math.log10(got / gain) + rate == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("gain", "rate"), [(1.0, None), (1.0, 400.0), (1.0, -400.0), (1e10, -299.5)])
def test_critical_gain_undefined(gain: float, rate: float | None) -> None:
    """No suggestion for a zero bound, or where gain·10^(−rate) is not a positive finite float."""
    assert critical_gain(gain, rate) is None


def test_advise_sentences() -> None:
    """The advice names the overflow layer (1-based), an exact zero, or the true growth, then the fix."""
    overflow = advise("exploding", 10, None, 0.5, 2.0, 0.6325, overflow=3)
    assert "layer 4" in overflow
    assert "0.6325" in overflow
    dead = advise("vanishing", 10, None, None, None, None, overflow=None)
    assert "zero" in dead
    stable = advise("stable", 10, 0.25, 0.02, None, 0.955, overflow=None)
    assert "stable" in stable
    assert "scaling every weight by 0.955" in stable


def test_advice_quotes_mean_field() -> None:
    """The mean-field sentence: the predicted growth, χ₁ per layer and the gain at which χ₁ = 1 — or that the init
    is already there, or that no gain gets there; for explicit weights, the factor to scale every weight by."""
    off = MeanFieldAdvice(growth_log10=-3.21, chi1=0.63, uniform=True, critical_gain=1.41)
    recipe = advise("vanishing", 16, -3.5, -0.2, 1.0, 1.58, None, off)
    assert "Mean-field theory predicts a typical growth of 10^-3.21 (χ₁ = 0.63 per layer)" in recipe
    assert "an init gain of 1.41 (now 1) makes χ₁ = 1" in recipe
    assert recipe.index("Mean-field") < recipe.index("The bound grows")
    explicit = advise("vanishing", 16, -3.5, -0.2, None, 1.58, None, off)
    assert "scaling every weight by 1.41 makes χ₁ = 1" in explicit
    mixed = MeanFieldAdvice(growth_log10=7.7e-16, chi1=1.0, uniform=False, critical_gain=1.0)
    at_edge = advise("stable", 16, 0.97, 0.45, 1.0, 0.357, None, mixed)
    assert "10^0 (χ₁ = 1 per layer, geometric mean): the init is at the edge of chaos" in at_edge
    dead = advise("vanishing", 3, None, None, None, None, None, MeanFieldAdvice(None, None, True, None))
    assert "χ₁ = 0 in some layer" in dead
    nowhere = advise("stable", 3, 0.1, 0.1, 1.0, 0.8, None, MeanFieldAdvice(0.3, 1.58, True, None))
    assert "no gain makes χ₁ = 1" in nowhere


def test_analysis_advice_names_the_critical_gain(half: Analysis) -> None:
    """tanh, orthogonal, gain 0.5, no bias: q* = 0, χ₁ = σ_w² = 0.25 per layer, predicted growth 10^(25·log10 0.25)
    = 10^-15.1 over 50 layers, and gain 1 (σ_w = 1 = the critical σ_w of tanh at σ_b = 0) makes χ₁ = 1."""
    advice = half.summary.advice
    assert f"10^{round(DEPTH * math.log10(0.5), 3):.3g} (χ₁ = 0.25 per layer)" in advice
    assert "an init gain of 1 (now 0.5) makes χ₁ = 1, the edge of chaos" in advice
