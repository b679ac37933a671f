"""Activation functions h, their derivatives h' and the exact bound sup_z |h'(z)|.

The bound is what the product bound ``∏ σ_j·sup|h_j'|`` multiplies by; the derivative, evaluated on the
probe pre-activations, gives the data-dependent γ_j = max_i |h'(z_i)|. At kinks the derivative takes the value
PyTorch's autograd uses (ReLU'(0) = 0, LeakyReLU'(0) = slope, ELU'(0) = α, Hardtanh' = 0 at the clip points).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import expit, ndtr

from service.errors import InvalidInputError, Location

Array = NDArray[np.float64]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Activation(ABC):
    """An elementwise activation h with its derivative and ``derivative_bound = sup_z |h'(z)|``."""

    name: ClassVar[str]
    formula: ClassVar[str]
    derivative_formula: ClassVar[str]
    bound_formula: ClassVar[str]
    homogeneous: ClassVar[bool] = False
    """Positively homogeneous, h(c·z) = c·h(z) for every c > 0 (so h'(c·z) = h'(z)): the forward pass carries
    such a layer's values scaled by any power of two (service.forward)."""

    @abstractmethod
    def value(self, z: Array) -> Array:
        """h(z), elementwise."""

    @abstractmethod
    def derivative(self, z: Array) -> Array:
        """h'(z), elementwise."""

    @property
    @abstractmethod
    def derivative_bound(self) -> float:
        """sup over all real z of |h'(z)|."""

    def parameters(self) -> dict[str, float]:
        """The activation's parameters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __call__(self, z: Array) -> Array:
        return self.value(z)


def _param(default: float, description: str) -> Any:
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True)
class Linear(Activation):
    name = "linear"
    homogeneous = True
    formula = "h(z) = z"
    derivative_formula = "h'(z) = 1"
    bound_formula = "1"

    def value(self, z: Array) -> Array:
        return z

    def derivative(self, z: Array) -> Array:
        return np.ones_like(z)

    @property
    def derivative_bound(self) -> float:
        return 1.0


@dataclass(frozen=True)
class ReLU(Activation):
    name = "relu"
    homogeneous = True
    formula = "h(z) = max(z, 0)"
    derivative_formula = "h'(z) = 1 if z > 0 else 0"
    bound_formula = "1"

    def value(self, z: Array) -> Array:
        return np.maximum(z, 0.0)

    def derivative(self, z: Array) -> Array:
        return (z > 0).astype(z.dtype)

    @property
    def derivative_bound(self) -> float:
        return 1.0


@dataclass(frozen=True)
class LeakyReLU(Activation):
    name = "leaky_relu"
    homogeneous = True
    formula = "h(z) = z if z > 0 else negative_slope·z"
    derivative_formula = "h'(z) = 1 if z > 0 else negative_slope"
    bound_formula = "max(1, |negative_slope|)"
    negative_slope: float = _param(0.01, "slope for z ≤ 0")

    def value(self, z: Array) -> Array:
        return np.where(z > 0, z, self.negative_slope * z)

    def derivative(self, z: Array) -> Array:
        return np.where(z > 0, 1.0, self.negative_slope).astype(z.dtype)

    @property
    def derivative_bound(self) -> float:
        return max(1.0, abs(self.negative_slope))


@dataclass(frozen=True)
class Tanh(Activation):
    name = "tanh"
    formula = "h(z) = tanh(z)"
    derivative_formula = "h'(z) = 1 − tanh²(z)"
    bound_formula = "1 (at z = 0)"

    def value(self, z: Array) -> Array:
        return np.tanh(z)

    def derivative(self, z: Array) -> Array:
        return 1.0 - np.tanh(z) ** 2

    @property
    def derivative_bound(self) -> float:
        return 1.0


@dataclass(frozen=True)
class Sigmoid(Activation):
    name = "sigmoid"
    formula = "h(z) = 1 / (1 + e^(−z))"
    derivative_formula = "h'(z) = h(z)·(1 − h(z))"
    bound_formula = "1/4 (at z = 0)"

    def value(self, z: Array) -> Array:
        return np.asarray(expit(z))

    def derivative(self, z: Array) -> Array:
        s = expit(z)
        return np.asarray(s * (1.0 - s))

    @property
    def derivative_bound(self) -> float:
        return 0.25


@dataclass(frozen=True)
class HardTanh(Activation):
    name = "hard_tanh"
    formula = "h(z) = min(max(z, min_val), max_val)"
    derivative_formula = "h'(z) = 1 if min_val < z < max_val else 0"
    bound_formula = "1"
    min_val: float = _param(-1.0, "lower clip point")
    max_val: float = _param(1.0, "upper clip point")

    def __post_init__(self) -> None:
        if not self.min_val < self.max_val:
            raise InvalidInputError(("max_val",), "hard_tanh needs min_val < max_val")

    def value(self, z: Array) -> Array:
        return np.clip(z, self.min_val, self.max_val)

    def derivative(self, z: Array) -> Array:
        return ((z > self.min_val) & (z < self.max_val)).astype(z.dtype)

    @property
    def derivative_bound(self) -> float:
        return 1.0


@dataclass(frozen=True)
class ELU(Activation):
    name = "elu"
    formula = "h(z) = z if z > 0 else alpha·(e^z − 1)"
    derivative_formula = "h'(z) = 1 if z > 0 else alpha·e^z"
    bound_formula = "max(1, alpha)"
    alpha: float = _param(1.0, "scale of the negative branch (≥ 0)")

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise InvalidInputError(("alpha",), "elu needs alpha ≥ 0")

    def value(self, z: Array) -> Array:
        return np.where(z > 0, z, self.alpha * np.expm1(np.minimum(z, 0.0)))

    def derivative(self, z: Array) -> Array:
        return np.where(z > 0, 1.0, self.alpha * np.exp(np.minimum(z, 0.0)))

    @property
    def derivative_bound(self) -> float:
        return max(1.0, self.alpha)


@dataclass(frozen=True)
class SELU(Activation):
    name = "selu"
    formula = "h(z) = λ·z if z > 0 else λ·α·(e^z − 1), λ = 1.0507009873554805, α = 1.6732632423543772"
    derivative_formula = "h'(z) = λ if z > 0 else λ·α·e^z"
    bound_formula = "λ·α ≈ 1.7580993408473766"

    def value(self, z: Array) -> Array:
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0)))

    def derivative(self, z: Array) -> Array:
        return SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0.0)))

    @property
    def derivative_bound(self) -> float:
        return SELU_SCALE * SELU_ALPHA


@dataclass(frozen=True)
class GELU(Activation):
    name = "gelu"
    formula = "h(z) = z·Φ(z), Φ the standard normal CDF (exact erf form)"
    derivative_formula = "h'(z) = Φ(z) + z·φ(z)"
    bound_formula = "Φ(√2) + √2·φ(√2) ≈ 1.1289 (h'' = φ(z)(2 − z²) vanishes at z = ±√2)"

    def value(self, z: Array) -> Array:
        return np.asarray(z * ndtr(z))

    def derivative(self, z: Array) -> Array:
        return np.asarray(ndtr(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))

    @property
    def derivative_bound(self) -> float:
        root2 = math.sqrt(2.0)
        return float(ndtr(root2)) + root2 * math.exp(-1.0) / math.sqrt(2.0 * math.pi)


@cache
def _silu_bound() -> float:
    """sup h' for SiLU: h'' = s(1−s)(2 − z·tanh(z/2)) vanishes where z·tanh(z/2) = 2."""
    z = float(brentq(lambda x: x * math.tanh(x / 2.0) - 2.0, 1.0, 4.0, xtol=1e-15, rtol=1e-15))
    s = 1.0 / (1.0 + math.exp(-z))
    return s * (1.0 + z * (1.0 - s))


