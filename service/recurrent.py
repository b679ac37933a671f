"""Pascanu, Mikolov and Bengio's conditions on a recurrent network h_t = h(W h_{t−1} + U x_t + b).

Backpropagation through time multiplies the step Jacobians ∂h_t/∂h_{t−1} = diag(h'(z_t))·W, so

    ‖∂h_T/∂h_t‖₂ ≤ ∏_{s=t+1}^{T} ‖diag(h'(z_s))‖₂·‖W‖₂ ≤ (γ·σ_max(W))^{T−t},    γ = sup_z |h'(z)|

(Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks", §3.1): σ_max(W) < 1/γ
is sufficient for the gradients to vanish, exponentially in T − t; σ_max(W) > 1/γ is necessary for them to explode
(not sufficient: the true norms, from the probes, say whether they do). γ is 1 for tanh, 1/4 for sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.network import Network
from service.text import counted


@dataclass(frozen=True)
class RecurrentReport:
    steps: int
    hidden_size: int
    input_size: int
    weight_norm: float
    """σ_max(W), the recurrent weight's spectral norm."""
    input_weight_norm: float
    derivative_bound: float
    """γ = sup_z |h'(z)|."""
    threshold: float | None
    """1/γ (None where γ = 0)."""
    vanishing_sufficient: bool
    """σ_max(W)·γ < 1, certified: σ_max(W) is known to rtol, so its estimate σ must have σ·(1 + rtol)·γ < 1."""
    exploding_necessary: bool
    """σ_max(W)·γ > 1, certified: σ·(1 − rtol)·γ > 1."""
    statement: str


def recurrent_report(network: Network, sigma: float, rtol: float) -> RecurrentReport:
    """The conditions for ``network`` (a recurrent one) whose recurrent weight has spectral norm ``sigma``."""
    recurrent = network.recurrent
    assert recurrent is not None
    layer = network.layers[0]
    gamma = layer.activation.derivative_bound
    factor = sigma * gamma
    threshold = 1.0 / gamma if gamma > 0 else None
    return RecurrentReport(
        steps=recurrent.steps,
        hidden_size=layer.weight.shape[0],
        input_size=recurrent.input_size,
        weight_norm=sigma,
        input_weight_norm=recurrent.input_weight.norm(rtol).value,
        derivative_bound=gamma,
        threshold=threshold,
        vanishing_sufficient=factor * (1.0 + rtol) < 1.0,
        exploding_necessary=factor * (1.0 - rtol) > 1.0,
        statement=_statement(sigma, gamma, layer.activation.name, recurrent.steps, rtol),
    )


def _statement(sigma: float, gamma: float, activation: str, steps: int, rtol: float) -> str:
    """One sentence with the numbers: which of Pascanu's conditions holds."""
    head = f"σ_max(W_rec) = {sigma:.4g}, γ = sup|h'| = {gamma:.4g} ({activation})"
    if gamma == 0.0:
        return f"{head}: h' = 0 everywhere, so every gradient through time is 0."
    factor = sigma * gamma
    if factor * (1.0 + rtol) < 1.0:
        return (
            f"{head}: σ_max < 1/γ = {1 / gamma:.4g}, sufficient for vanishing gradients (Pascanu et al. 2013): "
            f"‖∂h_T/∂h_t‖ ≤ (σ_max·γ)^(T−t) = {factor:.4g}^(T−t), {factor**steps:.3g} over {counted(steps, 'step')}."
        )
    if factor * (1.0 - rtol) > 1.0:
        return (
            f"{head}: σ_max > 1/γ = {1 / gamma:.4g}, the necessary condition for exploding gradients (Pascanu et al. "
            "2013); it is not sufficient: the true norms ‖∂h_T/∂h_t‖ say whether they explode."
        )
    return (
        f"{head}: σ_max is within rtol = {rtol:g} of 1/γ = {1 / gamma:.4g}, on the boundary: neither of Pascanu's "
        "conditions is certain."
    )
