"""The answer of POST /v1/analyses: per-layer diagnostics, a summary and how they were computed.

Products are carried as base-10 logarithms (`*_log10`); a plain float is given only where it is a normal
float64, else null. A log10 of an exact zero is null, with a flag saying why.

Beside the worst-case bound, two bodies of theory say what a random network typically does: mean-field signal
propagation (Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos";
Schoenholz et al. 2017, "Deep information propagation") in every layer's `meanfield` and the summary's, and free
probability (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through dynamical
isometry"; 2018, "The emergence of spectral universality in deep networks") in the optional `spectrum`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jacspec.models._examples import ANALYSIS_REPORT
from jacspec.models.analysis import Thresholds
from jacspec.models.survey import WeightSurvey

Verdict = Literal["vanishing", "exploding", "stable"]
SuggestionMethod = Literal["unchanged", "homogeneous", "search", "mean_field"]


class _Report(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LayerMeanField(_Report):
    """Mean-field signal propagation for this layer as if repeated (Poole et al. 2016; Schoenholz et al. 2017): with
    pre-activations of variance q, z ~ N(0, 1), the variance map is q ↦ V(q) = σ_w²·E[h(√q·z)²] + σ_b²."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["layers"][0]["meanfield"]]}
    )

    sigma_w: float = Field(
        description="σ_w, the std of √fan_in·W_ij: for an init recipe from its formula (√fan_in·std, see GET "
        "/v1/init-schemes); for explicit weights the empirical √(n_{j−1}·Var(W_j)) over all entries."
    )
    sigma_b: float = Field(description="σ_b: the recipe's bias_std, or the empirical √Var(b_j) (0 without a bias).")
    q_star: float | None = Field(
        description="q*, the fixed point V(q*) = q* that the iteration q^{l+1} = V(q^l) reaches from q^1 = σ_w² + σ_b² "
        "(standardised inputs, E[a_i²] = 1). Null with flag q_diverges where q grows without bound (e.g. ReLU with "
        "σ_w² > 2, or σ_w² = 2 and σ_b > 0; beyond 10^6·q^1 counts as unbounded). With flag q_marginal every q is "
        "a fixed point (linear, ReLU, leaky ReLU with σ_w²·E[h'(z)²] = 1 and σ_b = 0) and q^1 is given."
    )
    chi1: float | None = Field(
        description="χ₁ = σ_w²·E[h'(√q*·z)²] (Schoenholz et al. 2017, eq. 5): the factor by which the layer multiplies "
        "the mean squared length of a backpropagated vector. At q* = 0 the limit q → 0⁺; where q diverges the "
        "limit q → ∞, σ_w²·(h'(+∞)² + h'(−∞)²)/2. ReLU: σ_w²/2 at every q. Exact for linear, ReLU, leaky ReLU, "
        "hard-tanh (normal CDF), ELU and SELU (erfcx); Gauss–Hermite or trapezoidal quadrature (1e-13) elsewhere. "
        "Null where it does not fit a float64 (growth_log10 carries it) or is unknown (flag out_of_range)."
    )
    growth_log10: float | None = Field(
        description="log10 χ₁^{1/2} = log10 σ_w + ½·log10 E[h'(√q*·z)²]: the predicted growth per layer of a typical "
        "(root-mean-square) gradient; over L such layers log10 χ₁^{L/2}. Null where χ₁ = 0 (flag chi1_zero), or "
        "unknown (flag out_of_range: σ_w or σ_b above 1e50, for an activation whose q* would be needed)."
    )
    depth_scale: float | None = Field(
        description="1/|ln χ₁|: the layers over which the mean squared gradient changes by a factor e, shrinking where "
        "χ₁ < 1 (the ordered phase; Schoenholz et al.'s ξ_∇ = −1/ln χ₁) and growing where χ₁ > 1. 0 where χ₁ = 0; "
        "null on the critical line |χ₁ − 1| ≤ 1e-9 (flag critical), where there is no exponential change."
    )
    critical_sigma_w: float | None = Field(
        description="The σ_w at which χ₁ = 1 (the edge of chaos) for this activation and σ_b: 1/√E[h'(z)²] for "
        "linear (1), ReLU (√2) and leaky ReLU; else a root of (q − σ_b²)·E[h'(√q·z)²] = E[h(√q·z)²] along the "
        "critical line (Schoenholz et al. 2017), checked against the iteration (scipy brentq). Where χ₁ instead "
        "jumps across 1, the jump, flagged critical_sigma_w_discontinuous: GELU and SiLU at small σ_b, where q^1 is a "
        "repelling fixed point (E[h(√q^1·z)²] = 1) between settling and diverging; softplus, whose variance "
        "diverges above 1/√E[h'²] at q → ∞ (√2). Null with flag no_critical_sigma_w where χ₁ never reaches 1."
    )
    flags: list[str] = Field(
        description="q_diverges, q_marginal, out_of_range, critical, chi1_zero, no_critical_sigma_w, "
        "critical_sigma_w_discontinuous, residual (a residual layer: these numbers are its branch's alone)."
    )


