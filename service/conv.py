"""A 2-D convolution layer (stride 1, "same" output size) as a linear operator on flattened activations.

PyTorch's nn.Conv2d computes a cross-correlation. For a kernel K of shape [c_out, c_in, kh, kw] on an input of
size (H, W), padded as PyTorch's ``padding="same"`` does — (kh−1)//2 rows above, the rest of kh−1 below, and
likewise (kw−1)//2 columns left —

    out[o, y, x] = Σ_{i,p,q} K[o, i, p, q] · in[i, y + p − top, x + q − left],   top = (kh−1)//2, left = (kw−1)//2,

where ``in`` outside [0, H) × [0, W) is 0 ("zeros") or wraps modulo H and W ("circular"). Activations are rows,
the row-major flattening of [c, H, W] (torch's ``flatten`` order), so the layer is a matrix A of shape
(c_out·H·W, c_in·H·W) acting as rows ↦ rows @ Aᵀ. It is applied one kernel offset (p, q) at a time, each offset
one matrix product of K[:, :, p, q] with a shifted view of the once-padded input; A is formed only by ``dense``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from service import lanczos, spectral
from service.spectral import SpectralNorm
from service.text import counted

Array = NDArray[np.float64]
Padding = Literal["circular", "zeros"]

DENSE_MAX_ENTRIES = 2**22
"""A zero-padded layer whose matrix has at most this many entries (32 MiB), and whose smaller side
spectral.uses_dense accepts, has its norm from the explicit matrix; larger ones take Lanczos."""
DENSE_CHUNK = 2**21
"""``dense`` builds the matrix in blocks of rows whose working arrays hold about this many numbers."""


@dataclass(frozen=True)
class Conv2d:
    """The stride-1, "same"-size convolution A_K with kernel [c_out, c_in, kh, kw] on inputs of ``size`` (H, W)."""

    kernel: Array
    size: tuple[int, int]
    padding: Padding

    def __post_init__(self) -> None:
        kernel = np.asarray(self.kernel, dtype=np.float64)
        object.__setattr__(self, "kernel", kernel)
        _check(kernel, self.size, self.padding)

    @property
    def shape(self) -> tuple[int, int]:
        """(c_out·H·W, c_in·H·W)."""
        c_out, c_in = self.kernel.shape[:2]
        pixels = self.size[0] * self.size[1]
        return c_out * pixels, c_in * pixels

    @property
    def fan_in(self) -> int:
        """The inputs each output sums over: c_in·kh·kw."""
        return int(np.prod(self.kernel.shape[1:]))

    @property
    def entries(self) -> Array:
        """The parameters: the kernel."""
        return self.kernel

    @property
    def flops_per_apply(self) -> float:
        """2·c_out·c_in·kh·kw·H·W: the multiply-adds of A·x for one row x."""
        return 2.0 * self.kernel.size * self.size[0] * self.size[1]

    def apply(self, x: Array) -> Array:
        """The rows A·x_b of the rows x_b ([B, c_in·H·W] ↦ [B, c_out·H·W], x @ Aᵀ)."""
        return _correlate(self._rows(x, 1), _taps(self.kernel), self.size, self._before(), self.padding)

    def adjoint(self, y: Array) -> Array:
        """The rows Aᵀ·y_b of the rows y_b ([B, c_out·H·W] ↦ [B, c_in·H·W], y @ A).

        Substituting p' = kh−1−p, q' = kw−1−q in A's sum shows Aᵀ to be the same kind of correlation, with the
        flipped, channel-transposed kernel K'[i, o, p', q'] = K[o, i, kh−1−p', kw−1−q'] and the padding split the
        other way (kh−1−top rows above, kw−1−left columns left):

            (Aᵀy)[i, Y, X] = Σ_{o,p',q'} K'[i, o, p', q'] · y[o, Y + p' − (kh−1−top), X + q' − (kw−1−left)].
        """
        kh, kw = self.kernel.shape[2:]
        top, left = self._before()
        flipped = self.kernel.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        return _correlate(self._rows(y, 0), _taps(flipped), self.size, (kh - 1 - top, kw - 1 - left), self.padding)

    def kernel_gradient(self, delta: Array, a: Array) -> Array:
        """∂/∂K of Σ_b ⟨δ_b, A_K·a_b⟩ for the rows δ_b ([B, c_out·H·W]) and a_b ([B, c_in·H·W]): since A_K is
        linear in K, entrywise

            ∂/∂K[o, i, p, q] = Σ_{b,y,x} δ_b[o, y, x] · a_b[i, y + p − top, x + q − left]   (padded as in A),

        of shape [c_out, c_in, kh, kw]: one product (c_out × B·H·W')·(B·H·W' × c_in) per offset (p, q)."""
        c_out, c_in, kh, kw = self.kernel.shape
        height, width = self.size
        delta, a = self._rows(delta, 0), self._rows(a, 1)
        if len(delta) != len(a):
            raise ValueError(f"delta has {counted(len(delta), 'row')} and a has {len(a)}: one of each per probe")
        padded = _pad(a, c_in, self.size, (kh, kw), self._before(), self.padding)
        wide = _widen(delta, c_out, self.size, kw)
        row = len(a) * (width + kw - 1)
        length = height * row - (kw - 1)
        gradient = np.empty((c_out, c_in, kh, kw))
        for p in range(kh):
            for q in range(kw):
                shift = p * row + q
                gradient[:, :, p, q] = wide[:, :length] @ padded[:, shift : shift + length].T
        return gradient

    def dense(self) -> Array:
        """The explicit (c_out·H·W, c_in·H·W) matrix A, from A·e_j or Aᵀ·e_i, whichever side is smaller:
        m·n numbers and min(m, n) products, so for small operators only."""
        m, n = self.shape
        by_rows = m <= n
        side, product = (m, self.adjoint) if by_rows else (n, self.apply)
        block = max(1, DENSE_CHUNK // max(m, n))
        pieces = [product(np.eye(min(block, side - start), side, start)) for start in range(0, side, block)]
        stacked = np.concatenate(pieces)
        matrix: Array = stacked if by_rows else np.ascontiguousarray(stacked.T)
        return matrix

    def frequency_singular_values(self) -> Array:
        """The singular values of the circular-padded A, in descending order (as np.linalg.svd lists them).

        A circular A is block-circulant with circulant blocks, diagonalised by the 2-D DFT (Sedghi, Gupta, Long
        2019, "The singular values of convolutional layers"). With

            K̂(u, v) = Σ_{p,q} K[:, :, p, q] · exp(−2πi·(p·u/H + q·v/W)),   u < H, v < W,

        the Fourier mode f_{u,v}[y, x] = exp(2πi·(u·y/H + v·x/W)) times a vector c ∈ ℂ^{c_in} is mapped to
        f_{u,v} times exp(−2πi·(top·u/H + left·v/W))·conj(K̂(u, v))·c (K is real). These modes are orthogonal, so
        in the unitary DFT basis A is block-diagonal with those H·W blocks of c_out × c_in; a unimodular phase
        (the padding offset) and conjugation leave singular values alone, so A's min(c_out, c_in)·H·W singular
        values are those of the K̂(u, v). For zero padding they are the circular layer's: an estimate only. A
        kernel larger than the grid is folded onto it first (_folded): the same operator, not a cropped one.
        """
        symbol = np.fft.fft2(_folded(self.kernel, self.size), s=self.size, axes=(-2, -1))
        c_out, c_in = self.kernel.shape[:2]
        stack = symbol.reshape(c_out, c_in, -1).transpose(2, 0, 1)
        values: Array = np.sort(np.linalg.svd(stack, compute_uv=False).ravel())[::-1]
        return values

    def fft_norm(self) -> float:
        """‖A‖₂ of the circular-padded layer, max_{u,v} σ_max(K̂(u, v)) (see frequency_singular_values).

        Exact for circular padding; for zero padding an estimate only — the norm of a different operator, the
        circular one of the same kernel and size, which may lie above or below the zero-padded norm (see
        padded_fft_norm for a bound)."""
        return _circular_norm(self.kernel, self.size)

    def padded_fft_norm(self) -> float:
        """The circular norm on the grid (H+kh−1, W+kw−1): an upper bound of the zero-padded layer's norm.

        Let E embed an H × W image in the top-left of that grid (zeros elsewhere, an isometry), C be the circular
        layer on the grid with the same offsets, and R keep the top-left H × W outputs (‖R‖ = 1). For y < H the
        rows that C reads, y + p − top ∈ [−top, H−1+kh−1−top], wrap only into the zero rows [H, H+kh−1), and
        likewise the columns, so A_zeros = R·C·E and ‖A_zeros‖ ≤ ‖C‖."""
        kh, kw = self.kernel.shape[2:]
        return _circular_norm(self.kernel, (self.size[0] + kh - 1, self.size[1] + kw - 1))

    def norm(self, rtol: float) -> SpectralNorm:
        """‖A‖₂ to relative accuracy ``rtol``.

        Circular: fft_norm, exact (method "fft", no products with A). Zeros, a 1×1 kernel: ‖K[:, :, 0, 0]‖₂ densely
        (A is K on every pixel alone, service.pixels; method "dense"). Zeros, larger: when the matrix is small —
        spectral.uses_dense(shape, rtol) and m·n ≤ DENSE_MAX_ENTRIES — σ_max of ``dense()`` by
        spectral.dense_norms (method "dense", min(m, n) products to build it); else Lanczos on the Gram operator
        of f·A, f = lanczos.unit_scales(max |K|) exact (spectral.operator_norm, method "lanczos")."""
        m, n = self.shape
        if not self.kernel.any():
            return SpectralNorm(0.0, "zero", 0)
        if self.padding == "circular":
            return SpectralNorm(self.fft_norm(), "fft", 0)
        if self.kernel.shape[2:] == (1, 1):  # A = K ⊗ I over the pixels (service.pixels): ‖A‖₂ = ‖K‖₂
            return SpectralNorm(float(spectral.dense_norms(self.kernel[None, :, :, 0, 0])[0]), "dense", 0)
        if spectral.uses_dense(self.shape, rtol) and m * n <= DENSE_MAX_ENTRIES:
            return SpectralNorm(float(spectral.dense_norms(self.dense()[None])[0]), "dense", min(m, n))
        f = float(lanczos.unit_scales(np.array([np.abs(self.kernel).max()]))[0])
        scaled = replace(self, kernel=self.kernel * f)
        found = spectral.operator_norm(scaled.apply, scaled.adjoint, self.shape, rtol)
        return SpectralNorm(found.value / f, found.method, found.matvecs)

    def _before(self) -> tuple[int, int]:
        """(top, left): the rows above and columns left of the input that padding="same" adds."""
        kh, kw = self.kernel.shape[2:]
        return (kh - 1) // 2, (kw - 1) // 2

    def _rows(self, rows: Array, axis: int) -> Array:
        """``rows`` as float64, checked to be a [B, c·H·W] stack for c = the kernel's ``axis`` (0: out, 1: in)."""
        rows = np.asarray(rows, dtype=np.float64)
        width = self.kernel.shape[axis] * self.size[0] * self.size[1]
        if rows.ndim != 2 or rows.shape[1] != width:
            raise ValueError(f"expected rows of shape [B, {width}], got {list(rows.shape)}")
        return rows


