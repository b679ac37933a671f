"""From the numerics' results to the contract's response models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from jacspec.models import (
    AnalysisReport,
    BoundsResponse,
    ConvReport,
    JacobianSpectrum,
    LayerMeanField,
    LayerReport,
    MeanFieldSummary,
    Meta,
    Methods,
    ProbeSpectrum,
    RecurrentReport,
    SkippedTensor,
    Summary,
    SurveyMeta,
    SurveyMethods,
    SurveyReport,
    SurveySummary,
    Thresholds,
    WeightSpectrum,
    WeightSurvey,
)
from service.analysis import Analysis, ConvDetails
from service.analysis import LayerReport as ServiceLayerReport
from service.analysis import Methods as ServiceMethods
from service.bounds import Bound
from service.graph.analysis import BlockReport, GraphAnalysis
from service.logscale import plain
from service.meanfield import LayerMeanField as ServiceLayerMeanField
from service.meanfield import NetworkMeanField
from service.recurrent import RecurrentReport as ServiceRecurrentReport
from service.spectra import QUANTILE_LEVELS, Spectra
from service.spectra import ProbeSpectrum as ServiceProbeSpectrum
from service.spectra import WeightSpectrum as ServiceWeightSpectrum
from service.spectral import DENSE_MAX_DIM, FLOAT32_FLOOR, FLOAT32_MIN_DIM, LANCZOS_MIN_RTOL
from service.survey import Survey
from service.verdict import Thresholds as ServiceThresholds

SPECTRAL_METHOD = (
    "√λ_max of the smaller Gram matrix AAᵀ or AᵀA (LAPACK syevr, the top eigenvalue alone) when "
    f"min(m, n) ≤ {DENSE_MAX_DIM} or "
    f"rtol < {LANCZOS_MIN_RTOL:g}; otherwise Lanczos "
    "(ARPACK eigsh on the Gram operator AᵀA to tol = rtol(2 + rtol)/(1 + rtol)² ≈ 2·rtol on λ = σ², so that σ "
    f"is within rtol; first in float32 when rtol ≥ {FLOAT32_FLOOR:.2g} and min(m, n) ≥ {FLOAT32_MIN_DIM}, "
    "certified in float64 by the residual ‖Gv − θv‖ ≤ tol·θ), falling back to the dense solver; per-probe "
    "Jacobians of 8 or more probes by Lanczos in lockstep on all of them; convolutions with circular padding "
    "exactly from the 2-D DFT of the kernel"
)


@dataclass(frozen=True)
class EncodedReport:
    """An analysis report as JSON, with the counts of the work behind it that the metrics report (so that the
    server need not parse the JSON to count them)."""

    json: bytes
    verdict: str
    layers: int
    weights: int
    dense_norms: int
    lanczos_norms: int
    matvecs: int


def encoded_report(result: Analysis | GraphAnalysis, version: str, timings_ms: dict[str, float]) -> EncodedReport:
    """``report_json(analysis_report(…))`` as bytes, with its work's counts."""
    json = report_json(analysis_report(result, version, timings_ms)).encode()
    if isinstance(result, GraphAnalysis):
        return EncodedReport(json, result.summary.verdict, len(result.blocks), result.weights, 0, 0, result.matvecs)
    m = result.methods
    return EncodedReport(
        json=json,
        verdict=result.summary.verdict,
        layers=len(result.layers),
        weights=sum(m * n for m, n in (layer.shape for layer in result.layers)),
        dense_norms=m.dense_svd,
        lanczos_norms=m.lanczos,
        matvecs=m.matvecs,
    )


def thresholds_model(t: ServiceThresholds) -> Thresholds:
    return Thresholds(vanishing_log10=t.vanishing_log10, exploding_log10=t.exploding_log10)


