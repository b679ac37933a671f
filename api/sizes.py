"""The declared sizes of an analysis request, in service.cost's terms, and the fields that declare them.

Only shapes and counts are read here, from the request (or an uploaded file's header): no array is made, so that
work too large is refused (``api.limits``) before any memory is spent on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from itertools import groupby

from api.echo import echo
from api.ingest.graph import build, shapes_only
from api.ingest.safetensors import SafetensorsFile
from api.limits import Fields, check, check_depth, check_survey
from api.settings import Settings
from jacspec.models import (
    Activation,
    AnalysisRequest,
    Conv2dLayer,
    Inputs,
    Network,
    Options,
    Recurrent,
    SafetensorsNetwork,
    SafetensorsRequest,
    Tensor,
    activation_parts,
)
from jacspec.models import Layer as LayerModel
from service.cost import (
    DECODE_BYTES,
    DECODE_LIST,
    LAYER_BYTES,
    RESPONSE_BASE,
    SURVEY_ROW_BYTES,
    Declared,
    LayerCost,
    NodeCost,
    SurveyEstimate,
    WorkEstimate,
    conv2d_layer,
    dense_layer,
    estimate,
    graph_flops,
    init_layers,
    meanfield_solves,
    node_apply_flops,
    recurrent_layers,
    survey_estimate,
    survey_matrix_flops,
)
from service.errors import InvalidInputError, Location
from service.graph.network import Graph
from service.survey import Planned, Skipped, classify


def checked_size(request: AnalysisRequest, settings: Settings) -> WorkEstimate:
    """The work of a JSON request, refused (413) when it cannot fit: first by its depth alone, in constant time,
    then by its estimate, naming the changes that would fit. A graph's shapes are checked through it first (422)."""
    if request.network.graph is not None:
        graph = build(request.network.graph, shapes_only())
        return checked_graph_size(graph, request.inputs, request.options, settings)
    fields = analysis_fields(request)
    check_depth(declared_depth(request), settings, fields)
    work, _, declared = analysis_size(request)
    check(work, settings, fields, declared)
    return work


def checked_safetensors_size(
    file: SafetensorsFile, prefixes: list[str], spec: SafetensorsRequest, settings: Settings
) -> WorkEstimate:
    """The work of an uploaded state_dict's request, refused (413) when it cannot fit."""
    work, fields, declared = safetensors_size(file, prefixes, spec)
    check(work, settings, fields, declared)
    return work


def checked_graph_size(
    graph: Graph, inputs: Inputs, options: Options, settings: Settings, where: str = ""
) -> WorkEstimate:
    """A graph's work, refused (413) when it cannot fit; ``where``: the pointer of the JSON request ("/request" in an
    upload)."""
    at: Location = tuple(step for step in where.split("/") if step)
    work = graph_work(graph, inputs, options, at)
    check(work, settings, _graph_fields(inputs, where))
    return work


def graph_work(graph: Graph, inputs: Inputs, options: Options, at: Location = ()) -> WorkEstimate:
    """The work of a graph's analysis from its shapes (service.cost.graph_flops) and the size of its answer;
    options.spectrum is refused (422): a graph has no spectrum."""
    if options.spectrum != "none":
        raise InvalidInputError((*at, "options", "spectrum"), "is not available for a graph network")
    costs = node_costs(graph)
    blocks = [(b.start, b.stop, graph.size(b.start), graph.size(b.stop)) for b in graph.blocks()]
    probes = probe_count(inputs)
    flops = graph_flops(costs, blocks, probes, options.rtol) + DECODE_BYTES * sum(c.parameters for c in costs)
    matrices = _matrices(graph)
    flops += sum(survey_matrix_flops(m, n, decode=0.0) for m, n in matrices)
    widths = (blocks[0][2], *(block[3] for block in blocks))
    names = sum(len(node.id) + 40 for node in graph.nodes)
    answer = RESPONSE_BASE + len(blocks) * LAYER_BYTES + names + len(matrices) * (SURVEY_ROW_BYTES + 40)
    parameters = sum(c.parameters for c in costs)
    return WorkEstimate(widths, parameters, probes, "none", flops, flops, answer, len(blocks))


def node_costs(graph: Graph) -> list[NodeCost]:
    """Each node's forward flops for one probe and its parameter entries (service.cost.node_apply_flops)."""
    costs = []
    for k, node in enumerate(graph.nodes):
        sizes = [graph.size(i) for i in node.inputs]
        parameters = sum(int(array.size) for array in node.op.parameters.values())
        rows = _rows(node.op.name, graph.shapes[node.inputs[0]], graph.shapes[k + 1])
        costs.append(NodeCost(node_apply_flops(node.op.name, parameters, sizes, graph.size(k + 1), rows), parameters))
    return costs


