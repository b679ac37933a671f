"""Singular-value spectra: of each weight matrix, of the input–output Jacobian ∂a_L/∂a_0 at each probe, and the
free-probability prediction of the latter's first two moments (Pennington, Schoenholz & Ganguli 2017, 2018).

Dynamical isometry is every singular value of J = ∂a_L/∂a_0 near 1, not only the largest; the eigenvalues λ of JJᵀ
(n_L of them, the squared singular values and n_L − n_0 zeros where n_L > n_0) measure it by their mean and
variance, and the condition number s_max/s_min over the min(n_L, n_0) singular values. A matrix's numerical rank
counts the singular values above s_max·max(m, n)·eps (numpy.linalg.matrix_rank's tolerance: those below are
rounding); where it is below min(m, n) the condition number is infinite and reported as None.

Prediction. With B_j = J_j J_jᵀ for the first j layers (B_0 = I) and φ the normalised trace,
B_j = D_j W_j B_{j−1} W_jᵀ D_j. If D_j² = diag(h_j'(z_j)²), W_jᵀW_j and B_{j−1} are asymptotically free, then for
m1 = φ(B), m2 = φ(B²):

    m1_j = χ₁,j·m1_{j−1},        χ₁,j = σ_w,j²·μ₁,j,
    v_j = m2_j/m1_j² − 1 = (μ₂,j/μ₁,j² − 1) + a_j + λ_j·(v_{j−1} + 1) − 1,    v_0 = 0,

with μ_k,j = E[h_j'(√q*·z)^{2k}] (at the layer's q*, service.meanfield), λ_j = n_j/n_{j−1}, and a_j = λ_j·v(W_jᵀW_j),
v(W_jᵀW_j) the normalised variance of W_jᵀW_j's n_{j−1} eigenvalues. For i.i.d. entries (gaussian, uniform, xavier,
he, lecun) Marchenko–Pastur gives v = 1/λ_j, so a_j = 1; for orthogonal weights a_j = max(0, 1 − λ_j). Explicit
weights use their own spectrum's v. The prediction is the mean m1_L = ∏ χ₁,j and the variance m1_L²·v_L of JJᵀ's
eigenvalues. For square layers a_j is 1 (Gaussian) or 0 (orthogonal) and v_L = Σ_j (μ₂,j/μ₁,j² − 1 + a_j): at
criticality, linear networks have variance L (Gaussian) or 0 (orthogonal), ReLU networks 2L or L — Pennington et
al. 2017 eq. (15), σ²_{JJᵀ} = L·(μ₂/μ₁² − 1 − s₁) with s₁ = −1 (Gaussian), 0 (orthogonal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from service.conv import Conv2d
from service.initializers import SCHEMES
from service.linear import Dense, Linear
from service.meanfield import NetworkMeanField
from service.network import Network

Array = NDArray[np.float64]
SpectrumMode = Literal["none", "summary", "full"]

QUANTILE_LEVELS = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
"""The singular values reported in "summary" mode: these quantiles (linear interpolation), min to max."""


@dataclass(frozen=True)
class WeightSpectrum:
    """Singular values of W_j (at QUANTILE_LEVELS, or all of them in decreasing order), the numerical rank, the stable
    rank ‖W‖_F²/‖W‖₂² and the condition number s_max/s_min (None where rank-deficient), and the normalised variance
    v(WᵀW) of WᵀW's n_{j−1} eigenvalues (used by the prediction)."""

    singular_values: tuple[float, ...]
    rank: int
    stable_rank: float | None
    condition_number: float | None
    gram_variance: float | None


@dataclass(frozen=True)
class ProbeSpectrum:
    """The spectrum of J = ∂a_L/∂a_0 at one probe, in log10 (J's entries may not fit a float64): its singular
    values (quantiles or all, decreasing), its numerical rank, the mean and variance of JJᵀ's n_L eigenvalues, and
    s_max/s_min. A log10 is None where the quantity is exactly 0; the condition number's where J is numerically
    rank-deficient (flag ``rank_deficient``)."""

    singular_values_log10: tuple[float | None, ...]
    rank: int
    eigenvalue_mean_log10: float | None
    eigenvalue_variance_log10: float | None
    condition_number_log10: float | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Spectra:
    """Everything above for one analysis; ``probes`` is empty where the forward pass overflowed (flag
    ``overflow``). Every log10 is None where its quantity is exactly 0 — but the prediction's where a layer's mean
    field is out of range, or where the network has convolutional, residual or recurrent layers, which the
    free-probability recursion does not model (flag ``prediction_unknown``)."""

    mode: SpectrumMode
    weights: tuple[WeightSpectrum, ...]
    probes: tuple[ProbeSpectrum, ...]
    eigenvalue_mean_log10: float | None
    """log10 of the mean over probes of each probe's eigenvalue mean."""
    eigenvalue_variance_log10: float | None
    predicted_mean_log10: float | None
    predicted_variance_log10: float | None
    flags: tuple[str, ...]


