"""The suggested gain: the factor c on every weight that brings the true input–output growth into the stable band.

With every map A_j scaled to c·A_j (biases and skip paths kept; for an init recipe, the gain multiplied by c,
since every scheme's std is linear in the gain and the draws do not depend on it), the true growth is

    f(c) = log10 max_b ‖∂a_L/∂a_0‖₂   on the same probes.

The suggestion is a c with f(c) near the middle t of the thresholds (within a quarter of the band), so that the
network re-analysed with it is stable:

- ``unchanged``: the network is stable already; c = 1.
- ``homogeneous``: every layer is plain, bias-free and positively homogeneous (linear, ReLU, leaky ReLU), so
  z_j scales by c^j, no unit changes side and f(c) = f(1) + L·log10 c exactly: c = 10^((t − f(1))/L).
- ``search``: otherwise c is found by trials, each a forward pass and the backward product of the scaled network
  (``trial_growth``), in u = log10 c: a first step from mean field (c at χ₁ = 1) or from f(1)/L, then steps of
  the secant through the nearest trials on either side of t (bisection where a side is ±∞), at most ``trials``.
- ``mean_field``: no trial fitted the work limit: the mean-field critical gain, not checked on the probes.

Where no trial lands in the band, there is no suggested gain, and ``remedy`` says what would help instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from service.conv import Conv2d
from service.linear import Dense, Linear
from service.network import Network
from service.verdict import Thresholds

Method = Literal["unchanged", "homogeneous", "search", "mean_field"]
TRIALS = 8
"""The most trials a search takes (fewer where the work limit leaves room for fewer: api.sizes)."""
LOG10_RANGE = 4.0
"""The search looks for c within 10^±LOG10_RANGE of the current scale."""


@dataclass(frozen=True)
class Suggestion:
    """``factor``: c, the scale for every weight (None: no gain helps, see ``remedy``); ``growth_log10``: f(c)
    where it was computed (exactly, or by a trial)."""

    factor: float | None
    method: Method | None
    growth_log10: float | None
    remedy: str | None = None


def suggest(
    network: Network,
    growth_log10: float,
    thresholds: Thresholds,
    growth: Callable[[float], float],
    mean_field_factor: float | None,
    trials: int,
) -> Suggestion:
    """The suggestion for ``network`` whose true growth is ``growth_log10`` (−inf for an exact zero, +inf past an
    overflow); ``growth(c)`` is f(c), a trial (service.analysis.trial_growth of ``scaled_network``)."""
    target = (thresholds.vanishing_log10 + thresholds.exploding_log10) / 2.0
    margin = (thresholds.exploding_log10 - thresholds.vanishing_log10) / 4.0
    if thresholds.vanishing_log10 <= growth_log10 <= thresholds.exploding_log10:
        return Suggestion(1.0, "unchanged", growth_log10)
    depth = len(network.layers)
    if math.isfinite(growth_log10) and homogeneous(network):
        factor = 10.0 ** ((target - growth_log10) / depth)
        return Suggestion(factor, "homogeneous", target)
    if trials == 0 or not scalable(network):
        if mean_field_factor is None:
            return Suggestion(None, None, None, remedy(network))
        return Suggestion(mean_field_factor, "mean_field", None)
    return _search(network, growth_log10, target, margin, growth, mean_field_factor, trials)


def _search(
    network: Network,
    f0: float,
    target: float,
    margin: float,
    growth: Callable[[float], float],
    mean_field_factor: float | None,
    trials: int,
) -> Suggestion:
    """Trials in u = log10 c: keep the nearest u below and above the target (``low``, ``high``); step by the secant
    between them, by bisection where one side is infinite, and by f's slope L per unit of u while only one side
    is known."""
    depth = len(network.layers)
    best: tuple[float, float] | None = None  # the stable trial nearest the target
    points = [(0.0, f0)]
    u: float | None = _first_step(f0, target, depth, mean_field_factor)
    while u is not None and len(points) <= trials:
        f = growth(10.0**u)
        points.append((u, f))
        if abs(f - target) <= 2.0 * margin and (best is None or abs(f - target) < abs(best[1] - target)):
            best = (u, f)
        if abs(f - target) <= margin:
            break
        low, high = _bracket(points, target)
        u = _next_step(low, high, target, depth)
    if best is None:
        return Suggestion(None, None, None, remedy(network))
    return Suggestion(10.0 ** best[0], "search", best[1])


def _first_step(f0: float, target: float, depth: int, mean_field_factor: float | None) -> float:
    """u at the mean-field critical gain where there is one, else the homogeneous step (t − f(1))/L."""
    if mean_field_factor is not None and mean_field_factor > 0:
        return _clip(math.log10(mean_field_factor))
    if not math.isfinite(f0):
        return -1.0 if f0 > 0 else 1.0
    return _clip((target - f0) / depth)


def _bracket(points: list[tuple[float, float]], target: float) -> tuple[tuple[float, float] | None, ...]:
    """The trial with f < target of the largest u, and the one with f > target of the smallest u."""
    below = [p for p in points if p[1] < target]
    above = [p for p in points if p[1] > target]
    low = max(below, key=lambda p: p[0]) if below else None
    high = min(above, key=lambda p: p[0]) if above else None
    return low, high


def _next_step(
    low: tuple[float, float] | None, high: tuple[float, float] | None, target: float, depth: int
) -> float | None:
    """The next u, or None when the range 10^±LOG10_RANGE holds no better one."""
    if low is not None and high is not None:
        (u0, f0), (u1, f1) = low, high
        if math.isfinite(f0) and math.isfinite(f1) and f1 > f0:
            u = u0 + (target - f0) * (u1 - u0) / (f1 - f0)
            # keep a secant step off the ends, so that a curved f still closes in from both sides
            inner = 0.1 * abs(u1 - u0)
            return min(max(u, min(u0, u1) + inner), max(u0, u1) - inner)
        return (u0 + u1) / 2.0
    known = low or high
    assert known is not None
    u, f = known
    step = (target - f) / depth if math.isfinite(f) else (1.0 if f < target else -1.0)
    step = math.copysign(max(abs(step), 0.05), step)
    nxt = _clip(u + 2.0 * step)  # twice the homogeneous step: f grows slower than L·u in a saturating net
    return None if nxt == u else nxt


def _clip(u: float) -> float:
    return min(max(u, -LOG10_RANGE), LOG10_RANGE)


def homogeneous(network: Network) -> bool:
    """Whether f(c) = f(1) + L·log10 c exactly: plain, bias-free (or zero-bias) layers with positively homogeneous
    activations, not recurrent (whose input drive enters every step)."""
    return (
        network.recurrent is None
        and scalable(network)
        and all(
            layer.skip is None and layer.activation.homogeneous and (layer.bias is None or not np.any(layer.bias))
            for layer in network.layers
        )
    )


def scalable(network: Network) -> bool:
    """Whether every map can be scaled (dense matrices and convolutions)."""
    return all(isinstance(layer.weight, Dense | Conv2d) for layer in network.layers)


def scaled_network(network: Network, factor: float) -> Network:
    """The network with every map (and a recurrent network's input weight) times ``factor``; a shared map stays
    shared."""
    made: dict[int, Linear] = {}

    def scale(weight: Linear) -> Linear:
        if id(weight) not in made:
            made[id(weight)] = _scaled(weight, factor)
        return made[id(weight)]

    layers = tuple(replace(layer, weight=scale(layer.weight)) for layer in network.layers)
    recurrent = network.recurrent
    if recurrent is not None:
        recurrent = replace(recurrent, input_weight=Dense(factor * recurrent.input_weight.matrix))
    return replace(network, layers=layers, recurrent=recurrent)


def _scaled(weight: Linear, factor: float) -> Linear:
    if isinstance(weight, Dense):
        return Dense(factor * weight.matrix)
    if isinstance(weight, Conv2d):
        return replace(weight, kernel=factor * weight.kernel)
    raise TypeError(f"cannot scale a {type(weight).__name__}")


def remedy(network: Network) -> str:
    """What would help where no gain does: for residual layers, smaller branches; for a saturating activation
    (sup|h'| < 1, e.g. sigmoid), another activation; else another scheme or fewer layers."""
    if any(layer.skip is not None for layer in network.layers):
        return (
            "no single gain makes it stable: scale each residual branch down (by about 1/√depth) or normalise the "
            "blocks"
        )
    if any(layer.activation.derivative_bound < 1.0 for layer in network.layers):
        return "no gain makes it stable: use an activation with slope 1 at 0 (tanh, ReLU) or fewer layers"
    return "no gain makes it stable: try an orthogonal init or fewer layers"