class WeightSpectrum(_Report):
    """The singular values of W_j (with options.spectrum)."""

    singular_values: list[float] = Field(
        description="Quantiles of W_j's min(n_j, n_{j−1}) singular values at the report spectrum's quantile_levels "
        "(summary), or all of them in decreasing order (full); LAPACK gesdd."
    )
    rank: int = Field(description="Singular values above s_max·max(m, n)·eps (numpy.linalg.matrix_rank's tolerance).")
    stable_rank: float | None = Field(description="‖W_j‖_F²/‖W_j‖₂² = Σ s_i²/s_max² (null for W_j = 0).")
    condition_number: float | None = Field(
        description="s_max/s_min over the min(n_j, n_{j−1}) singular values; null where W_j is rank-deficient."
    )


class ConvReport(_Report):
    """A convolution layer's kernel and its norms from the 2-D DFT (Sedghi, Gupta & Long 2019)."""

    kernel_shape: list[int] = Field(description="[c_out, c_in, kh, kw].")
    input_size: list[int] = Field(description="[H, W].")
    padding: Literal["zeros", "circular"] = Field(
        description="How the convolution pads its input, as nn.Conv2d's padding_mode."
    )
    fft_norm: float = Field(
        description="max over the H·W frequencies (u, v) of σ_max(K̂(u, v)), K̂(u, v) = Σ_{p,q} K[:, :, p, q]·"
        "e^{−2πi(pu/H + qv/W)}: the exact ‖A‖₂ for circular padding; for zeros an estimate only (the same kernel "
        "with circular padding)."
    )
    padded_fft_norm: float | None = Field(
        description="Zeros padding: the circular norm on the (H + kh − 1) × (W + kw − 1) grid, an upper bound on the "
        "operator's ‖A‖₂ (A = R·C·E: the zero-padded input is embedded in a larger circular convolution C and the "
        "output restricted). Null for circular padding."
    )
    weight_norm_method: str = Field(
        description="How weight_norm was computed: fft (circular), lanczos on the operator, or dense (small zero-"
        "padded operators, formed as a matrix)."
    )


