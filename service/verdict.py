"""Verdicts (vanishing / exploding / stable) from a total growth in log10, and the advice sentence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from service.text import counted

if TYPE_CHECKING:
    from service.advice import Suggestion

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
    gain: float | None,
    overflow: int | None,
    meanfield: MeanFieldAdvice | None,
    suggestion: Suggestion,
    suggested: float | None,
    underflow: int | None = None,
) -> str:
    """Two sentences: what the gradients do (the true norms, and what mean field predicts for a typical direction),
    and what to do (service.advice's suggestion: the gain to use, or what would help where no gain does)."""
    happens = _what_happens(verdict, depth, norm_log10, overflow, underflow, meanfield)
    return f"{happens} {_what_to_do(gain, suggestion, suggested)}"


def power(log10: float) -> str:
    """10^x with x to two decimals: 10^-5.36, 10^0 (never 10^-1.52e-08 nor 10^-0)."""
    return f"10^{round(log10, 2) + 0.0:g}"


def _what_happens(
    verdict: VerdictName,
    depth: int,
    norm_log10: float | None,
    overflow: int | None,
    underflow: int | None,
    m: MeanFieldAdvice | None,
) -> str:
    if overflow is not None:
        return f"The forward pass overflows float64 at layer {overflow + 1}: activations explode."
    if underflow is not None:
        return (
            f"The forward pass underflows float64 at layer {underflow + 1}, whose activation needs its "
            "pre-activations themselves (only linear, relu and leaky_relu carry a scale): activations vanish."
        )
    if norm_log10 is None:
        return "Gradients vanish completely: ∂a_L/∂a_0 is exactly zero for every probe (a dead layer)."
    word = {"vanishing": "vanish", "exploding": "explode", "stable": "are stable"}[verdict]
    head = f"Gradients {word}: ‖∂a_L/∂a_0‖ reaches {power(norm_log10)} over {counted(depth, 'layer')}"
    if m is None:
        return f"{head}."
    if m.growth_log10 is None or m.chi1 is None:
        return f"{head}; mean field predicts they vanish completely (χ₁ = 0 in some layer)."
    per_layer = f"χ₁ = {m.chi1:.3g} per layer" + ("" if m.uniform else ", geometric mean")
    return f"{head}; mean field predicts {power(m.growth_log10)} ({per_layer})."


def _what_to_do(gain: float | None, suggestion: Suggestion, suggested: float | None) -> str:
    if suggested is None or suggestion.method is None:
        text = suggestion.remedy or "no gain makes it stable"
        return f"{text[0].upper()}{text[1:]}."
    if suggestion.method == "unchanged":
        return "No change is needed."
    if gain is None:
        fix = f"Scale every weight by {suggested:.3g}"
    else:
        now, new = _distinct(gain, suggested)
        fix = f"Use an init gain of {new} (now {now})"
    if suggestion.method == "mean_field":
        return f"{fix}: mean field puts it at the edge of chaos (not checked on the probes: no trial fitted the limit)."
    assert suggestion.growth_log10 is not None
    exact = " exactly (the network is positively homogeneous)" if suggestion.method == "homogeneous" else ""
    return f"{fix}: ‖∂a_L/∂a_0‖ is then {power(suggestion.growth_log10)}{exact}."


def _distinct(a: float, b: float) -> tuple[str, str]:
    """a and b to 3 significant digits, or to as many more (up to 6) as they need to differ."""
    for digits in range(3, 7):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb:
            return sa, sb
    return sa, sb
