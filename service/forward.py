"""The forward pass in scaled form, so that float64's range, not the mathematics, never decides a result.

Every probe's activation is carried as a_j = m_j·2^{e_j}: a mantissa row m_j whose largest |entry| is in [1/2, 1)
(or the row 0) and an integer exponent e_j per probe. Scaling by a power of two is exact in float64, so each
step below rounds exactly as the plain computation would, only never under- or overflowing:

    z_j = A_j a_{j−1} + b_j + u_j = (A_j (m·2^s))·2^{e−s} + b_j + u_j,

with s the power of two that brings ‖A_j‖₂·2^s near 1 (so A·m neither under- nor overflows), the bias b_j and
a recurrent step's drive u_j = U x_j added at the common exponent of the terms (:func:`combine`; a term below
2^−1022 of the largest is below its rounding). A positively homogeneous activation, h(c·z) = c·h(z) for c > 0
(linear, relu, leaky_relu: ``Activation.homogeneous``), takes the mantissa and keeps the exponent, and its
derivative h'(c·z) = h'(z) is read from the mantissa exactly. Any other activation needs z itself: where z
leaves float64 (an entry that is not finite, or that is not exactly 2^E times its mantissa — an underflow to a
subnormal or 0) the pass stops there, flagged ``overflow`` or ``underflow``, never read as a zero. A residual
layer adds S_j a_{j−1} at the common exponent in the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from service.linear import Dense, Linear
from service.network import Layer, Network

Array = NDArray[np.float64]
Exponents = NDArray[np.int64]
Stop = Literal["overflow", "underflow"]

SHIFT_FREE = 32
"""A map whose norm is within 2^±SHIFT_FREE of 1 is applied to the mantissas as they are (no shift needed)."""
SHIFT_MAX = 1000
"""The largest shift 2^s applied to mantissas (|m| < 1): 2^1000·m stays finite."""
EXPONENT_CLIP = 2200
"""Relative exponents are clipped here before ldexp: 2^−2200 of a mantissa is 0 in float64 anyway."""
LOG10_2 = math.log10(2.0)


@dataclass
class Forward:
    """m_0 … m_k and e_0 … e_k (a_j = m_j·2^{e_j} per probe row) and h_j'(z_j) per layer carried; ``stop``: the
    first layer not carried (None: all of them), ``reason`` why (its z is beyond float64's range, or below it
    where the activation needs z itself); ``drive``: the mean square of a recurrent network's input drive U x_t
    (0 otherwise)."""

    mantissas: list[Array]
    exponents: list[Exponents]
    derivatives: list[Array]
    stop: int | None = None
    reason: Stop | None = None
    drive: float = 0.0


def row_exponents(rows: Array) -> Exponents:
    """e_b with max_i |rows[b, i]| = f·2^{e_b}, f ∈ [1/2, 1); 0 for a row of zeros."""
    peak = np.abs(rows).max(axis=tuple(range(1, rows.ndim)))
    exponents: Exponents = np.frexp(peak)[1].astype(np.int64)
    return exponents


def scale_rows(rows: Array, exponents: Exponents) -> Array:
    """rows·2^{exponents[b]} row by row, exact wherever the result is a normal float64."""
    if not exponents.any():
        return rows
    shape = (len(rows),) + (1,) * (rows.ndim - 1)
    shifted: Array = np.ldexp(rows, np.clip(exponents, -EXPONENT_CLIP, EXPONENT_CLIP).reshape(shape))
    return shifted


def normalise(rows: Array, exponents: Exponents) -> tuple[Array, Exponents]:
    """(m, e) with rows·2^{exponents} = m·2^e per row and max|m_b| ∈ [1/2, 1) (or m_b = 0): exact."""
    k = row_exponents(rows)
    return scale_rows(rows, -k), exponents + k


def combine(terms: Sequence[tuple[Array, Exponents]]) -> tuple[Array, Exponents]:
    """Σ_t r_t·2^{e_t} as (r, E), E per row the largest exponent among the terms' non-zero rows: each term is
    taken to that exponent (exactly, unless it falls below 2^−1022 of the largest, far below its rounding)."""
    if len(terms) == 1:
        return terms[0]
    tops = [np.where(np.abs(r).max(axis=1) > 0, e + row_exponents(r), np.iinfo(np.int64).min) for r, e in terms]
    top = np.maximum.reduce(tops)
    top = np.where(top == np.iinfo(np.int64).min, terms[0][1], top)
    total = scale_rows(terms[0][0], terms[0][1] - top)
    for rows, e in terms[1:]:
        total = total + scale_rows(rows, e - top)
    return total, top


def shift_for(norm: float) -> int:
    """s with norm·2^s in [1/2, 1) (clipped to ±SHIFT_MAX); 0 when the norm is already within 2^±SHIFT_FREE of 1
    or is 0."""
    if norm == 0.0 or not math.isfinite(norm):
        return 0
    e = math.frexp(norm)[1]
    return 0 if abs(e) <= SHIFT_FREE else int(np.clip(-e, -SHIFT_MAX, SHIFT_MAX))


def apply_scaled(weight: Linear, rows: Array, exponents: Exponents, norm: float) -> tuple[Array, Exponents]:
    """A·(rows·2^{exponents}) as (A·(rows·2^s))·2^{exponents − s}, s = shift_for(‖A‖₂)."""
    s = shift_for(norm)
    return weight.apply(np.ldexp(rows, s) if s else rows), exponents - s


def adjoint_scaled(weight: Linear, rows: Array, exponents: Exponents, norm: float) -> tuple[Array, Exponents]:
    """Aᵀ·(rows·2^{exponents}), shifted as in apply_scaled."""
    s = shift_for(norm)
    return weight.adjoint(np.ldexp(rows, s) if s else rows), exponents - s


def plain(m: Array, e: Exponents) -> Array:
    """m·2^e as plain float64 rows (0 or ±inf where it leaves the range)."""
    with np.errstate(over="ignore"):
        return scale_rows(m, e)


def forward(network: Network, x: Array, norms: Sequence[float], skip_norms: Sequence[float | None]) -> Forward:
    """a_0 = x (0 for a recurrent network, whose x_t enter as the drive U x_t of z_t), then every layer, scaled;
    ``norms`` and ``skip_norms`` are ‖A_j‖₂ and ‖S_j‖₂ (None for a plain layer)."""
    recurrent = network.recurrent
    probes = x.shape[0]
    zero = np.zeros(probes, dtype=np.int64)
    drive = None if recurrent is None else _drive(recurrent.input_weight, x, recurrent.steps)
    m, e = normalise(x, zero) if recurrent is None else (np.zeros((probes, network.widths[0])), zero)
    fwd = Forward([m], [e], [])
    if drive is not None:
        fwd.drive = float(np.mean([np.mean(u * u) for u in (plain(dm, de) for dm, de in drive)]))
    for j, layer in enumerate(network.layers):
        step = _layer(layer, m, e, norms[j], skip_norms[j], None if drive is None else drive[j])
        if isinstance(step, str):
            fwd.stop, fwd.reason = j, step
            break
        m, e, d = step
        fwd.mantissas.append(m)
        fwd.exponents.append(e)
        fwd.derivatives.append(d)
    return fwd


def _drive(u: Dense, x: Array, steps: int) -> list[tuple[Array, Exponents]]:
    """Every step's U x_t, scaled, for probe rows x = (x_1, …, x_T) flattened."""
    n_in = u.shape[1]
    norm = float(np.abs(u.matrix).max())  # within a factor √(m·n) of ‖U‖₂: enough for the shift
    zero = np.zeros(x.shape[0], dtype=np.int64)
    terms = []
    for t in range(steps):
        xm, xe = normalise(x[:, t * n_in : (t + 1) * n_in], zero)
        terms.append(normalise(*apply_scaled(u, xm, xe, norm)))
    return terms