class LayerReport(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["layers"][0]]})

    index: int = Field(description="j, 1-based (for a recurrent network, the step t).")
    type: Literal["dense", "conv2d", "recurrent", "block"] = Field(
        "dense",
        description="dense (W_j a matrix), conv2d (a convolution), recurrent (step t of W), or block (a graph's "
        "stretch of nodes between two tensors that every input-to-output path passes through).",
    )
    shape: list[int] = Field(
        description="[n_j, n_{j−1}] (a convolution's [c_out·H·W, c_in·H·W]; a block's output and input sizes, "
        "each tensor flattened)."
    )
    activation: str | None = Field(
        description="The name of the layer's activation h_j (its parameters as in the request); null for a block."
    )
    weight_norm: float | None = Field(description="σ_j = ‖W_j‖₂ (a convolution's operator norm); null for a block.")
    derivative_bound: float | None = Field(description="sup_z |h_j'(z)|; null for a block.")
    derivative_max: float | None = Field(
        description="max over probes and units of |h_j'(z_j)| (null where the forward pass overflowed or underflowed)."
    )
    skip_norm: float | None = Field(
        None, description="A residual layer's ‖S_j‖₂: 1 for the identity skip, ‖P‖₂ for a projection; null if plain."
    )
    jacobian_norm_bound: float | None = Field(
        description="σ_j·sup|h_j'| (residual: skip_norm + σ_j·sup|h_j'|); a block's: the product of its nodes' "
        "Lipschitz bounds (bound_notes says what a bound rests on), null with flag no_global_bound where a node has "
        "none (attention, lstm, gru)."
    )
    jacobian_norm: float | None = Field(
        description="max over probes of ‖diag(h_j'(z_j)) W_j‖₂ (residual: ‖S_j + diag(h_j'(z_j)) W_j‖₂); a block's "
        "max over probes of ‖∂(block output)/∂(block input)‖₂, by Lanczos on its JVP and VJP."
    )
    backward_bound_log10: float | None = Field(
        description="log10 ∏_{i=j+1}^{L} jacobian_norm_bound_i (σ_i·sup|h_i'| for plain layers), the bound on "
        "‖∂a_L/∂a_j‖ (0 for j = L)."
    )
    backward_bound: float | None = Field(description="10^backward_bound_log10 where it fits a float64.")
    backward_norm_log10: float | None = Field(description="log10 max over probes of ‖∂a_L/∂a_j‖₂.")
    backward_norm: float | None = Field(description="10^backward_norm_log10 where it fits a float64.")
    gradient_norm: float | None = Field(
        description="‖∂ℓ/∂W_j‖_F for the probe batch and the MSE loss (a block's: over all its parameter tensors)."
    )
    gradient_norm_log10: float | None = Field(
        description="log10 of gradient_norm (given even where the plain value does not fit)."
    )
    flags: list[str] = Field(
        description="zero_weight (σ_j = 0), dead (h_j' = 0 for every unit and probe), backward_bound_zero, "
        "backward_norm_zero, gradient_zero (the quantity is exactly 0: its log10 is null, its plain value 0), "
        "overflow (z_j is beyond float64's range), downstream_overflow (a later layer overflowed: true norms unknown), "
        "underflow (z_j is below float64's range and h_j cannot carry a scale — every activation but linear, relu "
        "and leaky_relu: its values are not zero, but unknown), downstream_underflow (a later layer underflowed: true "
        "norms unknown). Linear, relu and leaky_relu layers are carried scaled by a power of two per probe and "
        "never over- or underflow. Blocks: no_global_bound (a node has no Lipschitz bound: jacobian_norm_bound is "
        "null), bound_overflow (the bound exceeds float64), backward_bound_unknown (a later block has no bound), "
        "overflow (the forward pass left float64's range in this block: true norms null), downstream_overflow, "
        "norm_overflow (a Jacobian product left float64's range: that norm is null), no_parameters (gradient_norm "
        "null), gradient_overflow (a parameter's gradient norm exceeds float64)."
    )
    conv: ConvReport | None = Field(None, description="A convolution layer's kernel and DFT norms; null otherwise.")
    nodes: list[str] | None = Field(None, description="A block's node ids, in order; null for the other layers.")
    parameter_gradient_norms: dict[str, float | None] | None = Field(
        None,
        description="A block's ‖∂ℓ/∂θ‖_F for each parameter tensor θ, by `<node id>.<param name>` (null where it "
        "exceeds float64); null for the other layers.",
    )
    bound_notes: list[str] | None = Field(
        None, description="A block's nodes whose bound rests on more than the obvious (`<node id>: <what>`)."
    )
    meanfield: LayerMeanField | None = Field(description="The layer's mean field; null for a block.")
    weight_spectrum: WeightSpectrum | None = Field(
        None, description="W_j's singular values; only with options.spectrum (absent otherwise)."
    )


class RecurrentReport(_Report):
    """Pascanu, Mikolov & Bengio (2013), §3.1: ‖∂h_T/∂h_t‖ ≤ (σ_max(W)·γ)^{T−t}, γ = sup|h'|; σ_max(W) < 1/γ is
    sufficient for vanishing gradients, σ_max(W) > 1/γ necessary for exploding ones."""

    steps: int = Field(description="T.")
    hidden_size: int = Field(description="n.")
    input_size: int = Field(description="n_in.")
    weight_norm: float = Field(description="σ_max(W), the recurrent weight's spectral norm.")
    input_weight_norm: float = Field(description="σ_max(U).")
    derivative_bound: float = Field(description="γ = sup_z |h'(z)|: 1 for tanh, 1/4 for sigmoid.")
    threshold: float | None = Field(description="1/γ (null where γ = 0).")
    vanishing_sufficient: bool = Field(
        description="σ_max(W) < 1/γ, sufficient for vanishing gradients; claimed only with σ's rtol to spare "
        "(σ·(1 + rtol) < 1/γ)."
    )
    exploding_necessary: bool = Field(
        description="σ_max(W) > 1/γ, necessary (not sufficient) for exploding ones; claimed only where "
        "σ·(1 − rtol) > 1/γ."
    )
    statement: str = Field(description="The condition that holds, in one sentence with the numbers.")


