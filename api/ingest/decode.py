"""From the contract models to the numerics' inputs: tensors to float64 arrays, specs to service objects."""

from __future__ import annotations

import binascii
from concurrent.futures import Executor

import numpy as np
import pybase64
from numpy.typing import NDArray

from api.echo import echo
from api.ingest.safetensors import SafetensorsFile
from jacspec.models import (
    Conv2dLayer,
    Inputs,
    Network,
    Recurrent,
    SafetensorsNetwork,
    Tensor,
    activation_parts,
)
from jacspec.models import Layer as LayerModel
from jacspec.models.activations import Activation as ActivationModel
from service.activations import Activation, make_activation
from service.conv import Conv2d
from service.errors import InvalidInputError, Location
from service.linear import Dense, Identity, Linear
from service.network import (
    InitRecipe,
    Layer,
    RecurrentInit,
    RecurrentSpec,
    network_from_layers,
    recurrent_network,
)
from service.network import Network as ServiceNetwork
from service.probes import ProbeSpec
from service.text import counted

Array = NDArray[np.float64]
LITTLE_ENDIAN = {"FP32": "<f4", "FP64": "<f8"}


def to_array(value: Tensor | list[float] | list[list[float]], location: Location) -> Array:
    """A float64 array; FP32 values are first rounded to float32, as the caller's model holds them."""
    if isinstance(value, list):
        try:
            return np.array(value, dtype=np.float64)
        except ValueError:
            raise InvalidInputError(location, "rows of a nested list must all have the same length") from None
    if value.b64 is not None:
        raw = _b64_bytes(value.b64, location)
        dtype = np.dtype(LITTLE_ENDIAN[value.datatype])
        if len(raw) != value.size * dtype.itemsize:
            raise InvalidInputError(
                (*location, "b64"),
                f"b64 decodes to {counted(len(raw), 'byte')}; shape {value.shape} needs {value.size * dtype.itemsize}",
            )
        return np.frombuffer(raw, dtype=dtype).astype(np.float64).reshape(value.shape)
    data = value.data
    with np.errstate(over="ignore"):  # beyond float32's range is ±inf, refused as not finite with its pointer
        array = np.asarray(data, dtype=np.float32 if value.datatype == "FP32" else np.float64)
    return array.astype(np.float64).reshape(value.shape)


def _b64_bytes(b64: str, location: Location) -> bytes:
    """The bytes of a ``b64`` value (base64 with its alphabet checked)."""
    try:
        return pybase64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError((*location, "b64"), "b64 is not valid base64") from None


def to_activation(spec: ActivationModel, location: Location) -> Activation:
    name, parameters = activation_parts(spec)
    return make_activation(name, location, **parameters)


def explicit_network(network: Network) -> ServiceNetwork:
    """The explicit layers as maps and arrays, each activation resolved (a layer's own, else the network's)."""
    assert network.layers is not None
    default = to_activation(network.activation, ("network", "activation"))
    layers = []
    for j, spec in enumerate(network.layers):
        where: Location = ("network", "layers", j)
        activation = default if spec.activation is None else to_activation(spec.activation, (*where, "activation"))
        if isinstance(spec, Conv2dLayer):
            layers.append(_conv_layer(spec, activation, where))
        else:
            layers.append(_dense_layer(spec, activation, where))
    return network_from_layers(layers)


def _dense_layer(spec: LayerModel, activation: Activation, where: Location) -> Layer:
    weight = Dense(to_array(spec.weight, (*where, "weight")))
    bias = None if spec.bias is None else to_array(spec.bias, (*where, "bias"))
    skip: Linear | None = None
    if spec.projection is not None:
        skip = Dense(to_array(spec.projection, (*where, "projection")))
    elif spec.residual:
        skip = Identity(weight.shape[1])
    return Layer(weight, bias, activation, skip)


