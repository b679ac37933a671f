"""The interface every graph op implements: a forward pass that keeps what its derivatives need.

An op maps its input tensors to one output tensor, independently for each probe: every array carries the probes
on its first axis, ``x[b]`` is probe b's tensor (``(C, H, W)`` for images, ``(T, d)`` for sequences, ``(d,)`` for
vectors). ``op.linearise(inputs)`` evaluates the op at ``inputs`` and returns a ``Linearised``: the output
``y = f(x_1, …, x_k)``, and the linear maps of the derivative at that point, per probe,

    jvp(v_1, …, v_k) = Σ_i ∂f/∂x_i · v_i        (Jacobian–vector product, tangents shaped like the inputs)
    vjp(u)           = (u·∂f/∂x_1, …, u·∂f/∂x_k) (vector–Jacobian product, cotangent shaped like the output)
    vjp_parameters(u)= {name: Σ_b u_b·∂f_b/∂θ}   (the cotangent pulled back onto each parameter tensor θ,
                                                   summed over the probes, shaped like θ)

so that Lanczos on the block's Gram operator needs neither a Jacobian formed nor the forward pass repeated.
``op.lipschitz()`` is a bound L with ‖∂f/∂x‖₂ ≤ L at every input (for a multi-input op, of the Jacobian with
respect to all its inputs stacked), or None where no global bound exists (attention); ``op.lipschitz_note`` says
what the bound rests on where it is not the obvious one (LayerNorm's: max|γ|/√ε).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.errors import InvalidInputError, Location

Array = NDArray[np.float64]


def finite_array(value: ArrayLike, location: Location) -> Array:
    """``value`` (a parameter tensor) as a float64 array; InvalidInputError at ``location`` when it is not finite."""
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(location, "contains NaN or infinite values")
    return array


def check_shape(array: Array, shape: tuple[int, ...], location: Location) -> None:
    """InvalidInputError at ``location`` unless ``array`` has ``shape``."""
    if array.shape != shape:
        raise InvalidInputError(location, f"has shape {list(array.shape)}, expected {list(shape)}")


class Linearised(ABC):
    """An op evaluated at one point: its output and the derivative's products there."""

    output: Array

    @abstractmethod
    def jvp(self, tangents: Sequence[Array]) -> Array:
        """Σ_i ∂f/∂x_i · v_i for each probe: tangents shaped like the inputs, the result like the output."""

    @abstractmethod
    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        """(u·∂f/∂x_i)_i for each probe: the cotangent shaped like the output, one result per input."""

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        """{θ: Σ_b u_b·∂f_b/∂θ} for each parameter tensor θ of the op (none by default)."""
        return {}


class Op(ABC):
    """A graph op: ``arity`` inputs (None for any number ≥ 1), its parameters, its linearisation and its bound."""

    name: ClassVar[str]
    arity: ClassVar[int | None] = 1
    lipschitz_note: ClassVar[str | None] = None

    @property
    def parameters(self) -> Mapping[str, Array]:
        """The op's parameter tensors by name (``weight``, ``bias``, …), as the model names them."""
        return {}

    @abstractmethod
    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        """One probe's output shape from its input shapes (no probe axis); InvalidInputError when they do not fit."""

    @abstractmethod
    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        """The op at ``inputs`` (each with the probes on axis 0)."""

    def forward(self, inputs: Sequence[Array]) -> Array:
        """f(x_1, …, x_k) alone (ops override it where that is cheaper than linearising)."""
        return self.linearise(inputs).output

    @abstractmethod
    def lipschitz(self) -> float | None:
        """L with ‖∂f/∂x‖₂ ≤ L everywhere, or None when there is no global bound."""
