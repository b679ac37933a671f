"""A compute worker: a process of its own that runs one task at a time for the server (``api.compute``).

The server starts workers through multiprocessing's ``forkserver``, which imports ``api.onethread`` (BLAS on one
thread) and then this module once, before it forks any worker: numpy, scipy and the analysis code are imported
there, so that a new worker is a fork of an interpreter that has them already. A worker bounds its own address space
(``RLIMIT_AS`` = JACSPEC_WORKER_MEMORY_BYTES), so that an analysis that needs more memory gets a ``MemoryError``
rather than the machine's OOM killer.

A task is a picklable ``(function, args)``; the worker sends back an ``Outcome``: the function's value, or what went
wrong told in plain picklable terms (an input error with its location, a refusal, too little memory, a traceback).
Before it, the task may ``tell`` the server things it learns on the way (a deadline tighter than the server's). Large
byte payloads do not travel through the pipe: the server puts them in shared memory (``Shared``) and the task
names the block, which the worker maps (``attached``) without copying.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import service.analysis  # noqa: F401  (imported here so that forked workers have it already)
from api.problems import ProblemError
from service.errors import InvalidInputError, Location

NICENESS = 10
"""Workers yield the CPU to the server: when the cores are all computing, the event loop still gets one at once."""

Task = tuple[Callable[..., Any], tuple[Any, ...]]


@dataclass(frozen=True)
class Shared:
    """A block of shared memory holding ``size`` bytes, by name; the server creates and unlinks it."""

    name: str
    size: int


@dataclass(frozen=True)
class Done:
    value: Any


@dataclass(frozen=True)
class Invalid:
    """The task raised ``InvalidInputError(location, message)`` (which does not pickle as itself)."""

    location: Location
    message: str


@dataclass(frozen=True)
class Refused:
    """The task refused its request with ``error`` (a 413 of a body validated here, say)."""

    error: ProblemError


@dataclass(frozen=True)
class Note:
    """What a task tells the server while it runs, before its outcome (``tell``)."""

    message: Any


@dataclass(frozen=True)
class Progress:
    """What a task tells of its progress: ``done`` of ``total`` parts, counted in ``unit`` ("layers", "blocks",
    "tensors" or "stages"); ``total`` None while unknown. ``seconds``: the work's estimated seconds of one core
    (``service.cost``), told once by a task that learns it (a JSON body validated in the worker), else None."""

    done: int
    total: int | None
    unit: str
    seconds: float | None = None


@dataclass(frozen=True)
class OutOfMemory:
    """The task needed more memory than the worker's RLIMIT_AS allows."""


@dataclass(frozen=True)
class Crashed:
    """The task raised something else: a bug, told by its traceback."""

    traceback: str


Outcome = Done | Invalid | Refused | OutOfMemory | Crashed


class _Pipe:
    """The worker's end of its pipe, while it serves (None in any other process)."""

    connection: Connection | None = None


class _Sink:
    """Where ``tell`` sends messages outside a worker (a Dask task's), when set."""

    function: Callable[[Any], None] | None = None


def set_sink(sink: Callable[[Any], None] | None) -> None:
    """Have ``tell`` hand its messages to ``sink`` in a process that is no worker of the pool (None: drop them)."""
    _Sink.function = sink


def tell(message: Any) -> None:
    """Send ``message`` to the server at once, as a ``Note``, while the task goes on: through the pipe in a worker,
    to the sink elsewhere (``set_sink``), or nowhere."""
    if _Pipe.connection is not None:
        _Pipe.connection.send(Note(message))
    elif _Sink.function is not None:
        _Sink.function(message)


def serve(connection: Connection, memory_bytes: int | None) -> None:
    """The worker's life: lower its priority, bound its memory, then run the tasks the server sends until the pipe
    closes.

    SIGINT is ignored (a Ctrl-C in a terminal reaches the whole process group; the server stops its workers).
    What the worker inherits from the fork server (the modules, numpy's and scipy's among them) is moved to the
    garbage collector's permanent generation (``gc.freeze``), as the gc module's documentation advises after a fork:
    collections then never walk those objects, nor copy their pages by touching them.
    """
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    _Pipe.connection = connection
    while True:
        try:
            task: Task = connection.recv()
        except EOFError:
            return
        outcome = run(task)
        try:
            connection.send(outcome)
        except MemoryError:
            connection.send(OutOfMemory())
        del task, outcome


def run(task: Task) -> Outcome:
    """``function(*args)`` as an ``Outcome``."""
    function, args = task
    try:
        return Done(function(*args))
    except InvalidInputError as exc:
        return Invalid(exc.location, exc.message)
    except ProblemError as exc:
        return Refused(exc)
    except MemoryError:
        return OutOfMemory()
    except Exception:
        return Crashed(traceback.format_exc())


@contextmanager
def attached(shared: Shared) -> Iterator[memoryview]:
    """The bytes of a shared block, mapped into this process (no copy) for the duration of the block.

    Every view of them must be gone by the end: numpy arrays made from them must be copies. A view still held (by
    a traceback, say) only keeps the mapping until the worker's next close succeeds or it exits.
    """
    block = SharedMemory(shared.name)
    assert block.buf is not None
    view = block.buf[: shared.size]
    try:
        yield view
    finally:
        with suppress(BufferError):
            view.release()
            block.close()
