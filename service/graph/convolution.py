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
    ‖T_g‖ ≤ √κ · ‖[W_1; …; W_κ]‖₂                  (T = [S_t ⊗ I]_t · [I ⊗ W_t]_t; ‖Σ_t S_t S_tᵀ‖ ≤ κ = ∏k taps),
    ‖T_g‖ ≤ √κ_in · ‖[W_1 … W_κ]‖₂                 (T = [I ⊗ W_t]_t · [S_t ⊗ I]_t; ‖Σ_t S_tᵀ S_t‖ ≤ κ_in),

κ_in = ∏_axes max_r #{t < k : t·δ ≡ r (mod s)}, the most taps through which any input entry is read (1 for a
stride-k convolution). The min of the three, max over groups (``tap_bound``), holds for inputs of any size.

Given the input's spatial size (``input_size``), the taps that only ever read padding are dropped (the same operator,
κ counting the taps left) and, where it costs at most FOURIER_FLOPS, the polyphase Fourier bound is taken too
(``Convolution.fourier_bound``: the stride-s convolution as a stride-1 one on the s phases of the input, bounded by
the circular convolution on a grid no output wraps around on), which is within a few per cent of ‖J‖₂ on inputs a
few kernels wide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from service import lanczos, spectral
from service.errors import InvalidInputError
from service.graph.op import Array, Linearised, Op, finite_array

