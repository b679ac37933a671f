"""The sizes an analysis may have at the server's default limits (api.settings.Settings()): by the estimate that
refuses larger ones (api.sizes, service.cost), not by running them.

- init recipes (he_normal, 16 probes, the output as wide as the layers) per activation: the widest layers at
  depths 10, 50 and 100, and the most layers at widths 256 and 1024;
- convolutions (4 layers of 3 × 3 kernels, circular or zero padding, then a dense 10-way head): the most
  channels on images of 8 × 8, 16 × 16 and 32 × 32;
- recurrent networks (orthogonal init, 16 probes, inputs of 32): the widest hidden state at 10, 100 and 1000
  steps.

python -m bench.sizes
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import ValidationError

from api.limits import fits
from api.settings import Settings
from api.sizes import analysis_size
from jacspec.models import AnalysisRequest

ACTIVATIONS = ("linear", "relu", "tanh", "gelu")
"""One per family: the identity, a positively homogeneous one, a bounded smooth one, a smooth unbounded one (its
mean field solved numerically)."""
DEPTHS = (10, 50, 100)
WIDTHS = (256, 1024)
CONV_DEPTH = 4
IMAGES = (8, 16, 32)
STEPS = (10, 100, 1000)
TOP = 1 << 20
"""The contract's largest width and depth (MAX_WIDTH; MAX_DEPTH is 100 000, beyond what any default fits)."""


def _fits(body: dict[str, Any], settings: Settings) -> bool:
    """Whether the request is valid (within the contract's own bounds) and within the settings' limits."""
    try:
        request = AnalysisRequest.model_validate(body)
    except ValidationError:
        return False
    work, _, _ = analysis_size(request)
    return work.parameters <= settings.max_parameters and fits(work, settings)


def _largest(make: Callable[[int], dict[str, Any]], settings: Settings, top: int = TOP) -> int:
    """The largest size in [1, top] whose request fits (0 if none), by bisection: the estimate grows with it."""
    if not _fits(make(1), settings):
        return 0
    low, high = 1, top
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if _fits(make(mid), settings) else (low, mid - 1)
    return low


def _init(activation: str, widths: list[int]) -> dict[str, Any]:
    return {"network": {"init": {"widths": widths, "scheme": "he_normal"}, "activation": activation}}


def _at_depth(activation: str, depth: int) -> Callable[[int], dict[str, Any]]:
    """An init recipe of ``depth`` layers as a function of its width."""
    return lambda width: _init(activation, [width] * (depth + 1))


def _at_width(activation: str, width: int) -> Callable[[int], dict[str, Any]]:
    """An init recipe of layers ``width`` wide as a function of its depth."""
    return lambda depth: _init(activation, [width] * (depth + 1))


def _conv(channels: int, side: int, padding: str) -> dict[str, Any]:
    """CONV_DEPTH 3 × 3 convolutions of ``channels`` channels (the first from 3) on side × side images, then a
    10-way head, their weights as b64 of the right length (the estimate reads shapes only)."""
    layers: list[dict[str, Any]] = []
    c_in = 3
    for _ in range(CONV_DEPTH):
        kernel = {"shape": [channels, c_in, 3, 3], "datatype": "FP32", "b64": _b64(channels * c_in * 9 * 4)}
        layers.append({"type": "conv2d", "kernel": kernel, "input_size": [side, side], "padding": padding})
        c_in = channels
    head = {"shape": [10, channels * side * side], "datatype": "FP32", "b64": _b64(10 * channels * side * side * 4)}
    layers.append({"weight": head, "activation": "linear"})
    return {"network": {"layers": layers, "activation": "relu"}}


def _b64(size: int) -> str:
    """A base64 string that decodes to ``size`` bytes (zeros)."""
    return "A" * (4 * (size // 3)) + {0: "", 1: "AA==", 2: "AAA="}[size % 3]


def _recurrent(hidden: int, steps: int) -> dict[str, Any]:
    init = {"hidden_size": hidden, "input_size": 32, "scheme": "orthogonal"}
    return {"network": {"recurrent": {"steps": steps, "init": init, "activation": "tanh"}}}


def main() -> None:
    settings = Settings()
    print(
        f"Default limits: {settings.max_flops:.3g} flops (JACSPEC_MAX_FLOPS), {settings.max_parameters} parameters, "
        f"{settings.max_response_bytes} response bytes; 16 probes, rtol 1e-6, no spectrum.\n"
    )
    head = (
        " | ".join(f"widest at depth {d}" for d in DEPTHS) + " | " + " | ".join(f"deepest at width {w}" for w in WIDTHS)
    )
    print(f"| init recipe (he_normal) | {head} |")
    print("|---" * (1 + len(DEPTHS) + len(WIDTHS)) + "|")
    for activation in ACTIVATIONS:
        wide = [_largest(_at_depth(activation, d), settings) for d in DEPTHS]
        deep = [_largest(_at_width(activation, w), settings, 100_000) for w in WIDTHS]
        print(f"| {activation} | " + " | ".join(map(str, wide + deep)) + " |")
    print()
    sides = " | ".join(f"most channels on {n}×{n}" for n in IMAGES)
    print(f"| convolutions ({CONV_DEPTH} layers of 3×3, relu, 10-way head) | {sides} |")
    print("|---" * (1 + len(IMAGES)) + "|")
    for padding in ("circular", "zeros"):
        most = [_largest(partial(_conv, side=n, padding=padding), settings, 4096) for n in IMAGES]
        print(f"| {padding} padding | " + " | ".join(map(str, most)) + " |")
    print()
    print("| recurrent (tanh, orthogonal, n_in = 32) | " + " | ".join(f"widest at {t} steps" for t in STEPS) + " |")
    print("|---" * (1 + len(STEPS)) + "|")
    widest = [_largest(partial(_recurrent, steps=t), settings) for t in STEPS]
    print("| hidden size | " + " | ".join(map(str, widest)) + " |")


if __name__ == "__main__":
    main()
