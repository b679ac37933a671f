"""A training monitor: every N optimiser steps, the model's gradient-health report kept as a point of a run.

    from jacspec.torch import Monitor
    with Monitor(model, client, run="mlp-1", every=10, inputs={"count": 16}) as monitor:
        for batch in loader:
            loss.backward(); optimiser.step()
            monitor.step()

On every N-th step it checks the parameters for NaN or Inf first: a diverged model is reported as a run event of
kind ``diverged`` naming the first parameter at fault (and logged on the ``jacspec.monitor`` logger, and kept in
``monitor.events``), and no job is sent for that step. Otherwise it copies the weights (detached, on the CPU),
maps them with :func:`jacspec.torch.network_from_module` and hands the job (``client.jobs.create``) to one
background thread through a small queue: when the queue is full the oldest pending snapshot is dropped (and
logged), so training never waits for the server. Nothing raises into the training loop: every error is logged
and kept in ``monitor.errors``. ``close()`` (or leaving the ``with``) waits for the pending submits.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import nn

from jacspec._client import Client
from jacspec.models import AnalysisRequest, Inputs, Options

logger = logging.getLogger("jacspec.monitor")

QUEUE_SIZE = 4
CLOSE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class MonitorEvent:
    """Something the monitor reported at a step (kind ``diverged``: NaN or Inf in ``parameter``)."""

    step: int
    kind: str
    message: str
    parameter: str | None = None


def first_non_finite(model: nn.Module) -> str | None:
    """The name of the first floating-point parameter of ``model`` holding a NaN or an infinity, else None."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.is_floating_point() and not bool(torch.isfinite(parameter).all()):
                return name
    return None


