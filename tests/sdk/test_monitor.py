"""``jacspec.torch.Monitor`` and ``jacspec.lightning.JacspecCallback`` in real training loops against a real server
(``python -m api``): five points in a 50-step run checked every 10 steps, each layer's σ_max equal to the dense
SVD of the weights at that step; a step with a NaN weight reported as a ``diverged`` event naming the parameter; a
server that is down leaves the loop running and the errors in ``monitor.errors``."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import lightning
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import jacspec
from jacspec.lightning import JacspecCallback
from jacspec.models import AnalysisReport, Job
from jacspec.torch import Monitor
from tests.helpers import free_port

STEPS, EVERY = 50, 10
WAIT_S = 60.0


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, 32, 8, generator=generator)
    return [(xb, xb.sum(dim=1, keepdim=True).sin()) for xb in x]


def train(model: nn.Sequential, monitor: Monitor, nan_at: int | None = None) -> dict[int, list[torch.Tensor]]:
    """50 SGD steps, ``monitor.step()`` after each; the weights at every EVERY-th step."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    weights: dict[int, list[torch.Tensor]] = {}
    for step, (x, y) in enumerate(batches(), start=1):
        optimiser.zero_grad()
        torch.autograd.backward(nn.functional.mse_loss(model(x), y))
        optimiser.step()
        if step == nan_at:
            first = model[0]
            assert isinstance(first, nn.Linear)
            with torch.no_grad():
                first.weight[3, 2] = float("nan")
        monitor.step()
        if step % EVERY == 0:
            weights[step] = [layer.weight.detach().clone() for layer in model if isinstance(layer, nn.Linear)]
    return weights


def sigma_max(weight: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(weight.double())[0])


@pytest.fixture
def client(server_url: str) -> jacspec.Client:
    return jacspec.Client(base_url=server_url, max_retries=0)


def finished(client: jacspec.Client, monitor: Monitor) -> list[AnalysisReport]:
    reports = [client.jobs.wait(job_id, timeout=WAIT_S, poll=0.05) for job_id in monitor.jobs]
    assert all(isinstance(report, AnalysisReport) for report in reports)
    return reports  # type: ignore[return-value]


def test_a_50_step_loop_every_10_keeps_five_points(client: jacspec.Client) -> None:
    run = f"monitor-{uuid.uuid4().hex[:12]}"
    model = mlp()
    with Monitor(model, client, run=run, every=EVERY, inputs={"count": 8}) as monitor:
        weights = train(model, monitor)
    assert monitor.errors == []
    assert len(monitor.jobs) == 5
    reports = finished(client, monitor)
    kept = client.runs.retrieve(run)
    assert kept.steps == [10, 20, 30, 40, 50]
    assert kept.verdicts == [report.summary.verdict for report in reports]
    assert kept.events == []
    for layer in kept.layers:
        expected = [sigma_max(weights[step][layer.index - 1]) for step in kept.steps]
        assert layer.metrics["weight_norm"] == pytest.approx(expected, rel=1e-9)
    assert weights[10][0].ne(weights[50][0]).any()  # the points are of weights that changed


def test_a_diverging_step_is_an_event_naming_the_parameter(
    client: jacspec.Client, caplog: pytest.LogCaptureFixture
) -> None:
    run = f"monitor-{uuid.uuid4().hex[:12]}"
    model = mlp()
    with caplog.at_level(logging.WARNING, logger="jacspec.monitor"), Monitor(model, client, run=run, every=EVERY) as m:
        train(model, m, nan_at=30)  # NaN from step 30 on: 30, 40 and 50 diverged
    assert m.errors == []
    assert [(e.step, e.kind, e.parameter) for e in m.events] == [(s, "diverged", "0.weight") for s in (30, 40, 50)]
    assert "0.weight" in caplog.text
    finished(client, m)
    kept = client.runs.retrieve(run)
    assert kept.steps == [10, 20]
    assert [(e.step, e.kind, e.parameter) for e in kept.events] == [(s, "diverged", "0.weight") for s in (30, 40, 50)]
    assert "0.weight" in kept.events[0].message


def test_a_server_that_is_down_never_stops_the_loop() -> None:
    down = jacspec.Client(base_url=f"http://127.0.0.1:{free_port()}", max_retries=0, timeout=2.0)
    model = mlp()
    with Monitor(model, down, run="down", every=EVERY) as monitor:
        weights = train(model, monitor)
    assert sorted(weights) == [10, 20, 30, 40, 50]
    assert monitor.jobs == []
    assert len(monitor.errors) == 5
    assert all(isinstance(error, jacspec.APIConnectionError) for error in monitor.errors)


class Regression(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_the_lightning_callback_keeps_five_points(client: jacspec.Client) -> None:
    run = f"lightning-{uuid.uuid4().hex[:12]}"
    callback = JacspecCallback(client, run=run, every=EVERY, inputs={"count": 8}, module="net")
    trainer = lightning.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    module = Regression()
    x, y = (torch.cat(parts) for parts in zip(*batches(), strict=True))
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=32))
    assert callback.monitor is not None
    assert callback.monitor.errors == []
    reports = finished(client, callback.monitor)
    kept = client.runs.retrieve(run)
    assert kept.steps == [10, 20, 30, 40, 50]
    assert kept.verdicts == [report.summary.verdict for report in reports]
    final = [layer.weight for layer in module.net if isinstance(layer, nn.Linear)]
    assert [layer.metrics["weight_norm"][-1] for layer in kept.layers] == pytest.approx(
        [sigma_max(w.detach()) for w in final], rel=1e-9
    )


def test_the_transformers_callback_names_its_extra() -> None:
    with pytest.raises(ImportError, match=r"jacspec\[transformers\]"):
        import jacspec.transformers  # noqa: F401


def test_a_full_queue_drops_the_oldest_pending_snapshot(
    client: jacspec.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run = f"monitor-{uuid.uuid4().hex[:12]}"
    entered, release = threading.Event(), threading.Event()
    create = client.jobs.create

    def gated(request: Any, **kwargs: Any) -> Job:
        entered.set()
        assert release.wait(WAIT_S)
        return create(request, **kwargs)

    monkeypatch.setattr(client.jobs, "create", gated)
    model = mlp()
    with caplog.at_level(logging.WARNING, logger="jacspec.monitor"):
        monitor = Monitor(model, client, run=run, every=1, queue_size=1)
        monitor.step()  # step 1: taken by the thread, which waits at the gate
        assert entered.wait(WAIT_S)
        for _ in range(3):  # steps 2, 3, 4: each pushes the one before it out of the one-place queue
            monitor.step()
        release.set()
        monitor.close()
    assert monitor.errors == []
    finished(client, monitor)
    assert client.runs.retrieve(run).steps == [1, 4]
    assert "step 2 was dropped" in caplog.text
    assert "step 3 was dropped" in caplog.text
