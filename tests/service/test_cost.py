"""service.cost: the estimate's parts against formulas written out here, its growth with each size, its Python-int
arithmetic on sizes beyond float64, and the changes it names against its own estimates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from service import cost
from service.cost import Declared, changes_that_fit, estimate, init_layers, minimum
from service.spectral import spectral_norm


def _declared(widths: list[int], probes: int = 4, scheme: str = "gaussian", **more: object) -> Declared:
    return Declared(tuple(init_layers(widths, False, scheme)), probes, **more)  # type: ignore[arg-type]


def test_the_estimate_grows_with_every_size() -> None:
    base = estimate(_declared([256, 256, 10])).flops
    assert estimate(_declared([256, 256, 10], probes=8)).flops > base
    assert estimate(_declared([512, 512, 10])).flops > base
    assert estimate(_declared([256, 256, 256, 10])).flops > base
    assert estimate(_declared([256, 256, 10], spectrum="summary")).flops > base
    assert estimate(_declared([256, 256, 10], scheme="orthogonal")).flops > base


def test_an_orthogonal_draw_grows_as_n_cubed_and_a_gaussian_one_as_n_squared() -> None:
    def draw(scheme: str, n: int) -> float:
        return cost.draw_flops(scheme, n, n)

    assert draw("orthogonal", 4096) / draw("orthogonal", 2048) == pytest.approx(8.0, rel=0.02)
    assert draw("gaussian", 4096) / draw("gaussian", 2048) == pytest.approx(4.0, rel=1e-12)
    assert draw("uniform", 64) < draw("gaussian", 64)


def test_the_dense_solver_is_counted_where_rtol_forces_it() -> None:
    """Below LANCZOS_MIN_RTOL every norm is dense: the 1024 × 1024 weight's and each probe's eigvalsh, EIGH·n³
    each, at least."""
    n = 1024
    forced = estimate(_declared([n, n, 1], probes=1, rtol=1e-13)).flops
    assert forced >= 2 * cost.EIGH * n**3
    assert estimate(_declared([n, n, 1], probes=1, rtol=1e-12)).flops < forced


def test_sizes_beyond_float64_give_infinite_flops_and_exact_bytes() -> None:
    huge = 10**400
    work = estimate(_declared([huge, 2], spectrum="full"))
    assert work.flops == float("inf")
    assert work.response_bytes == cost.RESPONSE_BASE + cost.LAYER_BYTES + 5 * (
        cost.SPECTRUM_BYTES + 2 * cost.VALUE_BYTES
    )
    assert work.parameters == 2 * huge


def test_minimum_is_below_every_estimate_of_that_depth() -> None:
    declared = _declared([1] * 101, probes=1)
    flops, size = minimum(100)
    work = estimate(declared)
    assert flops <= work.flops
    assert size <= work.response_bytes


def test_each_change_named_fits_and_is_the_least_of_its_kind() -> None:
    declared = _declared([512] * 5, probes=64, spectrum="full", rtol=1e-9)
    limit = estimate(declared).flops / 2.0
    changes = changes_that_fit(declared, lambda w: w.flops <= limit)
    assert changes
    for change in changes:
        assert change.work.flops <= limit
        if change.what == "probes":
            assert estimate(replace(declared, probes=int(change.value) + 1)).flops > limit
        if change.what == "depth":
            assert change.work.depth == change.value


def test_the_lanczos_budget_is_of_the_order_of_the_products_taken() -> None:
    """ARPACK's Gram products for a Gaussian n × n matrix (each two matvecs, as SpectralNorm counts them) are within
    a factor of three of lanczos_products, either way."""
    rng = np.random.default_rng(0)
    for n in (256 + 1, 1024):
        a = rng.standard_normal((n, n)) / np.sqrt(n)
        for rtol in (1e-2, 1e-6, 1e-9):
            taken = spectral_norm(a, rtol).matvecs / 2
            budget = cost.lanczos_products(n, rtol)
            assert budget / 3 <= taken <= 3 * budget, (n, rtol, taken, budget)


def test_an_identity_activation_counts_the_jacobian_norms_once() -> None:
    """A plain layer with h(z) = z has J_b = A, whose norm is its weight's: the estimate drops exactly that layer's
    Jacobian norms (cost._jacobian_norms), for the hidden layers and the output layer each."""
    widths, probes, rtol = [300, 300, 300, 20], 16, 1e-6
    hidden = init_layers(widths, False, "gaussian")
    linear = init_layers(widths, False, "gaussian", identity=True, output_identity=False)
    head = init_layers(widths, False, "gaussian", output_identity=True)
    base = estimate(Declared(tuple(hidden), probes, rtol=rtol)).flops
    jacobians = [cost._jacobian_norms(layer, min(layer.m, layer.n), probes, rtol) for layer in hidden]
    assert estimate(Declared(tuple(linear), probes, rtol=rtol)).flops == pytest.approx(
        base - 2 * jacobians[0], rel=1e-12
    )
    assert estimate(Declared(tuple(head), probes, rtol=rtol)).flops == pytest.approx(base - jacobians[-1], rel=1e-12)
