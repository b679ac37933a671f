"""Elementwise graph ops: an activation h, the sum of k tensors, multiplication by a constant.

activation: y = h(x),        J = diag(h'(x)),   ‖J‖₂ ≤ sup|h'| (Activation.derivative_bound)
add:        y = Σ_i x_i,     J = [I … I],       ‖J‖₂ = √k (JJᵀ = k·I)
mul:        y = c·x,         J = c·I,           ‖J‖₂ = |c|
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.activations import Activation
from service.errors import InvalidInputError
from service.graph.op import Array, Linearised, Op


@dataclass
class _Diagonal(Linearised):
    """y with J = diag(d): jvp(v) = d·v, vjp(u) = d·u."""

    output: Array
    slope: Array

    def jvp(self, tangents: Sequence[Array]) -> Array:
        return self.slope * tangents[0]

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (self.slope * cotangent,)


class ActivationOp(Op):
    """y = h(x) elementwise; ∂y/∂x = diag(h'(x)); Lipschitz bound sup_z |h'(z)|."""

    name = "activation"

    def __init__(self, activation: Activation) -> None:
        self.activation = activation

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        return _one(input_shapes)

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        return _Diagonal(self.activation.value(x), self.activation.derivative(x))

    def forward(self, inputs: Sequence[Array]) -> Array:
        return self.activation.value(inputs[0])

    def lipschitz(self) -> float:
        return self.activation.derivative_bound


@dataclass
class _Sum(Linearised):
    output: Array
    count: int

    def jvp(self, tangents: Sequence[Array]) -> Array:
        total: Array = np.sum(tangents, axis=0)
        return total

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return tuple(cotangent.copy() for _ in range(self.count))


class Add(Op):
    """y = Σ_{i<k} x_i (equal shapes, no broadcasting); J = [I … I], ‖J‖₂ = √k."""

    name = "add"
    arity = None

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if not input_shapes:
            raise InvalidInputError(("inputs",), "add needs at least one input")
        for i, shape in enumerate(input_shapes):
            if tuple(shape) != tuple(input_shapes[0]):
                raise InvalidInputError(
                    ("inputs", i),
                    f"add needs equal shapes: input {i} is {list(shape)}, input 0 {list(input_shapes[0])}",
                )
        self._count = len(input_shapes)
        return tuple(input_shapes[0])

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        self.output_shape([x.shape[1:] for x in inputs])
        return _Sum(np.sum(inputs, axis=0), len(inputs))

    def lipschitz(self) -> float | None:
        return None if self._count is None else math.sqrt(self._count)

    _count: int | None = None

    def __init__(self, count: int | None = None) -> None:
        """``count``: the number of inputs k, for the bound √k (else set by output_shape from the inputs seen;
        lipschitz() is None until then)."""
        self._count = count


class Mul(Op):
    """y = c·x for a constant scalar c; J = c·I, ‖J‖₂ = |c|."""

    name = "mul"

    def __init__(self, constant: float) -> None:
        if not math.isfinite(constant):
            raise InvalidInputError(("constant",), f"mul needs a finite constant, got {constant}")
        self.constant = float(constant)

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        return _one(input_shapes)

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        return _Diagonal(self.constant * x, np.full_like(x, self.constant))

    def lipschitz(self) -> float:
        return abs(self.constant)


def _one(input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape of the single input, InvalidInputError unless there is exactly one."""
    if len(input_shapes) != 1:
        raise InvalidInputError(("inputs",), f"expected one input, got {len(input_shapes)}")
    return tuple(input_shapes[0])