def _check(kernel: Array, size: tuple[int, int], padding: str) -> None:
    """ValueError unless the kernel is a finite [c_out, c_in, kh, kw] on a positive size that torch's nn.Conv2d
    (padding="same") accepts: any kernel with zero padding — the output keeps the input's size, at least 1 — and,
    with circular padding, one whose padding wraps around at most once, ⌈(kh−1)/2⌉ = kh//2 ≤ H and kw//2 ≤ W
    (torch's F.pad refuses more: "Padding value causes wrapping around more than once")."""
    if kernel.ndim != 4 or 0 in kernel.shape:
        raise ValueError(f"the kernel must have shape [c_out, c_in, kh, kw], all positive, got {list(kernel.shape)}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"the input size must be (H, W), both positive, got {size}")
    if padding not in ("circular", "zeros"):
        raise ValueError(f"padding must be 'circular' or 'zeros', got {padding!r}")
    kh, kw = kernel.shape[2:]
    if padding == "circular" and (kh // 2 > size[0] or kw // 2 > size[1]):
        raise ValueError(
            f"the kernel ({kh}×{kw}) pads the input ({size[0]}×{size[1]}) by {kh // 2}×{kw // 2} on its wider "
            "sides, so circular padding would wrap around more than once, which torch refuses: kh//2 ≤ H and "
            "kw//2 ≤ W"
        )
    if not np.isfinite(kernel).all():
        raise ValueError("the kernel has NaN or infinite entries")


def _folded(kernel: Array, size: tuple[int, int]) -> Array:
    """The kernel's taps summed modulo (H, W), K'[:, :, r, s] = Σ_{p ≡ r (H), q ≡ s (W)} K[:, :, p, q], of
    spatial shape (min(kh, H), min(kw, W)): on a circular grid offsets p and p + H read the same entries, so K and
    K' give the same operator, and K' fits in the grid for the DFT (which would crop K instead)."""
    kh, kw = kernel.shape[2:]
    height, width = size
    if kh <= height and kw <= width:
        return kernel
    folded = np.zeros((*kernel.shape[:2], min(kh, height), min(kw, width)))
    for p in range(kh):
        for q in range(kw):
            folded[:, :, p % height, q % width] += kernel[:, :, p, q]
    return folded


def _taps(kernel: Array) -> Array:
    """The kernel as [kh, kw, c_out, c_in], contiguous: each offset's c_out × c_in matrix ready for BLAS."""
    return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1))


