"""The linear maps of a layer, z = A·a: a dense matrix, a convolution (service.conv) or the identity of a skip.

Activations are rows (one per probe), so every map is applied to a stack of rows at once:
``apply(x)`` gives the rows A·x_b (x @ Aᵀ), ``adjoint(y)`` the rows Aᵀ·y_b (y @ A). The analysis needs nothing
else of a map but its norm, its parameters' gradient and, for small maps, its matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from service.spectral import SpectralNorm, spectral_norm

Array = NDArray[np.float64]


class Linear(Protocol):
    """A linear map A of shape (m, n) acting on rows."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def fan_in(self) -> int:
        """The inputs each output sums over (n for a matrix, c_in·kh·kw for a convolution)."""
        ...

    @property
    def entries(self) -> Array:
        """The parameters (the matrix, or the kernel)."""
        ...

    @property
    def flops_per_apply(self) -> float:
        """Floating-point operations of A·x for one vector x."""
        ...

    def apply(self, x: Array) -> Array: ...

    def adjoint(self, y: Array) -> Array: ...

    def kernel_gradient(self, delta: Array, a: Array) -> Array:
        """∂/∂θ of Σ_b ⟨δ_b, A_θ·a_b⟩ for the parameters θ = ``entries``: δᵀa for a matrix."""
        ...

    def dense(self) -> Array:
        """The (m, n) matrix of A; only for small maps."""
        ...

    def norm(self, rtol: float) -> SpectralNorm:
        """‖A‖₂ to relative accuracy ``rtol``."""
        ...


@dataclass(frozen=True)
class Dense:
    """A = W, an (m, n) matrix (out × in, as torch.nn.Linear)."""

    matrix: Array

    @property
    def shape(self) -> tuple[int, int]:
        m, n = self.matrix.shape
        return int(m), int(n)

    @property
    def fan_in(self) -> int:
        return self.shape[1]

    @property
    def entries(self) -> Array:
        return self.matrix

    @property
    def flops_per_apply(self) -> float:
        return 2.0 * self.matrix.size

    def apply(self, x: Array) -> Array:
        z: Array = x @ self.matrix.T
        return z

    def adjoint(self, y: Array) -> Array:
        a: Array = y @ self.matrix
        return a

    def kernel_gradient(self, delta: Array, a: Array) -> Array:
        gradient: Array = delta.T @ a
        return gradient

    def dense(self) -> Array:
        return self.matrix

    def norm(self, rtol: float) -> SpectralNorm:
        return spectral_norm(self.matrix, rtol)


@dataclass(frozen=True)
class Identity:
    """A = I_n: the skip path of a residual layer a_j = a_{j−1} + h(W_j a_{j−1} + b_j)."""

    n: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.n, self.n

    @property
    def fan_in(self) -> int:
        return 1

    @property
    def entries(self) -> Array:
        return np.ones(self.n)

    @property
    def flops_per_apply(self) -> float:
        return 0.0

    def apply(self, x: Array) -> Array:
        return x

    def adjoint(self, y: Array) -> Array:
        return y

    def kernel_gradient(self, delta: Array, a: Array) -> Array:
        return np.zeros(0)

    def dense(self) -> Array:
        return np.eye(self.n)

    def norm(self, rtol: float) -> SpectralNorm:
        return SpectralNorm(1.0, "exact", 0)
