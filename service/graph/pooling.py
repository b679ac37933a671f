"""Pooling graph ops on per-probe inputs (C, H, W), as torch.nn.MaxPool2d, AvgPool2d and AdaptiveAvgPool2d compute them.

Window positions (torch's pooling_output_shape, per spatial axis of size H, kernel k, stride s, padding p, dilation δ):

    n = ⌊(H + 2p − δ(k−1) − 1 + (s−1 if ceil_mode))/s⌋ + 1, less one if ceil_mode and (n−1)·s ≥ H + p,

window o reading input rows o·s − p + t·δ, t < k.

max_pool2d: y = the max over the window (padding is −∞); J selects one input per output (the first maximum, as
    torch), jvp(v) = v at the selected entries, vjp(u) = u summed back onto them. ‖J‖₂² = the most outputs selecting
    one entry ≤ ∏_axes max_r #{t < k : t·δ ≡ r (mod s)}, the most windows one entry falls in (attained for large
    inputs: make that entry the maximum of all its windows).
avg_pool2d, adaptive_avg_pool2d: linear and separable, y[c] = A_H·x[c]·A_Wᵀ with A[o, i] = 1/div(o) for i in window
    o (clipped to the input). ‖J‖₂ = ‖A_H‖₂·‖A_W‖₂ exactly; given ``input_size`` that is the bound, without it a
    bound for every input size (each op's ``lipschitz`` docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from service.errors import InvalidInputError
from service.graph.convolution import BOUND_INFLATION, residue_cover
from service.graph.op import Array, Linearised, Op


def _pair(value: int | Sequence[int], field: str, least: int) -> tuple[int, int]:
    """``value`` (one int, or one per spatial axis) as an (H, W) pair of ints ≥ ``least``."""
    values = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != 2 or any(not isinstance(v, int | np.integer) or v < least for v in values):
        raise InvalidInputError((field,), f"needs one int ≥ {least} or two of them, got {value!r}")
    return int(values[0]), int(values[1])


def _image(input_shapes: Sequence[tuple[int, ...]], name: str) -> tuple[int, int, int]:
    """The single input's (C, H, W), InvalidInputError otherwise."""
    if len(input_shapes) != 1:
        raise InvalidInputError(("inputs",), f"{name} takes one input, got {len(input_shapes)}")
    shape = tuple(input_shapes[0])
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidInputError(("inputs", 0), f"{name} needs inputs (C, H, W), got {list(shape)}")
    return shape[0], shape[1], shape[2]


def pooled_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: the number of windows along an axis of ``size`` entries."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * padding - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class _Windowed(Op):
    """max_pool2d and avg_pool2d: kernel_size, stride (default kernel_size), padding, dilation, ceil_mode."""

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        ceil_mode: bool = False,
    ) -> None:
        self.kernel = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel if stride is None else _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.dilation = _pair(dilation, "dilation", 1)
        self.ceil_mode = bool(ceil_mode)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel, strict=True)):
            raise InvalidInputError(("padding",), f"must be at most half the kernel size {list(self.kernel)} (torch)")

    def _axes(self) -> zip[tuple[int, int, int, int]]:
        return zip(self.kernel, self.stride, self.padding, self.dilation, strict=True)

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        channels, *sizes = _image(input_shapes, self.name)
        out = []
        for size, (k, s, p, dl) in zip(sizes, self._axes(), strict=True):
            n = pooled_size(size, k, s, p, dl, self.ceil_mode)
            if n < 1:
                raise InvalidInputError(
                    ("inputs", 0), f"{self.name}: input {[channels, *sizes]} is smaller than a window"
                )
            out.append(n)
        return (channels, out[0], out[1])

    def _cover(self) -> int:
        """∏_axes max_r #{t < k : t·δ ≡ r (mod s)}: the most windows that one entry falls in, any input size."""
        return math.prod(residue_cover(k, dl, s) for k, s, _, dl in self._axes())


@dataclass
class _Selection(Linearised):
    """y = x at ``index`` (flat indices into the probe-stacked input): jvp gathers, vjp scatters and sums."""

    output: Array
    index: NDArray[np.intp]
    shape: tuple[int, ...]

    def jvp(self, tangents: Sequence[Array]) -> Array:
        picked: Array = tangents[0].reshape(-1)[self.index].reshape(self.output.shape)
        return picked

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        size = math.prod(self.shape)
        summed: Array = np.bincount(self.index, weights=cotangent.reshape(-1), minlength=size).astype(np.float64)
        return (summed.reshape(self.shape),)


