"""Normalisation graph ops. Only inference-mode batch norm so far (layer, RMS and group norm are still to do).

batch_norm: per channel c (axis 0 of the per-probe tensor),
    y = (x − μ_c)·s_c + β_c,   s_c = γ_c / √(σ²_c + ε),
with the running statistics μ, σ²: a diagonal linear map, J = diag(s_c), ‖J‖₂ = max_c |s_c| exactly;
∂/∂γ_c = Σ u·(x − μ_c)/√(σ²_c + ε), ∂/∂β_c = Σ u (over probes and the channel's other axes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInputError
from service.graph.op import Array, Linearised, Op


@dataclass
class _ChannelScale(Linearised):
    output: Array
    normalised: Array
    scale: Array
    affine: bool

    def jvp(self, tangents: Sequence[Array]) -> Array:
        return tangents[0] * self.scale

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (cotangent * self.scale,)

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        if not self.affine:
            return {}
        axes = tuple(a for a in range(cotangent.ndim) if a != 1)
        return {"weight": (cotangent * self.normalised).sum(axis=axes), "bias": cotangent.sum(axis=axes)}


class BatchNorm(Op):
    """Inference batch norm, y = (x − μ_c)·γ_c/√(σ²_c + ε) + β_c on channel axis 0; J = diag, ‖J‖₂ = max|s_c|."""

    name = "batch_norm"

    def __init__(
        self,
        running_mean: Array,
        running_var: Array,
        weight: Array | None = None,
        bias: Array | None = None,
        eps: float = 1e-5,
    ) -> None:
        self.mean = _vector(running_mean, "running_mean", None)
        channels = len(self.mean)
        self.var = _vector(running_var, "running_var", channels)
        if (self.var < 0).any():
            raise InvalidInputError(("running_var",), "running_var has negative entries")
        if not eps > 0 or not np.isfinite(eps):
            raise InvalidInputError(("eps",), f"eps must be positive and finite, got {eps}")
        if (weight is None) != (bias is None):
            raise InvalidInputError(("weight" if weight is None else "bias",), "give both weight and bias, or neither")
        self.weight = None if weight is None else _vector(weight, "weight", channels)
        self.bias = None if bias is None else _vector(bias, "bias", channels)
        self.eps = float(eps)
        self.inverse_std = 1.0 / np.sqrt(self.var + self.eps)

    @property
    def parameters(self) -> Mapping[str, Array]:
        if self.weight is None or self.bias is None:
            return {}
        return {"weight": self.weight, "bias": self.bias}

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if len(input_shapes) != 1:
            raise InvalidInputError(("inputs",), f"batch_norm takes one input, got {len(input_shapes)}")
        shape = tuple(input_shapes[0])
        if not shape or shape[0] != len(self.mean):
            raise InvalidInputError(
                ("inputs", 0),
                f"batch_norm over {len(self.mean)} channels needs inputs ({len(self.mean)}, …), got {list(shape)}",
            )
        return shape

    def _per_channel(self, values: Array, ndim: int) -> Array:
        return values.reshape(-1, *([1] * (ndim - 2)))

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        self.output_shape([x.shape[1:]])
        normalised = (x - self._per_channel(self.mean, x.ndim)) * self._per_channel(self.inverse_std, x.ndim)
        if self.weight is None or self.bias is None:
            return _ChannelScale(normalised, normalised, self._per_channel(self.inverse_std, x.ndim), False)
        gamma, beta = self._per_channel(self.weight, x.ndim), self._per_channel(self.bias, x.ndim)
        scale = gamma * self._per_channel(self.inverse_std, x.ndim)
        return _ChannelScale(normalised * gamma + beta, normalised, scale, True)

    def lipschitz(self) -> float:
        scale = self.inverse_std if self.weight is None else self.weight * self.inverse_std
        return float(np.abs(scale).max())


def _vector(values: Array, field: str, length: int | None) -> Array:
    """``values`` as a finite float64 vector of ``length`` entries (any positive length when None)."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or len(vector) == 0 or (length is not None and len(vector) != length):
        expected = "a non-empty vector" if length is None else f"a vector of {length} entries"
        raise InvalidInputError((field,), f"{field} must be {expected}, got shape {list(vector.shape)}")
    if not np.isfinite(vector).all():
        raise InvalidInputError((field,), f"{field} has NaN or infinite entries")
    return vector
