"""Products carried as base-10 logarithms, so that depth 2000 × factor 1.5 (= 10^352) never overflows.

A product ∏ f_i is accumulated as mantissa·2^exponent (``math.frexp`` after every factor), which keeps all
the precision of a plain float product with none of its overflow or underflow; its ``log10`` is
``log10(mantissa) + exponent·log10(2)``. A plain float is given only where the value is a normal float64.
"""

from __future__ import annotations

import math
import sys


class LogProduct:
    """A running product of non-negative factors, exact up to rounding, with no overflow."""

    def __init__(self) -> None:
        self.mantissa = 1.0
        self.exponent = 0

    def multiply(self, factor: float) -> None:
        mantissa, exponent = math.frexp(self.mantissa * factor)
        self.mantissa = mantissa
        self.exponent += exponent

    @property
    def log10(self) -> float | None:
        """log10 of the product, or None where the product is 0."""
        if self.mantissa == 0.0:
            return None
        return math.log10(self.mantissa) + self.exponent * math.log10(2.0)

    @property
    def value(self) -> float | None:
        """The product as a plain float, or None where it over- or underflows a normal float64."""
        if self.mantissa == 0.0:
            return 0.0
        try:
            return normal_or_none(math.ldexp(self.mantissa, self.exponent))
        except OverflowError:
            return None


def plain(log10: float | None) -> float | None:
    """10**log10 where that is a normal float64, else None."""
    if log10 is None:
        return None
    try:
        return normal_or_none(10.0**log10)
    except OverflowError:
        return None


def normal_or_none(x: float) -> float | None:
    """x where it is a normal float64 (not 0, subnormal or infinite), else None."""
    return x if sys.float_info.min <= abs(x) < math.inf else None


def log10_or_none(x: float) -> float | None:
    """log10(x) for x > 0; None for 0 (JSON has no −Infinity)."""
    return math.log10(x) if x > 0 else None