def spectra(
    network: Network,
    derivatives: Sequence[Array],
    meanfield: NetworkMeanField,
    mode: SpectrumMode,
    stop: str = "overflow",
) -> Spectra:
    """The spectra of ``network``'s weights and, from each probe's h_j'(z_j) (``derivatives[j]``, rows are probes;
    fewer than L layers where the forward pass stopped, flagged ``stop``: overflow or underflow), of its
    input–output Jacobian."""
    full = mode == "full"
    found = {key: map_spectrum(weight, full) for key, weight in network.distinct_maps().items()}
    weights = tuple(found[id(layer.weight)] for layer in network.layers)
    plain = network.recurrent is None and all(
        isinstance(layer.weight, Dense) and layer.skip is None for layer in network.layers
    )
    flags = []
    if not (meanfield.known and plain):
        flags.append("prediction_unknown")
    probes: tuple[ProbeSpectrum, ...] = ()
    if len(derivatives) < len(network.layers):
        flags.append(stop)
    else:
        probes = jacobian_spectra(network, derivatives, full)
    mean, variance = predict(network, meanfield, weights) if plain else (None, None)
    return Spectra(
        mode=mode,
        weights=weights,
        probes=probes,
        eigenvalue_mean_log10=_log_mean([p.eigenvalue_mean_log10 for p in probes]),
        eigenvalue_variance_log10=_log_mean([p.eigenvalue_variance_log10 for p in probes]),
        predicted_mean_log10=mean,
        predicted_variance_log10=variance,
        flags=tuple(flags),
    )


def _summarise(values: Array, full: bool) -> Array:
    """All values in decreasing order, or their quantiles at QUANTILE_LEVELS."""
    if full:
        return np.sort(values)[::-1]
    return np.quantile(values, QUANTILE_LEVELS)


def map_spectrum(weight: Linear, full: bool) -> WeightSpectrum:
    """The spectrum of a layer's map: a circular convolution's min(m, n) singular values from its 2-D DFT, exact
    (service.conv, Sedghi et al.); any other map's from its matrix by LAPACK gesdd."""
    if isinstance(weight, Conv2d) and weight.padding == "circular":
        values = np.sort(weight.frequency_singular_values().ravel())[::-1]
        return singular_value_spectrum(values, weight.shape, full)
    return weight_spectrum(weight.dense(), full)


def weight_spectrum(weight: Array, full: bool) -> WeightSpectrum:
    """The singular values of one weight matrix (LAPACK gesdd, values only) and what follows from them."""
    values = np.asarray(np.linalg.svd(weight, compute_uv=False), dtype=np.float64)
    return singular_value_spectrum(values, (weight.shape[0], weight.shape[1]), full)


def singular_value_spectrum(s: Array, shape: tuple[int, int], full: bool) -> WeightSpectrum:
    """What follows from the min(m, n) singular values ``s`` (decreasing) of an m × n map."""
    top, bottom = float(s[0]), float(s[-1])
    rank = numerical_rank(s, shape)
    n_in = shape[1]
    eigen = (s / top) ** 2 if top > 0.0 else s  # WᵀW's eigenvalues over the largest: no overflow in their squares
    mean = float(eigen.sum()) / n_in
    second = float((eigen**2).sum()) / n_in
    return WeightSpectrum(
        singular_values=tuple(float(v) for v in _summarise(s, full)),
        rank=rank,
        stable_rank=float(eigen.sum()) if top > 0.0 else None,
        condition_number=top / bottom if 0 < rank == len(s) else None,
        gram_variance=second / mean**2 - 1.0 if mean > 0.0 else None,
    )


def jacobian_spectra(network: Network, derivatives: Sequence[Array], full: bool) -> tuple[ProbeSpectrum, ...]:
    """Form J_b = J_L,b ⋯ J_1,b, J_j,b = S_j + diag(h_j'(z_j,b))·A_j, for every probe b at once, from the narrower
    end: from the output side (n_L ≤ n_0) the rows of P = ∂a_L/∂a_j go through J_jᵀ (the maps' adjoints), else the
    columns of P = ∂a_j/∂a_0 through J_j. Each step is rescaled to a largest entry of 1, the scale kept in log10;
    then gesdd per probe."""
    layers = network.layers
    probes = derivatives[0].shape[0]
    scale = np.zeros(probes)
    n_in, n_out = layers[0].weight.shape[1], layers[-1].weight.shape[0]
    if n_out <= n_in:  # P = ∂a_L/∂a_j, (probes, n_L, n_j), from j = L down
        rows: Array | None = None  # the identity, before the last layer
        for layer, d in zip(reversed(layers), reversed(derivatives), strict=True):
            rows = layer.pull_back(rows, d)
            scale += _rescale(rows)
        assert rows is not None  # a network has at least one layer
        p = rows
    else:  # P = ∂a_j/∂a_0, (probes, n_j, n_0), from j = 1 up; its columns are the rows of Pᵀ
        p = np.broadcast_to(np.eye(n_in), (probes, n_in, n_in)).copy()
        for layer, d in zip(layers, derivatives, strict=True):
            m, n = layer.weight.shape
            columns = p.transpose(0, 2, 1).reshape(-1, n)
            out = layer.weight.apply(columns).reshape(probes, n_in, m) * d[:, None, :]
            if layer.skip is not None:
                out += layer.skip.apply(columns).reshape(probes, n_in, m)
            p = out.transpose(0, 2, 1)
            scale += _rescale(p)
    s = np.linalg.svd(p, compute_uv=False)  # (probes, min(n_L, n_0)), decreasing
    return tuple(_probe_spectrum(s[b], float(scale[b]), (n_out, n_in), full) for b in range(probes))


