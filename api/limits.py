"""Refuse work that is too large, from the request's declared sizes, before any array is allocated.

Each refusal names what made the work large, as a JSON pointer: the widths (or layers, or uploaded file) for
the parameter count, and those with the probe inputs for the estimated work.
"""

from __future__ import annotations

from api.decode import layer_costs, probe_count, recurrent_sizes
from api.problems import ProblemError
from api.settings import Settings
from jacspec.models import (
    AnalysisRequest,
    Conv2dLayer,
    FieldError,
    Inputs,
    Network,
    SafetensorsNetwork,
    activation_parts,
)
from service.cost import LayerCost, estimate_flops, meanfield_layers, parameter_count


def check_analysis(request: AnalysisRequest, settings: Settings) -> float:
    """413 when the network's parameters or the analysis's estimated work exceed the settings; else the work."""
    network = request.network
    costs = layer_costs(request)
    widths = [costs[0].n, *(cost.m for cost in costs)]
    network_at = (
        "/network/init/widths"
        if network.init is not None
        else "/network/recurrent"
        if network.recurrent is not None
        else "/network/layers"
    )
    probes_at = probes_pointer(request.inputs)
    spectrum = request.options.spectrum
    probes = probe_count(request.inputs)
    return check_size(
        widths,
        _parameters(network, widths),
        probes,
        settings,
        network_at,
        probes_at,
        spectrum,
        "",
        _meanfield_solves(network),
        costs,
    )


def _parameters(network: Network, widths: list[int]) -> int:
    """Weights, kernels, biases and projections, as declared."""
    if network.init is not None:
        return parameter_count(widths, network.init.bias_std > 0)
    if network.recurrent is not None:
        n, n_in = recurrent_sizes(network.recurrent)
        return n * n + n * n_in + n
    assert network.layers is not None
    total = 0
    for j, spec in enumerate(network.layers):
        if isinstance(spec, Conv2dLayer):
            c_out, c_in, kh, kw = spec.kernel.shape
            total += c_out * c_in * (kh * kw + (spec.projection is not None)) + c_out
        else:
            m, n = widths[j + 1], widths[j]
            total += m * n * (1 + (spec.projection is not None)) + m
    return total


def _meanfield_solves(network: Network) -> int:
    """The layers whose mean field is solved on its own (a recurrent network's steps share one solve)."""
    if network.layers is not None:
        names = [activation_parts(layer.activation or network.activation)[0] for layer in network.layers]
        return meanfield_layers(names, explicit=True)
    if network.recurrent is not None:
        return meanfield_layers([activation_parts(network.recurrent.activation)[0]], explicit=True)
    return 0


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
    layers: list[LayerCost] | None = None,
) -> float:
    """413 when ``parameters`` or the estimated work of ``widths`` with ``probes`` (and the ``spectrum``, where
    asked for) exceed the settings; else the estimated work in floating-point operations.

    ``network_at`` and ``probes_at`` are the pointers of the fields that set the sizes and the number of probes;
    ``options_at`` prefixes ``/options/spectrum``; ``meanfield_solves`` counts the layers whose mean field is solved
    on its own (service.cost.meanfield_layers); ``layers`` the layers' costs where they are not dense layers of
    ``widths`` (service.cost.LayerCost).
    """
    if parameters > settings.max_parameters:
        detail = (
            f"the network has {parameters} parameters; this server accepts at most {settings.max_parameters} "
            "(JACSPEC_MAX_PARAMETERS)"
        )
        raise ProblemError(
            413, "Content Too Large", detail, errors=[FieldError(pointer=network_at, detail=f"{parameters} parameters")]
        )
    flops = estimate_flops(widths, probes, spectrum, meanfield_solves, layers)
    if flops > settings.max_flops:
        extra = ""
        errors = [
            FieldError(pointer=network_at, detail=f"widths {_short(widths)}"),
            FieldError(pointer=probes_at, detail=f"{probes} probes"),
        ]
        if spectrum != "none":
            errors.append(FieldError(pointer=f"{options_at}/options/spectrum", detail=f'"{spectrum}": full SVDs'))
            if estimate_flops(widths, probes, "none", meanfield_solves, layers) <= settings.max_flops:
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
