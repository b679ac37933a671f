"""Products carried as log10 (service.logscale) and the seed's bound arithmetic (service.bounds), against
exact rationals, math.fsum of logs and Python's own float powers."""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np
import pytest

from service.bounds import bound_from_factors, bound_from_power
from service.logscale import LogProduct, log10_or_none, normal_or_none, plain
from service.verdict import Thresholds

LOG10_2 = math.log10(2.0)


def _product(factor: float, count: int) -> LogProduct:
    p = LogProduct()
    for _ in range(count):
        p.multiply(factor)
    return p


def test_half_to_the_tenth() -> None:
    """0.5^10 = 2^−10 = 9.765625e-4 exactly (every step is exact in binary); log10 = 10·log10(0.5) to 1e-12."""
    p = _product(0.5, 10)
    assert p.log10 == pytest.approx(10 * math.log10(0.5), abs=1e-12)
    assert p.log10 == pytest.approx(-3.0103, abs=5e-5)
    assert p.value == 9.765625e-4


def test_one_and_a_half_to_the_hundredth() -> None:
    """1.5^100 ≈ 4.0656e17: within 1e-14 relative of float 1.5**100 and of the exact rational 3^100/2^100
    (100 roundings of ≤ 2^−53 each give at most 1.1e-14)."""
    p = _product(1.5, 100)
    exact = float(Fraction(3**100, 2**100))
    assert p.value is not None
    assert p.value == pytest.approx(1.5**100, rel=1e-14)
    assert p.value == pytest.approx(exact, rel=1e-14)
    assert p.value == pytest.approx(4.0656e17, rel=1e-4)
    assert p.log10 == pytest.approx(100 * math.log10(1.5), abs=1e-12)


def test_one_and_a_half_to_the_two_thousandth_overflows_float_only() -> None:
    """1.5^2000 ≈ 10^352.18 has log10 = 2000·log10(1.5) (to 1e-9) but no float64 value."""
    p = _product(1.5, 2000)
    assert p.log10 == pytest.approx(2000 * math.log10(1.5), abs=1e-9)
    assert p.log10 == pytest.approx(352.18, abs=5e-3)
    assert p.value is None


def test_zero_factor() -> None:
    """A zero factor makes the product 0: log10 None (JSON has no −Infinity), value 0.0, and it stays 0."""
    p = LogProduct()
    p.multiply(3.0)
    p.multiply(0.0)
    assert p.log10 is None
    assert p.value == 0.0
    p.multiply(1e300)
    assert p.log10 is None
    assert p.value == 0.0


def test_underflow() -> None:
    """0.1^400 = 10^−400 underflows float64: value None (not 0, not subnormal), log10 = −400 to 1e-11
    (400 roundings plus the representation error of 0.1, 400·log10(1 + 5.6e-17) ≈ 1e-14)."""
    p = _product(0.1, 400)
    assert p.value is None
    assert p.log10 == pytest.approx(-400.0, abs=1e-11)


def test_empty_product_is_one() -> None:
    """The empty product is 1: log10 0, value 1."""
    p = LogProduct()
    assert p.log10 == 0.0
    assert p.value == 1.0


def test_value_at_the_edges_of_float64() -> None:
    """2^1023 is the largest power of two that is a float; 2^1024 is not. 2^−1022 is the smallest normal;
    2^−1023 is subnormal and so reported as None."""
    assert _product(2.0, 1023).value == 2.0**1023
    assert _product(2.0, 1024).value is None
    assert _product(0.5, 1022).value == sys.float_info.min
    assert _product(0.5, 1023).value is None
    assert _product(2.0, 1024).log10 == pytest.approx(1024 * LOG10_2, abs=1e-12)


