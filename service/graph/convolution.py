"""Convolution graph ops ``conv1d`` and ``conv2d``, as torch.nn.Conv1d/Conv2d compute them (zero padding).

Per probe the input is (c_in, *S) for d = 1 or 2 spatial axes S, the weight W is (c_out, c_in/g, *k) for g groups,
and with stride s, dilation δ and padding p (before each axis; ``"same"`` pads δ(k−1) in all, ⌊·/2⌋ before)

    y[o, n] = b_o + Σ_{i ∈ group(o), t < k} W[o, i, t] · x_pad[i, n·s + t·δ],   n < ⌊(S + 2p − δ(k−1) − 1)/s⌋ + 1,

a cross-correlation. It is evaluated as one matrix product per group on the im2col columns (the windows of the
padded input, ``sliding_window_view``, c_in/g·∏k rows by ∏n columns). The op is linear: jvp(v) is the convolution
of v without bias, vjp(u) the transposed convolution (the columns' cotangent Wᵀ·u scattered back onto the padded
input one kernel tap at a time, then cropped), ∂/∂W = Σ_b u·colsᵀ and ∂/∂b = Σ u over probes and positions.

The Lipschitz bound is ‖J‖₂ itself bounded: J = ⊕_groups T_g with T_g = Σ_t S_t ⊗ W_g[:, :, t], S_t the 0/1 matrix
that reads input position n·s + t·δ − p into output n (at most one 1 in each row and each column, so ‖S_t‖ ≤ 1). Then

    ‖T_g‖ ≤ Σ_t ‖W_t‖₂                            (the triangle inequality),
    ‖T_g‖ ≤ √κ_out · ‖[W_1; …; W_κ]‖₂              (T = [S_t ⊗ I]_t · [I ⊗ W_t]_t; ‖Σ_t S_t S_tᵀ‖ ≤ κ = ∏k taps),
    ‖T_g‖ ≤ √κ_in · ‖[W_1 … W_κ]‖₂                 (T = [I ⊗ W_t]_t · [S_t ⊗ I]_t; ‖Σ_t S_tᵀ S_t‖ ≤ κ_in),

κ_in = ∏_axes max_r #{t < k : t·δ ≡ r (mod s)}, the most taps through which any input entry is read (1 for a
stride-k convolution). The bound is the min of the three, max over groups, none depending on the input's size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from service import spectral
from service.errors import InvalidInputError
from service.graph.op import Array, Linearised, Op, finite_array

BOUND_INFLATION = 1 + 1e-9
"""σ_max from a Gram matrix's largest eigenvalue is exact to a few ulps times its size; the bound is inflated by
this factor so that it holds after rounding."""

Padding = int | Sequence[int] | str


def _ints(value: int | Sequence[int], dims: int, field: str, least: int) -> tuple[int, ...]:
    """``value`` (one int, or one per spatial axis) as a ``dims``-tuple of ints ≥ ``least``."""
    values = (value,) * dims if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != dims or any(not isinstance(v, int | np.integer) or v < least for v in values):
        raise InvalidInputError((field,), f"needs one int ≥ {least} or {dims} of them, got {value!r}")
    return tuple(int(v) for v in values)


def residue_cover(kernel: int, dilation: int, stride: int) -> int:
    """max_r #{t < kernel : t·dilation ≡ r (mod stride)}: the most windows through which one entry is read."""
    return int(np.bincount((np.arange(kernel) * dilation) % stride).max())


@dataclass
class _Conv(Linearised):
    """A convolution at one point: its im2col columns, kept for the weight's cotangent."""

    output: Array
    op: Convolution
    columns: Array
    spatial: tuple[int, ...]

    def jvp(self, tangents: Sequence[Array]) -> Array:
        return self.op.correlate(self.op.columns(tangents[0]), self.output.shape[2:])

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (self.op.transposed(cotangent, self.spatial),)

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        u = self.op.grouped(cotangent)
        weight = np.einsum("bgop,bgkp->gok", u, self.columns, optimize=True).reshape(self.op.weight.shape)
        found = {"weight": weight}
        if self.op.bias is not None:
            found["bias"] = cotangent.sum(axis=(0, *range(2, cotangent.ndim)))
        return found