class MeanFieldSummary(_Report):
    """The network's mean-field prediction (Poole et al. 2016; Schoenholz et al. 2017)."""

    predicted_growth_log10: float | None = Field(
        description="½·Σ_j log10 χ₁,j = log10 ∏_j χ₁,j^{1/2} (log10 χ₁^{L/2} when the layers agree): the predicted "
        "root-mean-square singular value of ∂a_L/∂a_0 (∏_j χ₁,j is the mean eigenvalue of JJᵀ). Compare "
        "input_norm_log10, the largest over the probes. Null where some χ₁ = 0 or is unknown (out_of_range)."
    )
    predicted_growth: float | None = Field(
        description="10^predicted_growth_log10 where it fits a float64; 0 where some χ₁ = 0; null where unknown."
    )
    predicted_rate_log10: float | None = Field(
        description="predicted_growth_log10 / L: the predicted growth per layer."
    )
    critical_gain: float | None = Field(
        description="gain·σ_w,crit/σ_w, the median over layers: the init gain (for explicit weights, the factor to "
        "scale every weight by) at which χ₁ = 1, the edge of chaos; exact for every layer when they share one "
        "activation, σ_w and σ_b. Null where no layer has a critical σ_w."
    )


class Summary(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["summary"]]})

    depth: int = Field(description="L.")
    input_bound_log10: float | None = Field(description="log10 ∏_{j=1}^{L} σ_j·sup|h_j'|, the bound on ‖∂a_L/∂a_0‖.")
    input_bound: float | None
    input_norm_log10: float | None = Field(description="log10 max over probes of ‖∂a_L/∂a_0‖₂.")
    input_norm: float | None
    rate_log10: float | None = Field(description="input_bound_log10 / L: the bound's growth per layer.")
    observed_rate_log10: float | None = Field(description="input_norm_log10 / L: the true growth per layer.")
    verdict: Verdict = Field(description="From input_norm_log10 and the thresholds.")
    bound_verdict: Verdict = Field(description="From input_bound_log10 and the thresholds.")
    thresholds: Thresholds
    gain: float | None = Field(description="The init gain (null for explicit weights).")
    suggested_gain: float | None = Field(
        description="The init gain (for explicit weights, the factor to scale every weight by) with which the true "
        "growth ‖∂a_L/∂a_0‖ on the same probes is stable, near the middle of the thresholds; `suggestion` says how "
        "it was found. Null where no gain helps: the advice says what would."
    )
    suggestion: SuggestionMethod | None = Field(
        description="How suggested_gain was found: unchanged (already stable), homogeneous (exact: plain bias-free "
        "linear/ReLU/leaky-ReLU layers, whose growth is L·log10 of the scale), search (re-analyses of the scaled "
        "network on the same probes), mean_field (the critical gain, unchecked: no trial fitted the work limit)."
    )
    suggested_growth_log10: float | None = Field(
        description="log10 max over probes of ‖∂a_L/∂a_0‖₂ with the suggested gain (null for mean_field)."
    )
    bound_gain: float | None = Field(
        description="gain·10^(−rate_log10): the gain at which the bound's growth per layer is 1 (a worst case; "
        "null for residual networks)."
    )
    advice: str = Field(
        description="Two sentences: what the gradients do (the true norms, and the mean-field prediction), and what "
        "to do (the suggested gain, or what would help where no gain does)."
    )
    flags: list[str] = Field(
        description="overflow, underflow (the forward pass left float64's range at a layer that cannot carry a "
        "scale: the true norms are null and unknown, never zero), input_bound_zero, input_norm_zero, "
        "input_bound_unknown (a graph block has no bound: bound_verdict is exploding)."
    )
    meanfield: MeanFieldSummary


