"""The weight survey of a state dict: the singular values of every matrix in it, as WeightWatcher surveys a model.

Each tensor is read by its shape alone (:func:`plan`, so that the survey's cost is known before any array is made):

- a 2-D tensor [m, n] is a matrix (a linear layer's weight, an attention projection, an embedding table);
- a 3-D or 4-D tensor [c_out, c_in, k…] is a convolution kernel, surveyed as the one matrix
  W = K.reshape(c_out, c_in·k…) (``torch.flatten(K, 1)``, the matrix ``torch.nn.utils.spectral_norm`` takes the
  norm of; WeightWatcher's ``get_conv2D_Wmats`` instead slices a kernel into kh·kw matrices [c_out, c_in]);
- any other tensor — a scalar, a vector (a bias, a norm's scale or shift, running statistics), a tensor of five
  or more dimensions, a tensor with a dimension of 0 — is listed as skipped, with why.

For each matrix W (m × n, k = min(m, n)) all k singular values s_1 ≥ … ≥ s_k come from LAPACK gesdd (values only,
O(m·n·k) flops: service.cost.survey_flops), of W scaled exactly by a power of two to a largest entry near 1
(service.lanczos.unit_scales) so that no intermediate overflows or underflows; then σ_max = s_1, σ_min = s_k,
‖W‖_F = √(Σ (f·s_i)²)/f, the stable rank ‖W‖_F²/‖W‖₂² = Σ (s_i/s_1)², the numerical rank and the condition
number s_1/s_k (service.spectra.singular_value_spectrum, as the report's weight spectra).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service import lanczos
from service.errors import InvalidInputError, Location
from service.progress import Counter, Progress
from service.spectra import SpectrumMode, singular_value_spectrum
from service.spread import bounded

Array = NDArray[np.float64]

KERNEL_DIMS = (3, 4)
"""Tensors of these many dimensions are convolution kernels [c_out, c_in, k…] (conv1d, conv2d)."""
IN_FLIGHT = 4
"""With an executor, at most this many tensors are surveyed (or wait to be) at once: the memory of four tensors
rather than one, for up to four surveys at a time."""


@dataclass(frozen=True)
class Skipped:
    """A tensor that is not surveyed: its name, shape and why."""

    name: str
    shape: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class Planned:
    """A tensor that is surveyed: its name, its shape, and the matrix [m, n] it is surveyed as."""

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]

    @property
    def kind(self) -> str:
        """``matrix`` (2-D) or ``kernel`` (3-D, 4-D)."""
        return "matrix" if len(self.shape) == 2 else "kernel"


@dataclass(frozen=True)
class MatrixSurvey:
    """One matrix W's spectrum: σ_max = ‖W‖₂, σ_min (the k-th singular value, k = min(m, n)), ‖W‖_F, the stable rank
    ‖W‖_F²/‖W‖₂² (None for W = 0), the numerical rank (singular values above s_1·max(m, n)·eps), the condition
    number s_1/s_k (None where rank-deficient), and the singular values (quantiles or all, by the mode; none in
    mode "none")."""

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    kind: str
    sigma_max: float
    sigma_min: float
    frobenius_norm: float
    stable_rank: float | None
    rank: int
    condition_number: float | None
    singular_values: tuple[float, ...]
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Survey:
    """Every matrix's spectrum, and the tensors skipped, in the order given."""

    mode: SpectrumMode
    weights: tuple[MatrixSurvey, ...]
    skipped: tuple[Skipped, ...]

    @property
    def parameters(self) -> int:
        """The entries of the surveyed matrices."""
        return sum(m * n for m, n in (w.matrix_shape for w in self.weights))

    def largest(self) -> MatrixSurvey | None:
        """The matrix of the largest σ_max (the first such), None if there is none."""
        return max(self.weights, key=lambda w: w.sigma_max, default=None)

    def least_stable_rank(self) -> MatrixSurvey | None:
        """The matrix of the smallest stable rank (the first such; zero matrices have none), None if no matrix has
        one."""
        ranked = [w for w in self.weights if w.stable_rank is not None]
        return min(ranked, key=lambda w: w.stable_rank or 0.0, default=None)