@dataclass(frozen=True)
class SiLU(Activation):
    name = "silu"
    formula = "h(z) = z·s(z), s the logistic sigmoid"
    derivative_formula = "h'(z) = s(z)·(1 + z·(1 − s(z)))"
    bound_formula = "h'(z*) ≈ 1.0998, z* ≈ 2.3994 the root of z·tanh(z/2) = 2"

    def value(self, z: Array) -> Array:
        return np.asarray(z * expit(z))

    def derivative(self, z: Array) -> Array:
        s = expit(z)
        return np.asarray(s * (1.0 + z * (1.0 - s)))

    @property
    def derivative_bound(self) -> float:
        return _silu_bound()


@dataclass(frozen=True)
class Softplus(Activation):
    name = "softplus"
    formula = "h(z) = log(1 + e^(beta·z)) / beta"
    derivative_formula = "h'(z) = s(beta·z), s the logistic sigmoid"
    bound_formula = "1 (approached as z → ∞)"
    beta: float = _param(1.0, "sharpness (> 0)")

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise InvalidInputError(("beta",), "softplus needs beta > 0")

    def value(self, z: Array) -> Array:
        return np.logaddexp(0.0, self.beta * z) / self.beta

    def derivative(self, z: Array) -> Array:
        return np.asarray(expit(self.beta * z))

    @property
    def derivative_bound(self) -> float:
        return 1.0


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Linear, ReLU, LeakyReLU, Tanh, Sigmoid, HardTanh, ELU, SELU, GELU, SiLU, Softplus)
}


def make_activation(name: str, location: Location = (), **parameters: float) -> Activation:
    """The activation called ``name`` with the given parameters (the others at their defaults)."""
    cls = ACTIVATIONS.get(name)
    if cls is None:
        raise InvalidInputError(
            (*location, "name"), f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    known = {f.name for f in fields(cls)}
    for key in parameters:
        if key not in known:
            raise InvalidInputError((*location, key), f"{name} has no parameter {key!r}")
    try:
        return cls(**parameters)
    except InvalidInputError as exc:
        raise InvalidInputError((*location, *exc.location), exc.message) from None


def parameter_descriptions(cls: type[Activation]) -> dict[str, tuple[float, str]]:
    """Each parameter of ``cls`` with its default and description."""
    return {f.name: (float(f.default), f.metadata["description"]) for f in fields(cls)}  # type: ignore[arg-type]