def _correlate(x: Array, taps: Array, size: tuple[int, int], before: tuple[int, int], padding: Padding) -> Array:
    """The rows out_b[o, y, x] = Σ_{i,p,q} taps[p, q, o, i] · in_b[i, y + p − before₀, x + q − before₁].

    The padded input is laid out as [c_in, H + kh − 1, B, W + kw − 1] and flattened per channel, so offset (p, q)
    is the shift s = p·B·W' + q (W' = W + kw − 1) of one contiguous range: out = Σ_{p,q} taps[p, q] · in[:, s:s+L]
    is kh·kw matrix products on strided views, no copies. Outputs are computed for x < W' too (a W'/W overhead)
    and dropped; an output x < W only ever reads columns x + q < W' of its own row and probe.
    """
    kh, kw, c_out, c_in = taps.shape
    height, width = size
    count = len(x)
    padded = _pad(x, c_in, size, (kh, kw), before, padding)
    row = count * (width + kw - 1)
    length = height * row - (kw - 1)
    out = np.empty((c_out, height * row))  # its last kw − 1 columns (x ≥ W) are never written, and dropped
    np.matmul(taps[0, 0], padded[:, :length], out=out[:, :length])
    product = np.empty((c_out, length))
    for p, q in list(np.ndindex(kh, kw))[1:]:
        shift = p * row + q
        np.matmul(taps[p, q], padded[:, shift : shift + length], out=product)
        out[:, :length] += product
    grid = out.reshape(c_out, height, count, width + kw - 1)[:, :, :, :width]
    rows: Array = grid.transpose(2, 0, 1, 3).reshape(count, -1)
    return rows