class Convolution(Op):
    """A zero-padded ``dims``-d convolution (cross-correlation) with stride, dilation, padding and groups."""

    dims: ClassVar[int]
    lipschitz_note = (
        "min(Σ_t‖W_t‖₂, √κ·‖[W_1;…;W_κ]‖₂, √κ_in·‖[W_1 … W_κ]‖₂) over the κ kernel taps W_t (c_out × c_in/g), "
        "κ_in the most taps any input entry is read through (stride, dilation), max over groups; for any input size"
    )

    def __init__(
        self,
        weight: ArrayLike,
        bias: ArrayLike | None = None,
        stride: int | Sequence[int] = 1,
        padding: Padding = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> None:
        """torch.nn.Conv{d}d's arguments; in_channels, out_channels, kernel_size come from ``weight``."""
        self.weight = finite_array(weight, ("weight",))
        d = self.dims
        if self.weight.ndim != d + 2 or 0 in self.weight.shape:
            raise InvalidInputError(
                ("weight",),
                f"{self.name} needs a weight (c_out, c_in/groups, {d} kernel sizes), got {list(self.weight.shape)}",
            )
        if not isinstance(groups, int | np.integer) or groups < 1 or self.weight.shape[0] % groups:
            raise InvalidInputError(("groups",), f"groups must be ≥ 1 and divide c_out = {self.weight.shape[0]}")
        if padding_mode != "zeros":
            raise InvalidInputError(("padding_mode",), f"only 'zeros' padding is supported, got {padding_mode!r}")
        self.groups = int(groups)
        self.kernel = tuple(int(k) for k in self.weight.shape[2:])
        self.stride = _ints(stride, d, "stride", 1)
        self.dilation = _ints(dilation, d, "dilation", 1)
        self.padding = self._padding(padding)
        self.bias = None if bias is None else finite_array(bias, ("bias",))
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise InvalidInputError(("bias",), f"has shape {list(self.bias.shape)}, expected [{self.weight.shape[0]}]")

    def _padding(self, padding: Padding) -> tuple[tuple[int, int], ...]:
        """(before, after) per spatial axis: torch's ints (both sides), "valid" or "same" (δ(k−1), ⌊½⌋ before)."""
        if padding == "valid":
            return ((0, 0),) * self.dims
        if padding == "same":
            if any(s != 1 for s in self.stride):
                raise InvalidInputError(("padding",), "padding='same' needs stride 1 (as torch)")
            total = [dl * (k - 1) for dl, k in zip(self.dilation, self.kernel, strict=True)]
            return tuple((t // 2, t - t // 2) for t in total)
        if isinstance(padding, str):
            raise InvalidInputError(("padding",), f"must be ints, 'same' or 'valid', got {padding!r}")
        return tuple((p, p) for p in _ints(padding, self.dims, "padding", 0))

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def parameters(self) -> Mapping[str, Array]:
        return {"weight": self.weight} if self.bias is None else {"weight": self.weight, "bias": self.bias}

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if len(input_shapes) != 1:
            raise InvalidInputError(("inputs",), f"{self.name} takes one input, got {len(input_shapes)}")
        shape = tuple(input_shapes[0])
        if len(shape) != self.dims + 1 or shape[0] != self.in_channels:
            raise InvalidInputError(
                ("inputs", 0), f"{self.name} needs inputs ({self.in_channels}, {self.dims} sizes), got {list(shape)}"
            )
        out = []
        for size, (before, after), k, s, dl in zip(
            shape[1:], self.padding, self.kernel, self.stride, self.dilation, strict=True
        ):
            span = dl * (k - 1) + 1
            if size + before + after < span:
                raise InvalidInputError(
                    ("inputs", 0), f"{self.name}: input {list(shape)} padded is smaller than the kernel's span {span}"
                )
            out.append((size + before + after - span) // s + 1)
        return (self.weight.shape[0], *out)

    def columns(self, x: Array) -> Array:
        """The im2col columns (B, g, c_in/g·∏k, ∏n) of the zero-padded input x (B, c_in, *S)."""
        padded = np.pad(x, ((0, 0), (0, 0), *self.padding))
        spans = tuple(dl * (k - 1) + 1 for dl, k in zip(self.dilation, self.kernel, strict=True))
        axes = tuple(range(2, 2 + self.dims))
        windows = sliding_window_view(padded, spans, axis=axes)
        steps: tuple[slice, ...] = (
            *(slice(None, None, s) for s in self.stride),
            *(slice(None, None, dl) for dl in self.dilation),
        )
        windows = windows[(slice(None), slice(None), *steps)]
        batch, outs = len(x), windows.shape[2 : 2 + self.dims]
        grouped = windows.reshape(batch, self.groups, self.weight.shape[1], *outs, *self.kernel)
        d = self.dims
        order = (0, 1, 2, *range(3 + d, 3 + 2 * d), *range(3, 3 + d))
        return grouped.transpose(order).reshape(batch, self.groups, -1, math.prod(outs))

    def _matrix(self) -> Array:
        """W as (g, c_out/g, c_in/g·∏k)."""
        return self.weight.reshape(self.groups, self.weight.shape[0] // self.groups, -1)

    def correlate(self, columns: Array, outs: tuple[int, ...]) -> Array:
        """W ⋆ x from x's columns, (B, c_out, *n), no bias."""
        product = self._matrix() @ columns
        return product.reshape(len(columns), self.weight.shape[0], *outs)

    def grouped(self, cotangent: Array) -> Array:
        """An output-shaped array (B, c_out, *n) as (B, g, c_out/g, ∏n)."""
        return cotangent.reshape(len(cotangent), self.groups, self.weight.shape[0] // self.groups, -1)

    def transposed(self, cotangent: Array, spatial: tuple[int, ...]) -> Array:
        """The transposed convolution: Wᵀ·u on the columns, scattered tap by tap onto the padded input, cropped."""
        batch, outs = len(cotangent), cotangent.shape[2:]
        columns = np.swapaxes(self._matrix(), 1, 2) @ self.grouped(cotangent)
        columns = columns.reshape(batch, self.in_channels, *self.kernel, *outs)
        padded_size = tuple(n + b + a for n, (b, a) in zip(spatial, self.padding, strict=True))
        grad = np.zeros((batch, self.in_channels, *padded_size))
        for tap in np.ndindex(*self.kernel):
            where = tuple(
                slice(t * dl, t * dl + s * (n - 1) + 1, s)
                for t, dl, s, n in zip(tap, self.dilation, self.stride, outs, strict=True)
            )
            grad[(slice(None), slice(None), *where)] += columns[(slice(None), slice(None), *tap)]
        crop = tuple(slice(b, b + n) for n, (b, _) in zip(spatial, self.padding, strict=True))
        return np.ascontiguousarray(grad[(slice(None), slice(None), *crop)])

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        x = inputs[0]
        outs = self.output_shape([x.shape[1:]])[1:]
        columns = self.columns(x)
        y = self.correlate(columns, outs)
        if self.bias is not None:
            y = y + self.bias.reshape(-1, *([1] * self.dims))
        return _Conv(y, self, columns, tuple(x.shape[2:]))

    def lipschitz(self) -> float:
        return self._bound

    @property
    def _bound(self) -> float:
        if self._cached_bound is None:
            self._cached_bound = self.tap_bound()
        return self._cached_bound

    _cached_bound: float | None = None

    def tap_bound(self) -> float:
        """min(Σ_t‖W_t‖₂, √κ·‖[W_t]_t stacked‖₂, √κ_in·‖[W_t]_t side by side‖₂), max over groups (module docstring)."""
        taps = math.prod(self.kernel)
        cover = math.prod(
            residue_cover(k, dl, s) for k, dl, s in zip(self.kernel, self.dilation, self.stride, strict=True)
        )
        per_group = self.weight.reshape(self.groups, self.weight.shape[0] // self.groups, self.weight.shape[1], taps)
        by_tap = np.ascontiguousarray(per_group.transpose(0, 3, 1, 2))  # (g, κ, c_out/g, c_in/g)
        triangle = spectral.dense_norms(by_tap.reshape(-1, *by_tap.shape[2:])).reshape(self.groups, taps).sum(axis=1)
        stacked = spectral.dense_norms(by_tap.reshape(self.groups, -1, by_tap.shape[3])) * math.sqrt(taps)
        side = spectral.dense_norms(self._matrix()) * math.sqrt(cover)
        return float(np.minimum(np.minimum(triangle, stacked), side).max()) * BOUND_INFLATION


class Conv1d(Convolution):
    """torch.nn.Conv1d on per-probe inputs (c_in, L); weight (c_out, c_in/groups, k)."""

    name = "conv1d"
    dims = 1


class Conv2d(Convolution):
    """torch.nn.Conv2d on per-probe inputs (c_in, H, W); weight (c_out, c_in/groups, kh, kw)."""

    name = "conv2d"
    dims = 2
