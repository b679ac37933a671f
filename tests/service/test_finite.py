"""finite_float64: the exact widening numpy's astype gives, and the first non-finite entry numpy's isfinite finds."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import InvalidInputError
from service.network import FINITE_BLOCK, FINITE_TASK, finite_float64

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


LARGE = 3 * FINITE_TASK + 17  # three runs of tasks and a ragged fourth


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


@pytest.mark.parametrize("dtype", DTYPES)
def test_widening_as_an_executors_tasks_is_numpys_astype(dtype: type[np.floating], pool: ThreadPoolExecutor) -> None:
    values = np.random.default_rng(2).standard_normal(LARGE).astype(dtype)
    for copy in (False, True):
        widened = finite_float64(values, ("w",), copy=copy, executor=pool)
        assert np.array_equal(widened, values.astype(np.float64))
        assert np.shares_memory(widened, values) == (dtype == np.float64 and not copy)


@pytest.mark.parametrize("bad", [[LARGE - 1], [FINITE_TASK + 5, 3 * FINITE_TASK], [2 * FINITE_TASK + 1, 7]])
def test_the_first_bad_entry_over_an_executors_tasks_is_named(bad: list[int], pool: ThreadPoolExecutor) -> None:
    """Bad entries in several tasks' runs: the one with the lowest flat index is named, as without an executor."""
    values = np.ones(LARGE, np.float32)
    values[bad] = np.nan
    with pytest.raises(InvalidInputError) as caught:
        finite_float64(values, ("w",), executor=pool)
    assert f"contains nan at flat index {min(bad)};" in caught.value.message