class MaxPool2d(_Windowed):
    """max_pool2d: y = max over each window (padding −∞); J a selection; ‖J‖₂ ≤ √(the most windows per entry)."""

    name = "max_pool2d"
    lipschitz_note = "√(∏_axes max_r #{t < k : t·δ ≡ r mod s}): the most windows one entry falls in, any input size"

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        _, ho, wo = self.output_shape([x.shape[1:]])
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        height, width = x.shape[2:]
        after_h = max(ph, (ho - 1) * sh + dh * (kh - 1) + 1 - height - ph)
        after_w = max(pw, (wo - 1) * sw + dw * (kw - 1) + 1 - width - pw)
        padded = np.pad(x, ((0, 0), (0, 0), (ph, after_h), (pw, after_w)), constant_values=-np.inf)
        spans = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        windows = sliding_window_view(padded, spans, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :ho, :wo]
        flat = windows.reshape(*windows.shape[:4], kh * kw)
        tap = flat.argmax(axis=-1)
        output = np.take_along_axis(flat, tap[..., None], axis=-1)[..., 0]
        if not np.isfinite(output).all():
            raise InvalidInputError(("inputs", 0), f"{self.name}: a window lies entirely in the padding")
        rows = np.arange(ho)[:, None] * sh + (tap // kw) * dh - ph
        cols = np.arange(wo)[None, :] * sw + (tap % kw) * dw - pw
        lead = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], 1, 1)
        index = ((lead * height + rows) * width + cols).reshape(-1)
        return _Selection(np.ascontiguousarray(output), index, x.shape)

    def lipschitz(self) -> float:
        return math.sqrt(self._cover())


@dataclass
class _Separable(Linearised):
    """y[b, c] = A·x[b, c]·Bᵀ: jvp the same map, vjp(u) = Aᵀ·u·B."""

    output: Array
    rows: Array
    cols: Array

    def jvp(self, tangents: Sequence[Array]) -> Array:
        return _apply(self.rows, self.cols, tangents[0])

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (_apply(self.rows.T, self.cols.T, cotangent),)


def _apply(rows: Array, cols: Array, x: Array) -> Array:
    """A·x[b, c]·Bᵀ for every probe b and channel c."""
    product: Array = (rows @ x) @ cols.T
    return product


def _norm(matrix: Array) -> float:
    """σ_max of a small per-axis averaging matrix, densely."""
    return float(np.linalg.norm(matrix, 2))


class _Averaging(Op):
    """A separable linear pool, y[c] = A_H·x[c]·A_Wᵀ; ``input_size`` (H, W), when given, fixes the input size and
    makes lipschitz() the exact ‖A_H‖₂·‖A_W‖₂."""

    input_size: tuple[int, int] | None

    def _matrices(self, height: int, width: int) -> tuple[Array, Array]:
        raise NotImplementedError

    def _checked(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, int, int]:
        shape = _image(input_shapes, self.name)
        if self.input_size is not None and shape[1:] != self.input_size:
            raise InvalidInputError(
                ("inputs", 0), f"{self.name} was built for inputs of size {list(self.input_size)}, got {list(shape)}"
            )
        return shape

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        self.output_shape([x.shape[1:]])
        rows, cols = self._matrices(x.shape[2], x.shape[3])
        return _Separable(_apply(rows, cols, x), rows, cols)

    def forward(self, inputs: Sequence[Array]) -> Array:
        return self.linearise(inputs).output

    def _exact(self) -> float | None:
        """‖A_H‖₂·‖A_W‖₂ (inflated for rounding) when the input size is known."""
        if self.input_size is None:
            return None
        rows, cols = self._matrices(*self.input_size)
        return _norm(rows) * _norm(cols) * BOUND_INFLATION


