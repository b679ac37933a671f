"""Compute slots: CPU-heavy work runs in worker threads, at most ``compute_slots`` at a time, never on the loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from anyio import CapacityLimiter, to_thread

T = TypeVar("T")


class ComputeSlots:
    def __init__(self, slots: int) -> None:
        self.limiter = CapacityLimiter(slots)

    async def run(self, function: Callable[[], T]) -> T:
        """Run ``function`` in a worker thread once a slot is free."""
        return await to_thread.run_sync(function, limiter=self.limiter)
