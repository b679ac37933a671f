"""The suggested gain in closed loop: applied to the recipe and analysed again, it gives a stable network.

Every activation × several schemes, gains 0.3–3, depths 10–100, widths 32–512 (66 recipes, 8 probes): where the
first analysis gives a gain, the re-analysis with it is stable, and a stable network is told to keep its gain. The
independent check is the re-analysis itself: a new network drawn from the recipe at the suggested gain, analysed
from scratch.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.activations import ACTIVATIONS, make_activation
from service.analysis import Analysis, Options, analyse
from service.linear import Dense
from service.network import InitRecipe, Layer, build_network, network_from_layers
from service.probes import ProbeSpec, make_probes

CONFIGS = (  # scheme, gain, width, depth
    ("xavier_normal", 0.3, 64, 20),
    ("he_normal", 3.0, 32, 50),
    ("orthogonal", 0.5, 128, 30),
    ("xavier_uniform", 2.0, 256, 10),
    ("lecun_normal", 1.5, 512, 10),
    ("he_uniform", 0.6, 32, 100),
)
CASES = [(name, *config) for name in ACTIVATIONS for config in CONFIGS]


def _analysis(activation: str, scheme: str, gain: float, width: int, depth: int) -> Analysis:
    recipe = InitRecipe((width,) * (depth + 1), scheme, make_activation(activation), gain=gain, seed=7)
    network = build_network(recipe)
    x, y = make_probes(ProbeSpec(count=8), width, width)
    return analyse(network, x, y, Options())


@pytest.mark.parametrize(("activation", "scheme", "gain", "width", "depth"), CASES)
def test_suggested_gain_makes_the_network_stable(
    activation: str, scheme: str, gain: float, width: int, depth: int
) -> None:
    """Stable stays as it is; otherwise the suggested gain, re-analysed, is stable and its true growth is the one
    the suggestion quoted (to 1e-9: the same draws, scaled); no suggestion only with a remedy in the advice."""
    first = _analysis(activation, scheme, gain, width, depth).summary
    if first.verdict == "stable":
        assert first.suggestion == "unchanged"
        assert first.suggested_gain == gain
        assert "No change is needed." in first.advice
        return
    if first.suggested_gain is None:
        assert first.suggestion is None
        assert "no gain makes it stable" in first.advice.lower()
        return
    again = _analysis(activation, scheme, first.suggested_gain, width, depth).summary
    assert again.verdict == "stable", (first.advice, again.advice)
    assert first.suggested_growth_log10 is not None
    assert again.input_norm_log10 == pytest.approx(first.suggested_growth_log10, abs=1e-9)
    assert f"{first.suggested_gain:.3g}" in first.advice


def test_homogeneous_explicit_weights_are_scaled_exactly() -> None:
    """Bias-free ReLU layers of random weights scaled by 0.2 vanish; the factor c = 10^(−f/L) is exact by
    homogeneity: c·W re-analysed has ‖∂a_L/∂a_0‖ = 10^0 to 1e-9."""
    rng = np.random.default_rng(3)
    depth, width = 12, 48
    weights = [0.2 * rng.standard_normal((width, width)) * np.sqrt(2.0 / width) for _ in range(depth)]
    x, y = make_probes(ProbeSpec(count=8), width, width)

    def analysis(factor: float) -> Analysis:
        layers = [Layer(Dense(factor * w), None, make_activation("relu")) for w in weights]
        return analyse(network_from_layers(layers), x, y, Options())

    first = analysis(1.0).summary
    assert first.verdict == "vanishing"
    assert first.suggestion == "homogeneous"
    assert first.suggested_gain is not None
    assert first.input_norm_log10 is not None
    assert first.suggested_gain == pytest.approx(10.0 ** (-first.input_norm_log10 / depth), rel=1e-12)
    again = analysis(first.suggested_gain).summary
    assert again.input_norm_log10 == pytest.approx(0.0, abs=1e-9)
    assert first.advice.endswith("exactly (the network is positively homogeneous).")