def analysis_report(result: Analysis | GraphAnalysis, version: str, timings_ms: dict[str, float]) -> AnalysisReport:
    if isinstance(result, GraphAnalysis):
        return graph_report(result, version, timings_ms)
    spectra = result.spectra
    layers = [
        LayerReport(
            **_layer_fields(layer),
            backward_bound=layer.backward_bound,
            backward_norm=layer.backward_norm,
            gradient_norm=layer.gradient_norm,
            meanfield=layer_meanfield(result.meanfield.layers[j]),
            weight_spectrum=None if spectra is None else weight_spectrum(spectra.weights[j]),
        )
        for j, layer in enumerate(result.layers)
    ]
    s = result.summary
    summary = Summary(
        **{**_fields(s), "thresholds": thresholds_model(s.thresholds), "flags": list(s.flags)},
        input_bound=s.input_bound,
        input_norm=s.input_norm,
        meanfield=meanfield_summary(result.meanfield),
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
        weight_norms_fft=m.fft,
        matvecs=m.matvecs,
    )
    return AnalysisReport(
        layers=layers,
        summary=summary,
        meta=Meta(version=version, timings_ms=timings_ms, methods=methods),
        spectrum=None if spectra is None else jacobian_spectrum(spectra),
        recurrent=None if result.recurrent is None else recurrent_report(result.recurrent),
    )


GRAPH_BACKWARD_METHOD = (
    "Lanczos to rtol on the Gram operator of ∂(output)/∂(block output) at each probe (its smaller side), each "
    "product a VJP after a JVP through the nodes downstream; no Jacobian formed"
)
GRAPH_SPECTRAL_METHOD = (
    "plain Lanczos with full reorthogonalisation in lockstep over the probes (service.lanczos) on each block's Gram "
    "operator JᵀJ or JJᵀ (the smaller side), each product a JVP and a VJP through the block's nodes, to rtol"
)


def graph_report(result: GraphAnalysis, version: str, timings_ms: dict[str, float]) -> AnalysisReport:
    """A graph's report: one layer per block (type "block"); no mean field, spectrum nor gain search."""
    layers = [_block_layer(block) for block in result.blocks]
    s = result.summary
    depth = s.depth
    summary = Summary(
        depth=depth,
        input_bound_log10=s.input_bound_log10,
        input_bound=0.0 if "input_bound_zero" in s.flags else plain(s.input_bound_log10),
        input_norm_log10=s.input_norm_log10,
        input_norm=0.0 if "input_norm_zero" in s.flags else plain(s.input_norm_log10),
        rate_log10=None if s.input_bound_log10 is None else s.input_bound_log10 / depth,
        observed_rate_log10=None if s.input_norm_log10 is None else s.input_norm_log10 / depth,
        verdict=s.verdict,
        bound_verdict=s.bound_verdict,
        thresholds=thresholds_model(s.thresholds),
        gain=None,
        suggested_gain=1.0 if s.verdict == "stable" else None,
        suggestion="unchanged" if s.verdict == "stable" else None,
        suggested_growth_log10=s.input_norm_log10 if s.verdict == "stable" else None,
        bound_gain=None,
        advice=s.advice,
        flags=list(s.flags),
        meanfield=MeanFieldSummary(
            predicted_growth_log10=None, predicted_growth=None, predicted_rate_log10=None, critical_gain=None
        ),
    )
    methods = Methods(
        rtol=result.rtol,
        probes=result.probes,
        loss="mse: mean over probes and outputs of (y − y*)², y the graph's output flattened",
        spectral_norm=GRAPH_SPECTRAL_METHOD,
        backward_norm=GRAPH_BACKWARD_METHOD,
        dense_max_dim=DENSE_MAX_DIM,
        weight_norms_dense=0,
        weight_norms_lanczos=0,
        matvecs=result.matvecs,
    )
    meta = Meta(version=version, timings_ms=timings_ms, methods=methods)
    return AnalysisReport(layers=layers, summary=summary, meta=meta, weights=weight_rows(result.survey))


def _block_layer(b: BlockReport) -> LayerReport:
    backward_zero = "backward_norm_zero" in b.flags
    gradient_zero = "gradient_zero" in b.flags
    return LayerReport(
        index=b.index,
        type="block",
        shape=list(b.shape),
        activation=None,
        weight_norm=None,
        derivative_bound=None,
        derivative_max=None,
        skip_norm=None,
        jacobian_norm_bound=b.jacobian_norm_bound,
        jacobian_norm=b.jacobian_norm,
        backward_bound_log10=b.backward_bound_log10,
        backward_bound=plain(b.backward_bound_log10),
        backward_norm_log10=b.backward_norm_log10,
        backward_norm=0.0 if backward_zero else plain(b.backward_norm_log10),
        gradient_norm=0.0 if gradient_zero else plain(b.gradient_norm_log10),
        gradient_norm_log10=b.gradient_norm_log10,
        flags=list(b.flags),
        nodes=list(b.nodes),
        parameter_gradient_norms=dict(b.parameter_gradient_norms),
        bound_notes=list(b.bound_notes),
        meanfield=None,
    )


