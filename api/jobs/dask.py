"""Jobs on a Dask cluster (JACSPEC_CLUSTER = the scheduler's address): ``DaskExecutor``.

A job is one task on the cluster, ``cluster_task``: it runs the same ``api.work`` function a compute worker of
this server would (``function(payload, *rest)``, through ``api.worker.run``, so its outcome is the same
``Outcome``), and its independent pieces become tasks of their own (``api.work.spreading`` with a
``ScatteringExecutor`` of ``distributed.worker_client``: the job's task secedes from its worker's thread pool while
they run; their arguments are scattered from the job's worker, so each task fetches only its own, peer to peer):

- a chain's per-layer norms: each weight's σ (``_weight_norm``), each layer's Jacobian norms over the probes
  (``_layer_jacobian``: one task per chunk of probes the layer's method solves together), each with its own
  layer;
- a graph's block norms (``_stretch_norm``), each with its block's own linearisations, and for an output wider
  than DENSE_MAX_DIM the backward norms' stretches cut → output the same way;
- a weight survey's matrices (``matrix_survey``), a file's or a graph's, at most ``service.survey.IN_FLIGHT`` at a
  time (a file's tensors are widened one by one as there is room, not all held at once).

The forward pass, a chain's backward pass and spectrum, and a graph's loss gradients and narrow backward rows stay
in the job's task.

What the work tells (``api.worker.tell``: its progress, a tighter deadline) is logged as an event of the job's own
topic on the scheduler (``Worker.log_event``), which the server's client is subscribed to.

The payload travels as bytes or as its validated model (an ``api.worker.Shared`` block exists on this machine
only); large bytes are scattered to the cluster first, so that the task's spec stays small. numpy arrays between
the cluster's processes travel as pickle-5 buffers, not copied into the pickle stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar
from uuid import uuid4

from anyio import CancelScope, move_on_after
from distributed import Client, get_worker, worker_client

from api.compute import SHARED_BYTES, Deadline, late, outcome_value
from api.encode import EncodedReport
from api.work import Spread, spreading
from api.worker import Outcome, Progress, set_sink
from api.worker import run as run_task

R = TypeVar("R")

TOPIC_PREFIX = "jacspec-job-"
MEMORY = "a cluster worker has"
"""How the 413 of a MemoryError on the cluster names the limit (Dask workers have no RLIMIT_AS of ours)."""
STOPPED_STATES = frozenset({"cancelled", "released", "forgotten"})
"""A task's states on its worker once its future has been cancelled (``distributed.worker_state_machine``)."""


class StoppedError(Exception):
    """Raised at a progress tick of a task whose job was cancelled: the cooperative stop."""


class _Current(threading.local):
    """The job this thread of a Dask worker runs: its topic and its task's key (None between jobs)."""

    topic: str | None = None
    key: Any = None


_current = _Current()


def _forward(message: Any) -> None:
    """The sink of ``api.worker.tell`` in a Dask worker: a ``Progress`` or a ``Deadline`` logged as an event of the
    job's topic (plain lists: events are msgpack); first, a job whose task was cancelled is stopped
    (``StoppedError``)."""
    topic = _current.topic
    if topic is None:
        return
    worker = get_worker()
    state = worker.state.tasks.get(_current.key)
    if state is None or state.state in STOPPED_STATES:
        raise StoppedError("the job was cancelled")
    if isinstance(message, Progress):
        worker.log_event(topic, {"progress": [message.done, message.total, message.unit]})
    elif isinstance(message, Deadline):
        worker.log_event(topic, {"deadline": [message.seconds, message.limit, message.advice]})


