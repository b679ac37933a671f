"""From the numerics' results to the contract's response models."""

from __future__ import annotations

from dataclasses import asdict

from jacspec.models import AnalysisReport, BoundsResponse, LayerReport, Meta, Methods, Summary, Thresholds
from service.analysis import Analysis
from service.analysis import Methods as ServiceMethods
from service.bounds import Bound
from service.spectral import DENSE_MAX_DIM, FLOAT32_FLOOR, LANCZOS_MIN_RTOL
from service.verdict import Thresholds as ServiceThresholds

SPECTRAL_METHOD = (
    "√λ_max of the smaller Gram matrix AAᵀ or AᵀA (LAPACK syevr, the top eigenvalue alone) when "
    f"min(m, n) ≤ {DENSE_MAX_DIM} or "
    f"rtol < {LANCZOS_MIN_RTOL:g}; otherwise Lanczos "
    "(ARPACK eigsh on the Gram operator AᵀA, tol = rtol, so σ is within rtol/2; first in float32 when "
    f"rtol ≥ {FLOAT32_FLOOR:.2g}, certified in float64 by the residual ‖Gv − θv‖ ≤ rtol·θ), falling back to the "
    "dense solver"
)


def thresholds_model(t: ServiceThresholds) -> Thresholds:
    return Thresholds(vanishing_log10=t.vanishing_log10, exploding_log10=t.exploding_log10)


def analysis_report(result: Analysis, version: str, timings_ms: dict[str, float]) -> AnalysisReport:
    layers = [
        LayerReport(
            **{**asdict(layer), "shape": list(layer.shape), "flags": list(layer.flags)},
            backward_bound=layer.backward_bound,
            backward_norm=layer.backward_norm,
            gradient_norm=layer.gradient_norm,
        )
        for layer in result.layers
    ]
    s = result.summary
    summary = Summary(
        **{**asdict(s), "thresholds": thresholds_model(s.thresholds), "flags": list(s.flags)},
        input_bound=s.input_bound,
        input_norm=s.input_norm,
    )
    m = result.methods
    methods = Methods(
        rtol=m.rtol,
        probes=m.probes,
        loss="mse: mean over probes and outputs of (a_L − y)²",
        spectral_norm=SPECTRAL_METHOD,
        backward_norm=_backward_method(m),
        dense_max_dim=DENSE_MAX_DIM,
        weight_norms_dense=m.dense_svd,
        weight_norms_lanczos=m.lanczos,
        matvecs=m.matvecs,
    )
    return AnalysisReport(
        layers=layers, summary=summary, meta=Meta(version=version, timings_ms=timings_ms, methods=methods)
    )


def _backward_method(m: ServiceMethods) -> str:
    product = f"each probe's {m.output_width} × n_j product ∂a_L/∂a_j, accumulated from the output side"
    if m.backward_dense:
        return f"the dense solver on {product} (exact to rounding)"
    return f"Lanczos to rtol = {m.rtol:g} on {product} (n_L = {m.output_width} > {DENSE_MAX_DIM})"


def bounds_response(bound: Bound, thresholds: ServiceThresholds) -> BoundsResponse:
    return BoundsResponse(
        depth=bound.depth,
        log10=bound.log10,
        value=bound.value,
        rate_log10=bound.rate_log10,
        verdict=bound.verdict,
        thresholds=thresholds_model(thresholds),
        backward_bound_log10=None if bound.suffix_log10 is None else list(bound.suffix_log10),
        flags=["zero_factor"] if bound.log10 is None else [],
    )
