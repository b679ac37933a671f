"""``jacspec.torch.Monitor`` and the Lightning and HuggingFace callbacks in real training loops against a real server
(``python -m api``): five points in a 50-step run checked every 10 steps, each layer's σ_max equal to the dense
SVD of the weights at that step; a step with a NaN weight reported as a ``diverged`` event naming the parameter; a
server that is down leaves the loop running and the errors in ``monitor.errors``."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
import transformers
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import jacspec
from jacspec.lightning import JacspecCallback
from jacspec.models import AnalysisReport, Job
from jacspec.torch import Monitor
from jacspec.transformers import JacspecCallback as HFCallback
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
def client(server_url: str) -> Iterator[jacspec.Client]:
    with jacspec.Client(base_url=server_url, max_retries=0) as client:
        yield client


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


def fit(module: lightning.LightningModule, callback: JacspecCallback, steps: int) -> lightning.Trainer:
    """``module`` trained on :func:`batches` for ``steps`` steps by a quiet CPU Trainer with ``callback``."""
    trainer = lightning.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    x, y = (torch.cat(parts) for parts in zip(*batches(), strict=True))
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=32))
    return trainer


def test_the_lightning_callback_keeps_five_points(client: jacspec.Client) -> None:
    run = f"lightning-{uuid.uuid4().hex[:12]}"
    callback = JacspecCallback(client, run=run, every=EVERY, inputs={"count": 8}, module="net")
    module = Regression()
    fit(module, callback, STEPS)
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


def test_a_callback_watching_a_missing_module_never_stops_the_training(caplog: pytest.LogCaptureFixture) -> None:
    callback = JacspecCallback(jacspec.Client(base_url="http://127.0.0.1:9"), run="never", module="missing")
    assert fit(Regression(), callback, 3).global_step == 3
    assert callback.monitor is None
    assert [type(error) for error in callback.errors] == [AttributeError]  # once, not at every step
    assert "the monitor could not be made" in caplog.text


class Regressor(nn.Module):
    """The MLP as a HuggingFace Trainer takes a model: keyword inputs, a dict with the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.mse_loss(self.net(x), labels)}


class Examples(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """The 50 batches of :func:`batches`, one example a row, as the dicts the Trainer's collator stacks."""

    def __init__(self) -> None:
        self.x, self.y = (torch.cat(parts) for parts in zip(*batches(), strict=True))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


class Weights(transformers.TrainerCallback):
    """The Linear weights of ``model.net`` at every EVERY-th step (put after the JacspecCallback, it runs after it)."""

    def __init__(self) -> None:
        self.at: dict[int, list[torch.Tensor]] = {}

    def on_step_end(self, args: Any, state: transformers.TrainerState, control: Any, **kwargs: Any) -> None:
        if state.global_step % EVERY == 0:
            net = kwargs["model"].net
            self.at[state.global_step] = [m.weight.detach().clone() for m in net if isinstance(m, nn.Linear)]


def test_the_transformers_callback_keeps_five_points(client: jacspec.Client, tmp_path: Path) -> None:
    run = f"transformers-{uuid.uuid4().hex[:12]}"
    callback = HFCallback(client, run=run, every=EVERY, inputs={"count": 8}, module="net")
    weights = Weights()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=STEPS,
        per_device_train_batch_size=32,
        learning_rate=0.05,
        optim="sgd",
        lr_scheduler_type="constant",
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = transformers.Trainer(
        model=Regressor(), args=args, train_dataset=Examples(), callbacks=[callback, weights]
    )
    trainer.train()
    assert callback.monitor is not None
    assert callback.monitor.errors == []
    assert len(callback.monitor.jobs) == 5
    reports = finished(client, callback.monitor)
    kept = client.runs.retrieve(run)
    assert kept.steps == [10, 20, 30, 40, 50]
    assert kept.verdicts == [report.summary.verdict for report in reports]
    assert kept.events == []
    assert sorted(weights.at) == kept.steps
    for layer in kept.layers:
        expected = [sigma_max(weights.at[step][layer.index - 1]) for step in kept.steps]
        assert layer.metrics["weight_norm"] == pytest.approx(expected, rel=1e-9)
    assert weights.at[10][0].ne(weights.at[50][0]).any()  # the points are of weights that changed
    assert list(tmp_path.iterdir()) == []  # no checkpoint saved


@pytest.mark.parametrize("callback", [JacspecCallback, HFCallback])
def test_a_callback_refuses_every_0_when_made(callback: type[JacspecCallback | HFCallback]) -> None:
    with pytest.raises(ValueError, match="every must be 1 or more; got 0"):
        callback(jacspec.Client(base_url="http://127.0.0.1:9"), run="never", every=0)


def test_the_transformers_callback_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    monkeypatch.delitem(sys.modules, "jacspec.transformers")
    with pytest.raises(ImportError, match=r"jacspec\[transformers\]"):
        importlib.import_module("jacspec.transformers")


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
