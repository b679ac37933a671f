"""finite_float64: the exact widening numpy's astype gives, and the first non-finite entry numpy's isfinite finds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import InvalidInputError
from service.network import FINITE_BLOCK, finite_float64

SIZE = 3 * FINITE_BLOCK + 17  # several blocks and a ragged last one
DTYPES = [np.float16, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_widening_is_numpys_exact_astype(dtype: type[np.floating]) -> None:
    values = np.random.default_rng(0).standard_normal((SIZE // 17, 17)).astype(dtype)
    widened = finite_float64(values, ("w",))
    assert widened.dtype == np.float64
    assert widened.shape == values.shape
    assert np.array_equal(widened, values.astype(np.float64))


def test_float64_is_checked_in_place_unless_copied() -> None:
    values = np.random.default_rng(1).standard_normal(SIZE)
    assert np.shares_memory(finite_float64(values, ("w",)), values)
    unaligned = np.frombuffer(memoryview(bytearray(b"x" + values.tobytes()))[1:], "<f8")
    copied = finite_float64(unaligned, ("w",), copy=True)
    assert not np.shares_memory(copied, unaligned)
    assert copied.flags.aligned
    assert np.array_equal(copied, values)


def test_finite_entries_whose_sum_overflows_pass() -> None:
    """A block summing to +inf from finite entries is searched, found clean and let through."""
    values = np.full(SIZE, np.finfo(np.float64).max / 2)
    assert np.array_equal(finite_float64(values, ("w",)), values)


@given(
    dtype=st.sampled_from(DTYPES),
    bad=st.lists(st.integers(0, SIZE - 1), min_size=1, max_size=4),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_the_first_bad_entry_is_named(dtype: type[np.floating], bad: list[int], value: float) -> None:
    values = np.ones(SIZE, dtype)
    values[bad] = value
    with pytest.raises(InvalidInputError) as caught:
        finite_float64(values, ("network", "layers", 0, "weight"))
    assert caught.value.location == ("network", "layers", 0, "weight")
    assert f"contains {value} at flat index {min(bad)};" in caught.value.message
