"""Shape graph ops: permutations of the entries, so J is a permutation (or, for concat, the stacked inputs'
permutation) and ‖J‖₂ = 1. Axes are per-probe axes (the probe axis 0 is not counted): torch's flatten(x, 1) is
flatten(start_dim=0) here.

    reshape/flatten: y = x viewed with another shape (row-major),  jvp(v) = v reshaped, vjp(u) = u reshaped back
    permute:         y = xᵀ with axes permuted,                       vjp(u) = u with the inverse permutation
    concat:          y = [x_1, …, x_k] along an axis,                 vjp(u) = the pieces of u
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.errors import InvalidInputError
from service.graph.op import Array, Linearised, Op


@dataclass
class _Reshaped(Linearised):
    """y = x reshaped per probe: jvp(v) = v reshaped like y, vjp(u) = u reshaped like x (``input_shape``, one
    probe's)."""

    output: Array
    input_shape: tuple[int, ...]

    def jvp(self, tangents: Sequence[Array]) -> Array:
        v = tangents[0]
        return v.reshape(len(v), *self.output.shape[1:])

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (cotangent.reshape(len(cotangent), *self.input_shape),)


@dataclass
class _Permuted(Linearised):
    """y = x with its axes (the probe axis 0 first) in the order ``axes``: jvp(v) = v so permuted, vjp(u) = u with
    the ``inverse`` order."""

    output: Array
    axes: tuple[int, ...]
    inverse: tuple[int, ...]

    def jvp(self, tangents: Sequence[Array]) -> Array:
        return tangents[0].transpose(self.axes)

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (np.ascontiguousarray(cotangent.transpose(self.inverse)),)


@dataclass
class _Concatenated(Linearised):
    """y = the inputs concatenated along ``axis`` (of the probe-stacked arrays): jvp(v) = the tangents so
    concatenated, vjp(u) = the pieces of u split at ``cuts``."""

    output: Array
    axis: int
    cuts: NDArray[np.intp]

    def jvp(self, tangents: Sequence[Array]) -> Array:
        return np.concatenate(tangents, axis=self.axis)

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return tuple(np.split(cotangent, self.cuts, axis=self.axis))


def _single(input_shapes: Sequence[tuple[int, ...]], name: str) -> tuple[int, ...]:
    if len(input_shapes) != 1:
        raise InvalidInputError(("inputs",), f"{name} takes one input, got {len(input_shapes)}")
    return tuple(input_shapes[0])


def _axis(axis: int, ndim: int, field: str) -> int:
    if not -ndim <= axis < ndim:
        raise InvalidInputError((field,), f"axis {axis} is out of range for a per-probe tensor of {ndim} axes")
    return axis % ndim


class Reshape(Op):
    """y = x reshaped per probe to ``shape`` (one entry may be −1), row-major; J = I."""

    name = "reshape"

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(s) for s in shape)
        if sum(s == -1 for s in self.shape) > 1 or any(s < -1 for s in self.shape):
            raise InvalidInputError(("shape",), f"reshape needs sizes ≥ 0 and at most one −1, got {list(self.shape)}")

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        size = math.prod(_single(input_shapes, self.name))
        known = math.prod(s for s in self.shape if s != -1)
        if -1 in self.shape and known > 0 and size % known == 0:
            return tuple(size // known if s == -1 else s for s in self.shape)
        if -1 not in self.shape and known == size:
            return self.shape
        raise InvalidInputError(("shape",), f"cannot reshape {size} entries to {list(self.shape)}")

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        out = self.output_shape([x.shape[1:]])
        return _Reshaped(x.reshape(len(x), *out), tuple(x.shape[1:]))

    def lipschitz(self) -> float:
        return 1.0


class Flatten(Reshape):
    """y = x with per-probe axes start_dim…end_dim merged into one (torch.flatten's rule, per probe); J = I."""

    name = "flatten"

    def __init__(self, start_dim: int = 0, end_dim: int = -1) -> None:
        self.start_dim, self.end_dim = start_dim, end_dim

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        shape = _single(input_shapes, self.name)
        if not shape:
            return (1,)
        start, end = _axis(self.start_dim, len(shape), "start_dim"), _axis(self.end_dim, len(shape), "end_dim")
        if start > end:
            raise InvalidInputError(("end_dim",), f"flatten needs start_dim ≤ end_dim, got {start} > {end}")
        return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])


class Permute(Op):
    """y = x with per-probe axes permuted, y[i_{dims[0]}, …] as torch.permute; J is a permutation."""

    name = "permute"

    def __init__(self, dims: Sequence[int]) -> None:
        self.dims = tuple(int(d) for d in dims)

    def _order(self, ndim: int) -> tuple[int, ...]:
        order = tuple(_axis(d, ndim, "dims") for d in self.dims)
        if sorted(order) != list(range(ndim)):
            raise InvalidInputError(("dims",), f"{list(self.dims)} is not a permutation of {ndim} axes")
        return order

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        shape = _single(input_shapes, self.name)
        return tuple(shape[d] for d in self._order(len(shape)))

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        axes = (0, *(d + 1 for d in self._order(x.ndim - 1)))
        inverse = tuple(int(a) for a in np.argsort(axes))
        return _Permuted(x.transpose(axes), axes, inverse)

    def lipschitz(self) -> float:
        return 1.0


class Transpose(Permute):
    """y = x with per-probe axes dim0 and dim1 swapped (torch.transpose)."""

    name = "transpose"

    def __init__(self, dim0: int, dim1: int) -> None:
        self.dim0, self.dim1 = dim0, dim1

    def _order(self, ndim: int) -> tuple[int, ...]:
        a, b = _axis(self.dim0, ndim, "dim0"), _axis(self.dim1, ndim, "dim1")
        order = list(range(ndim))
        order[a], order[b] = b, a
        return tuple(order)


class Concat(Op):
    """y = [x_1, …, x_k] along per-probe ``axis`` (torch.cat); J = [I … I] up to a permutation, ‖J‖₂ = 1."""

    name = "concat"
    arity = None

    def __init__(self, axis: int = 0) -> None:
        self.axis = axis

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if not input_shapes:
            raise InvalidInputError(("inputs",), "concat needs at least one input")
        first = tuple(input_shapes[0])
        axis = _axis(self.axis, len(first), "axis")
        for i, shape in enumerate(input_shapes):
            if len(shape) != len(first) or any(
                s != f for j, (s, f) in enumerate(zip(shape, first, strict=True)) if j != axis
            ):
                raise InvalidInputError(
                    ("inputs", i), f"concat along axis {axis}: input {i} is {list(shape)}, input 0 {list(first)}"
                )
        return (*first[:axis], sum(s[axis] for s in input_shapes), *first[axis + 1 :])

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        self.output_shape([x.shape[1:] for x in inputs])
        axis = _axis(self.axis, inputs[0].ndim - 1, "axis") + 1
        cuts = np.cumsum([x.shape[axis] for x in inputs])[:-1]
        return _Concatenated(np.concatenate(inputs, axis=axis), axis, cuts)

    def lipschitz(self) -> float:
        return 1.0
