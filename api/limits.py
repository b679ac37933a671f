"""Refuse work that is too large, from the request's declared sizes, before any array is allocated."""

from __future__ import annotations

from api.decode import probe_count, widths_of
from api.problems import ProblemError
from api.settings import Settings
from jacspec.models import AnalysisRequest
from service.cost import estimate_flops, parameter_count


def check_analysis(request: AnalysisRequest, settings: Settings) -> float:
    """413 when the network's parameters or the analysis's estimated work exceed the settings; else the work."""
    widths = widths_of(request)
    network = request.network
    biases = network.init.bias_std > 0 if network.init is not None else True
    return check_size(widths, parameter_count(widths, biases), probe_count(request.inputs), settings)


def check_size(widths: list[int], parameters: int, probes: int, settings: Settings) -> float:
    """413 when ``parameters`` or the estimated work of ``widths`` with ``probes`` exceed the settings; else the
    estimated work in floating-point operations."""
    if parameters > settings.max_parameters:
        raise ProblemError(
            413,
            "Content Too Large",
            f"the network has {parameters} parameters; this server accepts at most {settings.max_parameters} "
            "(JACSPEC_MAX_PARAMETERS)",
        )
    flops = estimate_flops(widths, probes)
    if flops > settings.max_flops:
        raise ProblemError(
            413,
            "Content Too Large",
            f"the analysis would take about {flops:.3g} floating-point operations; this server accepts at most "
            f"{settings.max_flops:.3g} (JACSPEC_MAX_FLOPS)",
        )
    return flops
