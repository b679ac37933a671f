"""Compute slots: CPU-heavy work runs in worker threads, at most ``compute_slots`` at a time, never on the loop.

BLAS runs on one thread (``python -m api`` and the container set ``OPENBLAS_NUM_THREADS`` and its peers to 1
before numpy is loaded), and the cores are shared out by layers instead: the slots' analyses hand their layers'
norms — each weight's and each layer's per-probe Jacobian norms, independent of one another — to one pool of as
many threads as the process has cores (``layers``), first come first served. A lone analysis so uses every core,
and two at once share them; networks of small layers keep theirs in the slot's thread
(service.analysis.SPREAD_MIN_FLOPS). BLAS threads on top of these would oversubscribe the cores
(docs/performance.md).

When every slot is busy a request waits, in a queue of at most ``queue_size`` requests, for at most
``queue_timeout`` seconds; past either bound it is refused with 503 and ``Retry-After``. A request holds its
slot until its worker thread has finished, even if the client has gone (a thread cannot be interrupted).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from anyio import CapacityLimiter, WouldBlock, fail_after, to_thread

from api.problems import ProblemError

T = TypeVar("T")

BUSY = "urn:jacspec:problem:busy"

INLINE_FLOPS = 1e8
"""Analyses estimated below this many floating-point operations (service.cost's, a few milliseconds) run on the
event loop."""


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU quota: ``"<quota> <period>"`` in microseconds, or ``"max <period>"`` for none."""


def available_cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup quota (a container's ``--cpus``).

    ``os.cpu_count()`` counts the host's cores: a replica limited to 2 CPUs on a 64-core host would otherwise
    give each slot 32 BLAS threads, the oversubscription the slots exist to prevent.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


class ComputeSlots:
    """At most ``slots`` functions running at once in worker threads, with a bounded wait for a slot."""

    def __init__(self, slots: int, queue_timeout: float = 10.0, queue_size: int = 16, processes: int = 1) -> None:
        self.limiter = CapacityLimiter(slots)
        self.threads = CapacityLimiter(slots)
        """The worker threads' own limiter: only a slot's holder starts one, so it never makes anyone wait."""
        self.queue_timeout = queue_timeout
        self.queue_size = queue_size
        self.retry_after = max(1, math.ceil(queue_timeout))
        self.layer_threads = max(1, available_cores() // processes)
        """The layer pool's size: one thread per core, the cores shared out between the server's ``processes``
        (JACSPEC_WORKERS)."""
        self.layers: ThreadPoolExecutor | None = None
        """The analyses' layer tasks (service.analysis.analyse's executor), from ``start`` to ``close``; without it
        an analysis computes its layers in its own thread."""

    def start(self) -> None:
        """Start the layer pool (the app's lifespan does, at startup)."""
        if self.layers is None:
            self.layers = ThreadPoolExecutor(self.layer_threads, thread_name_prefix="jacspec-layers")

    def close(self) -> None:
        """Stop the layer pool's threads once their tasks are done."""
        if self.layers is not None:
            self.layers.shutdown(wait=False)
            self.layers = None

    async def run(self, function: Callable[[], T], *, inline: bool = False) -> T:
        """Run ``function`` in a worker thread once a slot is free; 503 if none frees up in time.

        ``inline`` runs it on the event loop instead, at once and without a slot: for work of a few milliseconds
        the thread hop and the GIL's hand-overs between the loop and the thread cost more than they save, and the
        loop runs one such function at a time anyway. Small analyses are so never starved by heavy ones.
        """
        if inline:
            return function()
        await self._acquire()
        try:
            return await to_thread.run_sync(function, limiter=self.threads)
        finally:
            self.limiter.release()

    def refuse_if_full(self) -> None:
        """503 at once when every slot is busy and the queue is full: called before a body is read, so that a
        request which could only be refused does not hold its body in memory first."""
        if self.limiter.available_tokens == 0 and self.limiter.statistics().tasks_waiting >= self.queue_size:
            raise self._full()

    async def _acquire(self) -> None:
        """Take a slot: at once if one is free, else after waiting in the queue (503 when full or too long)."""
        try:
            self.limiter.acquire_nowait()
            return
        except WouldBlock:
            pass
        if self.limiter.statistics().tasks_waiting >= self.queue_size:
            raise self._full()
        try:
            with fail_after(self.queue_timeout):
                await self.limiter.acquire()
        except TimeoutError:
            raise self._busy(
                f"all {self._slots()} compute slots stayed busy for {self.queue_timeout:g} s (JACSPEC_QUEUE_TIMEOUT)"
            ) from None

    def _full(self) -> ProblemError:
        return self._busy(f"all {self._slots()} compute slots are busy and {self.queue_size} requests are waiting")

    def _slots(self) -> int:
        return int(self.limiter.total_tokens)

    def _busy(self, detail: str) -> ProblemError:
        return ProblemError(
            503,
            "Service Unavailable",
            f"{detail}; retry in {self.retry_after} s",
            type_=BUSY,
            headers={"Retry-After": str(self.retry_after)},
        )
