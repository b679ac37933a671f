"""A PyTorch Lightning callback running :class:`jacspec.torch.Monitor` (``pip install jacspec[lightning]``).

    trainer = lightning.Trainer(max_steps=1000, callbacks=[JacspecCallback(client, run="mlp-1", every=100)])

After each training batch (``on_train_batch_end``) it calls the monitor with the trainer's ``global_step`` (the
optimiser steps so far), so a point is kept every ``every`` steps; ``on_train_end`` waits for the pending submits.
"""

from __future__ import annotations

from typing import Any

try:
    import lightning
except ImportError as exc:  # pragma: no cover - the test suite has lightning
    raise ImportError("jacspec.lightning needs PyTorch Lightning: pip install 'jacspec[lightning]'") from exc

from jacspec.monitor import MonitorCallback


class JacspecCallback(MonitorCallback, lightning.Callback):
    """``Monitor(pl_module, client, run=run, every=every, inputs=inputs, ...)`` driven by the trainer.

    ``JacspecCallback(client, *, run, every=1, inputs=None, options=None, example_input=None, module=None)``:
    ``module="net"`` watches ``pl_module.net`` instead of the whole module (:class:`jacspec.monitor.MonitorCallback`).
    """

    def on_train_batch_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        """Report the step the trainer has reached (``global_step``, the optimiser steps taken)."""
        self._monitor_step(pl_module, int(trainer.global_step))

    def on_train_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        """Wait for the pending submits."""
        self._monitor_close()


__all__ = ["JacspecCallback"]
