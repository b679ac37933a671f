"""Where a job's work runs: the protocol, and ``LocalExecutor`` over this server's compute pool.

An executor runs ``function(*args)`` (a module-level function of ``api.work``, its first argument the request's
payload) within ``deadline`` and answers its ``EncodedReport``; it hands every ``api.worker.Progress`` the work
tells to ``on_progress`` (on the event loop). Cancelling the calling anyio scope stops the work.

A runner waits for ``ready()`` before it claims a job; ``run`` raises ``UnavailableError`` when the executor cannot take
the job after all (nothing of it ran: the job goes back to the queue).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, Protocol

from api.compute import ComputePool, Deadline, sharing
from api.encode import EncodedReport
from api.worker import Progress

ClusterState = Literal["connected", "disconnected"]


class UnavailableError(Exception):
    """The executor cannot run a job now (its cluster is not connected), and nothing of the job has run."""


class Executor(Protocol):
    def serving(self) -> AbstractAsyncContextManager[None]:
        """Ready to run jobs within (the app's lifespan enters it after the compute pool has started, and leaves it
        after the runners have stopped)."""

    @property
    def cluster(self) -> ClusterState | None:
        """Whether the cluster is connected now; None without a cluster (what /healthz and /readyz tell)."""

    async def ready(self) -> None:
        """Return once a job can start (at once for the local pool; once connected for a cluster)."""

    async def run(
        self,
        function: Callable[..., EncodedReport],
        args: tuple[Any, ...],
        deadline: Deadline,
        on_progress: Callable[[Progress], None],
    ) -> EncodedReport: ...


class LocalExecutor:
    """The compute pool's workers, shared with POST /v1/analyses: a job waits for a free worker as long as it
    takes (no 503), its payload in shared memory when large; cancelled, its worker is killed and replaced."""

    cluster = None

    def __init__(self, pool: ComputePool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Nothing to do: the app's lifespan starts and closes the pool itself."""
        yield

    async def ready(self) -> None:
        """At once: the pool is always there."""

    async def run(
        self,
        function: Callable[..., EncodedReport],
        args: tuple[Any, ...],
        deadline: Deadline,
        on_progress: Callable[[Progress], None],
    ) -> EncodedReport:
        payload, *rest = args
        async with sharing(payload) as source:
            report: EncodedReport = await self.pool.run(
                function, (source, *rest), deadline, patient=True, on_progress=on_progress
            )
        return report
