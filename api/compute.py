"""Compute slots: CPU-heavy work runs in worker threads, at most ``compute_slots`` at a time, never on the loop.

The cores are shared out between the slots: each slot's BLAS calls get ``cores // slots`` threads (at least
one). Without that, two slots of two OpenBLAS threads each on two cores spin against each other, and a
four-second analysis was measured taking three minutes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from threadpoolctl import threadpool_limits

T = TypeVar("T")


def blas_threads(slots: int) -> int:
    """BLAS threads per compute slot: the machine's cores shared out evenly."""
    return max(1, (os.cpu_count() or 1) // slots)


class ComputeSlots:
    def __init__(self, slots: int) -> None:
        self.limiter = CapacityLimiter(slots)
        self.blas_threads = blas_threads(slots)
        threadpool_limits(limits=self.blas_threads, user_api="blas")

    async def run(self, function: Callable[[], T]) -> T:
        """Run ``function`` in a worker thread once a slot is free."""
        return await to_thread.run_sync(function, limiter=self.limiter)
