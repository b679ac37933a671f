"""The bounds every request number is held to, so that no arithmetic on a request's numbers can overflow and every
value the contract admits is one the service computes with: each is in its field's description and in
docs/http.md#bounds."""

from typing import Annotated

from pydantic import AfterValidator, Field

MAX_WIDTH = 2**20
"""A layer's width, a tensor's dimension, a recurrent network's hidden or input size, a convolution's H or W."""
MAX_DEPTH = 100_000
"""Layers of a network (``widths`` holds one more entry), as a recurrent network's ``steps``."""
MAX_GAIN = 1e6
"""The largest gain, std, bias std and probe scale: σ_w² = gain²·… stays far inside float64 (≈ 1.8e308)."""
MIN_GAIN = 1e-100
"""The smallest gain, std and probe scale: their squares stay normal float64 numbers (above 2.2e-308)."""
MAX_ACTIVATION_PARAMETER = 1e6
"""|negative_slope|, ELU's alpha, hard_tanh's clip points: their fourth powers (E[h'⁴]) stay finite."""
MIN_SOFTPLUS_BETA = 1e-6
MAX_SOFTPLUS_BETA = 1e6
"""Softplus' beta: below, h(0) = ln 2/beta and the offsets it adds grow without bound; above, it is ReLU to
rounding, with a quadrature step π/beta too small to follow."""
MIN_HARD_TANH_INTERVAL = 1e-6
"""The least max_val − min_val, relative to max(1, |min_val|, |max_val|)."""
MIN_RTOL = 1e-15
"""The smallest rtol: float64 finds a singular value to about 1e-16 relative, no closer."""
MAX_LOG10 = 1e6
"""|vanishing_log10|, |exploding_log10|."""
MAX_NAME = 256
"""Characters of a name (a tensor's, a safetensors layer prefix)."""
MAX_SEED = 2**64 - 1


def _at_least_min_gain(value: float) -> float:
    if value < MIN_GAIN:
        raise ValueError(f"must be at least {MIN_GAIN:g}, so that its square stays a normal float64")
    return value


Scale = Annotated[
    float,
    Field(gt=0, le=MAX_GAIN, json_schema_extra={"minimum": MIN_GAIN}),
    AfterValidator(_at_least_min_gain),
]
"""A gain, std or probe scale: MIN_GAIN … MAX_GAIN. Checked as > 0 first and then ≥ MIN_GAIN, so that the message
names 1e-100 as such (pydantic writes a bound in full decimal digits)."""
