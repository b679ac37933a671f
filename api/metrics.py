"""Prometheus metrics, served at ``GET /metrics``: requests by route and status, latencies, compute workers, work.

Each app has its own registry (``Metrics``), so that an app made in a test starts from zero. Requests are
labelled with their route's template (``/v1/analyses``), never the raw path: a scan of made-up URLs adds the one
series ``route="unmatched"``, not one per URL, and methods other than the usual ones count as ``other``.

Several worker processes (``JACSPEC_WORKERS`` > 1) each count their own requests, and a scrape reaches only one
of them. ``python -m api`` therefore points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory (unless it is set
already) and ``/metrics`` then adds up every worker's files, as prometheus-client's multiprocess mode does:
counters and histograms sum over the workers, the gauges (slots, busy, waiting, in progress) over the live ones.
In that mode the library exports no per-process metrics (``process_*``, ``python_gc_*``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.compute import ComputePool, Worker
from api.encode import EncodedReport
from api.worker import Done, Outcome, Task
from jacspec import __version__

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
VERDICTS = ("vanishing", "stable", "exploding", "survey")
"""The `verdict` label of jacspec_analyses: an analysis's verdict, or "survey" for a weight survey."""
PLACES = ("worker",)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Histogram buckets from a health check (milliseconds) to the largest analyses (minutes)."""


class Metrics:
    """The service's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_DIR) or None
        registry = self.registry = CollectorRegistry()
        if self.multiprocess_dir is None:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        self.requests = Counter(
            "jacspec_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "jacspec_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route template.",
            ["method", "route"],
            buckets=SECONDS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "jacspec_http_requests_in_progress",
            "Requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.workers = Gauge(
            "jacspec_compute_workers",
            "Compute workers: analyses computed at once (JACSPEC_COMPUTE_WORKERS per server process).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.busy = Gauge(
            "jacspec_compute_workers_busy",
            "Compute workers computing now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.waiting = Gauge(
            "jacspec_compute_waiting",
            "Requests waiting for a compute worker now (at most JACSPEC_QUEUE_SIZE per server process).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.wait = Histogram(
            "jacspec_compute_wait_seconds",
            "Time from asking for a compute worker to getting one (requests refused with 503 not included).",
            buckets=SECONDS,
            registry=registry,
        )
        self.compute = Histogram(
            "jacspec_compute_seconds",
            "Time computing in a compute worker process (place=worker), from sending the task to its answer.",
            ["place"],
            buckets=SECONDS,
            registry=registry,
        )
        self.analyses = Counter("jacspec_analyses", "Analyses computed, by verdict.", ["verdict"], registry=registry)
        self.layers = Counter("jacspec_analysis_layers", "Layers analysed.", registry=registry)
        self.weights = Counter(
            "jacspec_analysis_weights", "Weight-matrix entries analysed (biases not counted).", registry=registry
        )
        self.weight_norms = Counter(
            "jacspec_weight_norms",
            "Spectral norms of weight matrices computed, by method (dense or lanczos).",
            ["method"],
            registry=registry,
        )
        self.matvecs = Counter(
            "jacspec_lanczos_matvecs", "Matrix-vector products taken by Lanczos iterations.", registry=registry
        )
        self.build = Gauge(
            "jacspec_build_info",
            "The service's version (always 1).",
            ["version"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.build.labels(__version__).set(1)
        for verdict in VERDICTS:  # every series from the start, so that rate() sees the first one
            self.analyses.labels(verdict)
        for method in ("dense", "lanczos"):
            self.weight_norms.labels(method)
        for place in PLACES:
            self.compute.labels(place)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (Prometheus text, or OpenMetrics), and its media type."""
        encode, media_type = choose_encoder(accept)
        if self.multiprocess_dir is None:
            return encode(self.registry), media_type
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return encode(every_worker), media_type

    def close(self) -> None:
        """At shutdown: in multiprocess mode, drop this process's live gauges from the sums."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_work(self, result: object) -> None:
        """Count the work of ``result`` if it is an analysis's report; other work (a bound) counts only as compute
        time."""
        if not isinstance(result, EncodedReport):
            return
        self.analyses.labels(result.verdict).inc()
        self.layers.inc(result.layers)
        self.weights.inc(result.weights)
        self.weight_norms.labels("dense").inc(result.dense_norms)
        self.weight_norms.labels("lanczos").inc(result.lanczos_norms)
        self.matvecs.inc(result.matvecs)


def route_template(scope: Scope) -> str:
    """The template of the route that answered (``/v1/analyses``), or ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request by method, route template and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.in_progress.dec()
            seconds = time.perf_counter() - started
            self.metrics.observe_request(scope["method"], route_template(scope), status, seconds)


class MeteredComputePool(ComputePool):
    """``ComputePool`` that reports workers busy, requests waiting, the wait, the compute time and the work done."""

    def __init__(
        self,
        metrics: Metrics,
        workers: int,
        queue_timeout: float = 10.0,
        queue_size: int = 16,
        memory_bytes: int | None = None,
    ) -> None:
        super().__init__(workers, queue_timeout, queue_size, memory_bytes)
        self.metrics = metrics
        metrics.workers.set(workers)

    async def _acquire(self) -> None:
        metrics = self.metrics
        asked = time.perf_counter()
        metrics.waiting.inc()
        try:
            await super()._acquire()
        finally:
            metrics.waiting.dec()
        metrics.wait.observe(time.perf_counter() - asked)

    async def _exchange(self, current: Worker, task: Task, noted: Callable[[Any], None]) -> Outcome:
        metrics = self.metrics
        began = time.perf_counter()
        metrics.busy.inc()
        try:
            outcome = await super()._exchange(current, task, noted)
        finally:
            metrics.busy.dec()
            metrics.compute.labels("worker").observe(time.perf_counter() - began)
        if isinstance(outcome, Done):
            metrics.observe_work(outcome.value)
        return outcome
