"""Refuse work that is too large, from the request's declared sizes, before any array is allocated.

Each refusal names what made the work large, as a JSON pointer: the widths (or layers, or uploaded file) for
the parameter count, and those with the probe inputs for the estimated work.
"""

from __future__ import annotations

from api.decode import probe_count, widths_of
from api.problems import ProblemError
from api.settings import Settings
from jacspec.models import AnalysisRequest, FieldError, Inputs, SafetensorsNetwork, activation_parts
from service.cost import estimate_flops, meanfield_layers, parameter_count


def check_analysis(request: AnalysisRequest, settings: Settings) -> float:
    """413 when the network's parameters or the analysis's estimated work exceed the settings; else the work."""
    widths = widths_of(request)
    network = request.network
    biases = network.init.bias_std > 0 if network.init is not None else True
    network_at = "/network/init/widths" if network.init is not None else "/network/layers"
    probes_at = probes_pointer(request.inputs)
    parameters = parameter_count(widths, biases)
    spectrum = request.options.spectrum
    solves = 0
    if network.layers is not None:
        names = [activation_parts(layer.activation or network.activation)[0] for layer in network.layers]
        solves = meanfield_layers(names, explicit=True)
    probes = probe_count(request.inputs)
    return check_size(widths, parameters, probes, settings, network_at, probes_at, spectrum, "", solves)


def safetensors_meanfield_solves(network: SafetensorsNetwork, layers: int) -> int:
    """The mean-field solves of an uploaded state_dict's ``layers`` layers, from the activations the request names
    (the network's, the output layer's, or one per layer)."""
    if network.activations is not None:
        names = [activation_parts(a)[0] for a in network.activations]
    else:
        names = [activation_parts(network.activation)[0]] * layers
        if network.output_activation is not None and names:
            names[-1] = activation_parts(network.output_activation)[0]
    return meanfield_layers(names, explicit=True)


def probes_pointer(inputs: Inputs, where: str = "") -> str:
    """The pointer of the field that sets the number of probes: ``inputs/data`` when given, else ``inputs/count``."""
    return where + ("/inputs/count" if inputs.data is None else "/inputs/data")


def check_size(
    widths: list[int],
    parameters: int,
    probes: int,
    settings: Settings,
    network_at: str,
    probes_at: str,
    spectrum: str = "none",
    options_at: str = "",
    meanfield_solves: int = 0,
) -> float:
    """413 when ``parameters`` or the estimated work of ``widths`` with ``probes`` (and the ``spectrum``, where
    asked for) exceed the settings; else the estimated work in floating-point operations.

    ``network_at`` and ``probes_at`` are the pointers of the fields that set the sizes and the number of probes;
    ``options_at`` prefixes ``/options/spectrum``; ``meanfield_solves`` counts the layers whose mean field is solved
    on its own (service.cost.meanfield_layers).
    """
    if parameters > settings.max_parameters:
        detail = (
            f"the network has {parameters} parameters; this server accepts at most {settings.max_parameters} "
            "(JACSPEC_MAX_PARAMETERS)"
        )
        raise ProblemError(
            413, "Content Too Large", detail, errors=[FieldError(pointer=network_at, detail=f"{parameters} parameters")]
        )
    flops = estimate_flops(widths, probes, spectrum, meanfield_solves)
    if flops > settings.max_flops:
        extra = ""
        errors = [
            FieldError(pointer=network_at, detail=f"widths {_short(widths)}"),
            FieldError(pointer=probes_at, detail=f"{probes} probes"),
        ]
        if spectrum != "none":
            errors.append(FieldError(pointer=f"{options_at}/options/spectrum", detail=f'"{spectrum}": full SVDs'))
            if estimate_flops(widths, probes, "none", meanfield_solves) <= settings.max_flops:
                extra = (
                    f' with options.spectrum = "{spectrum}" (the singular values of every weight and of each '
                    "probe's input–output Jacobian; without them the analysis fits)"
                )
        detail = (
            f"the analysis would take about {flops:.3g} floating-point operations{extra}; this server accepts at "
            f"most {settings.max_flops:.3g} (JACSPEC_MAX_FLOPS)"
        )
        raise ProblemError(413, "Content Too Large", detail, errors=errors)
    return flops


def _short(widths: list[int]) -> str:
    """The widths, abbreviated when there are many."""
    if len(widths) <= 8:
        return str(widths)
    return f"[{', '.join(map(str, widths[:4]))}, …, {', '.join(map(str, widths[-2:]))}] ({len(widths) - 1} layers)"
