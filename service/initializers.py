"""Random initialisation of weight matrices with ``torch.nn.init``'s formulas, seeded with numpy's ``Generator``.

A weight ``W`` has shape ``(fan_out, fan_in)`` (``nn.Linear``: out × in). Each scheme is defined by the std of
its entries; ``gain`` multiplies it in every scheme. The same seed gives the same matrices on every machine
(PCG64 and the ziggurat normal sampler are platform-independent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class InitScheme:
    """An init scheme: how its entries are drawn and the std they get, as a formula and as a function."""

    name: str
    distribution: str
    std_formula: str
    torch_equivalent: str
    std: Callable[[int, int, float, float], float]
    """(fan_in, fan_out, gain, std parameter) → the entries' standard deviation."""


def _xavier(fan_in: int, fan_out: int, gain: float, _: float) -> float:
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def _he(fan_in: int, _fan_out: int, gain: float, _: float) -> float:
    return gain * math.sqrt(2.0 / fan_in)


SCHEMES: dict[str, InitScheme] = {
    s.name: s
    for s in (
        InitScheme("gaussian", "normal", "gain·std", "nn.init.normal_(W, 0, gain·std)", lambda i, o, g, s: g * s),
        InitScheme(
            "uniform",
            "uniform",
            "gain·std (W ~ U(−√3·gain·std, √3·gain·std))",
            "nn.init.uniform_(W, −√3·gain·std, √3·gain·std)",
            lambda i, o, g, s: g * s,
        ),
        InitScheme(
            "xavier_normal", "normal", "gain·√(2/(fan_in + fan_out))", "nn.init.xavier_normal_(W, gain)", _xavier
        ),
        InitScheme(
            "xavier_uniform",
            "uniform",
            "gain·√(2/(fan_in + fan_out)) (bound gain·√(6/(fan_in + fan_out)))",
            "nn.init.xavier_uniform_(W, gain)",
            _xavier,
        ),
        InitScheme("he_normal", "normal", "gain·√(2/fan_in)", "gain·(nn.init.kaiming_normal_(W) for ReLU)", _he),
        InitScheme(
            "he_uniform",
            "uniform",
            "gain·√(2/fan_in) (bound gain·√(6/fan_in))",
            "gain·(nn.init.kaiming_uniform_(W, nonlinearity='relu'))",
            _he,
        ),
        InitScheme(
            "lecun_normal",
            "normal",
            "gain·√(1/fan_in)",
            "nn.init.kaiming_normal_(W, nonlinearity='linear') times gain",
            lambda i, o, g, s: g / math.sqrt(i),
        ),
        InitScheme(
            "orthogonal",
            "orthogonal",
            "gain/√max(fan_in, fan_out) (every singular value equals gain)",
            "nn.init.orthogonal_(W, gain)",
            lambda i, o, g, s: g / math.sqrt(max(i, o)),
        ),
    )
}


def init_weight(rng: np.random.Generator, scheme: str, shape: tuple[int, int], gain: float, std: float) -> Array:
    """Draw one ``(fan_out, fan_in)`` weight matrix from ``scheme``."""
    fan_out, fan_in = shape
    spec = SCHEMES[scheme]
    if spec.distribution == "orthogonal":
        return gain * _orthogonal(rng, fan_out, fan_in)
    sd = spec.std(fan_in, fan_out, gain, std)
    if spec.distribution == "uniform":
        bound = math.sqrt(3.0) * sd
        return rng.uniform(-bound, bound, size=shape)
    return sd * rng.standard_normal(shape)


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> Array:
    """A matrix with orthonormal rows (rows ≤ cols) or columns, as ``torch.nn.init.orthogonal_`` makes it:

    QR of a standard normal matrix with the signs of R's diagonal folded into Q, which makes Q Haar-distributed.
    """
    a = rng.standard_normal((rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    return q.T if rows < cols else q
