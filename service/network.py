"""Networks of layers z_j = A_j a_{j−1} + b_j, a_j = S_j a_{j−1} + h_j(z_j): explicit weights, an init recipe, or
a recurrent network unrolled in time.

A_j is a matrix or a convolution (service.linear); S_j is absent (a plain layer, a_j = h_j(z_j)), the identity or a
projection (a residual layer). A recurrent network h_t = h(W h_{t−1} + U x_t + b), t = 1..T, is T layers that share
A_t = W, each adding its step's input drive U x_t to z_t; h_0 = 0 is its a_0.

Locations in :class:`InvalidInputError` are paths in the analysis request, e.g. ``("network", "layers", 2, "weight")``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.activations import Activation
from service.activations import Linear as LinearActivation
from service.errors import InvalidInputError, Location
from service.initializers import SCHEMES, init_weight
from service.linear import Dense, Identity, Linear
from service.text import counted

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Layer:
    """One layer: its map A ``(n_out, n_in)``, optional bias ``(n_out,)``, activation, and the skip path S of a
    residual layer (None for a plain one)."""

    weight: Linear
    bias: Array | None
    activation: Activation
    skip: Linear | None = None

    @property
    def jacobian_is_weight(self) -> bool:
        """A plain layer with the identity activation: h' = 1, so every probe's J_b = diag(1)·A = A, and
        ‖J_b‖₂ = σ = ‖A‖₂ (service.analysis reuses the weight's norm; service.cost counts it once)."""
        return self.skip is None and isinstance(self.activation, LinearActivation)

    def pull_back(self, p: Array | None, d: Array) -> Array:
        """P·J_b for every probe b, J_b = S + diag(d_b)·A: the rows of P (probes × r × m) each taken through Aᵀ
        (and Sᵀ), giving probes × r × n. ``p`` None is the identity (the last layer, r = m): for a matrix A,
        diag(d_b)·A is then formed by scaling A's rows, B·m·n work instead of the B·m²·n of the adjoint."""
        m, n = self.weight.shape
        if p is None:
            if isinstance(self.weight, Dense):
                first: Array = d[:, :, None] * self.weight.matrix
                if self.skip is not None:
                    first += self.skip.dense()
                return first
            p = np.broadcast_to(np.eye(m), (len(d), m, m))
        back = self.weight.adjoint((p * d[:, None, :]).reshape(-1, m))
        if self.skip is not None:
            back += self.skip.adjoint(p.reshape(-1, m))
        return back.reshape(len(d), p.shape[1], n)


@dataclass(frozen=True)
class Recurrent:
    """What makes the layers a recurrent network: the input weight U ``(n, n_in)`` and the steps T."""

    input_weight: Dense
    steps: int

    @property
    def input_size(self) -> int:
        return self.input_weight.shape[1]

    def drive(self, x: Array) -> list[Array]:
        """The input drive U x_t of every step t (rows are probes) for probe rows x = (x_1, …, x_T) flattened."""
        n_in = self.input_size
        return [self.input_weight.apply(x[:, t * n_in : (t + 1) * n_in]) for t in range(self.steps)]


@dataclass(frozen=True)
class Network:
    """Layers whose shapes chain; ``gain`` is the init gain that drew them (None for explicit weights), ``recipe``
    the whole init recipe (None for explicit weights); ``recurrent`` for an unrolled recurrent network."""

    layers: tuple[Layer, ...]
    gain: float | None = None
    recipe: InitRecipe | None = None
    recurrent: Recurrent | None = None

    @property
    def widths(self) -> list[int]:
        """[n_0, n_1, …, n_L]."""
        return [self.layers[0].weight.shape[1], *(layer.weight.shape[0] for layer in self.layers)]

    def distinct_maps(self) -> dict[int, Linear]:
        """Each distinct map A_j by its id, in layer order: a recurrent network's steps share one."""
        return {id(layer.weight): layer.weight for layer in self.layers}

    @property
    def input_width(self) -> int:
        """The length of one probe: n_0, or T·n_in for a recurrent network (its inputs x_1 … x_T, flattened)."""
        if self.recurrent is not None:
            return self.recurrent.steps * self.recurrent.input_size
        return self.widths[0]


def network_from_layers(layers: Sequence[Layer], *, finite: bool = False) -> Network:
    """Check that the layers chain (n_in of layer j = n_out of layer j−1) and are finite.

    ``finite``: the caller made every weight and bias with ``finite_float64`` already, which checked them as it
    widened them; they are not read again.
    """
    if not layers:
        raise InvalidInputError(("network", "layers"), "a network needs at least one layer")
    previous_out: int | None = None
    for j, layer in enumerate(layers):
        field = "weight" if isinstance(layer.weight, Dense) else "kernel"
        entries = layer.weight.entries
        if isinstance(layer.weight, Dense) and (entries.ndim != 2 or 0 in entries.shape):
            raise InvalidInputError(
                ("network", "layers", j, "weight"),
                f"a weight must be a non-empty matrix; got shape {list(entries.shape)}",
            )
        n_out, n_in = layer.weight.shape
        if previous_out is not None and n_in != previous_out:
            fix = (
                f"so this weight needs {counted(previous_out, 'column')}"
                if field == "weight"
                else "c_in·H·W must equal it"
            )
            raise InvalidInputError(
                ("network", "layers", j, field),
                f"shape {[n_out, n_in]} does not chain: the previous layer outputs {counted(previous_out, 'value')}, "
                f"{fix}",
            )
        if not finite:
            check_finite(entries, ("network", "layers", j, field))
        _check_skip(layer, j)
        if layer.bias is not None:
            if layer.bias.shape != (n_out,):
                raise InvalidInputError(
                    ("network", "layers", j, "bias"), f"bias shape {list(layer.bias.shape)} must be [{n_out}]"
                )
            if not finite:
                check_finite(layer.bias, ("network", "layers", j, "bias"))
        previous_out = n_out
    return Network(tuple(layers))


def _check_skip(layer: Layer, j: int) -> None:
    """An identity skip needs n_out = n_in; a projection P has the layer's shape and finite entries."""
    skip = layer.skip
    if skip is None or skip.shape == layer.weight.shape:
        if skip is not None and not isinstance(skip, Identity):
            check_finite(skip.entries, ("network", "layers", j, "projection"))
        return
    n_out, n_in = layer.weight.shape
    if isinstance(skip, Identity):
        raise InvalidInputError(
            ("network", "layers", j, "residual"),
            f"an identity skip a_j = a_(j-1) + h(z_j) needs as many outputs as inputs; this layer maps "
            f"{counted(n_in, 'value')} to {n_out}: give a projection",
        )
    raise InvalidInputError(
        ("network", "layers", j, "projection"),
        f"the projection maps {counted(skip.shape[1], 'value')} to {skip.shape[0]}; the layer needs {n_in} to {n_out}",
    )


FINITE_BLOCK = 1 << 16
"""Entries ``finite_float64`` widens and checks at a time: 512 KiB of float64, still in cache when summed."""
FINITE_TASK = 1 << 20
"""…and, given an executor, at most this many entries a task (16 blocks): a 2048 × 2048 float32 weight in four."""


def finite_float64(
    values: NDArray[np.floating[Any]], location: Location, copy: bool = False, executor: Executor | None = None
) -> Array:
    """``values`` as float64 (widened exactly from float16 or float32), every entry finite: one pass over memory.
    Native float64 values are checked in place, unless ``copy`` asks for an array of their own (as for a view
    into a request's bytes, which need not even be aligned).

    Block by block the entries are widened, then summed while in cache. A finite sum proves its block finite (a NaN
    or ±Inf makes any sum NaN or ±Inf); only a block whose sum is not — a bad entry, or finite entries whose sum
    overflows — is searched entry by entry. The first bad entry is refused, with its flat index. With an
    ``executor``, runs of FINITE_TASK entries are its tasks.
    """
    flat = values.reshape(-1)
    in_place = flat.dtype == np.float64 and not copy
    out: Array = flat.view(np.float64) if in_place else np.empty(flat.size, np.float64)
    runs = [(start, min(start + FINITE_TASK, flat.size)) for start in range(0, flat.size, FINITE_TASK)]
    if executor is None or len(runs) < 2:
        bad = [_widen_run(flat, out, start, stop, in_place) for start, stop in runs]
    else:
        bad = list(executor.map(lambda run: _widen_run(flat, out, run[0], run[1], in_place), runs))
    first = min((index for index in bad if index is not None), default=None)
    if first is not None:
        raise InvalidInputError(location, f"contains {out[first]} at flat index {first}; every entry must be finite")
    widened: Array = out.reshape(values.shape)
    return widened


def _widen_run(flat: NDArray[np.floating[Any]], out: Array, start: int, stop: int, in_place: bool) -> int | None:
    """``out[start:stop]`` ← ``flat[start:stop]`` widened (unless ``in_place``), block by block; the flat index of
    the run's first entry that is not finite, or None."""
    for begin in range(start, stop, FINITE_BLOCK):
        block = out[begin : min(begin + FINITE_BLOCK, stop)]
        if not in_place:
            np.copyto(block, flat[begin : begin + len(block)])
        with np.errstate(over="ignore", invalid="ignore"):
            total = block.sum()
        if not math.isfinite(total):
            bad = np.flatnonzero(~np.isfinite(block))
            if bad.size:
                return begin + int(bad[0])
    return None


def check_finite(array: Array, location: Location) -> None:
    """Refuse NaN and ±Inf, naming the first offending entry."""
    finite_float64(array, location)


@dataclass(frozen=True)
class InitRecipe:
    """A network drawn at random: ``widths = [n_0, …, n_L]``, one scheme, one activation for every layer."""

    widths: tuple[int, ...]
    scheme: str
    activation: Activation
    output_activation: Activation | None = None
    gain: float = 1.0
    std: float = 1.0
    bias_std: float = 0.0
    seed: int = 0


def build_network(recipe: InitRecipe) -> Network:
    """Draw every W_j (then b_j ~ N(0, bias_std²) if bias_std > 0) from one generator seeded with ``seed``."""
    if recipe.scheme not in SCHEMES:
        raise InvalidInputError(
            ("network", "init", "scheme"), f"unknown init scheme {recipe.scheme!r}; expected one of {sorted(SCHEMES)}"
        )
    if len(recipe.widths) < 2:
        raise InvalidInputError(("network", "init", "widths"), "widths needs at least two entries: [n_0, n_1, …]")
    for i, width in enumerate(recipe.widths):
        if width < 1:
            raise InvalidInputError(("network", "init", "widths", i), f"every width must be ≥ 1; got {width}")
    rng = np.random.default_rng(recipe.seed)
    layers = []
    depth = len(recipe.widths) - 1
    for j in range(depth):
        shape = (recipe.widths[j + 1], recipe.widths[j])
        weight = init_weight(rng, recipe.scheme, shape, recipe.gain, recipe.std)
        bias = recipe.bias_std * rng.standard_normal(shape[0]) if recipe.bias_std > 0 else None
        last = j == depth - 1
        activation = recipe.output_activation if last and recipe.output_activation else recipe.activation
        layers.append(Layer(Dense(weight), bias, activation))
    return Network(tuple(layers), gain=recipe.gain, recipe=recipe)


@dataclass(frozen=True)
class RecurrentSpec:
    """h_t = h(W h_{t−1} + U x_t + b), t = 1..T: W ``(n, n)``, U ``(n, n_in)``, b ``(n,)`` or None."""

    weight: Array
    input_weight: Array
    bias: Array | None
    steps: int
    activation: Activation


@dataclass(frozen=True)
class RecurrentInit:
    """W and U drawn with one init scheme from one generator (W first, then U, then b ~ N(0, bias_std²))."""

    hidden_size: int
    input_size: int
    scheme: str
    gain: float = 1.0
    std: float = 1.0
    bias_std: float = 0.0
    seed: int = 0

    def draw(self, steps: int, activation: Activation) -> RecurrentSpec:
        if self.scheme not in SCHEMES:
            raise InvalidInputError(
                ("network", "recurrent", "init", "scheme"),
                f"unknown init scheme {self.scheme!r}; expected one of {sorted(SCHEMES)}",
            )
        rng = np.random.default_rng(self.seed)
        n, n_in = self.hidden_size, self.input_size
        weight = init_weight(rng, self.scheme, (n, n), self.gain, self.std)
        input_weight = init_weight(rng, self.scheme, (n, n_in), self.gain, self.std)
        bias = self.bias_std * rng.standard_normal(n) if self.bias_std > 0 else None
        return RecurrentSpec(weight, input_weight, bias, steps, activation)


def recurrent_network(spec: RecurrentSpec, gain: float | None = None) -> Network:
    """The network unrolled over its T steps: T layers sharing one Dense(W), and the input weight U."""
    where = ("network", "recurrent")
    weight, input_weight = spec.weight, spec.input_weight
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or weight.shape[0] == 0:
        raise InvalidInputError((*where, "weight"), f"weight must be square [n, n]; got {list(weight.shape)}")
    n = weight.shape[0]
    if input_weight.ndim != 2 or input_weight.shape[0] != n or input_weight.shape[1] == 0:
        raise InvalidInputError(
            (*where, "input_weight"), f"input_weight must be [{n}, n_in] (n_in ≥ 1); got {list(input_weight.shape)}"
        )
    check_finite(weight, (*where, "weight"))
    check_finite(input_weight, (*where, "input_weight"))
    if spec.bias is not None:
        if spec.bias.shape != (n,):
            raise InvalidInputError((*where, "bias"), f"bias shape {list(spec.bias.shape)} must be [{n}]")
        check_finite(spec.bias, (*where, "bias"))
    shared = Dense(weight)
    layers = tuple(Layer(shared, spec.bias, spec.activation) for _ in range(spec.steps))
    return Network(layers, gain=gain, recurrent=Recurrent(Dense(input_weight), spec.steps))
