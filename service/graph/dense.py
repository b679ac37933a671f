"""The linear (fully connected) op on the last axis: y = x·Wᵀ + b for W of shape (out, in).

Per probe the input is (..., in), e.g. (d,) or a sequence (T, d); the Jacobian is I ⊗ W (W on every row), so
jvp(v) = v·Wᵀ, vjp(u) = u·W, ∂/∂W = Σ u ⊗ x over probes and rows, ∂/∂b = Σ u, and ‖J‖₂ = ‖W‖₂.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from service import spectral
from service.errors import InvalidInputError
from service.graph.op import Array, Linearised, Op

NORM_RTOL = 1e-9
"""‖W‖₂ is computed to this relative accuracy and inflated by 1 + 2·NORM_RTOL, so the bound holds."""


@dataclass
class _Affine(Linearised):
    output: Array
    x: Array
    weight: Array
    has_bias: bool

    def jvp(self, tangents: Sequence[Array]) -> Array:
        return tangents[0] @ self.weight.T

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (cotangent @ self.weight,)

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        u = cotangent.reshape(-1, cotangent.shape[-1])
        found = {"weight": u.T @ self.x.reshape(-1, self.x.shape[-1])}
        if self.has_bias:
            found["bias"] = u.sum(axis=0)
        return found


class Linear(Op):
    """y = x·Wᵀ + b on the last axis; J = I ⊗ W; Lipschitz bound ‖W‖₂ (dense SVD or Lanczos, inflated)."""

    name = "linear"

    def __init__(self, weight: Array, bias: Array | None = None) -> None:
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2 or 0 in weight.shape:
            raise InvalidInputError(("weight",), f"linear needs a weight of shape (out, in), got {list(weight.shape)}")
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float64)
            if bias.shape != (weight.shape[0],):
                raise InvalidInputError(("bias",), f"bias has shape {list(bias.shape)}, not [{weight.shape[0]}]")
        self.weight, self.bias = weight, bias

    @property
    def parameters(self) -> Mapping[str, Array]:
        return {"weight": self.weight} if self.bias is None else {"weight": self.weight, "bias": self.bias}

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if len(input_shapes) != 1:
            raise InvalidInputError(("inputs",), f"linear takes one input, got {len(input_shapes)}")
        shape = tuple(input_shapes[0])
        if not shape or shape[-1] != self.weight.shape[1]:
            raise InvalidInputError(
                ("inputs", 0),
                f"linear with weight {list(self.weight.shape)} needs inputs (..., {self.weight.shape[1]}), "
                f"got {list(shape)}",
            )
        return (*shape[:-1], self.weight.shape[0])

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        y = x @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        return _Affine(y, x, self.weight, self.bias is not None)

    @cached_property
    def _norm(self) -> float:
        return spectral.spectral_norm(self.weight, NORM_RTOL).value * (1 + 2 * NORM_RTOL)

    def lipschitz(self) -> float:
        return self._norm
