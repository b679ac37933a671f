"""The body of POST /v1/analyses: a network, its probe inputs and the numerical options."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from jacspec.models._base import ContractModel
from jacspec.models._bounds import MAX_DEPTH, MAX_LOG10, MAX_NAME, MAX_SEED, MIN_RTOL, Scale
from jacspec.models.activations import Activation
from jacspec.models.graph import GraphNetwork
from jacspec.models.network import Network
from jacspec.models.tensor import Matrix, rows_of_array

RUN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""A run's name: 1 to 100 letters, digits, `.`, `_` or `-`, starting with a letter or digit."""
MAX_STEP = 2**53
"""The largest step: every step is exact as a JSON number (a float64)."""

RunName = Annotated[
    str,
    Field(
        pattern=RUN_PATTERN,
        description="Keep the report as a point of this run (1–100 of `A-Za-z0-9._-`, starting with a letter or "
        "digit): GET /v1/runs/{run} then shows each layer's metrics over the steps.",
    ),
]
Step = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_STEP,
        description="The point's step in the run, 0 … 2^53 (the same step again replaces it); absent: the run's last "
        "step + 1, or 0. Needs `run`.",
    ),
]


def _step_needs_run(step: int | None, data: dict[str, object]) -> int | None:
    """A ``step`` is refused (at /step) without a ``run``; when ``run`` itself failed, only that error is told."""
    if step is not None and "run" in data and data["run"] is None:
        raise ValueError("`step` needs a `run` to be a step of")
    return step


class Inputs(ContractModel):
    """Probe inputs: given as `data` ([count, n_0]), or drawn x ~ N(0, scale²) from `seed`.
    MSE targets for `gradient_norm`: given as `targets` ([count, n_L]), or drawn y ~ N(0, 1) after x."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"count": 16, "scale": 1.0, "seed": 0}]})

    data: Matrix | None = None
    targets: Matrix | None = None
    count: int = Field(16, ge=1, le=4096, description="Probes drawn when `data` is not given.")
    scale: Scale = Field(1.0, description="Std of the drawn probes; 1e-100 … 1e6.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of numpy's PCG64 generator, 0 … 2^64 − 1.")

    @field_validator("data", "targets", mode="before")
    @classmethod
    def _arrays(cls, value: object) -> object:
        """A numpy array or torch tensor of probes [count, …] is taken as rows of each probe flattened row-major
        (the SDK's convenience; JSON bodies never hold one)."""
        return rows_of_array(value)


class Thresholds(ContractModel):
    """Total growth ‖∂a_L/∂a_0‖ below 10^vanishing_log10 is `vanishing`, above 10^exploding_log10 `exploding`."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"vanishing_log10": -2.0, "exploding_log10": 2.0}]})

    vanishing_log10: float = Field(
        -2.0,
        ge=-MAX_LOG10,
        le=MAX_LOG10,
        description="log10 of the total growth below which gradients vanish; |·| ≤ 1e6.",
    )
    exploding_log10: float = Field(
        2.0,
        ge=-MAX_LOG10,
        le=MAX_LOG10,
        description="log10 of the total growth above which gradients explode; |·| ≤ 1e6.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.vanishing_log10 <= self.exploding_log10:
            raise ValueError("vanishing_log10 must not exceed exploding_log10")
        return self


class Options(ContractModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"rtol": 1e-6}]})

    rtol: float = Field(1e-6, ge=MIN_RTOL, le=0.1, description="Relative accuracy of every spectral norm, 1e-15 … 0.1.")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    spectrum: Literal["none", "summary", "full"] = Field(
        "none",
        description="`summary`: the singular values of every weight and of each probe's input–output Jacobian "
        "∂a_L/∂a_0 at quantiles, with their moments and condition numbers, next to the free-probability prediction "
        "(the report's `spectrum` and each layer's `weight_spectrum`); `full`: every singular value. Both take "
        "full SVDs, O(n³) per matrix, counted in the work limit (JACSPEC_MAX_FLOPS, else 413).",
    )
    max_seconds: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Most seconds the analysis may compute; the server's own limit (JACSPEC_MAX_SECONDS) applies "
        "when it is lower or this is absent. Past it the analysis is stopped: 413 problem+json of type "
        "`urn:jacspec:problem:deadline`.",
    )


class AnalysisRequest(ContractModel):
    """Analyse one network."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "network": {
                        "activation": "tanh",
                        "init": {"widths": [64, 64, 64, 64, 10], "scheme": "orthogonal", "gain": 0.5},
                    },
                    "inputs": {"count": 8, "seed": 0},
                    "options": {"rtol": 1e-6},
                },
                {
                    "network": {
                        "activation": "tanh",
                        "layers": [
                            {
                                "weight": {"shape": [2, 2], "datatype": "FP64", "data": [[1.0, 0.5], [-0.5, 1.0]]},
                                "bias": [0.0, 0.1],
                            },
                            {"weight": [[0.3, 0.7]], "activation": "linear"},
                        ],
                    },
                    "inputs": {"data": [[1.0, -1.0], [0.5, 2.0]]},
                },
            ]
        }
    )

    network: Network
    inputs: Inputs = Field(default_factory=Inputs)
    options: Options = Field(default_factory=Options)
    run: RunName | None = None
    step: Step | None = None

    @field_validator("step")
    @classmethod
    def _step(cls, value: int | None, info: ValidationInfo) -> int | None:
        return _step_needs_run(value, info.data)


