"""Real reports: the answer to the second example of AnalysisRequest, and the survey of SURVEY_TENSORS (timings
rounded).

tests/api/test_examples.py checks that the service still gives these numbers.
"""

from typing import Any

ANALYSIS_REPORT: dict[str, Any] = {
    "layers": [
        {
            "index": 1,
            "type": "dense",
            "shape": [
                2,
                2,
            ],
            "activation": "tanh",
            "weight_norm": 1.118033988749895,
            "derivative_bound": 1.0,
            "derivative_max": 0.7864477329659274,
            "skip_norm": None,
            "jacobian_norm_bound": 1.118033988749895,
            "jacobian_norm": 0.879275295831208,
            "backward_bound_log10": -0.11828600321853139,
            "backward_bound": 0.7615773105863908,
            "backward_norm_log10": -0.11828600321853139,
            "backward_norm": 0.7615773105863908,
            "gradient_norm": 0.3709988294854978,
            "gradient_norm_log10": -0.43062746059732937,
            "flags": [],
            "conv": None,
            "meanfield": {
                "sigma_w": 0.8660254037844386,
                "sigma_b": 0.05,
                "q_star": 0.009475295017969086,
                "chi1": 0.7362393734511045,
                "growth_log10": -0.06649048028568254,
                "depth_scale": 3.2658395610714885,
                "critical_sigma_w": 1.1225390047695747,
                "flags": [],
            },
        },
        {
            "index": 2,
            "type": "dense",
            "shape": [
                1,
                2,
            ],
            "activation": "linear",
            "weight_norm": 0.7615773105863908,
            "derivative_bound": 1.0,
            "derivative_max": 1.0,
            "skip_norm": None,
            "jacobian_norm_bound": 0.7615773105863908,
            "jacobian_norm": 0.7615773105863908,
            "backward_bound_log10": 0.0,
            "backward_bound": 1.0,
            "backward_norm_log10": 0.0,
            "backward_norm": 1.0,
            "gradient_norm": 1.7008565017750232,
            "gradient_norm_log10": 0.23066767450843587,
            "flags": [],
            "conv": None,
            "meanfield": {
                "sigma_w": 0.282842712474619,
                "sigma_b": 0.0,
                "q_star": 0.0,
                "chi1": 0.08,
                "growth_log10": -0.5484550065040282,
                "depth_scale": 0.395925350988716,
                "critical_sigma_w": 1.0,
                "flags": [],
            },
        },
    ],
    "summary": {
        "depth": 2,
        "input_bound_log10": -0.06983099671450319,
        "input_bound": 0.85146931829632,
        "input_norm_log10": -0.5039477742248823,
        "input_norm": 0.3133662538025944,
        "rate_log10": -0.03491549835725159,
        "observed_rate_log10": -0.2519738871124412,
        "verdict": "stable",
        "bound_verdict": "stable",
        "thresholds": {
            "vanishing_log10": -2.0,
            "exploding_log10": 2.0,
        },
        "gain": None,
        "suggested_gain": 1.0,
        "suggestion": "unchanged",
        "suggested_growth_log10": -0.5039477742248823,
        "bound_gain": 1.0837160324685646,
        "advice": (
            "Gradients are stable: ‖∂a_L/∂a_0‖ reaches 10^-0.5 over 2 layers; mean field "
            "predicts 10^-0.61 (χ₁ = 0.243 per layer, geometric mean). No change is needed."
        ),
        "flags": [],
        "meanfield": {
            "predicted_growth_log10": -0.6149454867897107,
            "predicted_growth": 0.2426914705466353,
            "predicted_rate_log10": -0.30747274339485536,
            "critical_gain": 2.140734989848545,
        },
    },
    "meta": {
        "version": "0.1.0",
        "timings_ms": {
            "parse": 0.21,
            "decode": 0.05,
            "compute": 6.45,
            "total": 6.71,
        },
        "methods": {
            "dtype": "float64",
            "rtol": 1e-06,
            "probes": 2,
            "loss": "mse: mean over probes and outputs of (a_L − y)²",
            "spectral_norm": (
                "√λ_max of the smaller Gram matrix AAᵀ or AᵀA (LAPACK syevr, the top eigenvalue "
                "alone) when min(m, n) ≤ 256 or rtol < 1e-12; otherwise Lanczos (ARPACK eigsh on "
                "the Gram operator AᵀA to tol = rtol(2 + rtol)/(1 + rtol)² ≈ 2·rtol on λ = σ², so"
                " that σ is within rtol; first in float32 when rtol ≥ 9.5e-07 and min(m, n) ≥ "
                "2048, certified in float64 by the residual ‖Gv − θv‖ ≤ tol·θ), falling back to "
                "the dense solver; per-probe Jacobians of 8 or more probes by Lanczos in lockstep"
                " on all of them; convolutions with circular padding exactly from the 2-D DFT of "
                "the kernel"
            ),
            "backward_norm": (
                "the dense solver on each probe's 1 × n_j product ∂a_L/∂a_j, accumulated from the"
                " output side (exact to rounding)"
            ),
            "dense_max_dim": 256,
            "weight_norms_dense": 2,
            "weight_norms_lanczos": 0,
            "weight_norms_fft": 0,
            "matvecs": 0,
        },
    },
    "recurrent": None,
}