def _conv_layer(spec: Conv2dLayer, activation: Activation, where: Location) -> Layer:
    """The convolution, its bias [c_out] repeated over the H·W positions of each channel, and its skip (a
    projection [c_out, c_in] is the 1×1 convolution of that matrix)."""
    kernel = to_array(spec.kernel, (*where, "kernel"))
    size = (spec.input_size[0], spec.input_size[1])
    try:
        weight = Conv2d(kernel, size, spec.padding)
    except ValueError as exc:
        raise InvalidInputError((*where, "kernel"), str(exc)) from None
    c_out, c_in = kernel.shape[:2]
    bias = None
    if spec.bias is not None:
        bias = to_array(spec.bias, (*where, "bias"))
        if bias.shape != (c_out,):
            raise InvalidInputError((*where, "bias"), f"bias shape {list(bias.shape)} must be [c_out] = [{c_out}]")
        bias = np.repeat(bias, size[0] * size[1])
    skip: Linear | None = None
    if spec.projection is not None:
        projection = to_array(spec.projection, (*where, "projection"))
        if projection.shape != (c_out, c_in):
            raise InvalidInputError(
                (*where, "projection"),
                f"projection shape {list(projection.shape)} must be [c_out, c_in] = [{c_out}, {c_in}]",
            )
        skip = Conv2d(projection[:, :, None, None], size, spec.padding)
    elif spec.residual:
        skip = Identity(weight.shape[1])
    return Layer(weight, bias, activation, skip)


def recurrent_spec(recurrent: Recurrent) -> tuple[RecurrentSpec, float | None]:
    """The recurrent network's weights, given or drawn, and the init gain (None for given weights)."""
    where: Location = ("network", "recurrent")
    activation = to_activation(recurrent.activation, (*where, "activation"))
    init = recurrent.init
    if init is not None:
        recipe = RecurrentInit(
            init.hidden_size, init.input_size, init.scheme, init.gain, init.std, init.bias_std, init.seed
        )
        return recipe.draw(recurrent.steps, activation), init.gain
    assert recurrent.weight is not None
    assert recurrent.input_weight is not None
    weight = to_array(recurrent.weight, (*where, "weight"))
    input_weight = to_array(recurrent.input_weight, (*where, "input_weight"))
    bias = None if recurrent.bias is None else to_array(recurrent.bias, (*where, "bias"))
    return RecurrentSpec(weight, input_weight, bias, recurrent.steps, activation), None


def recurrent(network: Network) -> ServiceNetwork:
    assert network.recurrent is not None
    return recurrent_network(*recurrent_spec(network.recurrent))


def init_recipe(network: Network) -> InitRecipe:
    assert network.init is not None
    init = network.init
    output = network.output_activation
    return InitRecipe(
        widths=tuple(init.widths),
        scheme=init.scheme,
        activation=to_activation(network.activation, ("network", "activation")),
        output_activation=None if output is None else to_activation(output, ("network", "output_activation")),
        gain=init.gain,
        std=init.std,
        bias_std=init.bias_std,
        seed=init.seed,
    )


def probe_spec(inputs: Inputs) -> ProbeSpec:
    return ProbeSpec(
        data=None if inputs.data is None else to_array(inputs.data, ("inputs", "data")),
        targets=None if inputs.targets is None else to_array(inputs.targets, ("inputs", "targets")),
        count=inputs.count,
        scale=inputs.scale,
        seed=inputs.seed,
    )


def safetensors_network(
    file: SafetensorsFile, prefixes: list[str], spec: SafetensorsNetwork, executor: Executor | None = None
) -> ServiceNetwork:
    """The layers ``P.weight`` (and ``P.bias``) for each prefix P, with the activations the request names, each
    tensor widened as tasks of ``executor`` when given.

    Errors about a layer point at the ``weights`` part and name the tensor.
    """
    where = ("request", "network")
    default = to_activation(spec.activation, (*where, "activation"))
    output = (
        None if spec.output_activation is None else to_activation(spec.output_activation, (*where, "output_activation"))
    )
    if spec.activations is not None and len(spec.activations) != len(prefixes):
        raise InvalidInputError(
            (*where, "activations"),
            f"{counted(len(spec.activations), 'activation')} for {counted(len(prefixes), 'layer')} {echo(prefixes)}",
        )
    layers = []
    for j, prefix in enumerate(prefixes):
        if spec.activations is not None:
            activation = to_activation(spec.activations[j], (*where, "activations", j))
        else:
            activation = output if output is not None and j == len(prefixes) - 1 else default
        bias = file.array(prefix + ".bias", executor) if prefix + ".bias" in file.entries else None
        layers.append(Layer(Dense(file.array(prefix + ".weight", executor)), bias, activation))
    try:
        return network_from_layers(layers, finite=True)
    except InvalidInputError as exc:
        layer, field = exc.location[2:4] if len(exc.location) >= 4 else (0, "weight")
        raise InvalidInputError(
            ("weights",), f"tensor {echo(prefixes[int(layer)] + '.' + str(field))}: {exc.message}"
        ) from None
