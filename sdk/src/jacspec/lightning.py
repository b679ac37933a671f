"""A PyTorch Lightning callback running :class:`jacspec.torch.Monitor` (``pip install jacspec[lightning]``).

    trainer = lightning.Trainer(max_steps=1000, callbacks=[JacspecCallback(client, run="mlp-1", every=100)])

After each training batch (``on_train_batch_end``) it calls the monitor with the trainer's ``global_step`` (the
optimiser steps so far), so a point is kept every ``every`` steps; ``on_train_end`` waits for the pending submits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jacspec._client import Client
from jacspec.models import Inputs, Options

try:
    import lightning
except ImportError as exc:  # pragma: no cover - the test suite has lightning
    raise ImportError("jacspec.lightning needs PyTorch Lightning: pip install 'jacspec[lightning]'") from exc

from jacspec.torch import Monitor


class JacspecCallback(lightning.Callback):
    """``Monitor(pl_module, client, run=run, every=every, inputs=inputs, ...)`` driven by the trainer."""

    def __init__(
        self,
        client: Client,
        *,
        run: str,
        every: int = 1,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
        module: str | None = None,
    ) -> None:
        super().__init__()
        self.client, self.run, self.every, self.inputs, self.options = client, run, every, inputs, options
        self.module = module
        self.monitor: Monitor | None = None

    def on_train_batch_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        """Report the step the trainer has reached (``global_step``, the optimiser steps taken)."""
        if self.monitor is None:
            model = pl_module if self.module is None else getattr(pl_module, self.module)
            self.monitor = Monitor(
                model, self.client, run=self.run, every=self.every, inputs=self.inputs, options=self.options
            )
        self.monitor.step(int(trainer.global_step))

    def on_train_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()


__all__ = ["JacspecCallback"]
