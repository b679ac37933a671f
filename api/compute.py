"""The compute pool: numerical work runs in worker processes, at most one task per worker, never in the server.

The server's event loop reads, validates and encodes; every analysis (and every other computation a route needs)
is a task sent to one of ``workers`` processes (``api.worker``), so that no numerical call, whether it holds the
GIL or not, can delay another request. Workers are forked from multiprocessing's ``forkserver``, never from the
threaded server itself: the fork server imports numpy and the analysis code once, so a worker, and the
replacement of one, starts in milliseconds. Each worker runs BLAS on one thread and computes one analysis at a
time; the workers are the parallelism.

When every worker is busy a request waits, in a queue of at most ``queue_size`` requests, for at most
``queue_timeout`` seconds; past either bound it is refused with 503 and ``Retry-After``.

Each task has a ``Deadline`` (which the task may tighten, telling the server a ``Deadline`` it found in the
request it validated): past it the worker is killed (SIGKILL: a signal handler would wait for the LAPACK
call in progress to return) and replaced, and the answer is 413 (``DEADLINE``) naming the limit. A client that
disconnects (``http.disconnect`` on the request's ``receive``) has its worker killed and replaced the same way, at
once. A worker that runs out of its memory (``MemoryError`` under RLIMIT_AS) is answered 413 (``MEMORY``); one
that dies (a signal, the OOM killer) is replaced and the request answered 503 with ``Retry-After``: the death
says nothing certain about the request (the memory limit is what would blame it), so a retry may well succeed.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

from anyio import (
    CancelScope,
    CapacityLimiter,
    WouldBlock,
    create_task_group,
    fail_after,
    move_on_after,
    to_thread,
    wait_readable,
)
from starlette.types import Receive

from api import worker
from api.problems import ProblemError
from service.errors import InvalidInputError
from service.text import counted

BUSY = "urn:jacspec:problem:busy"
DEADLINE = "urn:jacspec:problem:deadline"
MEMORY = "urn:jacspec:problem:memory"
WORKER_LOST = "urn:jacspec:problem:worker-lost"

SHARED_BYTES = 1 << 20
"""Byte payloads larger than this reach a worker through shared memory rather than pickled through its pipe."""
COPY_CHUNK = 8 << 20
"""Bytes copied into shared memory per step: the server thread that copies lets go of the GIL between steps."""
LOST_GRACE = 5.0
"""Seconds a worker whose pipe failed is given to end by itself before it is killed."""

PRELOAD = ("api.onethread", "api.worker", "api.work", "service.bounds")
"""What the fork server imports, in order, before forking workers: BLAS on one thread (before numpy), then the
worker loop and everything its tasks use (numpy, scipy, the contract models), so that no worker imports them
again."""

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU quota: ``"<quota> <period>"`` in microseconds, or ``"max <period>"`` for none."""


