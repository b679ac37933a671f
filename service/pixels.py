"""1×1 convolutions, pixel by pixel: their Jacobians' norms from H·W small matrices instead of Lanczos.

A 1×1 convolution maps each pixel's channels by one c_out × c_in matrix K and reads no other pixel (its padding is
never read): on rows in [c, H, W] order, (A x)[o, p] = Σ_i K[o, i]·x[i, p] for each of the P = H·W pixels p, so
A = K ⊗ I_P up to the order of the entries. A skip path that is the identity or a 1×1 projection Q does the same,
and so does the diagonal diag(d_b) of a probe's derivatives. Every per-probe Jacobian is then block-diagonal, one
block a pixel,

    J_b = ⊕_p J_{b,p},   J_{b,p} = S + diag(d_b[:, p])·K   (S = I, Q, or 0 for a plain layer),

and so is every product of such Jacobians over layers with the same P (block by block), whence

    ‖J_b‖₂ = max_p ‖J_{b,p}‖₂,   ‖J_L ⋯ J_{j+1}‖₂ = max_p ‖J_{L,p} ⋯ J_{j+1,p}‖₂   (for each probe b).

Lanczos on the whole operator meets, at the top of its spectrum, a cluster of P nearly equal values (one a pixel)
and needs up to a full basis to separate them; here B·P small matrices are solved at once by LAPACK's symmetric
eigensolver, to rounding, at a cost fixed by the sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from service import lanczos
from service.conv import Conv2d
from service.linear import Identity, Linear
from service.network import Layer

Array = NDArray[np.float64]


def kernel_matrix(linear: Linear | None) -> Array | None:
    """K of a 1×1 convolution (c_out × c_in); None for any other map."""
    if isinstance(linear, Conv2d) and linear.kernel.shape[2:] == (1, 1):
        matrix: Array = linear.kernel[:, :, 0, 0]
        return matrix
    return None


def pixelwise(layer: Layer) -> bool:
    """Whether the layer's Jacobians are block-diagonal over its pixels: a 1×1 convolution with no skip path, an
    identity one, or a 1×1 projection."""
    skip = layer.skip
    return kernel_matrix(layer.weight) is not None and (
        skip is None or isinstance(skip, Identity) or kernel_matrix(skip) is not None
    )


def pixels(layer: Layer) -> int:
    """P = H·W of a pixelwise layer."""
    weight = layer.weight
    assert isinstance(weight, Conv2d)
    return weight.size[0] * weight.size[1]


def blocks(layer: Layer, d: Array) -> Array:
    """The blocks J_{b,p} = S + diag(d_b[:, p])·K of a pixelwise layer for the derivative rows d_b of ``d``, as an
    array [B, P, c_out, c_in]."""
    k = kernel_matrix(layer.weight)
    assert k is not None
    c_out, c_in = k.shape
    per_pixel = d.reshape(len(d), c_out, -1).transpose(0, 2, 1)  # [B, P, c_out]
    out: Array = per_pixel[:, :, :, None] * k
    skip = layer.skip
    if isinstance(skip, Identity):
        out += np.eye(c_out, c_in)
    elif skip is not None:
        projection = kernel_matrix(skip)
        assert projection is not None
        out += projection
    return out


def small_norms(stack: Array) -> Array:
    """σ_max of each matrix of ``stack`` [..., m, n] as √λ_max of its smaller Gram matrix, each first scaled
    exactly by the power of two f that brings its largest entry near 1 (lanczos.unit_scales), all solved by one
    batched call of LAPACK's symmetric eigensolver (numpy's eigvalsh): λ_max to a few ulps of ‖G‖."""
    m, n = stack.shape[-2:]
    f = lanczos.unit_scales(np.abs(stack).max(axis=(-2, -1)))
    scaled = stack * f[..., None, None]
    transposed = np.swapaxes(scaled, -1, -2)
    grams = scaled @ transposed if m <= n else transposed @ scaled
    top: Array = np.sqrt(np.maximum(np.linalg.eigvalsh(grams)[..., -1], 0.0)) / f
    return top


def weight_norm(kernel: Array) -> float:
    """‖A‖₂ = ‖K‖₂ of a 1×1 convolution A = K ⊗ I_P."""
    return float(small_norms(kernel[None])[0])


def jacobian_max(layer: Layer, d: Array) -> float:
    """max_b ‖J_b‖₂ = max_{b,p} ‖J_{b,p}‖₂ of a pixelwise layer, a chunk of probes at a time."""
    k = kernel_matrix(layer.weight)
    assert k is not None
    chunk = max(1, CHUNK_ENTRIES // (k.size * pixels(layer)))
    return max(float(small_norms(blocks(layer, d[s : s + chunk])).max()) for s in range(0, len(d), chunk))


CHUNK_ENTRIES = 1 << 22
"""jacobian_max forms at most this many entries of blocks at once (32 MiB)."""


def uniform(layers: Sequence[Layer]) -> bool:
    """Whether every layer is pixelwise with the same P, so that the products of their Jacobians are
    block-diagonal over the same pixels."""
    return all(pixelwise(layer) for layer in layers) and len({pixels(layer) for layer in layers}) == 1


def backward_norms(
    layers: Sequence[Layer], derivatives: Sequence[Array], last: float
) -> tuple[list[float | None], float | None, int]:
    """service.analysis._backward_norms for ``uniform`` layers: log10 max_b ‖∂a_L/∂a_j‖₂ for j = 1..L (0 for the
    last, ``last`` — max_b ‖J_L‖₂ — for the one before) and for j = 0, and the matrix-vector products (none).

    The blocks M_{b,p} = J_{L,p} ⋯ J_{j+1,p} are accumulated from the output side, M ← M·J_j, each probe's
    blocks rescaled after each step by the power of two 2^e_b that brings their largest entry near 1 (exact: no
    rounding, no overflow), the exponents kept apart and added back in log10."""
    depth = len(layers)
    logs: list[float | None] = [None] * depth
    logs[-1] = 0.0
    top = float(np.log10(last)) if last > 0 else None
    if depth == 1:
        return logs, top, 0
    logs[-2] = top
    widest = max(layer.weight.shape[0] for layer in layers) * max(layer.weight.shape[1] for layer in layers)
    chunk = max(1, CHUNK_ENTRIES // (widest // pixels(layers[0])))
    found = np.full(depth - 1, -np.inf)
    for s in range(0, len(derivatives[0]), chunk):
        found = np.maximum(found, _chunk_logs(layers, [d[s : s + chunk] for d in derivatives]))
    values = [float(v) if np.isfinite(v) else None for v in found]
    return [*values[1:], top, 0.0], values[0], 0


def _chunk_logs(layers: Sequence[Layer], derivatives: Sequence[Array]) -> Array:
    """For j = 0..L−2, log10 max_b ‖J_L ⋯ J_{j+1}‖₂ over a chunk of probes (−∞ where every product is 0)."""
    depth = len(layers)
    product = blocks(layers[-1], derivatives[-1])
    exponents = np.zeros(len(product))
    found = np.full(depth - 1, -np.inf)
    for j in range(depth - 2, -1, -1):
        product = product @ blocks(layers[j], derivatives[j])
        f = lanczos.unit_scales(np.abs(product).max(axis=(1, 2, 3)))
        product *= f[:, None, None, None]
        exponents -= np.log10(f)
        norms = small_norms(product).max(axis=1)
        alive = norms > 0
        if alive.any():
            found[j] = (np.log10(norms[alive]) + exponents[alive]).max()
    return found