SURVEY_TENSORS: dict[str, Any] = {
    "conv.weight": [[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 2.0], [0.0, 0.0]]]],
    "fc.weight": [[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]],
    "fc.bias": [0.5, -0.5, 0.0],
    "norm.weight": [1.0, 1.0],
}
"""A small state dict (float64): a [2, 1, 2, 2] kernel, a 3 × 2 matrix, its bias and a norm's scale. Its survey,
with options.spectrum "full", is SURVEY_REPORT."""

SURVEY_REPORT: dict[str, Any] = {
    "kind": "survey",
    "weights": [
        {
            "name": "conv.weight",
            "shape": [2, 1, 2, 2],
            "type": "kernel",
            "matrix_shape": [2, 4],
            "sigma_max": 2.0,
            "sigma_min": 1.4142135623730951,
            "frobenius_norm": 2.449489742783178,
            "stable_rank": 1.5,
            "rank": 2,
            "condition_number": 1.414213562373095,
            "singular_values": [2.0, 1.4142135623730951],
            "flags": [],
        },
        {
            "name": "fc.weight",
            "shape": [3, 2],
            "type": "matrix",
            "matrix_shape": [3, 2],
            "sigma_max": 4.0,
            "sigma_min": 3.0,
            "frobenius_norm": 5.0,
            "stable_rank": 1.5625,
            "rank": 2,
            "condition_number": 1.3333333333333333,
            "singular_values": [4.0, 3.0],
            "flags": [],
        },
    ],
    "skipped": [
        {
            "name": "fc.bias",
            "shape": [3],
            "dtype": "F64",
            "reason": "a vector (a bias, a norm's scale or shift, running statistics), not a matrix",
        },
        {
            "name": "norm.weight",
            "shape": [2],
            "dtype": "F64",
            "reason": "a vector (a bias, a norm's scale or shift, running statistics), not a matrix",
        },
    ],
    "summary": {
        "matrices": 2,
        "skipped": 2,
        "parameters": 14,
        "largest_sigma_max": 4.0,
        "largest_sigma_max_name": "fc.weight",
        "smallest_stable_rank": 1.5,
        "smallest_stable_rank_name": "conv.weight",
        "spectrum": "full",
        "quantile_levels": None,
    },
    "meta": {
        "version": "0.1.0",
        "timings_ms": {"parse": 0.13, "decode": 0.05, "compute": 1.2, "total": 1.38},
        "methods": {
            "dtype": "float64",
            "singular_values": (
                "LAPACK gesdd (numpy.linalg.svd, values only) of each matrix scaled exactly by a power of two to a "
                "largest entry near 1: all min(m, n) singular values, O(m·n·min(m, n)) flops; σ_max and σ_min the "
                "first and last, ‖W‖_F = √(Σ s_i²) of the scaled values, scaled back"
            ),
            "kernels": (
                "a 3-D or 4-D tensor [c_out, c_in, k…] is the matrix [c_out, c_in·k…] (torch.flatten(K, 1)); "
                "WeightWatcher slices a conv2d kernel into kh·kw matrices [c_out, c_in] instead"
            ),
        },
    },
}
