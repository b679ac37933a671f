"""The seed's arithmetic: the product bound ∏ σ_j·γ_j from per-layer factors, or f^L from (factor, depth)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.logscale import LogProduct, log10_or_none, normal_or_none
from service.verdict import Thresholds, VerdictName, classify


@dataclass(frozen=True)
class Bound:
    """A product of ``depth`` non-negative factors, as log10 and (where it fits) as a plain float."""

    depth: int
    log10: float | None
    value: float | None
    rate_log10: float | None
    verdict: VerdictName
    suffix_log10: tuple[float | None, ...] | None = None
    """For per-layer factors: entry j (0-based) is log10 ∏_{i>j} f_i, the bound on ‖∂a_L/∂a_{j+1}‖."""


def bound_from_factors(factors: Sequence[float], thresholds: Thresholds) -> Bound:
    """∏ f_i over the given factors, with every suffix product ∏_{i>j} f_i (accumulated once, from the end)."""
    product = LogProduct()
    suffix: list[float | None] = []
    for factor in reversed(factors):
        suffix.append(product.log10)
        product.multiply(factor)
    log10 = product.log10
    rate = None if log10 is None else log10 / len(factors)
    return Bound(len(factors), log10, product.value, rate, classify(log10, thresholds), tuple(reversed(suffix)))


def bound_from_power(factor: float, depth: int, thresholds: Thresholds) -> Bound:
    """f^L: log10 = L·log10(f); the plain value from ``f**L`` itself, which rounds once."""
    rate = log10_or_none(factor)
    log10 = None if rate is None else depth * rate
    value: float | None = 0.0
    if factor > 0.0:
        try:
            value = normal_or_none(factor**depth)
        except OverflowError:
            value = None
    return Bound(depth, log10, value, rate, classify(log10, thresholds))
