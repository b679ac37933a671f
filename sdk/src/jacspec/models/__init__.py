"""The contract of the jacspec service, as pydantic models (the server imports these; they import nothing of it)."""

from jacspec.models.activations import Activation, ActivationName, ActivationSpec, activation_parts
from jacspec.models.analysis import (
    AnalysisRequest,
    Inputs,
    Options,
    SafetensorsNetwork,
    SafetensorsRequest,
    Thresholds,
)
from jacspec.models.bounds import BoundsRequest, BoundsResponse
from jacspec.models.catalog import ActivationInfo, InitSchemeInfo, Parameter
from jacspec.models.graph import GraphNetwork, ParamTensor
from jacspec.models.health import Health
from jacspec.models.network import (
    Conv2dLayer,
    InitRecipe,
    InitSchemeName,
    Layer,
    LayerSpec,
    Network,
    Recurrent,
    RecurrentInit,
)
from jacspec.models.problem import FieldError, Problem
from jacspec.models.report import (
    AnalysisReport,
    ConvReport,
    JacobianSpectrum,
    LayerMeanField,
    LayerReport,
    MeanFieldSummary,
    Meta,
    Methods,
    ProbeSpectrum,
    RecurrentReport,
    Summary,
    Verdict,
    WeightSpectrum,
)
from jacspec.models.survey import (
    SkippedTensor,
    SurveyMeta,
    SurveyMethods,
    SurveyReport,
    SurveySummary,
    WeightSurvey,
)
from jacspec.models.tensor import KernelTensor, Matrix, Tensor, Vector

__all__ = [
    "Activation",
    "ActivationInfo",
    "ActivationName",
    "ActivationSpec",
    "AnalysisReport",
    "AnalysisRequest",
    "BoundsRequest",
    "BoundsResponse",
    "Conv2dLayer",
    "ConvReport",
    "FieldError",
    "GraphNetwork",
    "Health",
    "InitRecipe",
    "InitSchemeInfo",
    "InitSchemeName",
    "Inputs",
    "JacobianSpectrum",
    "KernelTensor",
    "Layer",
    "LayerMeanField",
    "LayerReport",
    "LayerSpec",
    "Matrix",
    "MeanFieldSummary",
    "Meta",
    "Methods",
    "Network",
    "Options",
    "ParamTensor",
    "Parameter",
    "ProbeSpectrum",
    "Problem",
    "Recurrent",
    "RecurrentInit",
    "RecurrentReport",
    "SafetensorsNetwork",
    "SafetensorsRequest",
    "SkippedTensor",
    "Summary",
    "SurveyMeta",
    "SurveyMethods",
    "SurveyReport",
    "SurveySummary",
    "Tensor",
    "Thresholds",
    "Vector",
    "Verdict",
    "WeightSpectrum",
    "WeightSurvey",
    "activation_parts",
]