def available_cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup quota (a container's ``--cpus``).

    ``os.cpu_count()`` counts the host's cores: a replica limited to 2 CPUs on a 64-core host would otherwise
    start 64 workers.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def busy(detail: str, retry_after: int, type_: str = BUSY, headers: dict[str, str] | None = None) -> ProblemError:
    """503 problem+json: ``detail``, then when to retry, also as ``Retry-After`` (with ``headers`` besides)."""
    return ProblemError(
        503,
        "Service Unavailable",
        f"{detail}; retry in {retry_after} s",
        type_=type_,
        headers={"Retry-After": str(retry_after), **(headers or {})},
    )


SHM = Path("/dev/shm")
"""Where multiprocessing's shared memory lives on Linux: a tmpfs, 64 MiB by default in a container (compose's
``shm_size`` sets it)."""


class _Shared:
    """The bytes of the blocks this process has in shared memory now: a block is sparse until written, so the
    tmpfs's free space does not show the blocks still being filled."""

    live = 0


def room_in_shared_memory(size: int, shm: Path = SHM) -> bool:
    """Whether a block of ``size`` bytes fits in the tmpfs beside the blocks already made: writing past a full
    tmpfs is a SIGBUS, not an error, so a block is made only where it fits."""
    try:
        stats = os.statvfs(shm)
    except OSError:
        return False
    return _Shared.live + size <= stats.f_bavail * stats.f_frsize


@asynccontextmanager
async def sharing(payload: object) -> AsyncIterator[object]:
    """``payload`` as a task's argument: bytes up to SHARED_BYTES as bytes, larger ones copied (in a thread) into a
    new block of shared memory, named by an ``api.worker.Shared``; anything else as it is. The block is unlinked at
    the end, whatever happened meanwhile (an error, a deadline, a disconnect). Where the shared memory has no room
    for the block, the bytes go through the worker's pipe instead."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        yield payload
        return
    size = len(payload)
    if size <= SHARED_BYTES or not room_in_shared_memory(size):
        yield bytes(payload)  # a memoryview does not pickle
        return
    block = SharedMemory(create=True, size=size)
    _Shared.live += size
    assert block.buf is not None
    try:
        await to_thread.run_sync(_copy, block.buf, memoryview(payload))
        yield worker.Shared(block.name, size)
    finally:
        _Shared.live -= size
        block.close()
        block.unlink()


def _copy(target: memoryview, source: memoryview) -> None:
    for begin in range(0, len(source), COPY_CHUNK):
        target[begin : begin + COPY_CHUNK] = source[begin : begin + COPY_CHUNK]


@dataclass(frozen=True)
class Deadline:
    """At most ``seconds`` of a worker's time, set by ``limit`` (the setting or field named in the 413);
    ``advice`` says what would fit."""

    seconds: float
    limit: str
    advice: str = ""


def outcome_value(outcome: worker.Outcome | None, memory: str) -> Any:
    """A task's value, or the error its outcome stands for: an input error as itself, a refusal as its problem, too
    little memory as a 413 saying it needed more than ``memory`` (what a worker may use, and the setting), a
    crash as a RuntimeError with the worker's traceback."""
    if isinstance(outcome, worker.Done):
        return outcome.value
    if isinstance(outcome, worker.Invalid):
        raise InvalidInputError(outcome.location, outcome.message)
    if isinstance(outcome, worker.Refused):
        raise outcome.error
    if isinstance(outcome, worker.OutOfMemory):
        raise ProblemError(
            413,
            "Content Too Large",
            f"the analysis needed more memory than {memory}: a smaller network, fewer probes or no spectrum would fit",
            type_=MEMORY,
        )
    assert isinstance(outcome, worker.Crashed)
    raise RuntimeError(f"a compute task failed in its worker:\n{outcome.traceback}")


def late(deadline: Deadline) -> ProblemError:
    """The 413 of work that did not finish within ``deadline``: the limit it names, and what would fit."""
    detail = f"the analysis did not finish within {deadline.seconds:g} s ({deadline.limit})"
    if deadline.advice:
        detail += f"; {deadline.advice}"
    return ProblemError(413, "Content Too Large", detail, type_=DEADLINE)


@dataclass(eq=False)
class Worker:
    """A worker process and the server's end of its pipe."""

    process: BaseProcess
    connection: Connection

    def kill(self) -> None:
        """SIGKILL (a task in a C call ignores anything gentler until it returns), wait for it, close the pipe."""
        if self.process.pid is not None and self.process.exitcode is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()
        self.connection.close()


def _send(connection: Connection, task: worker.Task) -> None:
    """``connection.send(task)`` on a blocking descriptor: uvloop (granian's event loop) leaves a descriptor it has
    waited on non-blocking (libuv's ``uv_poll_init``), and a message larger than the pipe's buffer would then fail
    half-sent with EAGAIN, the worker left waiting for the rest."""
    os.set_blocking(connection.fileno(), True)
    connection.send(task)


def _recv(connection: Connection) -> worker.Outcome | worker.Note:
    """``connection.recv()`` on a blocking descriptor (see ``_send``)."""
    os.set_blocking(connection.fileno(), True)
    message: worker.Outcome | worker.Note = connection.recv()
    return message


def _ended(current: Worker) -> int | None:
    """The exit code of a worker whose pipe failed, killed first if it has not ended within LOST_GRACE seconds
    (a pipe can fail with the worker alive, which a bare join would wait on for ever)."""
    current.process.join(LOST_GRACE)
    exitcode = current.process.exitcode
    current.kill()
    return exitcode


class ComputePool:
    """At most ``workers`` tasks running at once, each in a worker process, with a bounded wait for one."""

    def __init__(
        self, workers: int, queue_timeout: float = 10.0, queue_size: int = 16, memory_bytes: int | None = None
    ) -> None:
        self.workers = workers
        self.limiter = CapacityLimiter(workers)
        """One token per worker: a token's holder owns one idle worker, taken from ``idle``."""
        self.queue_timeout = queue_timeout
        self.queue_size = queue_size
        self.memory_bytes = memory_bytes
        self.retry_after = max(1, math.ceil(queue_timeout))
        self.idle: list[Worker] = []
        self.running: set[Worker] = set()
        self.context = multiprocessing.get_context("forkserver")

    async def start(self) -> None:
        """Start the workers (the app's lifespan does, at startup; the first start also starts the fork server)."""
        self.context.set_forkserver_preload(list(PRELOAD))
        while len(self.idle) + len(self.running) < self.workers:
            self.idle.append(await to_thread.run_sync(self._spawn))

    async def close(self) -> None:
        """Kill every worker (at shutdown, once the server has finished its requests)."""
        workers = [*self.idle, *self.running]
        self.idle.clear()
        self.running.clear()
        for each in workers:
            await to_thread.run_sync(each.kill)

    async def run(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: Deadline,
        receive: Receive | None = None,
        *,
        patient: bool = False,
        on_progress: Callable[[worker.Progress], None] | None = None,
    ) -> Any:
        """``function(*args)`` in a worker once one is free (503 if none frees up in time), within ``deadline``.

        ``function`` and ``args`` are pickled to the worker (module-level functions; large bytes as
        ``api.worker.Shared``). With ``receive`` (the request's, its body read), a client that disconnects has
        the worker killed and gets a 400 that nobody reads. ``patient`` (a job) waits for a worker as long as it
        takes, outside the bounded queue; ``on_progress`` is given each ``worker.Progress`` the task tells. A
        worker that did not end its task normally (cancelled, past its deadline) is killed and replaced before its
        token is given back, so the next request finds a live one.
        """
        if patient:
            await self.limiter.acquire()
        else:
            await self._acquire()
        current = self.idle.pop()
        self.running.add(current)
        outcome: worker.Outcome | None = None
        try:
            outcome = await self._watched(current, (function, args), deadline, receive, on_progress)
        finally:
            with CancelScope(shield=True):
                self.running.discard(current)
                if outcome is None or isinstance(outcome, worker.OutOfMemory):
                    current = await to_thread.run_sync(self._replace, current)
                self.idle.append(current)
                self.limiter.release()
        return self._value(outcome)

    def refuse_if_full(self) -> None:
        """503 at once when every worker is busy and the queue is full: called before a body is read, so that a
        request which could only be refused does not hold its body in memory first."""
        if self.limiter.available_tokens == 0 and self.limiter.statistics().tasks_waiting >= self.queue_size:
            raise self._full()

    async def _watched(
        self,
        current: Worker,
        task: worker.Task,
        deadline: Deadline,
        receive: Receive | None,
        on_progress: Callable[[worker.Progress], None] | None = None,
    ) -> worker.Outcome:
        """The worker's outcome of ``task``; 413 past the deadline (or a tighter one the task tells), 400 once the
        client has gone; the progress it tells to ``on_progress``."""
        gone = False
        outcome: worker.Outcome | None = None
        failure: Exception | None = None
        async with create_task_group() as group:

            async def watch() -> None:
                nonlocal gone
                assert receive is not None
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone = True
                group.cancel_scope.cancel()

            if receive is not None:
                group.start_soon(watch)
            try:
                with move_on_after(deadline.seconds) as scope:
                    started = scope.deadline - deadline.seconds

                    def tightened(note: Any) -> None:
                        nonlocal deadline
                        if isinstance(note, Deadline) and note.seconds < deadline.seconds:
                            deadline = note
                            scope.deadline = started + note.seconds
                        elif isinstance(note, worker.Progress) and on_progress is not None:
                            on_progress(note)

                    outcome = await self._exchange(current, task, tightened)
            except Exception as exc:  # raised after the group, not wrapped in an exception group
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if gone:
            raise ProblemError(400, "Bad Request", "the client closed the connection before the analysis was done")
        if outcome is None:
            raise self._late(deadline)
        return outcome

    async def _exchange(self, current: Worker, task: worker.Task, noted: Callable[[Any], None]) -> worker.Outcome:
        """Send the task, then wait for its messages without a thread and read each in one (it may be large):
        ``noted`` is given every ``worker.Note``'s message, the outcome is returned; 503 if the worker dies
        meanwhile."""
        connection = current.connection
        try:
            await to_thread.run_sync(_send, connection, task)
            while True:
                await wait_readable(connection)
                message: worker.Outcome | worker.Note = await to_thread.run_sync(_recv, connection)
                if not isinstance(message, worker.Note):
                    return message
                noted(message.message)
        except (EOFError, OSError):
            raise self._lost(await to_thread.run_sync(_ended, current)) from None

    def _spawn(self) -> Worker:
        """A new worker (blocks for the fork server's answer: call it in a thread)."""
        here, there = self.context.Pipe()
        process = self.context.Process(
            target=worker.serve, args=(there, self.memory_bytes), name="jacspec-compute", daemon=True
        )
        process.start()
        there.close()
        return Worker(process, here)

    def _replace(self, current: Worker) -> Worker:
        """Kill ``current`` (if still alive) and start its successor."""
        current.kill()
        return self._spawn()

    def _value(self, outcome: worker.Outcome | None) -> Any:
        """The task's value, or the error its outcome stands for (:func:`outcome_value`)."""
        return outcome_value(
            outcome, f"a compute worker may use ({self.memory_bytes} bytes, JACSPEC_WORKER_MEMORY_BYTES)"
        )

    def _late(self, deadline: Deadline) -> ProblemError:
        return late(deadline)

    def _lost(self, exitcode: int | None) -> ProblemError:
        how = f"was killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exited ({exitcode})"
        return self._busy(f"the compute worker running this analysis {how} and has been replaced", WORKER_LOST)

    async def _acquire(self) -> None:
        """Take a worker's token: at once if one is free, else after waiting in the queue (503 when full or too
        long)."""
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
                f"all {counted(self.workers, 'compute worker')} stayed busy for {self.queue_timeout:g} s "
                "(JACSPEC_QUEUE_TIMEOUT)"
            ) from None

    def _full(self) -> ProblemError:
        return self._busy(
            f"all {counted(self.workers, 'compute worker')} are busy and {self.queue_size} requests are waiting"
        )

    def _busy(self, detail: str, type_: str = BUSY) -> ProblemError:
        return busy(detail, self.retry_after, type_)