class AvgPool2d(_Averaging, _Windowed):
    """avg_pool2d: y = Σ_window x / div, div = the window clipped to the padded input (count_include_pad) or to the
    input, or ``divisor_override``; torch's kernel_size, stride, padding, ceil_mode, count_include_pad."""

    name = "avg_pool2d"
    lipschitz_note = (
        "‖A_H‖₂·‖A_W‖₂ exactly when input_size is given; else per axis √(max column sum · max row sum) of A for any "
        "input size (≤ √(⌈k/s⌉/k) when every window divides by k)"
    )

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override == 0):
            raise InvalidInputError(("divisor_override",), f"must be a non-zero int, got {divisor_override!r}")
        self.count_include_pad, self.divisor_override = bool(count_include_pad), divisor_override
        self.input_size = None if input_size is None else _pair(input_size, "input_size", 1)

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        self._checked(input_shapes)
        return _Windowed.output_shape(self, input_shapes)

    def _axis(self, size: int, k: int, s: int, p: int) -> Array:
        """A for one axis: A[o, i] = 1/div(o) on o's window clipped to the input (torch's avg_pool2d divisor)."""
        n = pooled_size(size, k, s, p, 1, self.ceil_mode)
        start = np.arange(n) * s - p
        end = np.minimum(start + k, size + p)
        pool = end - start
        lo, hi = np.maximum(start, 0), np.minimum(end, size)
        i = np.arange(size)
        inside = (i >= lo[:, None]) & (i < hi[:, None])
        divisor = pool if self.count_include_pad else hi - lo
        weights: Array = inside / divisor[:, None]
        return weights

    def _matrices(self, height: int, width: int) -> tuple[Array, Array]:
        return _averaging(self, height, width)

    def lipschitz(self) -> float:
        """Exact with ``input_size``. Else rows of A sum to ≤ 1 and an entry lies in ≤ c = max_r #{t < k : t ≡ r
        (mod s)} windows, so ‖A‖₂² ≤ ‖A‖₁‖A‖_∞ ≤ c/d for d the least divisor: k when every window divides by k
        (count_include_pad, or no padding, without ceil_mode), else ≥ 1. With divisor_override D:
        ‖A_H ⊗ A_W‖ ≤ √(c_H·k_H·c_W·k_W)/|D|."""
        exact = self._exact()
        if exact is not None:
            return exact
        if self.divisor_override is not None:
            sums = math.prod(residue_cover(k, 1, s) * k for k, s in zip(self.kernel, self.stride, strict=True))
            return math.sqrt(sums) / abs(self.divisor_override) * BOUND_INFLATION
        full = not self.ceil_mode and (self.count_include_pad or self.padding == (0, 0))
        bound = 1.0
        for k, s in zip(self.kernel, self.stride, strict=True):
            bound *= math.sqrt(residue_cover(k, 1, s) / (k if full else 1))
        return bound * BOUND_INFLATION


def _averaging(op: AvgPool2d, height: int, width: int) -> tuple[Array, Array]:
    """avg_pool2d's (A_H, A_W); divisor_override D makes them the 0/1 windows, A_H scaled by 1/D."""
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    rows, cols = op._axis(height, kh, sh, ph), op._axis(width, kw, sw, pw)
    if op.divisor_override is None:
        return rows, cols
    return (rows > 0) / op.divisor_override, (cols > 0).astype(np.float64)


@cache
def _adaptive_axis(size: int, out: int) -> Array:
    """A[o, i] = 1/(end − start) for start = ⌊o·H/n⌋ ≤ i < end = ⌈(o+1)·H/n⌉ (torch's adaptive windows)."""
    o = np.arange(out)
    start, end = (o * size) // out, -((-(o + 1) * size) // out)
    i = np.arange(size)
    inside = (i >= start[:, None]) & (i < end[:, None])
    weights: Array = inside / (end - start)[:, None]
    weights.flags.writeable = False
    return weights


class AdaptiveAvgPool2d(_Averaging):
    """adaptive_avg_pool2d to ``output_size`` (an int, or (h, w) with None keeping that input size): the mean over
    torch's windows ⌊o·H/n⌋ ≤ i < ⌈(o+1)·H/n⌉."""

    name = "adaptive_avg_pool2d"
    lipschitz_note = "‖A_H‖₂·‖A_W‖₂ exactly when input_size is given; else √(h·w), its sup over input sizes (at 1×1)"

    def __init__(self, output_size: int | Sequence[int | None], input_size: Sequence[int] | None = None) -> None:
        sizes = (output_size, output_size) if isinstance(output_size, int | np.integer) else tuple(output_size)
        if len(sizes) != 2 or any(s is not None and (not isinstance(s, int | np.integer) or s < 1) for s in sizes):
            raise InvalidInputError(("output_size",), f"needs one int ≥ 1 or two (ints or null), got {output_size!r}")
        self.output_size: tuple[int | None, int | None] = (
            None if sizes[0] is None else int(sizes[0]),
            None if sizes[1] is None else int(sizes[1]),
        )
        self.input_size = None if input_size is None else _pair(input_size, "input_size", 1)

    def _out(self, height: int, width: int) -> tuple[int, int]:
        h, w = self.output_size
        return (height if h is None else h), (width if w is None else w)

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        channels, height, width = self._checked(input_shapes)
        return (channels, *self._out(height, width))

    def _matrices(self, height: int, width: int) -> tuple[Array, Array]:
        h, w = self._out(height, width)
        return _adaptive_axis(height, h), _adaptive_axis(width, w)

    def lipschitz(self) -> float:
        """Exact with ``input_size``; else √(h·w): ‖A‖₂ ≤ ‖A‖_F = √(Σ_o 1/len_o) ≤ √n per axis, attained at size 1
        (None sizes keep the input's, A = I, norm 1)."""
        exact = self._exact()
        if exact is not None:
            return exact
        return math.sqrt(math.prod(1 if s is None else s for s in self.output_size)) * BOUND_INFLATION