FOURIER_FLOPS = 1e9
"""fourier_bound is computed only when its Gram products and eigenvalues take at most this many multiply-adds."""
FOURIER_ENTRIES = 2**22
"""… and its stack of transformed kernels holds at most this many complex numbers (64 MiB)."""
BATCHED_MIN = 64
"""_norms takes stacked products for more matrices than this (or small ones), 2-D products one by one otherwise."""
POWER_STEPS = 6
"""Power iterations for the lower estimate that decides whether Σ_t‖W_t‖₂ is worth computing exactly."""
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
        "κ_in the most taps any input entry is read through (stride, dilation), max over groups; with input_size, "
        "over the taps that read the input only, and also the polyphase circular-convolution (FFT) bound when cheap"
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
        input_size: Sequence[int] | None = None,
    ) -> None:
        """torch.nn.Conv{d}d's arguments; in_channels, out_channels, kernel_size come from ``weight``.

        ``input_size``: the spatial size of the inputs (without channels), when known. The op then takes only
        inputs of that size, and lipschitz() uses it for a tighter bound (``lipschitz``)."""
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
        self.input_size = None if input_size is None else _ints(tuple(input_size), d, "input_size", 1)

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
        if self.input_size is not None and shape[1:] != self.input_size:
            raise InvalidInputError(
                ("inputs", 0), f"{self.name} was built for inputs of size {list(self.input_size)}, got {list(shape)}"
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

    @cached_property
    def _transposed_matrix(self) -> Array:
        """Wᵀ per group, (g, c_in/g·∏k, c_out/g), contiguous (a stacked matmul with a transposed view is slow)."""
        return np.ascontiguousarray(np.swapaxes(self._matrix(), 1, 2))

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
        columns = self._transposed_matrix @ self.grouped(cotangent)
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
        """Without ``input_size``: tap_bound of the whole kernel, for inputs of any size. With it: the kernel's taps
        that never read an input entry (only padding) are dropped, which leaves the operator unchanged, and the
        bound is the smaller of tap_bound on the taps left and, when it is cheap enough, fourier_bound."""
        if self._bound is None:
            if self.input_size is None:
                self._bound = tap_bound(self.weight, self.groups, self.stride, self.dilation)
            else:
                self._bound = self._sized_bound(self.input_size)
        return self._bound

    def _sized_bound(self, size: tuple[int, ...]) -> float:
        """min(tap_bound, fourier_bound) of the kernel cropped to its live taps on inputs of ``size``."""
        live = self.live_taps(size)
        if not all(m.any() for m in live):  # every output reads padding alone: J = 0
            return 0.0
        box = tuple(slice(int(np.flatnonzero(m)[0]), int(np.flatnonzero(m)[-1]) + 1) for m in live)
        weight = (self.weight * _outer(live))[(slice(None), slice(None), *box)]
        masks = [m[cut] for m, cut in zip(live, box, strict=True)]
        bound = tap_bound(weight, self.groups, self.stride, self.dilation, masks)
        if weight[0, 0].size == 1:  # one tap: tap_bound is exact
            return bound
        fourier = self.fourier_bound(weight, self.output_shape([(self.in_channels, *size)])[1:])
        return bound if fourier is None else min(bound, fourier)

    _bound: float | None = None

    def live_taps(self, size: tuple[int, ...]) -> list[NDArray[np.bool_]]:
        """Per axis, the taps t < k that some output n reads an input entry through: 0 ≤ n·s + t·δ − p < S."""
        outs = self.output_shape([(self.in_channels, *size)])[1:]
        live = []
        for n, k, s, dl, (before, _), length in zip(
            outs, self.kernel, self.stride, self.dilation, self.padding, size, strict=True
        ):
            read = np.arange(n)[:, None] * s + np.arange(k)[None, :] * dl - before
            live.append(((read >= 0) & (read < length)).any(axis=0))
        return live

    def fourier_bound(self, weight: Array, outs: tuple[int, ...]) -> float | None:
        """max_ω σ_max(K̂(ω)) of the polyphase kernel on a grid that no output wraps around on: a bound of ‖J‖₂,
        or None when it would take more than FOURIER_FLOPS multiply-adds or FOURIER_ENTRIES numbers. ``weight``
        is the kernel cropped to its live taps (k' per axis; dead ones inside zeroed), ``outs`` the output size.

        Per axis, write the dilated kernel's offsets
        j = t·δ < σ = δ(k'−1)+1 as j = q·s + r (r < s, q < Q = ⌈σ/s⌉). Then y[n] = Σ_{r,q} K[r, q]·x_r[n + q] with
        x_r[m] = x_pad[m·s + r]: a stride-1 correlation of the s phases x_r (as s·c_in/g channels, each input entry
        in exactly one of them: an isometric embedding) with the kernel K[:, (i, r), q]. Outputs n < N read phase
        positions n + q < N + Q − 1 = M; on the circular grid of size M none of them wraps, so J = R·C_M·P·E (E the
        embedding, P dropping the phase entries never read, R keeping the outputs, all of norm ≤ 1), and ‖J‖₂ ≤
        ‖C_M‖₂ = max_ω σ_max(K̂(ω)) (the DFT diagonalises the circular C_M into c_out/g × s·c_in/g blocks; Sedghi,
        Gupta & Long 2019), max over groups."""
        cropped = weight
        spans = [dl * (c - 1) + 1 for dl, c in zip(self.dilation, cropped.shape[2:], strict=True)]
        phases = [-(-span // s) for span, s in zip(spans, self.stride, strict=True)]
        grid = [n + q - 1 for n, q in zip(outs, phases, strict=True)]
        c_out, c_in = self.weight.shape[0] // self.groups, self.weight.shape[1] * math.prod(self.stride)
        frequencies = math.prod(grid[:-1]) * (grid[-1] // 2 + 1)
        small, large = min(c_out, c_in), max(c_out, c_in)
        if (
            self.groups * frequencies * (small * small * large + small**3) > FOURIER_FLOPS
            or self.groups * frequencies * c_out * c_in > FOURIER_ENTRIES
        ):
            return None
        dilated = np.zeros((*cropped.shape[:2], *(q * s for q, s in zip(phases, self.stride, strict=True))))
        dilated[
            (slice(None), slice(None), *(slice(0, span, dl) for span, dl in zip(spans, self.dilation, strict=True)))
        ] = cropped
        split = dilated.reshape(
            *dilated.shape[:2], *(v for q, s in zip(phases, self.stride, strict=True) for v in (q, s))
        )
        d = self.dims
        order = (0, 1, *(3 + 2 * a for a in range(d)), *(2 + 2 * a for a in range(d)))
        polyphase = split.transpose(order).reshape(self.groups, c_out, c_in, *phases)
        f = float(lanczos.unit_scales(np.array([np.abs(polyphase).max()]))[0])
        axes = tuple(range(3, 3 + d))
        symbol = np.fft.rfftn(polyphase * f, s=grid, axes=axes).reshape(self.groups, c_out, c_in, -1)
        stack = symbol.transpose(0, 3, 1, 2)
        adjoint = stack.conj().swapaxes(-1, -2)
        gram = stack @ adjoint if c_out <= c_in else adjoint @ stack
        top = float(np.linalg.eigvalsh(gram)[..., -1].max())
        return math.sqrt(max(top, 0.0)) / f * BOUND_INFLATION


def _outer(masks: list[NDArray[np.bool_]]) -> Array:
    """The product of per-axis 0/1 masks as a kernel-shaped array (broadcast over the two channel axes)."""
    grid = np.ones(())
    for mask in masks:
        grid = np.multiply.outer(grid, mask.astype(np.float64))
    return np.asarray(grid)


def tap_bound(
    weight: Array,
    groups: int,
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    live: list[NDArray[np.bool_]] | None = None,
) -> float:
    """min(Σ_t‖W_t‖₂, √κ·‖[W_t]_t stacked‖₂, √κ_in·‖[W_t]_t side by side‖₂), max over groups (module docstring),
    κ and κ_in counting only the ``live`` taps (all when None)."""
    kernel = weight.shape[2:]
    masks = live if live is not None else [np.ones(k, dtype=bool) for k in kernel]
    taps = math.prod(int(m.sum()) for m in masks)
    cover = math.prod(
        int(np.bincount((np.flatnonzero(m) * dl) % s).max()) for m, dl, s in zip(masks, dilation, stride, strict=True)
    )
    c_out, c_in = weight.shape[0] // groups, weight.shape[1]
    per_group = weight.reshape(groups, c_out, c_in, -1)
    by_tap = np.ascontiguousarray(per_group.transpose(0, 3, 1, 2))  # (g, ∏k, c_out/g, c_in/g)
    if by_tap.shape[1] == 1:  # one tap: J = ⊕_groups I ⊗ W_g exactly, ‖J‖₂ = max_g ‖W_g‖₂
        return float(_norms(by_tap[:, 0]).max()) * BOUND_INFLATION
    stacked = _norms(by_tap.reshape(groups, -1, c_in)) * math.sqrt(taps)
    side = _norms(per_group.reshape(groups, c_out, -1)) * math.sqrt(cover)
    best = np.minimum(stacked, side)
    if (_triangle_below(by_tap) < best).any():  # else Σ_t‖W_t‖₂ cannot win and its SVDs are skipped
        triangle = _norms(by_tap.reshape(-1, c_out, c_in)).reshape(groups, -1).sum(axis=1)
        best = np.minimum(best, triangle)
    return float(best.max()) * BOUND_INFLATION


def _norms(stack: Array) -> Array:
    """σ_max of each ``stack[k]`` as spectral.dense_norms finds it (√λ_max of the smaller Gram matrix, scaled by a
    power of two), but with each Gram formed by a 2-D product when there are few matrices: numpy's stacked matmul
    with a transposed operand does not reach BLAS and is many times slower for large ones."""
    if len(stack) > BATCHED_MIN or stack.shape[1] * stack.shape[2] < 4096:
        return spectral.dense_norms(stack)
    values = []
    for matrix in stack:
        f = float(lanczos.unit_scales(np.array([np.abs(matrix).max()]))[0])
        scaled = matrix * f
        gram = scaled @ scaled.T if scaled.shape[0] <= scaled.shape[1] else scaled.T @ scaled
        values.append(float(spectral.gram_norms(gram[None])[0]) / f)
    return np.array(values)


def _triangle_below(by_tap: Array) -> Array:
    """Per group, a lower estimate of Σ_t‖W_t‖₂ (a few power iterations, each ‖W_t v‖ ≤ ‖W_t‖₂ for unit v; shrunk
    by 1e-6 for rounding), to skip the exact Σ_t‖W_t‖₂ where it cannot be the smallest bound."""
    v = np.random.default_rng(0).standard_normal((*by_tap.shape[:2], by_tap.shape[3], 1))
    for _ in range(POWER_STEPS):
        v = np.swapaxes(by_tap, -1, -2) @ (by_tap @ v)
        v /= np.maximum(np.linalg.norm(v, axis=(-2, -1), keepdims=True), np.finfo(np.float64).tiny)
    below: Array = np.linalg.norm(by_tap @ v, axis=(-2, -1)).sum(axis=1) * (1 - 1e-6)
    return below


class Conv1d(Convolution):
    """torch.nn.Conv1d on per-probe inputs (c_in, L); weight (c_out, c_in/groups, k)."""

    name = "conv1d"
    dims = 1


class Conv2d(Convolution):
    """torch.nn.Conv2d on per-probe inputs (c_in, H, W); weight (c_out, c_in/groups, kh, kw)."""

    name = "conv2d"
    dims = 2
