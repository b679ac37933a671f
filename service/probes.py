"""Probe inputs x (one row per probe) and regression targets y, given or drawn from a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.errors import InvalidInputError
from service.network import check_finite
from service.text import counted

Array = NDArray[np.float64]


@dataclass(frozen=True)
class ProbeSpec:
    """Given ``data`` (count × n_0) and ``targets`` (count × n_L), or draw x ~ N(0, scale²), y ~ N(0, 1)."""

    data: Array | None = None
    targets: Array | None = None
    count: int = 16
    scale: float = 1.0
    seed: int = 0

    def rows(self) -> int:
        """The number of probes."""
        return self.count if self.data is None else self.data.shape[0]


def make_probes(spec: ProbeSpec, n_in: int, n_out: int) -> tuple[Array, Array]:
    """(x, y): x is drawn first, then y, from ``default_rng(seed)``; given arrays are checked and used as they are."""
    rng = np.random.default_rng(spec.seed)
    if spec.data is None:
        x = spec.scale * rng.standard_normal((spec.count, n_in))
    else:
        x = _checked(spec.data, n_in, "data", "the network's input width n_0")
    if spec.targets is None:
        y = rng.standard_normal((x.shape[0], n_out))
    else:
        y = _checked(spec.targets, n_out, "targets", "the network's output width n_L")
        if y.shape[0] != x.shape[0]:
            raise InvalidInputError(
                ("inputs", "targets"),
                f"targets has {counted(y.shape[0], 'row')} but there are {counted(x.shape[0], 'probe')}",
            )
    return x, y


def _checked(array: Array, width: int, name: str, what: str) -> Array:
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != width:
        raise InvalidInputError(
            ("inputs", name), f"{name} must have shape [count, {width}] ({what}); got {list(array.shape)}"
        )
    check_finite(array, ("inputs", name))
    return array