def classify(name: str, shape: tuple[int, ...]) -> Planned | Skipped:
    """Whether a tensor of this shape is surveyed, and as which matrix; else why not (see the module docstring)."""
    dims = len(shape)
    if dims == 0:
        return Skipped(name, shape, "a scalar, not a matrix")
    if dims == 1:
        return Skipped(name, shape, "a vector (a bias, a norm's scale or shift, running statistics), not a matrix")
    if dims > max(KERNEL_DIMS):
        return Skipped(name, shape, f"{dims} dimensions: neither a matrix nor a 3-D or 4-D convolution kernel")
    if 0 in shape:
        return Skipped(name, shape, "empty: it has a dimension of 0")
    return Planned(name, shape, (shape[0], math.prod(shape[1:])))


def plan(shapes: Iterable[tuple[str, tuple[int, ...]]]) -> tuple[list[Planned], list[Skipped]]:
    """The tensors to survey and those skipped, each list in the order given, from the names and shapes alone."""
    planned: list[Planned] = []
    skipped: list[Skipped] = []
    for name, shape in shapes:
        found = classify(name, shape)
        if isinstance(found, Planned):
            planned.append(found)
        else:
            skipped.append(found)
    return planned, skipped


def survey(
    named: Mapping[str, Array],
    mode: SpectrumMode = "none",
    skipped: Iterable[Skipped] = (),
    where: Location = (),
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Survey:
    """The survey of the tensors ``named`` (in the mapping's order), each read once and in turn (a mapping that
    makes its arrays on access has one in memory at a time); ``skipped``: tensors the caller has already set
    aside, by :func:`plan` from a file's header or as not floating point, listed before those skipped here.

    With an ``executor``, each matrix's :func:`matrix_survey` is one of its tasks (the numbers are the same), at
    most IN_FLIGHT of them submitted and not yet done (``service.spread.bounded``): the next tensor is read only
    once there is room, so that at most IN_FLIGHT tensors are held at once, not the whole mapping.

    Raises InvalidInputError at ``(*where, name)`` for a tensor that is not finite, or whose σ_max or ‖W‖_F does
    not fit a float64 (the first such in order).

    ``progress(done, total)`` (``service.progress``) counts the tensors of ``named`` read, surveyed or set aside.
    """
    set_aside: list[Skipped] = []
    counter = Counter(progress, len(named))

    def planned() -> Iterator[tuple[Planned, Array, SpectrumMode, Location]]:
        for name in named:
            array = named[name]
            found = classify(name, tuple(array.shape))
            if isinstance(found, Skipped):
                set_aside.append(found)
                counter.step()
            else:
                yield found, array, mode, (*where, name)
            del array  # before the next is made

    weights = []
    for matrix in bounded(executor, matrix_survey, planned(), IN_FLIGHT):
        weights.append(matrix)
        counter.step()
    return Survey(mode, tuple(weights), (*skipped, *set_aside))


def matrix_survey(planned: Planned, tensor: Array, mode: SpectrumMode, where: Location) -> MatrixSurvey:
    """The spectrum of one tensor as the matrix ``planned.matrix_shape`` (see the module docstring)."""
    matrix = np.asarray(tensor, dtype=np.float64).reshape(planned.matrix_shape)
    peak = float(np.abs(matrix).max())
    if not math.isfinite(peak):
        raise InvalidInputError(where, "its entries must be finite (no NaN or infinity)")
    f = float(lanczos.unit_scales(np.array([peak]))[0])
    try:
        scaled = np.asarray(np.linalg.svd(matrix * f, compute_uv=False), dtype=np.float64)
    except np.linalg.LinAlgError:
        raise InvalidInputError(where, "LAPACK's SVD (gesdd) did not converge on it") from None
    with np.errstate(over="ignore"):
        s = scaled / f
        frobenius = float(np.linalg.norm(scaled)) / f
    top = float(s[0])
    if not (math.isfinite(top) and math.isfinite(frobenius)):
        raise InvalidInputError(where, "its spectral or Frobenius norm exceeds float64's range")
    spectrum = singular_value_spectrum(s, planned.matrix_shape, mode == "full")
    flags = ("zero",) if top == 0.0 else ("rank_deficient",) if spectrum.rank < len(s) else ()
    return MatrixSurvey(
        name=planned.name,
        shape=planned.shape,
        matrix_shape=planned.matrix_shape,
        kind=planned.kind,
        sigma_max=top,
        sigma_min=float(s[-1]),
        frobenius_norm=frobenius,
        stable_rank=spectrum.stable_rank,
        rank=spectrum.rank,
        condition_number=spectrum.condition_number,
        singular_values=() if mode == "none" else spectrum.singular_values,
        flags=flags,
    )
