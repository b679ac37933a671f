"""Verdicts (vanishing / exploding / stable) from a total growth in log10, and the advice sentence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

VerdictName = Literal["vanishing", "exploding", "stable"]


@dataclass(frozen=True)
class Thresholds:
    """A total growth ‖∂a_L/∂a_0‖ below 10^vanishing_log10 vanishes, above 10^exploding_log10 explodes."""

    vanishing_log10: float = -2.0
    exploding_log10: float = 2.0


def classify(total_log10: float | None, thresholds: Thresholds) -> VerdictName:
    """The verdict for a total growth of 10^total_log10; None (an exact zero) vanishes."""
    if total_log10 is None or total_log10 < thresholds.vanishing_log10:
        return "vanishing"
    if total_log10 > thresholds.exploding_log10:
        return "exploding"
    return "stable"


def critical_gain(gain: float, rate_log10: float | None) -> float | None:
    """The gain at which the bound grows by a factor 1 per layer.

    Every σ_j scales linearly with the init gain, so σ_j·sup|h_j'| = 10^rate at ``gain`` becomes 1 at
    ``gain·10^(−rate)``. None where the rate is undefined (a zero factor) or the gain would not be a float.
    """
    if rate_log10 is None:
        return None
    suggested = gain * 10.0 ** (-rate_log10) if abs(rate_log10) < 300 else math.inf
    return suggested if math.isfinite(suggested) and suggested > 0 else None


@dataclass(frozen=True)
class MeanFieldAdvice:
    """What the advice quotes of the mean-field theory (service.meanfield): the predicted growth
    log10 ∏_j χ₁,j^{1/2} (None where some χ₁ = 0), χ₁ per layer (its geometric mean where the layers differ)
    and the gain at which χ₁ = 1."""

    growth_log10: float | None
    chi1: float | None
    uniform: bool
    critical_gain: float | None


def advise(
    verdict: VerdictName,
    depth: int,
    norm_log10: float | None,
    rate_log10: float | None,
    gain: float | None,
    suggested_gain: float | None,
    overflow: int | None,
    meanfield: MeanFieldAdvice | None = None,
    underflow: int | None = None,
) -> str:
    """Plain sentences: what the true norms say; what mean-field theory predicts for a typical direction and the
    gain at which χ₁ = 1 (the edge of chaos); the gain that makes the bound's growth per layer 1."""
    if overflow is not None:
        head = f"The forward pass overflows float64 at layer {overflow + 1}: activations explode."
    elif underflow is not None:
        head = (
            f"The forward pass underflows float64 at layer {underflow + 1}, whose activation needs its "
            "pre-activations themselves (only linear, relu and leaky_relu carry a scale): activations vanish."
        )
    elif norm_log10 is None:
        head = "Gradients vanish completely: ∂a_L/∂a_0 is exactly zero for every probe (a dead layer)."
    else:
        word = {"vanishing": "vanish", "exploding": "explode", "stable": "are stable"}[verdict]
        head = f"Gradients {word}: ‖∂a_L/∂a_0‖ reaches 10^{norm_log10:.3g} over {depth} layers."
    if meanfield is not None:
        head = f"{head} {_meanfield_sentence(meanfield, gain)}"
    if suggested_gain is None or rate_log10 is None:
        return head
    if gain is None:
        fix = f"scaling every weight by {suggested_gain:.4g}"
    else:
        fix = f"an init gain of {suggested_gain:.4g} (now {gain:.4g})"
    return f"{head} The bound grows by 10^{rate_log10:.3g} per layer; {fix} makes that growth 1 per layer."


def _meanfield_sentence(m: MeanFieldAdvice, gain: float | None) -> str:
    """E.g. "Mean-field theory predicts a typical growth of 10^-3.2 (χ₁ = 0.63 per layer); an init gain of 1.41
    (now 1) makes χ₁ = 1, the edge of chaos." """
    if m.growth_log10 is None or m.chi1 is None:
        return "Mean-field theory predicts that gradients vanish completely (χ₁ = 0 in some layer)."
    per_layer = f"χ₁ = {m.chi1:.4g} per layer" if m.uniform else f"χ₁ = {m.chi1:.4g} per layer, geometric mean"
    growth = round(m.growth_log10, 3) + 0.0  # 10^0, not 10^7.71e-16 (nor 10^-0)
    prediction = f"Mean-field theory predicts a typical growth of 10^{growth:.3g} ({per_layer})"
    target = 1.0 if gain is None else gain
    if m.critical_gain is None:
        return f"{prediction}; no gain makes χ₁ = 1."
    if abs(m.critical_gain / target - 1.0) <= 1e-6:
        return f"{prediction}: the init is at the edge of chaos, χ₁ = 1."
    if gain is None:
        fix = f"scaling every weight by {m.critical_gain:.4g}"
    else:
        fix = f"an init gain of {m.critical_gain:.4g} (now {gain:.4g})"
    return f"{prediction}; {fix} makes χ₁ = 1, the edge of chaos."