def _pad(
    x: Array, channels: int, size: tuple[int, int], kernel: tuple[int, int], before: tuple[int, int], padding: Padding
) -> Array:
    """The rows x_b as images [channels, H, W], padded by ``before`` rows/columns above/left and the rest of
    kh − 1, kw − 1 below/right (wrapped for "circular", zeros otherwise), laid out [channels, H', B, W'] and
    flattened to [channels, H'·B·W']."""
    (height, width), (kh, kw), (top, left) = size, kernel, before
    images = x.reshape(len(x), channels, height, width).transpose(1, 2, 0, 3)
    widths = ((0, 0), (top, kh - 1 - top), (0, 0), (left, kw - 1 - left))
    padded = np.pad(images, widths, mode="wrap" if padding == "circular" else "constant")
    return np.ascontiguousarray(padded).reshape(channels, -1)


def _widen(y: Array, channels: int, size: tuple[int, int], kw: int) -> Array:
    """The rows y_b as [channels, H, B, W + kw − 1] with zeros in the kw − 1 extra columns, flattened to
    [channels, H·B·(W + kw − 1)]: outputs in _correlate's layout."""
    height, width = size
    wide = np.zeros((channels, height, len(y), width + kw - 1))
    wide[:, :, :, :width] = y.reshape(len(y), channels, height, width).transpose(1, 2, 0, 3)
    return wide.reshape(channels, -1)


def _circular_norm(kernel: Array, size: tuple[int, int]) -> float:
    """max_{u,v} σ_max(K̂(u, v)) on the grid ``size``, as √λ_max of the smaller Gram K̂K̂ᴴ or K̂ᴴK̂.

    K is real, so K̂(−u, −v) = conj K̂(u, v) has the same singular values and the half-spectrum of rfft2
    (v ≤ W/2) holds them all. K is first scaled exactly by f = lanczos.unit_scales(max |K|), folded onto the grid
    (_folded), and scaled again by g = lanczos.unit_scales(max |K'|), so that the Gram matrices neither overflow
    nor underflow; λ_max of a Hermitian matrix is found to about eps·λ_max, which gives σ_max to full relative
    precision."""
    f = float(lanczos.unit_scales(np.array([np.abs(kernel).max()]))[0])
    folded = _folded(kernel * f, size)
    g = float(lanczos.unit_scales(np.array([np.abs(folded).max()]))[0])
    f *= g
    c_out, c_in = kernel.shape[:2]
    symbol = np.fft.rfft2(folded * g, s=size, axes=(-2, -1))
    stack = symbol.reshape(c_out, c_in, -1).transpose(2, 0, 1)
    adjoint = stack.conj().transpose(0, 2, 1)
    gram = stack @ adjoint if c_out <= c_in else adjoint @ stack
    top = float(np.linalg.eigvalsh(gram)[:, -1].max())
    return float(np.sqrt(max(top, 0.0))) / f