def _layer(
    layer: Layer,
    m: Array,
    e: Exponents,
    norm: float,
    skip_norm: float | None,
    drive: tuple[Array, Exponents] | None,
) -> tuple[Array, Exponents, Array] | Stop:
    """(m_j, e_j, h_j'(z_j)) of one layer from a_{j−1} = m·2^e, or why it cannot be carried."""
    terms = [apply_scaled(layer.weight, m, e, norm)]
    if layer.bias is not None:
        terms.append((np.broadcast_to(layer.bias, terms[0][0].shape), np.zeros_like(e)))
    if drive is not None:
        terms.append(drive)
    z, top = combine(terms)
    if not np.isfinite(z).all():
        return "overflow"
    activation = layer.activation
    if activation.homogeneous:
        out, out_e, d = activation.value(z), top, activation.derivative(z)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            z_plain = plain(z, top)
            if not np.isfinite(z_plain).all():
                return "overflow"
            if not np.array_equal(scale_rows(z_plain, -top), z):
                return "underflow"
            out, out_e, d = activation.value(z_plain), np.zeros_like(e), activation.derivative(z_plain)
            if not np.isfinite(out).all():
                return "overflow"
    if layer.skip is not None:
        assert skip_norm is not None
        out, out_e = combine([(out, out_e), apply_scaled(layer.skip, m, e, skip_norm)])
    out_m, out_e = normalise(out, out_e)
    return out_m, out_e, d
