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

The scheduler need not be up when the server starts, nor stay up: ``DaskExecutor.serving`` keeps a client
connected in the background (a failed attempt is tried again after a pause that doubles up to RETRY_MAX_S), the
runners wait for it before they claim a job, and each change between connected and disconnected is logged once. A
job whose connection is lost while it runs on the cluster fails (``LOST``, see ``DaskExecutor.run``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Executor, Future
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import uuid4

from anyio import CancelScope, create_task_group, move_on_after, sleep
from distributed import Client, get_worker, worker_client
from distributed.comm.addressing import get_address_host_port

from api.compute import SHARED_BYTES, Deadline, late, outcome_value
from api.encode import EncodedReport
from api.jobs.executor import ClusterState, UnavailableError
from api.problems import ProblemError
from api.work import Spread, spreading
from api.worker import Outcome, Progress, set_sink
from api.worker import run as run_task
from jacspec.models.jobs import INTERRUPTED

R = TypeVar("R")
logger = logging.getLogger("jacspec.jobs")

TOPIC_PREFIX = "jacspec-job-"
MEMORY = "a cluster worker has"
"""How the 413 of a MemoryError on the cluster names the limit (Dask workers have no RLIMIT_AS of ours)."""
STOPPED_STATES = frozenset({"cancelled", "released", "forgotten"})
"""A task's states on its worker once its future has been cancelled (``distributed.worker_state_machine``)."""
CONNECT_TIMEOUT_S = 10.0
"""How long one attempt to reach the scheduler lasts (Dask retries within it), and how long a client that has lost
its scheduler tries to get it back before it closes itself (a new client is then made)."""
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
"""The pause after a failed attempt to connect: RETRY_FIRST_S, doubled after each failure, at most RETRY_MAX_S."""
WATCH_S = 0.2
"""How often the client's status is read (connected or not), by the connection's keeper and a waiting runner."""
LOST = (
    "the connection to the Dask scheduler (JACSPEC_CLUSTER) was lost while this job ran on the cluster; submit it again"
)


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
        worker.log_event(topic, {"progress": [message.done, message.total, message.unit, message.seconds]})
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
    """Jobs computed on the Dask cluster at ``address`` (one asynchronous client, kept connected by ``serving``).

    ``spread_min_flops`` is the least median flops per piece's product with which a job's pieces are spread
    (``api.work.Spread``; None: service.analysis.SPREAD_MIN_FLOPS; 0 spreads any chain, graph or survey).
    Cancelling the caller's anyio scope (or its deadline, a 413 as from the local pool) cancels the task's future:
    a task that has not started never does, and a running one stops at its next progress tick (the Python thread
    on the worker cannot be killed; a LAPACK call in progress, or the piece of work under way, finishes first).
    ``connect_timeout_s`` and ``retry_max_s`` are CONNECT_TIMEOUT_S and RETRY_MAX_S (read at each attempt).

    An ``address`` Dask cannot parse (no port, an unknown scheme) raises ValueError here: a wrong setting stops the
    app at once, whereas a scheduler that does not answer only keeps the jobs queued.
    """

    def __init__(self, address: str, spread_min_flops: float | None = None) -> None:
        get_address_host_port(address)
        self.address = address
        self.spread_min_flops = spread_min_flops
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self.retry_max_s = RETRY_MAX_S
        self._client: Client | None = None
        self._told: bool | None = None
        """The state last logged: connected (True), not (False), nothing yet (None)."""

    @property
    def client(self) -> Client:
        assert self._client is not None, "DaskExecutor has no client yet (not connected since it started serving)"
        return self._client

    @property
    def connected(self) -> bool:
        """Whether the client is connected to the scheduler now (its status is "running")."""
        return self._client is not None and self._client.status == "running"

    @property
    def cluster(self) -> ClusterState:
        return "connected" if self.connected else "disconnected"

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The connection kept in the background within (``_keep_connected``); the client closed after."""
        try:
            async with create_task_group() as group:
                group.start_soon(self._keep_connected)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        finally:
            if self._client is not None:
                with CancelScope(shield=True):
                    await self._client.close()
                self._client = None

    async def ready(self) -> None:
        """Return once the client is connected (its status read every WATCH_S)."""
        while not self.connected:
            await sleep(WATCH_S)

    async def _keep_connected(self) -> None:
        """Until cancelled: a client whose status is read every WATCH_S. A client that lost its scheduler tries to
        get it back by itself for ``connect_timeout_s`` (Dask's own reconnection), then closes; a new one is then
        made, the attempts ``connect_timeout_s`` long each and apart by a pause from RETRY_FIRST_S doubling up to
        ``retry_max_s``."""
        pause = RETRY_FIRST_S
        while True:
            if self._client is None or self._client.status == "closed":
                self._client = None
                try:
                    self._client = await self._connect()
                except Exception as exc:  # unreachable (OSError), or refused by the scheduler: try again later
                    self._tell(False, exc)
                    logger.debug("no Dask scheduler at %s (%s); next attempt in %.1f s", self.address, exc, pause)
                    await sleep(pause)
                    pause = min(2 * pause, self.retry_max_s)
                    continue
                pause = RETRY_FIRST_S
            self._tell(self.connected)
            await sleep(WATCH_S)

    async def _connect(self) -> Client:
        """A client connected to the scheduler; an attempt that fails raises (its client is closed, also when this
        is cancelled)."""
        client = Client(self.address, asynchronous=True, timeout=self.connect_timeout_s)
        connected = False
        try:
            await client
            connected = True
        finally:
            if not connected:
                with CancelScope(shield=True):
                    await client.close()
        return client

    def _tell(self, connected: bool, error: BaseException | None = None) -> None:
        """Log a change between connected and disconnected, once."""
        if connected == self._told:
            return
        if connected:
            logger.info("connected to the Dask scheduler at %s: jobs run on the cluster", self.address)
        elif self._told is None:
            logger.warning(
                "cannot reach the Dask scheduler at %s (%s): jobs stay queued; trying again in the background",
                self.address,
                error,
            )
        else:
            logger.warning(
                "lost the Dask scheduler at %s: jobs stay queued until it is back; reconnecting", self.address
            )
        self._told = connected

    async def run(
        self,
        function: Callable[..., EncodedReport],
        args: tuple[Any, ...],
        deadline: Deadline,
        on_progress: Callable[[Progress], None],
    ) -> EncodedReport:
        """``function(*args)`` on the cluster within ``deadline`` (or a tighter one the task tells); its errors as
        a compute worker's (``api.compute.outcome_value``); each ``Progress`` it tells to ``on_progress``.

        Not connected before the task was submitted: ``UnavailableError`` (the job goes back to the queue). The
        connection lost once it was: a 503 problem of type ``job-interrupted`` (``LOST``), and the job fails rather
        than going back to the queue, as a job whose server died does: the client learns at once that its job was
        cut short, instead of seeing it start again from nothing, and a job that brings the scheduler down (a
        payload or a report too large for it) is not run again and again, each time taking the cluster with it.
        """
        client = self._running_client()
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
                    on_progress(Progress(*message["progress"]))
                elif "deadline" in message:
                    tighter = Deadline(*message["deadline"])
                    if tighter.seconds < deadline.seconds:
                        deadline = tighter
                        scope.deadline = started + tighter.seconds

            client.subscribe_topic(topic, told)
            try:
                outcome = await self._computed(client, function, payload, tuple(rest), topic)
            finally:
                if client.status != "closed":
                    client.unsubscribe_topic(topic)
        if outcome is None:
            raise late(deadline)
        report: EncodedReport = outcome_value(outcome, MEMORY)
        return report

    def _running_client(self) -> Client:
        """The client, if connected; else ``UnavailableError``."""
        client = self._client
        if client is None or client.status != "running":
            raise UnavailableError(f"the Dask scheduler at {self.address} is not connected")
        return client

    async def _computed(
        self, client: Client, function: Callable[..., EncodedReport], payload: object, rest: tuple[Any, ...], topic: str
    ) -> Outcome:
        """The task's outcome; its future cancelled if this is cancelled first. The connection lost before the task
        was submitted: ``UnavailableError``; after: the ``LOST`` problem."""
        if isinstance(payload, bytes) and len(payload) > SHARED_BYTES:
            try:
                payload = await client.scatter(payload, hash=False)
            except Exception:
                self._running_client()
                raise
        self._running_client()
        future = client.submit(cluster_task, function, payload, rest, topic, self.spread_min_flops, pure=False)
        try:
            outcome: Outcome = await future
        except Exception as exc:
            # concurrent.futures' CancelledError: Dask dropped the future (its scheduler lost or restarted); our own
            # cancellation is anyio's, not an Exception.
            if isinstance(exc, CancelledError) or client.status != "running":
                raise ProblemError(503, "Job interrupted", LOST, type_=INTERRUPTED) from exc
            raise
        finally:
            if not future.done():
                with CancelScope(shield=True):
                    await future.cancel()
        return outcome
