"""Independent pieces of the numerics handed to an ``Executor`` (threads, or a Dask cluster's tasks), their
results taken in order, the same numbers as without one.

- :func:`mapped`: ``function(*row)`` of rows that are all at hand (a chain's layers, a graph's blocks), every row
  submitted at once (``Executor.map``);
- :func:`bounded`: rows made on demand (a file's tensors, widened one at a time), at most ``window`` of them
  submitted and not yet taken, the next row made only once there is room: at most ``window`` rows in memory.

Without an executor both run the rows here, one after another. The functions handed over are module-level
functions of one row's own arguments, so that an executor of other processes ships that row alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

R = TypeVar("R")


def mapped(executor: Executor | None, function: Callable[..., R], *columns: Iterable[Any]) -> Iterator[R]:
    """``function(*row)`` of every row of ``columns`` (zipped, the shortest bounding), in order: as the executor's
    tasks (all submitted by this call), or here one after another as the iterator is read."""
    if executor is None:
        return map(function, *columns)
    return executor.map(function, *columns)


def bounded(
    executor: Executor | None, function: Callable[..., R], rows: Iterable[tuple[Any, ...]], window: int
) -> Iterator[R]:
    """``function(*row)`` of every row, in order: here one after another, or as the executor's tasks, at most
    ``window`` (≥ 1) submitted and not yet yielded; the next row is drawn from ``rows`` only once there is room.

    A row that fails to be drawn raises after the results before it (so that an earlier task's error comes
    first, as without an executor); stopping early cancels the tasks in flight."""
    if executor is None:
        for row in rows:
            value = function(*row)
            del row  # before the next is drawn
            yield value
        return
    pending: deque[Future[R]] = deque()
    failure: Exception | None = None
    iterator = iter(rows)
    try:
        while True:
            if len(pending) >= window:
                yield pending.popleft().result()
                continue
            try:
                row = next(iterator)
            except StopIteration:
                break
            except Exception as exc:
                failure = exc
                break
            pending.append(executor.submit(function, *row))
            del row
        while pending:
            yield pending.popleft().result()
        if failure is not None:
            raise failure
    finally:
        for future in pending:
            future.cancel()