def _layer_fields(layer: ServiceLayerReport) -> dict[str, object]:
    shallow = _fields(layer)
    del shallow["kind"]
    return {
        **shallow,
        "type": layer.kind,
        "shape": list(layer.shape),
        "flags": list(layer.flags),
        "conv": None if layer.conv is None else conv_report(layer.conv),
    }


def _fields(instance: object) -> dict[str, Any]:
    """A dataclass's fields by name, as they are (``dataclasses.asdict`` would deep-copy every value, recursively,
    only for the models to copy them again)."""
    return {field.name: getattr(instance, field.name) for field in fields(instance)}  # type: ignore[arg-type]


def conv_report(c: ConvDetails) -> ConvReport:
    return ConvReport(
        kernel_shape=list(c.kernel_shape),
        input_size=list(c.input_size),
        padding="circular" if c.padding == "circular" else "zeros",
        fft_norm=c.fft_norm,
        padded_fft_norm=c.padded_fft_norm,
        weight_norm_method=c.weight_norm_method,
    )


def recurrent_report(r: ServiceRecurrentReport) -> RecurrentReport:
    return RecurrentReport(**_fields(r))


def report_json(report: AnalysisReport) -> str:
    """The report as JSON, without the spectrum fields where options.spectrum was "none", and the block fields and
    the weights' survey where the network is not a graph (so that a default response holds no keys it did not hold
    before them)."""
    graph = any(layer.type == "block" for layer in report.layers)
    exclude: dict[str, Any] = {"layers": {"__all__": set() if graph else set(BLOCK_FIELDS)}}
    exclude["weights"] = {"__all__": {"singular_values"}} if graph else True
    if report.spectrum is None:
        exclude["spectrum"] = True
        exclude["layers"]["__all__"].add("weight_spectrum")
    return report.model_dump_json(exclude=exclude)


BLOCK_FIELDS = ("nodes", "parameter_gradient_norms", "bound_notes")
"""A graph block's own fields, absent from the other layers' JSON (as they were before graphs)."""


def _zero_or_plain(log10: float | None) -> float | None:
    """The plain value of a log10 whose None means an exact 0."""
    return 0.0 if log10 is None else plain(log10)


def layer_meanfield(layer: ServiceLayerMeanField) -> LayerMeanField:
    t = layer.theory
    return LayerMeanField(
        sigma_w=t.sigma_w,
        sigma_b=t.sigma_b,
        q_star=t.q_star,
        chi1=t.chi1,
        growth_log10=t.growth_log10,
        depth_scale=t.depth_scale,
        critical_sigma_w=t.critical_sigma_w,
        flags=list(layer.flags),
    )


def meanfield_summary(m: NetworkMeanField) -> MeanFieldSummary:
    growth = m.predicted_growth_log10
    return MeanFieldSummary(
        predicted_growth_log10=growth,
        predicted_growth=_zero_or_plain(growth) if m.known else None,
        predicted_rate_log10=None if growth is None else growth / len(m.layers),
        critical_gain=m.critical_gain,
    )


def weight_spectrum(w: ServiceWeightSpectrum) -> WeightSpectrum:
    return WeightSpectrum(
        singular_values=list(w.singular_values),
        rank=w.rank,
        stable_rank=w.stable_rank,
        condition_number=w.condition_number,
    )


def probe_spectrum(index: int, p: ServiceProbeSpectrum) -> ProbeSpectrum:
    return ProbeSpectrum(
        probe=index,
        singular_values_log10=list(p.singular_values_log10),
        rank=p.rank,
        eigenvalue_mean_log10=p.eigenvalue_mean_log10,
        eigenvalue_mean=_zero_or_plain(p.eigenvalue_mean_log10),
        eigenvalue_variance_log10=p.eigenvalue_variance_log10,
        eigenvalue_variance=_zero_or_plain(p.eigenvalue_variance_log10),
        condition_number_log10=p.condition_number_log10,
        condition_number=plain(p.condition_number_log10),
        flags=list(p.flags),
    )


