"""The dense solver lets other threads run: while a large solve runs in a worker thread, the main thread keeps
getting the interpreter (as an event loop sharing the process must).

Asserted by counting: the main thread ticks (sleeping a millisecond between ticks) until the worker is done, and
the worker reads the count just before and just after its solve. A solve that held the GIL throughout would let
no tick in between (one at most, at its very start).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from service import spectral

Array = NDArray[np.float64]

SIZE = 1500
"""A Gram matrix this large takes over a hundred milliseconds to solve: a hundred of the main thread's ticks."""
MIN_TICKS = 20


def _grams(count: int) -> Array:
    """``count`` Gram matrices of one layer's probes alike, D_b W Wᵀ D_b (so gram_max solves one, tests the rest)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((SIZE, SIZE)) / np.sqrt(SIZE)
    gram = w @ w.T
    d = 1 - np.tanh(0.1 * rng.standard_normal((count, SIZE))) ** 2
    out: Array = d[:, :, None] * gram * d[:, None, :]
    return out


def _ticks_while(solve: Callable[[], float]) -> tuple[int, float]:
    """The main thread's ticks while ``solve`` ran in another thread, and its result."""
    ticks = [0]
    during: list[int] = []
    result: list[float] = []
    done = threading.Event()

    def work() -> None:
        before = ticks[0]
        result.append(solve())
        during.append(ticks[0] - before)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        time.sleep(0.001)
        ticks[0] += 1
    worker.join()
    return during[0], result[0]


@pytest.mark.parametrize("kind", ["gram_norms", "gram_max"])
def test_a_large_dense_solve_lets_the_main_thread_run(kind: str) -> None:
    """gram_norms (one eigenvalue solve) and gram_max (a solve and a Cholesky test) on 1500 × 1500 Grams: the
    main thread ticks at least MIN_TICKS times meanwhile, and the answers are numpy's largest eigenvalue."""
    grams = _grams(1 if kind == "gram_norms" else 2)
    expected = max(float(np.sqrt(np.linalg.eigvalsh(g)[-1])) for g in grams)
    with threadpool_limits(1, user_api="blas"):
        if kind == "gram_norms":
            ticks, value = _ticks_while(lambda: float(spectral.gram_norms(grams)[0]))
        else:
            ticks, value = _ticks_while(lambda: spectral.gram_max(grams, np.ones(2)))
    assert value == pytest.approx(expected, rel=1e-13)
    assert ticks >= MIN_TICKS