def _matrices(graph: Graph) -> list[tuple[int, int]]:
    """The [m, n] of each matrix and kernel of the graph, as its report surveys them (service.survey.classify)."""
    found = (classify(name, array.shape) for node in graph.nodes for name, array in node.op.parameters.items())
    return [planned.matrix_shape for planned in found if isinstance(planned, Planned)]


def _rows(op: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """The rows a node's weights act on (service.cost.node_apply_flops): a convolution's output positions, a
    linear's input rows, a sequence op's steps."""
    if op in ("conv1d", "conv2d"):
        return math.prod(output_shape[1:])
    if op == "linear":
        return math.prod(input_shape[:-1])
    return input_shape[0] if len(input_shape) > 1 else 1


def _graph_fields(inputs: Inputs, where: str = "") -> Fields:
    return Fields(
        network=f"{where}/network/graph",
        probes=probes_pointer(inputs, where),
        spectrum=f"{where}/options/spectrum",
        rtol=f"{where}/options/rtol",
    )


def analysis_size(request: AnalysisRequest) -> tuple[WorkEstimate, Fields, Declared]:
    """The work of a JSON request, the fields that set it, and its declared sizes (for the changes that fit)."""
    declared = analysis_declared(request)
    return estimate(declared), analysis_fields(request), declared


def analysis_fields(request: AnalysisRequest) -> Fields:
    """The pointers of a JSON request's fields that set its sizes."""
    network = request.network
    return Fields(
        network=network_pointer(network),
        probes=probes_pointer(request.inputs),
        spectrum="/options/spectrum",
        rtol="/options/rtol",
        scheme=_scheme_pointer(network),
        depth=_depth_pointer(network),
    )


def declared_depth(request: AnalysisRequest) -> int:
    """The layers a JSON request declares, read in constant time (no list is walked)."""
    network = request.network
    if network.init is not None:
        return len(network.init.widths) - 1
    if network.recurrent is not None:
        return network.recurrent.steps
    return len(network.layers or ())


def analysis_declared(request: AnalysisRequest) -> Declared:
    """The declared sizes of a JSON request."""
    network = request.network
    layers, activations = _network_costs(network)
    solves = meanfield_solves(activations)
    if network.init is not None:
        names = [network.activation, network.output_activation or network.activation]
        solves = meanfield_solves({activation_parts(a)[0] for a in names})
    input_width = None
    if network.recurrent is not None:
        input_width = network.recurrent.steps * recurrent_sizes(network.recurrent)[1]
    options = request.options
    return Declared(
        tuple(layers) if network.init is not None else grouped(layers),
        probe_count(request.inputs),
        rtol=options.rtol,
        spectrum=options.spectrum,
        meanfield=solves,
        input_width=input_width,
        scheme=_scheme(network),
        resizable=network.layers is None,
        widths=None if network.init is None else tuple(network.init.widths),
        biases=network.init is not None and network.init.bias_std > 0,
    )


def grouped(layers: list[LayerCost]) -> tuple[LayerCost, ...]:
    """Runs of equal layers as one LayerCost each, with their count (every estimate then takes a step per run), and
    equal runs as one object (which the estimates compute once)."""
    runs: dict[LayerCost, LayerCost] = {}
    found = []
    for layer, run in groupby(layers):
        counted = replace(layer, count=sum(item.count for item in run))
        found.append(runs.setdefault(counted, counted))
    return tuple(found)


def _scheme(network: Network) -> str | None:
    if network.init is not None:
        return network.init.scheme
    if network.recurrent is not None and network.recurrent.init is not None:
        return network.recurrent.init.scheme
    return None


def _scheme_pointer(network: Network) -> str | None:
    if network.init is not None:
        return "/network/init/scheme"
    return "/network/recurrent/init/scheme" if network.recurrent is not None else None


def _depth_pointer(network: Network) -> str | None:
    if network.init is not None:
        return "/network/init/widths"
    return "/network/recurrent/steps" if network.recurrent is not None else None


def safetensors_size(
    file: SafetensorsFile, prefixes: list[str], spec: SafetensorsRequest
) -> tuple[WorkEstimate, Fields, Declared]:
    """The work of an uploaded state_dict's layers ``prefixes``, from its header, with the rest of the request; 422
    unless every chosen weight is a non-empty matrix."""
    activations = safetensors_activations(spec.network, len(prefixes))
    layers = []
    for j, prefix in enumerate(prefixes):
        weight = file.entries[prefix + ".weight"]
        if len(weight.shape) != 2 or 0 in weight.shape:
            raise InvalidInputError(
                ("weights",),
                f"tensor {echo(prefix + '.weight')} has shape {list(weight.shape)}, not a matrix; "
                'for the weight survey of every matrix in the file, send "survey": true',
            )
        bias = file.entries.get(prefix + ".bias")
        parameters = weight.size + (0 if bias is None else bias.size)
        identity = j < len(activations) and activations[j] == "linear"  # a count that differs is refused later
        layers.append(
            dense_layer(weight.shape[0], weight.shape[1], parameters=parameters, decode=DECODE_BYTES, identity=identity)
        )
    options = spec.options
    declared = Declared(
        grouped(layers),
        probe_count(spec.inputs),
        rtol=options.rtol,
        spectrum=options.spectrum,
        meanfield=meanfield_solves(activations),
    )
    fields = Fields(
        network="/weights",
        probes=probes_pointer(spec.inputs, "/request"),
        spectrum="/request/options/spectrum",
        rtol="/request/options/rtol",
    )
    return estimate(declared), fields, declared


def _network_costs(network: Network) -> tuple[list[LayerCost], list[str]]:
    """The layers' costs, and the activations of the layers whose mean field is solved on its own (explicit or
    recurrent weights; an init recipe's layers share their statistics)."""
    if network.init is not None:
        init = network.init
        identity = _is_identity(network.activation)
        output = None if network.output_activation is None else _is_identity(network.output_activation)
        return init_layers(init.widths, init.bias_std > 0, init.scheme, identity, output), []
    if network.recurrent is not None:
        recurrent = network.recurrent
        n, n_in = recurrent_sizes(recurrent)
        drawn = recurrent.init
        scheme = None if drawn is None else drawn.scheme
        biases = drawn is not None and drawn.bias_std > 0
        identity = _is_identity(recurrent.activation)
        layers = recurrent_layers(n, n_in, recurrent.steps, scheme, biases=biases, identity=identity)
        return layers, [activation_parts(recurrent.activation)[0]]
    assert network.layers is not None
    activations = [activation_parts(spec.activation or network.activation)[0] for spec in network.layers]
    costs = [_layer_cost(spec, name == "linear") for spec, name in zip(network.layers, activations, strict=True)]
    return costs, activations


def _is_identity(activation: Activation) -> bool:
    """Whether a request's activation (a name or a name with parameters) is the identity, "linear"."""
    return activation_parts(activation)[0] == "linear"


def _layer_cost(spec: LayerModel | Conv2dLayer, linear: bool) -> LayerCost:
    """The layer's cost; ``linear``: its activation is the identity (then, without a skip path, LayerCost.identity)."""
    identity = linear and not spec.residual and spec.projection is None
    if isinstance(spec, Conv2dLayer):
        c_out, c_in, kh, kw = spec.kernel.shape
        size = (spec.input_size[0], spec.input_size[1])
        circular = spec.padding == "circular"
        decode = DECODE_BYTES if spec.kernel.b64 is not None else DECODE_LIST
        projection = spec.projection is not None
        return conv2d_layer(
            c_out, c_in, (kh, kw), size, circular=circular, projection=projection, decode=decode, identity=identity
        )
    shape = _shape(spec.weight)  # a weight that is not a matrix is refused on decoding; here it costs as one
    decode = DECODE_BYTES if isinstance(spec.weight, Tensor) and spec.weight.b64 is not None else DECODE_LIST
    return dense_layer(shape[0], shape[-1], projection=spec.projection is not None, decode=decode, identity=identity)


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


COSTLIEST = 3
"""A survey refused as too much work names this many of its costliest tensors."""


def checked_survey_size(
    planned: Sequence[Planned], skipped: Sequence[Skipped], spectrum: str, settings: Settings
) -> SurveyEstimate:
    """The work of the weight survey of ``planned`` (from the file's header: no array is made), refused (413) when
    it cannot fit."""
    shapes = [p.matrix_shape for p in planned]
    names = sum(len(p.name.encode()) for p in planned) + sum(len(s.name.encode()) for s in skipped)
    work = survey_estimate(shapes, len(skipped), names, spectrum)
    flops = sorted(((survey_matrix_flops(*p.matrix_shape), p.name) for p in planned), reverse=True)[:COSTLIEST]
    check_survey(work, settings, [(echo(name), cost) for cost, name in flops], spectrum)
    return work
