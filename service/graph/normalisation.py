"""Normalisation graph ops: inference batch_norm, layer_norm, rms_norm and group_norm.

batch_norm: per channel c (axis 0 of the per-probe tensor),
    y = (x − μ_c)·s_c + β_c,   s_c = γ_c / √(σ²_c + ε),
with the running statistics μ, σ²: a diagonal linear map, J = diag(s_c), ‖J‖₂ = max_c |s_c| exactly;
∂/∂γ_c = Σ u·(x − μ_c)/√(σ²_c + ε), ∂/∂β_c = Σ u (over probes and the channel's other axes).
"""

from __future__ import annotations

import math
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


@dataclass
class _Normalised(Linearised):
    """y = γ·x̂ + β over groups of the last ``n`` entries, x̂ = (x − m)/s (m = mean or 0, s = √(var + ε)).

    J = diag(γ)·(1/s)·(I − c·11ᵀ/n − x̂x̂ᵀ/n) per group (c = 1 when centred, 0 for RMS norm)."""

    output: Array
    hat: Array
    inverse: Array
    gamma: Array | None
    centred: bool
    shape: tuple[int, ...]

    def _project(self, g: Array) -> Array:
        centred = g - g.mean(axis=-1, keepdims=True) if self.centred else g
        projected: Array = (centred - self.hat * (g * self.hat).mean(axis=-1, keepdims=True)) * self.inverse
        return projected

    def jvp(self, tangents: Sequence[Array]) -> Array:
        flat = tangents[0].reshape(self.hat.shape)
        out = self._project(flat)
        return (out if self.gamma is None else out * self.gamma).reshape(self.output.shape)

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        g = cotangent.reshape(self.hat.shape)
        return (self._project(g if self.gamma is None else g * self.gamma).reshape(self.output.shape),)

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        if self.gamma is None:
            return {}
        g = cotangent.reshape(self.hat.shape)
        lead = tuple(range(g.ndim - 1))
        return {
            "weight": (g * self.hat).sum(axis=lead).reshape(self.shape),
            "bias": g.sum(axis=lead).reshape(self.shape),
        }


class LayerNorm(Op):
    """layer_norm over the last axes ``normalized_shape``: y = γ·(x − mean)/√(var + ε) + β (biased var).

    J = diag(γ)/s·(I − 11ᵀ/n − x̂x̂ᵀ/n); the projection has eigenvalues 1, 0 (on 1) and ε/(var + ε) (on x̂), so
    ‖J‖₂ ≤ max|γ|/s ≤ max|γ|/√ε, the sup over inputs, approached as var → 0 (attained when γ is constant)."""

    name = "layer_norm"
    lipschitz_note = "max|γ|/√ε: the sup over inputs of ‖J‖₂, approached as the variance → 0"
    centred = True

    def __init__(
        self, normalized_shape: Sequence[int], weight: Array | None = None, bias: Array | None = None, eps: float = 1e-5
    ) -> None:
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise InvalidInputError(("normalized_shape",), f"needs positive sizes, got {list(self.normalized_shape)}")
        if not eps > 0 or not np.isfinite(eps):
            raise InvalidInputError(("eps",), f"eps must be positive and finite, got {eps}")
        self.eps = float(eps)
        self.weight = None if weight is None else _shaped(weight, "weight", self.normalized_shape)
        self.bias = None if bias is None else _shaped(bias, "bias", self.normalized_shape)
        if (self.weight is None) != (self.bias is None):
            raise InvalidInputError(("bias",), "give both weight and bias, or neither")

    @property
    def parameters(self) -> Mapping[str, Array]:
        return {} if self.weight is None or self.bias is None else {"weight": self.weight, "bias": self.bias}

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if len(input_shapes) != 1:
            raise InvalidInputError(("inputs",), f"{self.name} takes one input, got {len(input_shapes)}")
        shape, k = tuple(input_shapes[0]), len(self.normalized_shape)
        if shape[len(shape) - k :] != self.normalized_shape or len(shape) < k:
            raise InvalidInputError(
                ("inputs", 0), f"{self.name} over {list(self.normalized_shape)} cannot take inputs {list(shape)}"
            )
        return shape

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        self.output_shape([x.shape[1:]])
        flat = x.reshape(*x.shape[: x.ndim - len(self.normalized_shape)], -1)
        centred = flat - flat.mean(axis=-1, keepdims=True) if self.centred else flat
        inverse = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + self.eps)
        hat = centred * inverse
        gamma = None if self.weight is None else self.weight.ravel()
        y = hat if gamma is None or self.bias is None else hat * gamma + self.bias.ravel()
        return _Normalised(y.reshape(x.shape), hat, inverse, gamma, self.centred, self.normalized_shape)

    def lipschitz(self) -> float:
        peak = 1.0 if self.weight is None else float(np.abs(self.weight).max())
        return peak / float(np.sqrt(self.eps))


def _shaped(values: Array, field: str, shape: tuple[int, ...]) -> Array:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape or not np.isfinite(array).all():
        raise InvalidInputError((field,), f"{field} must be finite of shape {list(shape)}, got {list(array.shape)}")
    return array