class ProbeSpectrum(_Report):
    """The singular values s of J = ∂a_L/∂a_0 at one probe, and the n_L eigenvalues λ of JJᵀ (s², and n_L − n_0
    zeros where n_L > n_0). Products of L matrices: carried as log10 (null for an exact 0), with plain values where
    they fit a float64."""

    probe: int = Field(description="The probe's row in inputs (0-based).")
    singular_values_log10: list[float | None] = Field(
        description="log10 of the quantiles of s at quantile_levels (summary) or of every s in decreasing order "
        "(full); LAPACK gesdd on J formed from its narrower end, rescaled each layer. Null for an exact 0."
    )
    rank: int = Field(description="Singular values above s_max·max(n_L, n_0)·eps (those below are rounding).")
    eigenvalue_mean_log10: float | None = Field(description="log10 mean(λ) = log10 ‖J‖_F²/n_L.")
    eigenvalue_mean: float | None
    eigenvalue_variance_log10: float | None = Field(
        description="log10 of the variance of λ over its n_L values: with the mean, the measure of dynamical "
        "isometry (every s near 1: mean 1, variance 0)."
    )
    eigenvalue_variance: float | None
    condition_number_log10: float | None = Field(
        description="log10 s_max/s_min over the min(n_L, n_0) singular values; null where J is numerically "
        "rank-deficient (flag rank_deficient: e.g. a ReLU output layer zeroes about half the rows of J)."
    )
    condition_number: float | None
    flags: list[str] = Field(description="rank_deficient, zero (J = 0).")


class JacobianSpectrum(_Report):
    """The input–output Jacobian's spectrum at each probe next to the free-probability prediction for the init
    (Pennington, Schoenholz & Ganguli 2017, 2018)."""

    mode: Literal["summary", "full"] = Field(
        description="options.spectrum: summary (quantiles at quantile_levels) or full (every singular value)."
    )
    quantile_levels: list[float] | None = Field(
        description="The quantiles of every singular-value summary (0 the smallest, 1 the largest); null in full mode."
    )
    probes: list[ProbeSpectrum] = Field(
        description="One per probe; empty where the forward pass overflowed or underflowed."
    )
    eigenvalue_mean_log10: float | None = Field(description="log10 of the mean over probes of eigenvalue_mean.")
    eigenvalue_mean: float | None
    eigenvalue_variance_log10: float | None = Field(description="log10 of the mean over probes of eigenvalue_variance.")
    eigenvalue_variance: float | None
    predicted_eigenvalue_mean_log10: float | None = Field(
        description="log10 m₁ with m₁ = ∏_j χ₁,j = ∏_j σ_w,j²·μ₁,j, μ_k,j = E[h_j'(√q*_j·z)^{2k}] (mean field): the "
        "free-probability mean of JJᵀ's eigenvalues (1 at criticality). Null where it is 0."
    )
    predicted_eigenvalue_mean: float | None
    predicted_eigenvalue_variance_log10: float | None = Field(
        description="log10 m₁²·v_L, the predicted variance of JJᵀ's eigenvalues, from the first two moments of a "
        "product of free positive elements (Pennington et al. 2018): v_0 = 0, v_j = (μ₂,j/μ₁,j² − 1) + a_j + "
        "λ_j·(v_{j−1} + 1) − 1 with λ_j = n_j/n_{j−1} and a_j = λ_j·v(W_jᵀW_j), v the normalised variance of W_jᵀW_j's "
        "eigenvalues: a_j = 1 for i.i.d. init schemes (Marchenko–Pastur), max(0, 1 − λ_j) for orthogonal ones, and "
        "the weights' own for explicit weights. For square layers, v_L = Σ_j (μ₂,j/μ₁,j² − 1 + a_j): at "
        "criticality L (linear, Gaussian), 0 (linear, orthogonal), 2L (ReLU, Gaussian), L (ReLU, orthogonal) — "
        "Pennington et al. 2017, eq. 15. Null where it is 0. Infinite width, and every layer at its q*: a network "
        "whose variance approaches q* slowly (tanh at σ_b = 0) is far from it at moderate depth."
    )
    predicted_eigenvalue_variance: float | None
    flags: list[str] = Field(
        description="overflow, underflow (the forward pass overflowed or underflowed: no probe spectra), "
        "prediction_unknown (a layer's mean field is out of range, or the network has conv2d, residual or "
        "recurrent layers, which the prediction does not model: the prediction and its plain values are null)."
    )


