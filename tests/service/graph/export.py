"""A test helper: a model written as torch callables node by node, exported to the ``network.graph`` contract, with
torch float64 references for every number a graph's report gives (block Jacobian norms by torch.func.jacrev and a
dense SVD, backward norms likewise, parameter gradients by autograd)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

Array = NDArray[np.float64]
Fn = Callable[..., torch.Tensor]


def tensor(value: torch.Tensor) -> dict[str, Any]:
    """A contract tensor of a torch tensor (float64, flat data)."""
    array = value.detach().to(torch.float64).numpy()
    return {"shape": list(array.shape), "datatype": "FP64", "data": array.ravel().tolist()}


@dataclass
class Exported:
    """Nodes added in topological order: their contract dicts, their torch callables (on one probe, no probe
    axis) and the torch parameters by ``<node id>.<name>``."""

    input_shape: tuple[int, ...]
    nodes: list[dict[str, Any]] = field(default_factory=list)
    fns: list[tuple[Fn, tuple[int, ...]]] = field(default_factory=list)
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=lambda: {"input": 0})

    def add(
        self,
        node_id: str,
        op: str,
        fn: Fn,
        inputs: Sequence[str] | None = None,
        params: dict[str, torch.Tensor] | None = None,
        **fields: Any,
    ) -> str:
        node: dict[str, Any] = {"id": node_id, "op": op, **fields}
        if inputs is not None:
            node["inputs"] = list(inputs)
        if params:
            node["params"] = {name: tensor(value) for name, value in params.items()}
            self.params |= {f"{node_id}.{name}": value for name, value in params.items()}
        reads = (len(self.nodes),) if inputs is None else tuple(self.ids[name] for name in inputs)
        self.nodes.append(node)
        self.fns.append((fn, reads))
        self.ids[node_id] = len(self.nodes)
        return node_id

    def module(
        self, node_id: str, op: str, module: torch.nn.Module, inputs: Sequence[str] | None = None, **fields: Any
    ) -> str:
        """A node whose callable is ``module`` (its parameters by torch's names)."""
        params = dict(module.named_parameters()) | {
            name: value for name, value in module.named_buffers() if name in ("running_mean", "running_var")
        }
        return self.add(node_id, op, module, inputs, params, **fields)

    def contract(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "nodes": self.nodes}

    def run(self, start: int, stop: int, value: torch.Tensor) -> torch.Tensor:
        """Tensor ``stop`` from tensor ``start`` = ``value`` (nodes start … stop − 1, which read nothing earlier)."""
        tensors = {start: value}
        for k in range(start, stop):
            fn, reads = self.fns[k]
            tensors[k + 1] = fn(*(tensors[i] for i in reads))
        return tensors[stop]

    def tensors(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every tensor of one probe's forward pass."""
        found = [x]
        for fn, reads in self.fns:
            found.append(fn(*(found[i] for i in reads)))
        return found

    def jacobian_norm(self, start: int, stop: int, xs: torch.Tensor) -> float:
        """max over probes of ‖∂t_stop/∂t_start‖₂, by jacrev and a dense SVD."""
        best = 0.0
        for x in xs:
            at = self.tensors(x)[start].detach()
            jac = torch.func.jacrev(lambda v: self.run(start, stop, v))(at)
            matrix = jac.reshape(jac.shape[: jac.ndim - at.ndim].numel(), at.numel()).detach().numpy()
            best = max(best, float(np.linalg.svd(matrix, compute_uv=False)[0]))
        return best

    def gradients(self, xs: torch.Tensor, ys: torch.Tensor) -> dict[str, float]:
        """‖∂ℓ/∂θ‖_F for every parameter, ℓ = mean over probes and outputs of (y − y*)², by autograd."""
        outputs = torch.stack([self.tensors(x)[-1] for x in xs])
        loss = ((outputs.reshape(len(xs), -1) - ys) ** 2).mean()
        names = [name for name, value in self.params.items() if value.requires_grad]
        grads = torch.autograd.grad(loss, [self.params[name] for name in names])
        return {name: float(torch.linalg.norm(g)) for name, g in zip(names, grads, strict=True)}


def relative(actual: float, expected: float) -> float:
    return abs(actual - expected) / max(abs(expected), 1e-300)