class RMSNorm(LayerNorm):
    """rms_norm (torch.nn.RMSNorm) over the last axes: y = γ·x/√(mean(x²) + ε), no bias.

    J = diag(γ)/r·(I − x̂x̂ᵀ/n), r = √(mean(x²) + ε), x̂ = x/r; the projection's eigenvalues are 1 and
    ε/(mean(x²) + ε), so ‖J‖₂ ≤ max|γ|/√ε, attained at x = 0. ``eps`` None is torch's default for float64
    inputs, the float64 machine epsilon."""

    name = "rms_norm"
    lipschitz_note = "max|γ|/√ε: the sup over inputs of ‖J‖₂, attained at x = 0"
    centred = False

    def __init__(self, normalized_shape: Sequence[int], weight: Array | None = None, eps: float | None = None) -> None:
        shape = tuple(int(s) for s in normalized_shape)
        bias = None if weight is None else np.zeros(shape)
        super().__init__(shape, weight, bias, float(np.finfo(np.float64).eps) if eps is None else eps)

    @property
    def parameters(self) -> Mapping[str, Array]:
        return {} if self.weight is None else {"weight": self.weight}

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        found = super().linearise(inputs)
        assert isinstance(found, _Normalised)
        return _RMS(found.output, found.hat, found.inverse, found.gamma, False, found.shape)


class _RMS(_Normalised):
    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        found = super().vjp_parameters(cotangent)
        found.pop("bias", None)
        return found


class GroupNorm(Op):
    """group_norm (torch.nn.GroupNorm) on per-probe inputs (C, *S): the C channels split into ``num_groups`` groups
    of C/G, each group (its channels and positions, n entries) normalised as layer_norm does, then γ_c·x̂ + β_c per
    channel. J = diag(γ)/s·(I − 11ᵀ/n − x̂x̂ᵀ/n) per group, so ‖J‖₂ ≤ max|γ|/√ε as for layer_norm (approached as a
    group's variance → 0). ``num_channels`` defaults to the weight's length, else any C divisible by G."""

    name = "group_norm"
    lipschitz_note = "max|γ|/√ε: the sup over inputs of ‖J‖₂, approached as a group's variance → 0"

    def __init__(
        self,
        num_groups: int,
        num_channels: int | None = None,
        weight: Array | None = None,
        bias: Array | None = None,
        eps: float = 1e-5,
    ) -> None:
        if not isinstance(num_groups, int | np.integer) or num_groups < 1:
            raise InvalidInputError(("num_groups",), f"must be a positive int, got {num_groups!r}")
        if not eps > 0 or not np.isfinite(eps):
            raise InvalidInputError(("eps",), f"eps must be positive and finite, got {eps}")
        if (weight is None) != (bias is None):
            raise InvalidInputError(("weight" if weight is None else "bias",), "give both weight and bias, or neither")
        if num_channels is None and weight is not None:
            num_channels = len(np.asarray(weight))
        if num_channels is not None and (num_channels < 1 or num_channels % num_groups):
            raise InvalidInputError(("num_channels",), f"{num_channels} channels do not split into {num_groups} groups")
        self.num_groups, self.num_channels, self.eps = int(num_groups), num_channels, float(eps)
        self.weight = None if weight is None else _vector(weight, "weight", num_channels)
        self.bias = None if bias is None else _vector(bias, "bias", num_channels)

    @property
    def parameters(self) -> Mapping[str, Array]:
        return {} if self.weight is None or self.bias is None else {"weight": self.weight, "bias": self.bias}

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if len(input_shapes) != 1:
            raise InvalidInputError(("inputs",), f"group_norm takes one input, got {len(input_shapes)}")
        shape = tuple(input_shapes[0])
        channels = self.num_channels
        if not shape or (channels is not None and shape[0] != channels) or shape[0] % self.num_groups:
            expected = f"({channels}, …)" if channels is not None else f"(C, …) with C divisible by {self.num_groups}"
            raise InvalidInputError(("inputs", 0), f"group_norm needs inputs {expected}, got {list(shape)}")
        return shape

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        self.output_shape([x.shape[1:]])
        flat = x.reshape(len(x), self.num_groups, -1)
        centred = flat - flat.mean(axis=-1, keepdims=True)
        inverse = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + self.eps)
        hat = centred * inverse
        if self.weight is None or self.bias is None:
            return _Grouped(hat.reshape(x.shape), hat, inverse, None, True, x.shape[1:])
        spread = math.prod(x.shape[2:])
        gamma = np.repeat(self.weight, spread).reshape(self.num_groups, -1)
        beta = np.repeat(self.bias, spread).reshape(self.num_groups, -1)
        return _Grouped((hat * gamma + beta).reshape(x.shape), hat, inverse, gamma, True, x.shape[1:])

    def lipschitz(self) -> float:
        peak = 1.0 if self.weight is None else float(np.abs(self.weight).max())
        return peak / float(np.sqrt(self.eps))


class _Grouped(_Normalised):
    """_Normalised over (B, G, n) with γ per entry; the parameters' cotangents summed per channel (``shape`` is one
    probe's (C, *S))."""

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        if self.gamma is None:
            return {}
        g = cotangent.reshape(len(cotangent), self.shape[0], -1)
        hat = self.hat.reshape(g.shape)
        return {"weight": (g * hat).sum(axis=(0, 2)), "bias": g.sum(axis=(0, 2))}
