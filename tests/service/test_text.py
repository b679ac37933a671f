"""Counts in messages take the singular for exactly one (service.text.counted, and the SDK's copy)."""

from __future__ import annotations

import numpy as np
import pytest

from jacspec._text import counted as sdk_counted
from service.activations import make_activation
from service.errors import InvalidInputError
from service.linear import Dense
from service.network import Layer, network_from_layers
from service.text import counted


@pytest.mark.parametrize("function", [counted, sdk_counted])
def test_counted_is_singular_for_one_only(function: object) -> None:
    assert callable(function)
    assert [function(n, "column") for n in (0, 1, 2)] == ["0 columns", "1 column", "2 columns"]
    assert function(1, "entry", "entries") == "1 entry"
    assert function(3, "entry", "entries") == "3 entries"


def test_a_one_column_chain_error_says_column() -> None:
    """The issue's message: a layer after a 1-output layer needs 1 column, not "1 columns"."""
    tanh = make_activation("tanh")
    layers = [Layer(Dense(np.ones((1, 3))), None, tanh), Layer(Dense(np.ones((2, 2))), None, tanh)]
    with pytest.raises(InvalidInputError) as caught:
        network_from_layers(layers)
    assert "outputs 1 value, so this weight needs 1 column" in str(caught.value)