def numerical_rank(s: Array, shape: tuple[int, int]) -> int:
    """How many singular values exceed s_max·max(m, n)·eps (those below are rounding)."""
    if len(s) == 0 or s[0] == 0.0:
        return 0
    return int(np.count_nonzero(s > s[0] * max(shape) * np.finfo(np.float64).eps))


def _rescale(p: Array) -> Array:
    """Divide each probe's matrix by its largest |entry| (where non-zero); return log10 of the divisors."""
    largest = np.abs(p).max(axis=(1, 2))
    alive = largest > 0.0
    p /= np.where(alive, largest, 1.0)[:, None, None]
    return np.where(alive, np.log10(np.where(alive, largest, 1.0)), 0.0)


def _log10(value: float) -> float | None:
    return math.log10(value) if value > 0.0 else None


def _probe_spectrum(s: Array, scale: float, shape: tuple[int, int], full: bool) -> ProbeSpectrum:
    """J = 10^scale·P with P's singular values s: log10 s_J = scale + log10 s; JJᵀ's eigenvalues are 10^{2·scale}·s²
    and n_L − len(s) zeros, so their mean and variance scale by 10^{2·scale} and 10^{4·scale}."""
    with np.errstate(divide="ignore"):
        logs = scale + np.log10(_summarise(s, full))
    n_out = shape[0]
    eigen = s**2
    mean = float(eigen.sum()) / n_out
    variance = (float(((eigen - mean) ** 2).sum()) + (n_out - len(s)) * mean**2) / n_out
    mean_log10, variance_log10 = _log10(mean), _log10(variance)
    top, bottom = float(s[0]), float(s[-1])
    rank = numerical_rank(s, shape)
    flags = ("zero",) if top == 0.0 else ("rank_deficient",) if rank < len(s) else ()
    return ProbeSpectrum(
        singular_values_log10=tuple(float(v) if math.isfinite(v) else None for v in logs),
        rank=rank,
        eigenvalue_mean_log10=None if mean_log10 is None else 2.0 * scale + mean_log10,
        eigenvalue_variance_log10=None if variance_log10 is None else 4.0 * scale + variance_log10,
        condition_number_log10=math.log10(top / bottom) if 0 < rank == len(s) else None,
        flags=flags,
    )


def _log_mean(logs: Sequence[float | None]) -> float | None:
    """log10 of the mean of 10^x over the list (None entries are zeros); None if the list is empty or all zero."""
    finite = [x for x in logs if x is not None]
    if not finite:
        return None
    peak = max(finite)
    return peak + math.log10(math.fsum(10.0 ** (x - peak) for x in finite) / len(logs))


def weight_term(network: Network, j: int, weights: Sequence[WeightSpectrum]) -> float | None:
    """a_j = λ_j·v(W_jᵀW_j): 1 for i.i.d. init schemes, max(0, 1 − λ_j) for orthogonal ones, the weights' own for
    explicit weights (None where W_j = 0)."""
    n_out, n_in = network.layers[j].weight.shape
    ratio = float(n_out) / float(n_in)
    recipe = network.recipe
    if recipe is None:
        v = weights[j].gram_variance
        return None if v is None else ratio * v
    if SCHEMES[recipe.scheme].distribution == "orthogonal":
        return max(0.0, 1.0 - ratio)
    return 1.0


def predict(
    network: Network, meanfield: NetworkMeanField, weights: Sequence[WeightSpectrum]
) -> tuple[float | None, float | None]:
    """log10 of the predicted mean and variance of JJᵀ's eigenvalues, by the recursion of the module's docstring
    (None where exactly 0: the mean where some χ₁ = 0, and then the variance too; both None where unknown)."""
    if meanfield.predicted_growth_log10 is None:
        return None, None
    mean_log10 = 2.0 * meanfield.predicted_growth_log10
    v = 0.0
    for j, layer in enumerate(meanfield.layers):
        a = weight_term(network, j, weights)
        theory = layer.theory
        # χ₁,j > 0 here, so σ_w,j > 0 (W_j ≠ 0, a_j known) and μ₁,j > 0
        assert a is not None
        assert theory.mu1 > 0.0
        n_out, n_in = network.layers[j].weight.shape
        v = (theory.mu2 / theory.mu1**2 - 1.0) + a + (n_out / n_in) * (v + 1.0) - 1.0
    return mean_log10, (2.0 * mean_log10 + math.log10(v)) if v > 0.0 else None
