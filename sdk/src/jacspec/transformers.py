"""A HuggingFace ``Trainer`` callback running :class:`jacspec.torch.Monitor` (``pip install jacspec[transformers]``).

    trainer = Trainer(model, args, callbacks=[JacspecCallback(client, run="bert-1", every=100)])

After each optimiser step (``on_step_end``) it calls the monitor with ``state.global_step``; ``on_train_end``
waits for the pending submits. The model must be one :func:`jacspec.torch.network_from_module` maps (give
``example_input`` for a graph, ``module=`` to watch one attribute of the model).
"""

from __future__ import annotations

from typing import Any

try:
    import transformers
except ImportError as exc:
    raise ImportError(
        "jacspec.transformers needs HuggingFace transformers: pip install 'jacspec[transformers]'"
    ) from exc

from torch import nn

from jacspec.monitor import MonitorCallback


class JacspecCallback(MonitorCallback, transformers.TrainerCallback):
    """``Monitor(model, client, run=run, every=every, inputs=inputs, ...)`` driven by the Trainer.

    ``JacspecCallback(client, *, run, every=1, inputs=None, options=None, example_input=None, module=None)``:
    ``module="bert"`` watches ``model.bert`` instead of the whole model (:class:`jacspec.monitor.MonitorCallback`).
    """

    def on_step_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        """Report the step the Trainer has reached (``state.global_step``, the optimiser steps taken)."""
        if model is not None:
            self._monitor_step(model, int(state.global_step))

    def on_train_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Wait for the pending submits."""
        self._monitor_close()


__all__ = ["JacspecCallback"]
