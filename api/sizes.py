"""The declared sizes of an analysis request, in service.cost's terms, and the fields that declare them.

Only shapes and counts are read here, from the request (or an uploaded file's header): no array is made, so that
work too large is refused (``api.limits``) before any memory is spent on it.
"""

from __future__ import annotations

from api.echo import echo
from api.ingest.safetensors import SafetensorsFile
from api.limits import Fields
from jacspec.models import (
    AnalysisRequest,
    Conv2dLayer,
    Inputs,
    Network,
    Recurrent,
    SafetensorsNetwork,
    SafetensorsRequest,
    Tensor,
    activation_parts,
)
from jacspec.models import Layer as LayerModel
from service.cost import LayerCost, WorkEstimate, conv2d_layer, dense_layer, estimate, init_layers, recurrent_layers
from service.errors import InvalidInputError


def analysis_size(request: AnalysisRequest) -> tuple[WorkEstimate, Fields]:
    """The work of a JSON request, and the fields that set it."""
    network = request.network
    fields = Fields(
        network=network_pointer(network), probes=probes_pointer(request.inputs), spectrum="/options/spectrum"
    )
    layers, activations = _network_costs(network)
    work = estimate(layers, probe_count(request.inputs), request.options.spectrum, activations)
    return work, fields


def safetensors_size(
    file: SafetensorsFile, prefixes: list[str], spec: SafetensorsRequest
) -> tuple[WorkEstimate, Fields]:
    """The work of an uploaded state_dict's layers ``prefixes``, from its header, with the rest of the request; 422
    unless every chosen weight is a non-empty matrix."""
    layers = []
    for prefix in prefixes:
        weight = file.entries[prefix + ".weight"]
        if len(weight.shape) != 2 or 0 in weight.shape:
            raise InvalidInputError(
                ("weights",), f"tensor {echo(prefix + '.weight')} has shape {list(weight.shape)}, not a matrix"
            )
        bias = file.entries.get(prefix + ".bias")
        parameters = weight.size + (0 if bias is None else bias.size)
        layers.append(dense_layer(weight.shape[0], weight.shape[1], parameters=parameters))
    activations = safetensors_activations(spec.network, len(prefixes))
    work = estimate(layers, probe_count(spec.inputs), spec.options.spectrum, activations)
    fields = Fields(
        network="/weights", probes=probes_pointer(spec.inputs, "/request"), spectrum="/request/options/spectrum"
    )
    return work, fields


def _network_costs(network: Network) -> tuple[list[LayerCost], list[str]]:
    """The layers' costs, and the activations of the layers whose mean field is solved on its own (explicit or
    recurrent weights; an init recipe's layers share their statistics)."""
    if network.init is not None:
        return init_layers(network.init.widths, biases=network.init.bias_std > 0), []
    if network.recurrent is not None:
        n, n_in = recurrent_sizes(network.recurrent)
        layers = recurrent_layers(n, n_in, network.recurrent.steps)
        return layers, [activation_parts(network.recurrent.activation)[0]]
    assert network.layers is not None
    activations = [activation_parts(spec.activation or network.activation)[0] for spec in network.layers]
    return [_layer_cost(spec) for spec in network.layers], activations


def _layer_cost(spec: LayerModel | Conv2dLayer) -> LayerCost:
    if isinstance(spec, Conv2dLayer):
        c_out, c_in, kh, kw = spec.kernel.shape
        size = (spec.input_size[0], spec.input_size[1])
        circular = spec.padding == "circular"
        return conv2d_layer(c_out, c_in, (kh, kw), size, circular=circular, projection=spec.projection is not None)
    shape = _shape(spec.weight)  # a weight that is not a matrix is refused on decoding; here it costs as one
    return dense_layer(shape[0], shape[-1], projection=spec.projection is not None)


def recurrent_sizes(recurrent: Recurrent) -> tuple[int, int]:
    """(n, n_in) as declared: by the init recipe, else by the weights' shapes."""
    if recurrent.init is not None:
        return recurrent.init.hidden_size, recurrent.init.input_size
    assert recurrent.weight is not None
    assert recurrent.input_weight is not None
    return _shape(recurrent.weight)[0], _shape(recurrent.input_weight)[-1]


def _shape(value: Tensor | list[list[float]]) -> list[int]:
    if isinstance(value, list):
        return [len(value), len(value[0]) if value else 0]
    return value.shape


def safetensors_activations(network: SafetensorsNetwork, layers: int) -> list[str]:
    """The activations of an uploaded state_dict's ``layers`` layers, as the request names them: one per layer, or
    the network's with the output layer's last."""
    if network.activations is not None:
        return [activation_parts(a)[0] for a in network.activations]
    names = [activation_parts(network.activation)[0]] * layers
    if network.output_activation is not None and names:
        names[-1] = activation_parts(network.output_activation)[0]
    return names


def probe_count(inputs: Inputs) -> int:
    """How many probes the request asks for: the rows of ``data`` when given, else ``count``."""
    data = inputs.data
    if data is None:
        return inputs.count
    if isinstance(data, list):
        return len(data)
    return data.shape[0]


def network_pointer(network: Network) -> str:
    """The pointer of the field that sets the network's sizes."""
    if network.init is not None:
        return "/network/init/widths"
    return "/network/recurrent" if network.recurrent is not None else "/network/layers"


def probes_pointer(inputs: Inputs, where: str = "") -> str:
    """The pointer of the field that sets the number of probes: ``inputs/data`` when given, else ``inputs/count``."""
    return where + ("/inputs/count" if inputs.data is None else "/inputs/data")
