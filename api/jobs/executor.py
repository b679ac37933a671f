"""Where a job's work runs: the protocol, and ``LocalExecutor`` over this server's compute pool.

An executor runs ``function(*args)`` (a module-level function of ``api.work``, its first argument the request's
payload) within ``deadline`` and answers its ``EncodedReport``; it hands every ``api.worker.Progress`` the work
tells to ``on_progress`` (on the event loop). Cancelling the calling anyio scope stops the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from api.compute import ComputePool, Deadline, sharing
from api.encode import EncodedReport
from api.worker import Progress


class Executor(Protocol):
    async def start(self) -> None:
        """Get ready (the app's lifespan calls this at startup, after the compute pool has started)."""

    async def close(self) -> None:
        """Let go of what ``start`` took (at shutdown)."""

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

    def __init__(self, pool: ComputePool) -> None:
        self.pool = pool

    async def start(self) -> None:
        """Nothing: the app's lifespan starts the pool itself."""

    async def close(self) -> None:
        """Nothing: the app's lifespan closes the pool itself."""

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
