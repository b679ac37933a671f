"""A HuggingFace ``Trainer`` callback running :class:`jacspec.torch.Monitor` (``pip install jacspec[transformers]``).

    trainer = Trainer(model, args, callbacks=[JacspecCallback(client, run="bert-1", every=100)])

After each optimiser step (``on_step_end``) it calls the monitor with ``state.global_step``; ``on_train_end``
waits for the pending submits. The model must be one :func:`jacspec.torch.network_from_module` maps (give
``example_input`` for a graph, ``module=`` to watch one attribute of the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jacspec._client import Client
from jacspec.models import Inputs, Options

try:
    import transformers
except ImportError as exc:
    raise ImportError(
        "jacspec.transformers needs HuggingFace transformers: pip install 'jacspec[transformers]'"
    ) from exc

from jacspec.torch import Monitor


class JacspecCallback(transformers.TrainerCallback):  # type: ignore[misc]
    """``Monitor(model, client, run=run, every=every, inputs=inputs, ...)`` driven by the Trainer."""

    def __init__(
        self,
        client: Client,
        *,
        run: str,
        every: int = 1,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
        example_input: Any = None,
        module: str | None = None,
    ) -> None:
        self.client, self.run, self.every, self.inputs, self.options = client, run, every, inputs, options
        self.example_input, self.module = example_input, module
        self.monitor: Monitor | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            return
        if self.monitor is None:
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
        self.monitor.step(int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()


__all__ = ["JacspecCallback"]