class SafetensorsNetwork(ContractModel):
    """What a state_dict does not say: the activations, and (optionally) which tensors are the layers, in order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"activation": "tanh", "output_activation": "linear", "layers": ["0", "2", "4"]}]
        }
    )

    activation: Activation = Field("linear", description="The activation of every layer.")
    output_activation: Activation | None = Field(None, description="The last layer's activation when it differs.")
    activations: list[Activation] | None = Field(
        None, min_length=1, max_length=MAX_DEPTH, description="One activation per layer, in order."
    )
    layers: list[Annotated[str, Field(max_length=MAX_NAME)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_DEPTH,
        description="Name prefixes P of the layers' `P.weight` (and `P.bias`) tensors, in order (each at most 256 "
        "characters); by default every `P.weight` in natural order (0, 2, 10, as nn.Sequential names them).",
    )
    graph: GraphNetwork | None = Field(
        None,
        description="A graph network whose params name the file's tensors (or give tensors inline): the file is "
        "analysed as that graph, block by block; `activation`, `activations` and `layers` do not apply.",
    )

    @model_validator(mode="after")
    def _graph_alone(self) -> SafetensorsNetwork:
        if self.graph is not None and (self.layers is not None or self.activations is not None):
            raise ValueError("give either `graph` or `layers`/`activations`, not both")
        return self


class SafetensorsRequest(ContractModel):
    """The JSON part `request` of a multipart POST /v1/analyses whose part `weights` is a .safetensors file."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"network": {"activation": "relu", "output_activation": "linear"}, "inputs": {"count": 8}}]
        }
    )

    network: SafetensorsNetwork = Field(default_factory=SafetensorsNetwork)
    inputs: Inputs = Field(default_factory=Inputs)
    options: Options = Field(default_factory=Options)
    survey: bool | None = Field(
        None,
        description="true: the weight survey (a SurveyReport) of every matrix and convolution kernel in the file, the "
        "other tensors listed as skipped; false: the analysis of the chain of layers `P.weight` (an AnalysisReport). "
        "Absent: the analysis when `network.layers` is given, or when every tensor is named `P.weight` or `P.bias` "
        "and every `P.weight` is a matrix, or when no `P.weight` is a (non-empty) matrix; the survey otherwise "
        "(a HuggingFace or CNN state dict, with its norms' vectors and kernels). `network` and `inputs` do not "
        "apply to a survey; `options.spectrum` adds each matrix's singular values, `options.max_seconds` its "
        "deadline.",
    )
    run: RunName | None = None
    step: Step | None = None

    @field_validator("step")
    @classmethod
    def _step(cls, value: int | None, info: ValidationInfo) -> int | None:
        return _step_needs_run(value, info.data)

    @model_validator(mode="after")
    def _survey_or_layers(self) -> SafetensorsRequest:
        if self.survey and self.network.layers is not None:
            raise ValueError("survey: true surveys every matrix; it cannot be given with network.layers")
        return self