def jacobian_spectrum(s: Spectra) -> JacobianSpectrum:
    assert s.mode != "none"
    unknown = "prediction_unknown" in s.flags
    return JacobianSpectrum(
        mode=s.mode,
        quantile_levels=list(QUANTILE_LEVELS) if s.mode == "summary" else None,
        probes=[probe_spectrum(b, p) for b, p in enumerate(s.probes)],
        eigenvalue_mean_log10=s.eigenvalue_mean_log10,
        eigenvalue_mean=_zero_or_plain(s.eigenvalue_mean_log10) if s.probes else None,
        eigenvalue_variance_log10=s.eigenvalue_variance_log10,
        eigenvalue_variance=_zero_or_plain(s.eigenvalue_variance_log10) if s.probes else None,
        predicted_eigenvalue_mean_log10=s.predicted_mean_log10,
        predicted_eigenvalue_mean=None if unknown else _zero_or_plain(s.predicted_mean_log10),
        predicted_eigenvalue_variance_log10=s.predicted_variance_log10,
        predicted_eigenvalue_variance=None if unknown else _zero_or_plain(s.predicted_variance_log10),
        flags=list(s.flags),
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


SURVEY_SINGULAR_VALUES = (
    "LAPACK gesdd (numpy.linalg.svd, values only) of each matrix scaled exactly by a power of two to a largest "
    "entry near 1: all min(m, n) singular values, O(m·n·min(m, n)) flops; σ_max and σ_min the first and last, "
    "‖W‖_F = √(Σ s_i²) of the scaled values, scaled back"
)
SURVEY_KERNELS = (
    "a 3-D or 4-D tensor [c_out, c_in, k…] is the matrix [c_out, c_in·k…] (torch.flatten(K, 1)); WeightWatcher "
    "slices a conv2d kernel into kh·kw matrices [c_out, c_in] instead"
)


def weight_rows(found: Survey) -> list[WeightSurvey]:
    """Each surveyed matrix's row, its singular values only where the survey kept them."""
    return [
        WeightSurvey(
            name=w.name,
            shape=list(w.shape),
            type="matrix" if w.kind == "matrix" else "kernel",
            matrix_shape=list(w.matrix_shape),
            sigma_max=w.sigma_max,
            sigma_min=w.sigma_min,
            frobenius_norm=w.frobenius_norm,
            stable_rank=w.stable_rank,
            rank=w.rank,
            condition_number=w.condition_number,
            singular_values=None if found.mode == "none" else list(w.singular_values),
            flags=list(w.flags),
        )
        for w in found.weights
    ]


def survey_report(found: Survey, dtypes: Mapping[str, str], version: str, timings_ms: dict[str, float]) -> SurveyReport:
    """The survey of an upload as the contract's SurveyReport; ``dtypes``: each tensor's dtype in the file."""
    weights = weight_rows(found)
    skipped = [
        SkippedTensor(name=s.name, shape=list(s.shape), dtype=dtypes.get(s.name, ""), reason=s.reason)
        for s in found.skipped
    ]
    largest, least = found.largest(), found.least_stable_rank()
    summary = SurveySummary(
        matrices=len(weights),
        skipped=len(skipped),
        parameters=found.parameters,
        largest_sigma_max=None if largest is None else largest.sigma_max,
        largest_sigma_max_name=None if largest is None else largest.name,
        smallest_stable_rank=None if least is None else least.stable_rank,
        smallest_stable_rank_name=None if least is None else least.name,
        spectrum=found.mode,
        quantile_levels=list(QUANTILE_LEVELS) if found.mode == "summary" else None,
    )
    methods = SurveyMethods(singular_values=SURVEY_SINGULAR_VALUES, kernels=SURVEY_KERNELS)
    meta = SurveyMeta(version=version, timings_ms=timings_ms, methods=methods)
    return SurveyReport(weights=weights, skipped=skipped, summary=summary, meta=meta)


def encoded_survey(
    found: Survey, dtypes: Mapping[str, str], version: str, timings_ms: dict[str, float]
) -> EncodedReport:
    """``survey_json(survey_report(…))`` as bytes, with its work's counts (a survey has no verdict: "survey")."""
    json = survey_json(survey_report(found, dtypes, version, timings_ms)).encode()
    return EncodedReport(json, "survey", 0, found.parameters, len(found.weights), 0, 0)


def survey_json(report: SurveyReport) -> str:
    """The survey as JSON, without the rows' singular values where options.spectrum was "none"."""
    if report.summary.spectrum != "none":
        return report.model_dump_json()
    return report.model_dump_json(exclude={"weights": {"__all__": {"singular_values"}}})
