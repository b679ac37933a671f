"""Verdicts and advice: the tanh/orthogonal textbook cases of vanishing and exploding gradients, the critical
gain (for orthogonal W every σ_j equals the gain, and sup tanh' = 1, so the bound's rate is log10(gain) and the
gain that makes it 0 is exactly 1), and the classify / critical_gain arithmetic."""

from __future__ import annotations

import math

import pytest

from service.activations import make_activation
from service.advice import Suggestion
from service.analysis import Analysis, Options, analyse
from service.network import InitRecipe, build_network
from service.probes import ProbeSpec, make_probes
from service.verdict import MeanFieldAdvice, Thresholds, advise, classify, critical_gain, power

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
    bound; the bound is exactly 50·log10 0.5 (to 1e-10) and the bound's gain 0.5·10^(log10 2) = 1 (to 1e-9)."""
    s = half.summary
    assert s.verdict == "vanishing"
    assert s.bound_verdict == "vanishing"
    assert s.input_bound_log10 == pytest.approx(DEPTH * math.log10(0.5), abs=1e-10)
    assert s.rate_log10 == pytest.approx(math.log10(0.5), abs=1e-12)
    assert s.input_norm_log10 is not None
    assert s.input_norm_log10 <= DEPTH * math.log10(0.5) + 1e-9
    assert s.gain == 0.5
    assert s.bound_gain == pytest.approx(1.0, rel=1e-9)
    assert s.suggestion == "search"
    assert s.suggested_gain is not None
    assert f"Use an init gain of {s.suggested_gain:.3g} (now 0.5)" in s.advice
    assert "vanish" in s.advice


def test_gain_two_explodes(double: Analysis) -> None:
    """Gain 2 puts tanh in its chaotic regime: the true ‖∂a_L/∂a_0‖ exceeds 10^2 ("exploding"); the bound is
    50·log10 2 ≈ 15.05 and the bound's gain 2·10^(−log10 2) = 1 (to 1e-9); the suggested gain is lower."""
    s = double.summary
    assert s.input_norm_log10 is not None
    assert s.input_norm_log10 > 2.0
    assert s.verdict == "exploding"
    assert s.bound_verdict == "exploding"
    assert s.input_bound_log10 == pytest.approx(DEPTH * math.log10(2.0), abs=1e-10)
    assert s.input_norm_log10 <= DEPTH * math.log10(2.0) + 1e-9
    assert s.bound_gain == pytest.approx(1.0, rel=1e-9)
    assert s.suggestion == "search"
    assert s.suggested_gain is not None
    assert s.suggested_gain < 2.0
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
    """Two sentences: what happens (the overflow layer, 1-based; an exact zero; the true growth and the mean
    field's), then what to do (the gain, the factor for explicit weights, nothing, or the remedy)."""
    found = Suggestion(0.6325, "search", 0.12)
    overflow = advise("exploding", 10, None, 2.0, 3, None, found, 1.265)
    assert overflow == (
        "The forward pass overflows float64 at layer 4: activations explode. "
        "Use an init gain of 1.26 (now 2): ‖∂a_L/∂a_0‖ is then 10^0.12."
    )
    dead = advise("vanishing", 10, None, None, None, None, Suggestion(None, None, None, "no gain helps"), None)
    assert dead.endswith("exactly zero for every probe (a dead layer). No gain helps.")
    explicit = advise("vanishing", 10, -3.0, None, None, None, Suggestion(1.5, "homogeneous", 0.0), 1.5)
    assert explicit.endswith(
        "Scale every weight by 1.5: ‖∂a_L/∂a_0‖ is then 10^0 exactly (the network is positively homogeneous)."
    )
    stable = advise("stable", 10, 0.25, 1.0, None, None, Suggestion(1.0, "unchanged", 0.25), 1.0)
    assert stable == "Gradients are stable: ‖∂a_L/∂a_0‖ reaches 10^0.25 over 10 layers. No change is needed."


def test_advice_numbers_read_well() -> None:
    """No exponent in an exponent (10^-1.52e-08 reads 10^-0), no "(now 0.5126) … 0.5126": gains are printed to as
    many digits as they need to differ."""
    assert power(-1.52e-08) == "10^0"
    assert power(-5.3612) == "10^-5.36"
    close = advise("vanishing", 10, -3.0, 0.51262, None, None, Suggestion(1.00001, "search", 0.0), 0.51263)
    assert "Use an init gain of 0.51263 (now 0.51262)" in close


def test_advice_quotes_mean_field() -> None:
    """The mean field's prediction, χ₁ per layer (its geometric mean where layers differ), or that some χ₁ = 0."""
    keep = Suggestion(1.0, "unchanged", -3.0)
    off = MeanFieldAdvice(growth_log10=-3.21, chi1=0.63, uniform=True, critical_gain=1.41)
    recipe = advise("vanishing", 16, -3.5, 1.0, None, off, keep, 1.0)
    assert "reaches 10^-3.5 over 16 layers; mean field predicts 10^-3.21 (χ₁ = 0.63 per layer)." in recipe
    mixed = MeanFieldAdvice(growth_log10=7.7e-16, chi1=1.0, uniform=False, critical_gain=1.0)
    assert "predicts 10^0 (χ₁ = 1 per layer, geometric mean)" in advise("stable", 16, 0.97, 1.0, None, mixed, keep, 1)
    dead = advise("vanishing", 3, None, None, None, MeanFieldAdvice(None, None, True, None), keep, 1.0)
    assert "zero for every probe" in dead
    zero = advise("vanishing", 3, -9.0, None, None, MeanFieldAdvice(None, None, True, None), keep, 1.0)
    assert "χ₁ = 0 in some layer" in zero
    unchecked = advise("vanishing", 3, -9.0, 1.0, None, off, Suggestion(1.41, "mean_field", None), 1.41)
    assert "Use an init gain of 1.41 (now 1): mean field puts it at the edge of chaos (not checked" in unchecked


def test_analysis_advice_quotes_the_mean_field(half: Analysis) -> None:
    """tanh, orthogonal, gain 0.5, no bias: q* = 0, χ₁ = σ_w² = 0.25 per layer, predicted growth 10^(25·log10 0.25)
    = 10^-15.05 over 50 layers."""
    advice = half.summary.advice
    assert f"mean field predicts {power(DEPTH * math.log10(0.5))} (χ₁ = 0.25 per layer)" in advice