def test_plain_and_helpers() -> None:
    """plain(l) = 10^l where that is a normal float; normal_or_none and log10_or_none refuse 0, subnormals, ∞."""
    assert plain(None) is None
    assert plain(2.0) == pytest.approx(100.0, rel=1e-15)
    assert plain(-3.0) == pytest.approx(1e-3, rel=1e-15)
    assert plain(309.0) is None
    assert plain(-400.0) is None
    assert normal_or_none(5e-324) is None
    assert normal_or_none(0.0) is None
    assert normal_or_none(math.inf) is None
    assert normal_or_none(-2.5) == -2.5
    assert log10_or_none(0.0) is None
    assert log10_or_none(1000.0) == pytest.approx(3.0, abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suffix_log10_is_cumulative_sum_of_logs(seed: int) -> None:
    """suffix_log10[j] = Σ_{i>j} log10 f_i (math.fsum, exact up to the logs' own rounding) to 1e-11 for 300
    factors spanning 10^±3; the total, rate and plain value agree too."""
    rng = np.random.default_rng(seed)
    factors = [float(f) for f in 10.0 ** rng.uniform(-3.0, 3.0, 300)]
    b = bound_from_factors(factors, Thresholds())
    logs = [math.log10(f) for f in factors]
    assert b.suffix_log10 is not None
    assert len(b.suffix_log10) == len(factors)
    for j, got in enumerate(b.suffix_log10):
        assert got == pytest.approx(math.fsum(logs[j + 1 :]), abs=1e-11)
    total = math.fsum(logs)
    assert b.depth == 300
    assert b.log10 == pytest.approx(total, abs=1e-11)
    assert b.rate_log10 == pytest.approx(total / 300, abs=1e-13)
    expected_value = 10.0**total if abs(total) < 300 else None
    if expected_value is None:
        assert b.value is None
    else:
        assert b.value == pytest.approx(expected_value, rel=1e-10)


def test_suffix_with_a_zero_factor() -> None:
    """A zero factor at position k zeroes every suffix that contains it (j < k) and the total, not the others."""
    factors = [2.0, 3.0, 0.0, 5.0, 7.0]
    b = bound_from_factors(factors, Thresholds())
    assert b.suffix_log10 is not None
    assert b.suffix_log10[:2] == (None, None)
    assert b.suffix_log10[2] == pytest.approx(math.log10(35.0), abs=1e-15)
    assert b.suffix_log10[3] == pytest.approx(math.log10(7.0), abs=1e-15)
    assert b.suffix_log10[4] == 0.0
    assert b.log10 is None
    assert b.value == 0.0
    assert b.rate_log10 is None
    assert b.verdict == "vanishing"


@pytest.mark.parametrize(
    ("factor", "depth", "verdict"),
    [(1.5, 2000, "exploding"), (0.5, 10, "vanishing"), (1.01, 100, "stable"), (0.1, 400, "vanishing")],
)
def test_bound_from_power(factor: float, depth: int, verdict: str) -> None:
    """f^L: log10 = L·log10(f), value = f**L where it is a normal float, and the verdict from the thresholds."""
    b = bound_from_power(factor, depth, Thresholds())
    assert b.log10 == pytest.approx(depth * math.log10(factor), rel=1e-15)
    assert b.rate_log10 == pytest.approx(math.log10(factor), rel=1e-15)
    exact = Fraction(factor) ** depth
    if Fraction(sys.float_info.min) <= exact < Fraction(sys.float_info.max):
        assert b.value == pytest.approx(float(exact), rel=1e-15)
    else:
        assert b.value is None
    assert b.verdict == verdict


def test_bound_from_power_zero_factor() -> None:
    """0^L = 0: log10 None, value 0, vanishing."""
    b = bound_from_power(0.0, 5, Thresholds())
    assert (b.log10, b.value, b.rate_log10, b.verdict) == (None, 0.0, None, "vanishing")


def test_factors_and_power_agree() -> None:
    """L equal factors give the same bound as (factor, L), to 1e-9 in log10."""
    a = bound_from_factors([1.5] * 2000, Thresholds())
    b = bound_from_power(1.5, 2000, Thresholds())
    assert a.log10 is not None
    assert b.log10 is not None
    assert a.log10 == pytest.approx(b.log10, abs=1e-9)
    assert a.value is None
    assert b.value is None
    assert a.verdict == b.verdict == "exploding"
