"""Feed-forward networks z_j = W_j a_{j−1} + b_j, a_j = h_j(z_j): explicit weights or an init recipe.

Locations in :class:`InvalidInputError` are paths in the analysis request, e.g. ``("network", "layers", 2, "weight")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.activations import Activation
from service.errors import InvalidInputError, Location
from service.initializers import SCHEMES, init_weight

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Layer:
    """One layer: weight ``(n_out, n_in)``, optional bias ``(n_out,)`` and activation."""

    weight: Array
    bias: Array | None
    activation: Activation


@dataclass(frozen=True)
class Network:
    """Layers whose shapes chain; ``gain`` is the init gain that drew them (None for explicit weights), ``recipe``
    the whole init recipe (None for explicit weights)."""

    layers: tuple[Layer, ...]
    gain: float | None = None
    recipe: InitRecipe | None = None

    @property
    def widths(self) -> list[int]:
        """[n_0, n_1, …, n_L]."""
        return [self.layers[0].weight.shape[1], *(layer.weight.shape[0] for layer in self.layers)]


def network_from_layers(layers: Sequence[Layer]) -> Network:
    """Check that the layers chain (n_in of layer j = n_out of layer j−1) and are finite."""
    if not layers:
        raise InvalidInputError(("network", "layers"), "a network needs at least one layer")
    previous_out: int | None = None
    for j, layer in enumerate(layers):
        weight = layer.weight
        if weight.ndim != 2 or 0 in weight.shape:
            raise InvalidInputError(
                ("network", "layers", j, "weight"),
                f"a weight must be a non-empty matrix; got shape {list(weight.shape)}",
            )
        n_out, n_in = weight.shape
        if previous_out is not None and n_in != previous_out:
            raise InvalidInputError(
                ("network", "layers", j, "weight"),
                f"shape {[n_out, n_in]} does not chain: the previous layer outputs {previous_out} values, "
                f"so this weight needs {previous_out} columns",
            )
        check_finite(weight, ("network", "layers", j, "weight"))
        if layer.bias is not None:
            if layer.bias.shape != (n_out,):
                raise InvalidInputError(
                    ("network", "layers", j, "bias"), f"bias shape {list(layer.bias.shape)} must be [{n_out}]"
                )
            check_finite(layer.bias, ("network", "layers", j, "bias"))
        previous_out = n_out
    return Network(tuple(layers))


def check_finite(array: Array, location: Location) -> None:
    """Refuse NaN and ±Inf, naming the first offending entry."""
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array.ravel()))[0])
        raise InvalidInputError(
            location, f"contains {array.ravel()[bad]} at flat index {bad}; every entry must be finite"
        )


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
        layers.append(Layer(weight, bias, activation))
    return Network(tuple(layers), gain=recipe.gain, recipe=recipe)