class Methods(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["meta"]["methods"]]})

    dtype: str = Field("float64", description="The arithmetic of every computation (FP32 tensors are widened).")
    rtol: float = Field(description="options.rtol: the relative tolerance of every iterative spectral norm.")
    probes: int = Field(description="The probe inputs the true norms are maxima over.")
    loss: str = Field(description="The loss behind gradient_norm.")
    spectral_norm: str = Field(description="How each σ and each per-probe Jacobian norm was computed.")
    backward_norm: str = Field(
        description="How max over probes of ‖∂a_L/∂a_j‖₂ was computed, and to which tolerance: the dense solver "
        "on each probe's n_L × n_j product while n_L is small, else Lanczos to rtol."
    )
    dense_max_dim: int = Field(
        description="Matrices with min(m, n) ≤ this use the dense solver (√λ_max of the smaller Gram matrix)."
    )
    weight_norms_dense: int = Field(description="Weight norms computed by the dense solver.")
    weight_norms_lanczos: int = Field(description="Weight norms computed by Lanczos.")
    weight_norms_fft: int = Field(0, description="Circular convolutions' norms, exact from the 2-D DFT.")
    matvecs: int = Field(description="Matrix-vector products taken by Lanczos over the whole analysis.")


class Meta(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT["meta"]]})

    version: str = Field(description="The server's version.")
    timings_ms: dict[str, float] = Field(
        description="Wall time in milliseconds: parse (the JSON body), decode (tensors to arrays, or drawing the "
        "init recipe's weights), compute (the analysis) and total."
    )
    methods: Methods


class AnalysisReport(_Report):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [ANALYSIS_REPORT]})

    layers: list[LayerReport]
    summary: Summary
    meta: Meta
    spectrum: JacobianSpectrum | None = Field(
        None, description="The input–output Jacobian's spectra; only with options.spectrum (absent otherwise)."
    )
    recurrent: RecurrentReport | None = Field(
        None, description="A recurrent network's Pascanu conditions; null for the others."
    )
    weights: list[WeightSurvey] | None = Field(
        None,
        description="A graph network's every matrix and kernel (a parameter of two or more axes, named "
        "`<node id>.<parameter>`), surveyed as a .safetensors file is (σ_max, σ_min, stable rank, …); absent for the "
        "other networks.",
    )

    def to_dataframe(self) -> Any:
        """The per-layer fields as a pandas DataFrame indexed by layer j (pandas is imported only here); the nested
        ``meanfield`` and ``weight_spectrum`` fields become columns ``meanfield.chi1``, ``weight_spectrum.rank``, …"""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("AnalysisReport.to_dataframe needs pandas: pip install 'jacspec[pandas]'") from exc
        rows = [
            layer.model_dump(exclude={"weight_spectrum"} if layer.weight_spectrum is None else None)
            for layer in self.layers
        ]
        return pd.json_normalize(rows, max_level=1).set_index("index")

    def plot(self, ax: Any = None) -> Any:
        """Plot the backward bound and the true norm ‖∂a_L/∂a_j‖ against layer j on a log scale.

        The picture of "later layers favored more": the farther a layer is from the loss, the more factors its
        gradient sees. Returns the matplotlib Axes (matplotlib is imported only here).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("AnalysisReport.plot needs matplotlib: pip install 'jacspec[plot]'") from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        j = [0, *(layer.index for layer in self.layers)]
        bound = [self.summary.input_bound_log10, *(layer.backward_bound_log10 for layer in self.layers)]
        norm = [self.summary.input_norm_log10, *(layer.backward_norm_log10 for layer in self.layers)]
        ax.plot(j, [_nan(v) for v in bound], marker="o", label="bound ∏ σ_i·sup|h_i'|")
        ax.plot(j, [_nan(v) for v in norm], marker="s", label="true max ‖∂a_L/∂a_j‖₂")
        ax.set_xlabel("layer j (a_j: 0 is the input)")
        ax.set_ylabel("log10 ‖∂a_L/∂a_j‖")
        ax.set_title(f"{self.summary.verdict}: {self.summary.advice.partition('. ')[0]}", fontsize=9)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.legend()
        return ax


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