class ScatteringExecutor(Executor):
    """The executor of a task on the cluster (from ``worker_client``): the arguments are scattered first — from
    inside a task, ``Client.scatter`` keeps the objects in this worker's memory, uncopied, and another worker
    fetches only those its task needs, directly from this one — each distinct object once (a column holding one
    object n times ships it once), plain values (numbers, strings, None, tuples of them) left in the task's spec.

    ``map``: one task per row, its results yielded in order (the tasks not yet done are cancelled when the
    iteration stops early). ``submit``: one task, as a ``concurrent.futures.Future`` (``Client.get_executor``:
    cancelling it cancels the task)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._executor = client.get_executor(pure=False)

    def map(
        self, fn: Callable[..., R], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[R]:
        columns = [list(column) for column in iterables]
        if not columns or not all(columns):
            return iter(())
        shipped = self._shipped(columns)
        return self._results(self.client.map(fn, *shipped, pure=False))

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        (shipped,) = self._shipped([list(args)])
        future: Future[R] = self._executor.submit(fn, *shipped, **kwargs)
        return future

    def _shipped(self, columns: list[list[Any]]) -> list[list[Any]]:
        """The columns with every distinct object that is not plain replaced by the future of its one scatter."""
        distinct = {id(value): value for column in columns for value in column if not plain(value)}
        if not distinct:
            return columns
        futures = dict(zip(distinct, self.client.scatter(list(distinct.values()), hash=False), strict=True))
        return [[futures.get(id(value), value) for value in column] for column in columns]

    def _results(self, futures: list[Any]) -> Iterator[R]:
        try:
            for future in futures:
                value: R = future.result()
                yield value
        finally:
            self.client.cancel(futures)


PLAIN = (bool, int, float, complex, str, type(None))


def plain(value: object) -> bool:
    """Whether ``value`` rides in a task's spec rather than being scattered: a number, a string, None, or a tuple
    of such."""
    if isinstance(value, tuple):
        return all(plain(item) for item in value)
    return isinstance(value, PLAIN)


def cluster_task(
    function: Callable[..., EncodedReport], payload: object, rest: tuple[Any, ...], topic: str, min_flops: float | None
) -> Outcome:
    """On a Dask worker: ``function(payload, *rest)`` as an ``api.worker.Outcome``, its messages forwarded to
    ``topic``, its pieces (see the module docstring) spread over the cluster from ``min_flops`` per product on."""
    set_sink(_forward)
    _current.topic, _current.key = topic, get_worker().get_current_task()
    try:
        with worker_client() as client, spreading(Spread(ScatteringExecutor(client), min_flops)):
            return run_task((function, (payload, *rest)))
    finally:
        _current.topic = _current.key = None


class DaskExecutor:
    """Jobs computed on the Dask cluster at ``address`` (one asynchronous client, opened by ``start``).

    ``spread_min_flops`` is the least median flops per piece's product with which a job's pieces are spread
    (``api.work.Spread``; None: service.analysis.SPREAD_MIN_FLOPS; 0 spreads any chain, graph or survey).
    Cancelling the caller's anyio scope (or its deadline, a 413 as from the local pool) cancels the task's future:
    a task that has not started never does, and a running one stops at its next progress tick (the Python thread
    on the worker cannot be killed; a LAPACK call in progress, or the piece of work under way, finishes first).
    """

    def __init__(self, address: str, spread_min_flops: float | None = None) -> None:
        self.address = address
        self.spread_min_flops = spread_min_flops
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        assert self._client is not None, "DaskExecutor.start() has not run"
        return self._client

    async def start(self) -> None:
        """Connect to the scheduler (the app's lifespan calls this at startup)."""
        self._client = await Client(self.address, asynchronous=True)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def run(
        self,
        function: Callable[..., EncodedReport],
        args: tuple[Any, ...],
        deadline: Deadline,
        on_progress: Callable[[Progress], None],
    ) -> EncodedReport:
        """``function(*args)`` on the cluster within ``deadline`` (or a tighter one the task tells); its errors as
        a compute worker's (``api.compute.outcome_value``); each ``Progress`` it tells to ``on_progress``."""
        client = self.client
        payload, *rest = args
        if isinstance(payload, bytearray | memoryview):
            payload = bytes(payload)
        topic = TOPIC_PREFIX + uuid4().hex
        outcome: Outcome | None = None
        with move_on_after(deadline.seconds) as scope:
            started = scope.deadline - deadline.seconds

            def told(event: tuple[float, dict[str, list[Any]]]) -> None:
                nonlocal deadline
                message = event[1]
                if "progress" in message:
                    done, total, unit = message["progress"]
                    on_progress(Progress(done, total, unit))
                elif "deadline" in message:
                    tighter = Deadline(*message["deadline"])
                    if tighter.seconds < deadline.seconds:
                        deadline = tighter
                        scope.deadline = started + tighter.seconds

            client.subscribe_topic(topic, told)
            try:
                outcome = await self._computed(client, function, payload, tuple(rest), topic)
            finally:
                client.unsubscribe_topic(topic)
        if outcome is None:
            raise late(deadline)
        report: EncodedReport = outcome_value(outcome, MEMORY)
        return report

    async def _computed(
        self, client: Client, function: Callable[..., EncodedReport], payload: object, rest: tuple[Any, ...], topic: str
    ) -> Outcome:
        """The task's outcome; its future cancelled if this is cancelled first."""
        if isinstance(payload, bytes) and len(payload) > SHARED_BYTES:
            payload = await client.scatter(payload, hash=False)
        future = client.submit(cluster_task, function, payload, rest, topic, self.spread_min_flops, pure=False)
        try:
            outcome: Outcome = await future
        finally:
            if not future.done():
                with CancelScope(shield=True):
                    await future.cancel()
        return outcome