class Monitor:
    """Send ``model``'s analysis as a job every ``every`` steps, kept as the point (``run``, step).

    ``inputs`` and ``options`` go into each AnalysisRequest as given; ``example_input`` maps the model as a graph
    (``network_from_module(model, example_input)``), else as a chain. ``queue_size`` snapshots at most wait for the
    background thread.
    """

    def __init__(
        self,
        model: nn.Module,
        client: Client,
        *,
        run: str,
        every: int = 1,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
        example_input: torch.Tensor | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.model, self.client, self.run, self.every = model, client, run, _checked_every(every)
        self.inputs = Inputs.model_validate(inputs or {})
        self.options = Options.model_validate(options or {})
        self.example_input = None if example_input is None else example_input.detach().cpu()
        self.jobs: list[str] = []
        """The ids of the jobs submitted, in order."""
        self.events: list[MonitorEvent] = []
        """The diverged steps reported."""
        self.errors: list[BaseException] = []
        """Every error caught (mapping, submitting, reporting), in order."""
        self._steps = 0
        self._lock = threading.Lock()
        self._pending: queue.Queue[tuple[int, nn.Module] | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._submitter, name=f"jacspec-monitor-{run}", daemon=True)
        self._thread.start()
        self._closed = False

    def step(self, step: int | None = None) -> None:
        """Call after each optimiser step; ``step`` defaults to the count of calls so far (1, 2, …). Never raises."""
        try:
            self._steps = self._steps + 1 if step is None else step
            if self._steps % self.every == 0 and not self._closed:
                self._check_and_queue(self._steps)
        except Exception as exc:  # the training loop must go on
            self._error(exc, f"step {self._steps} could not be reported")

    def _check_and_queue(self, step: int) -> None:
        parameter = first_non_finite(self.model)
        if parameter is not None:
            self._diverged(step, parameter)
            return
        self._enqueue(step, _snapshot(self.model))

    def _diverged(self, step: int, parameter: str) -> None:
        message = f"NaN or Inf in {parameter} at step {step}"
        logger.warning("run %s diverged: %s", self.run, message)
        self.events.append(MonitorEvent(step, "diverged", message, parameter))
        try:
            self.client.runs.add_event(self.run, step=step, kind="diverged", message=message, parameter=parameter)
        except Exception as exc:
            self._error(exc, f"the divergence at step {step} could not be sent")

    def _enqueue(self, step: int, snapshot: nn.Module) -> None:
        """Queue the snapshot; when the queue is full, drop the oldest one pending (and log it)."""
        while True:
            try:
                self._pending.put_nowait((step, snapshot))
                return
            except queue.Full:
                try:
                    dropped = self._pending.get_nowait()
                except queue.Empty:
                    continue
                self._pending.task_done()
                if dropped is not None:
                    logger.warning(
                        "run %s: the snapshot of step %d was dropped (the queue is full)", self.run, dropped[0]
                    )

    def _submitter(self) -> None:
        while True:
            item = self._pending.get()
            try:
                if item is None:
                    return
                self._submit(*item)
            finally:
                self._pending.task_done()

    def _submit(self, step: int, snapshot: nn.Module) -> None:
        try:
            from jacspec.torch import network_from_module

            network = network_from_module(snapshot, self.example_input)
            request = AnalysisRequest(
                network=network, inputs=self.inputs, options=self.options, run=self.run, step=step
            )
            job = self.client.jobs.create(request)
        except Exception as exc:
            self._error(exc, f"the analysis of step {step} could not be submitted")
            return
        with self._lock:
            self.jobs.append(job.id)

    def _error(self, exc: BaseException, what: str) -> None:
        logger.warning("run %s: %s: %s", self.run, what, exc)
        with self._lock:
            self.errors.append(exc)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Wait up to ``timeout`` seconds for the pending submits (not for the jobs to finish), then stop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._pending.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("run %s: the monitor's queue did not drain in %s s", self.run, timeout)
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("run %s: pending submits still running after %s s", self.run, timeout)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class MonitorCallback:
    """What the framework callbacks share: the monitor's settings, the :class:`Monitor` made at the first step.

    A framework's callback subclasses this and its framework's callback class; its hooks call ``_monitor_step``
    with the model and the optimiser steps taken, and ``_monitor_close`` when the training ends. The monitor
    watches the model, or its attribute ``module`` when given; ``example_input`` maps it as a graph.
    """

    def __init__(
        self,
        client: Client,
        *,
        run: str,
        every: int = 1,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
        example_input: torch.Tensor | None = None,
        module: str | None = None,
    ) -> None:
        super().__init__()
        self.client, self.run, self.every = client, run, _checked_every(every)
        self.inputs, self.options, self.example_input, self.module = inputs, options, example_input, module
        self.monitor: Monitor | None = None
        """The monitor, made at the first step (None before it)."""
        self.errors: list[BaseException] = []
        """Why the monitor could not be made (its own errors are ``monitor.errors``)."""

    def _monitor_step(self, model: nn.Module, step: int) -> None:
        """``monitor.step(step)``, the monitor made first. Never raises: a model without the attribute ``module``
        (or a monitor that cannot be made) is logged and kept in ``errors``, once, and the training goes on."""
        if self.monitor is None:
            if self.errors:
                return
            try:
                watched = model if self.module is None else getattr(model, self.module)
                self.monitor = Monitor(
                    watched,
                    self.client,
                    run=self.run,
                    every=self.every,
                    inputs=self.inputs,
                    options=self.options,
                    example_input=self.example_input,
                )
            except Exception as exc:  # the training loop must go on
                logger.warning("run %s: the monitor could not be made: %s", self.run, exc)
                self.errors.append(exc)
                return
        self.monitor.step(step)

    def _monitor_close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def _checked_every(every: int) -> int:
    """``every``, refused (ValueError) below 1: a monitor reports every ``every``-th step."""
    if every < 1:
        raise ValueError(f"every must be 1 or more; got {every}")
    return every


def _snapshot(model: nn.Module) -> nn.Module:
    """A detached CPU copy of ``model`` (its weights as they are now; the training goes on with the original)."""
    with torch.no_grad():
        return copy.deepcopy(model).cpu().requires_grad_(False)


__all__ = ["Monitor", "MonitorCallback", "MonitorEvent", "first_non_finite"]
