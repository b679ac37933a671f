"""PyTorch models as jacspec networks (torch is an optional extra, ``jacspec[torch]``; the CPU build is enough:
``pip install torch --index-url https://download.pytorch.org/whl/cpu``).

>>> import torch.nn as nn
>>> from jacspec.torch import network_from_module
>>> model = nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 10))
>>> network = network_from_module(model)
>>> [(layer.weight.shape, layer.activation) for layer in network.layers]
[([256, 784], 'tanh'), ([10, 256], 'linear')]

Convolutions need the spatial size of the input, recurrent networks the steps unrolled:

>>> conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
>>> [layer.type for layer in network_from_module(conv, input_size=(32, 32)).layers]
['conv2d', 'dense']
>>> network_from_module(nn.RNN(8, 64), steps=50).recurrent.steps
50

Then ``jacspec.Client().analyze(network)`` reports on it.

Any module that torch.fx traces maps to a ``network.graph`` given an example input (see :func:`graph_from_module`
for the op table): a ResNet, a transformer encoder, an LSTM, a GPT-2 block written with ``nn`` modules.

>>> encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2).eval()
>>> network = network_from_module(encoder, torch.zeros(2, 10, 16))
>>> network.graph.input_shape, len(network.graph.nodes)
([10, 16], 16)

Unlike the rest of the SDK this module needs torch to be imported: it defines :class:`Residual`, an ``nn.Module``.
``import jacspec`` never imports it.
"""

from __future__ import annotations

import base64
import inspect
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from jacspec._text import counted
from jacspec.models import Activation, ActivationName, Conv2dLayer, KernelTensor, Layer, Network, Recurrent, Tensor
from jacspec.models.tensor import B64_ABOVE

try:
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own spelling
    from torch import fx, nn
    from torch.fx.passes.shape_prop import ShapeProp
except ImportError as exc:  # pragma: no cover - the test suite has torch
    raise ImportError(
        "jacspec.torch needs PyTorch; its CPU build is enough: "
        "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    ) from exc

__all__ = ["Monitor", "MonitorEvent", "Residual", "graph_from_module", "network_from_module"]

Padding = Literal["zeros", "circular"]


class Residual(nn.Module):
    """A residual block that jacspec maps to one residual layer:

        forward(x) = x + h(A x + b)        or, with a projection P,        P x + h(A x + b),

    where ``A x + b`` is ``layer`` (an ``nn.Linear``, or an ``nn.Conv2d`` that keeps the spatial size: stride 1,
    padding 'same') and ``h`` is ``activation`` (the identity when None). The identity skip needs as many outputs
    as inputs (out_features = in_features, or out_channels = in_channels); otherwise give ``projection``, an
    ``nn.Linear(in, out, bias=False)`` for a linear layer or a 1×1 ``nn.Conv2d(c_in, c_out, 1, bias=False)`` for
    a convolution. Its layer Jacobian is ``S + diag(h'(z))·A`` with ``S`` the identity or ``P``.

    It is an ordinary module: use it inside an ``nn.Sequential`` and train it like any other.

    >>> block = Residual(nn.Linear(64, 64), nn.Tanh())
    >>> block(torch.zeros(2, 64)).shape
    torch.Size([2, 64])
    """

    layer: nn.Linear | nn.Conv2d
    activation: nn.Module
    projection: nn.Linear | nn.Conv2d | None

    def __init__(
        self,
        layer: nn.Linear | nn.Conv2d,
        activation: nn.Module | None = None,
        projection: nn.Linear | nn.Conv2d | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(layer, nn.Linear | nn.Conv2d):
            raise TypeError(f"Residual: layer must be an nn.Linear or nn.Conv2d; got {type(layer).__name__}")
        if projection is not None and not isinstance(projection, nn.Linear | nn.Conv2d):
            raise TypeError(
                f"Residual: projection must be an nn.Linear or a 1×1 nn.Conv2d; got {type(projection).__name__}"
            )
        self.layer = layer
        self.activation = nn.Identity() if activation is None else activation
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + activation(layer(x))``, or ``projection(x) + activation(layer(x))``."""
        skip = x if self.projection is None else self.projection(x)
        out: torch.Tensor = skip + self.activation(self.layer(x))
        return out


def network_from_module(
    module: nn.Module,
    example_input: Any = None,
    *,
    input_size: Sequence[int] | None = None,
    steps: int | None = None,
    b64: bool | None = None,
    batch_dim: int = 0,
    fold_batch_norm: bool = False,
) -> Network:
    """A network spec from a PyTorch module: with ``example_input``, any module torch.fx traces, as a
    ``network.graph`` (:func:`graph_from_module` says how each node maps; ``b64``, ``batch_dim`` and
    ``fold_batch_norm`` are its); without it, the chain form below (``layers`` or ``recurrent``).

    >>> model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 4)).eval()
    >>> network = network_from_module(model, torch.zeros(2, 8))
    >>> network.graph.input_shape, [node.op for node in network.graph.nodes]
    ([8], ['linear', 'layer_norm', 'activation', 'linear'])

    Parameters
    ----------
    module
        Either an ``nn.Sequential`` of layers, each optionally followed by one activation module, where a layer is

        - ``nn.Linear``: ``z = W a + b``, a dense :class:`~jacspec.models.Layer` (W is [out, in]);
        - ``nn.Conv2d`` with stride 1, dilation 1, groups 1, padding ``'same'`` (or, for odd kernels,
          ``padding=(kh//2, kw//2)``) and padding_mode ``'zeros'`` or ``'circular'``: the output keeps the
          input's size [H, W], a :class:`~jacspec.models.Conv2dLayer` on the activations [c, H, W] flattened
          row-major (for even kernels torch's 'same' pads (k−1)//2 above/left and the rest below/right, as the
          contract does);
        - :class:`Residual`: ``a ↦ S a + h(z)``, a layer with ``residual=True`` (and its ``projection``).

        ``nn.Flatten`` (start_dim=1, end_dim=−1) turns images into vectors and maps to nothing: its order,
        [c, H, W] row-major, is the contract's, so an ``nn.Linear`` after it sees the same numbers. ``nn.Dropout``
        is skipped (the identity in eval mode). A bare ``nn.Linear``, ``nn.Conv2d`` or ``Residual`` counts as a
        one-layer ``nn.Sequential``.

        Or an ``nn.RNN`` (alone, or the only module of an ``nn.Sequential``): one layer, one direction, tanh or
        ReLU, with or without bias, batch_first either way. It is the whole network,
        ``h_t = h(W h_{t−1} + U x_t + b)``, t = 1..T, from h_0 = 0, with W = weight_hh_l0, U = weight_ih_l0 and
        b = bias_ih_l0 + bias_hh_l0 (added in float64). The service's probes are then x_1 … x_T flattened,
        [count, T·n_in]: ``x.reshape(count, T, n_in)`` is the batch_first input.
    input_size
        (H, W), the spatial size of the input of the first ``nn.Conv2d``; every later one has the same, since
        each keeps its input's size. Required when there is a convolution, refused otherwise.
    steps
        T, the time steps to unroll an ``nn.RNN``; required for one, refused otherwise.
    b64
        Send tensors as base64 bytes (True), as JSON numbers (False), or by size (None: above 1024 elements).

    Supported activations: Identity, ReLU, LeakyReLU, Tanh, Sigmoid, Hardtanh, ELU, SELU, GELU (exact erf form),
    SiLU and Softplus (its linear tail above ``threshold`` is ignored: a difference below e^−threshold). Weights
    are copied as float32 or float64, as the module holds them (float16 and bfloat16 widened to float32, exactly).

    Raises
    ------
    ValueError
        For anything the contract cannot express, naming the module, its position and the offending attribute
        (e.g. ``module [2] (Conv2d): stride=(2, 2); ...``).
    """
    if example_input is not None:
        if input_size is not None or steps is not None:
            raise ValueError(
                "input_size= and steps= are for the chain form; the example input gives the graph's shapes"
            )
        graph = graph_from_module(module, example_input, b64=b64, batch_dim=batch_dim, fold_batch_norm=fold_batch_norm)
        return _graph_network(graph)
    _check_parameters(module)
    rnn, where = _lone_rnn(module)
    if rnn is not None:
        if input_size is not None:
            raise ValueError(f"{where}: input_size= is for convolutions; an nn.RNN takes steps= only")
        return Network(recurrent=_recurrent(rnn, steps, where, b64))
    if isinstance(module, nn.Linear | nn.Conv2d | Residual):
        module = nn.Sequential(module)
    if not isinstance(module, nn.Sequential):
        raise ValueError(
            "expected nn.Sequential, nn.Linear, nn.Conv2d, jacspec.torch.Residual or nn.RNN; "
            f"got {type(module).__name__}"
        )
    builder = _Builder(_size(input_size), b64)
    for position, child in enumerate(module):
        builder.add(child, f"module [{position}] ({type(child).__name__})")
    if steps is not None:
        raise ValueError("steps= is for an nn.RNN, and the module holds none")
    return builder.network()


def graph_from_module(
    module: nn.Module,
    example_input: Any,
    *,
    b64: bool | None = None,
    batch_dim: int = 0,
    fold_batch_norm: bool = False,
) -> GraphSpec:
    """The ``network.graph`` of any module that torch.fx traces, mapped op by op (the server never runs user
    code: the module is traced and run here, once, on ``example_input``).

    >>> block = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    >>> graph = graph_from_module(block, torch.zeros(2, 3, 32, 32))
    >>> graph["input_shape"], [node["op"] for node in graph["nodes"]]
    ([3, 32, 32], ['conv2d', 'batch_norm', 'activation'])

    The module is traced with ``torch.fx.symbolic_trace`` semantics, every ``torch.nn`` module but the containers
    a leaf (so nn.TransformerEncoderLayer arrives whole, not through its fast path), every forward argument after
    the first fixed to its default; ShapeProp on ``example_input`` gives every node's shape. The probes are axis
    ``batch_dim`` of the input (0: ``(N, …)``), and the contract's shapes are one probe's; ``inputs.data`` rows are
    one probe's input flattened row-major (``x.movedim(batch_dim, 0).reshape(N, -1)``). Only the nodes the
    output depends on are mapped; nodes that do not depend on the input (sizes, masks) are constants of the trace.

    ==========================================================  =====================================================
    torch                                                        contract node
    ==========================================================  =====================================================
    nn.Linear                                                    ``linear`` (weight, bias)
    nn.Conv1d, nn.Conv2d                                         ``conv1d``/``conv2d`` (stride, padding, dilation,
                                                                 groups, padding_mode)
    activation modules and functions (ReLU, LeakyReLU, Tanh,     ``activation`` (ReLU6 is hard_tanh(0, 6); GELU only
    Sigmoid, Hardtanh, ReLU6, ELU, SELU, GELU, SiLU, Softplus)   in its exact erf form)
    ``+``, torch.add (alpha), ``-``, torch.sub                   ``add`` (a − b = a + mul(b, −1))
    ``*``/``/`` by a number, torch.mul/div, neg                  ``mul`` (``constant``)
    torch.cat                                                    ``concat`` (dim of one probe)
    nn.Flatten, torch.flatten                                    ``flatten`` (dims of one probe)
    view, reshape, (un)squeeze, unflatten, nn.Unflatten          ``reshape`` (one probe's shape; probes stay on axis 0)
    transpose, swapaxes, permute                                 ``transpose``/``permute``, or nothing where only the
                                                                 batch axis moves
    nn.BatchNorm1d/2d (eval)                                     ``batch_norm`` (running stats), or folded into the
                                                                 conv/linear before it with ``fold_batch_norm``
    nn.LayerNorm, nn.RMSNorm, nn.GroupNorm                       ``layer_norm``, ``rms_norm``, ``group_norm``
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d             ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``
    nn.RNN, nn.LSTM, nn.GRU (either batch_first), item [0]       ``rnn``, ``lstm``, ``gru`` (from h_0 = 0)
    nn.MultiheadAttention(x, x, x), item [0]                     ``attention`` (causal for a causal attn_mask)
    nn.TransformerEncoderLayer, nn.TransformerEncoder            attention, layer_norm, linear, activation and add
                                                                 nodes (pre-LN with norm_first, else post-LN)
    nn.Dropout (eval), nn.Identity, contiguous, clone            nothing: the identity
    ==========================================================  =====================================================

    ``fold_batch_norm`` folds an eval-mode BatchNorm into the convolution (or the linear layer on vectors) whose
    output only it reads: W' = s·W, b' = s·(b − μ) + β with s = γ/√(σ² + ε), in float64 — the same function, one
    op fewer, but the report's gradient norms are then those of the folded weights. Off by default.

    Returns the graph in the contract's JSON shape (``input_shape``, ``nodes``, ``output``);
    ``network_from_module(module, example_input)`` is it as a validated :class:`~jacspec.models.Network`.

    Raises
    ------
    ValueError
        For what cannot be mapped, naming the node, its op and target, the module path and what to do; for a
        module in training mode (call ``model.eval()``: the analysis is of the eval-mode function); for a parameter
        holding NaN or infinities, naming it.
    """
    import numpy as np

    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(example_input)
    if not isinstance(example_input, torch.Tensor):
        raise ValueError(f"example_input must be one torch tensor (or numpy array); got {type(example_input).__name__}")
    training = [name or type(module).__name__ for name, m in module.named_modules() if m.training]
    if training:
        raise ValueError(
            f"module {training[0]!r} is in training mode; call model.eval() first: jacspec maps the eval-mode "
            "function (dropout the identity, batch norm by its running statistics)"
        )
    return _GraphMapper(module, example_input.detach(), batch_dim, b64, fold_batch_norm).graph()


def _check_parameters(module: nn.Module) -> None:
    """ValueError naming the first parameter or buffer of ``module`` that holds NaN or infinities."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point():
            _check_finite(tensor, name, f"in {type(module).__name__}")


class _Builder:
    """The layers of an ``nn.Sequential``, walked in order, and the shape of the activations between them: an
    image [c, H, W] after a convolution, a vector of n after an nn.Linear or nn.Flatten, unknown at the start."""

    def __init__(self, input_size: tuple[int, int] | None, b64: bool | None) -> None:
        self.input_size = input_size
        self.b64 = b64
        self.layers: list[Layer | Conv2dLayer] = []
        self.activated = True  # an activation module may not come first, nor twice
        self.image: tuple[int, int, int] | None = None  # [c, H, W] of images
        self.flat = False  # after an nn.Linear or nn.Flatten: vectors
        self.width: int | None = None  # their length, where known

    def add(self, child: nn.Module, where: str) -> None:
        if isinstance(child, Residual):
            self._residual(child, where)
        elif isinstance(child, nn.Linear):
            self._linear(child, where)
            self.layers.append(Layer(weight=self._matrix(child.weight), bias=self._bias(child), activation="linear"))
            self.activated = False
        elif isinstance(child, nn.Conv2d):
            size, padding = self._conv(child, where)
            self.layers.append(self._conv_layer(child, size, padding))
            self.activated = False
        elif isinstance(child, nn.Flatten):
            self._flatten(child, where)
        elif isinstance(child, nn.Dropout):
            return
        elif isinstance(child, nn.RNNBase):
            raise ValueError(f"{where}: an nn.RNN is a whole network; give it alone, not inside an nn.Sequential")
        else:
            activation = _activation(child, where)
            if not self.layers or self.activated:
                raise ValueError(f"{where}: an activation must follow an nn.Linear or nn.Conv2d, once")
            self.layers[-1] = self.layers[-1].model_copy(update={"activation": activation})
            self.activated = True

    def network(self) -> Network:
        if not self.layers:
            raise ValueError("the module holds no nn.Linear, nn.Conv2d or Residual layer")
        if self.input_size is not None and not any(isinstance(layer, Conv2dLayer) for layer in self.layers):
            raise ValueError("input_size= is for convolutions, and the module holds no nn.Conv2d")
        return Network(layers=self.layers)

    def _linear(self, linear: nn.Linear, where: str) -> None:
        """Check that ``linear`` can follow the layers so far, and record its output width."""
        if self.image is not None:
            raise ValueError(
                f"{where}: an nn.Linear on images [c, H, W] acts on their last axis only; put an nn.Flatten before it"
            )
        if self.width is not None and linear.in_features != self.width:
            raise ValueError(f"{where}: in_features={linear.in_features}, but the layers before give {self.width}")
        self.flat, self.width = True, linear.out_features

    def _conv(self, conv: nn.Conv2d, where: str) -> tuple[tuple[int, int], Padding]:
        """Check that ``conv`` is a stride-1 'same' convolution that can follow the layers so far; its input
        size [H, W] and padding mode."""
        padding = _conv_padding(conv, where)
        if self.flat:
            raise ValueError(
                f"{where}: an nn.Conv2d after flat activations (an nn.Linear or nn.Flatten) needs an nn.Unflatten, "
                "which jacspec does not map"
            )
        if self.image is None:
            if self.input_size is None:
                raise ValueError(f"{where}: input_size=(H, W), the input's spatial size, is needed for an nn.Conv2d")
            self.image = (conv.in_channels, *self.input_size)
        channels, height, width = self.image
        if conv.in_channels != channels:
            raise ValueError(f"{where}: in_channels={conv.in_channels}, but the layers before give {channels}")
        kh, kw = conv.kernel_size
        if padding == "circular" and (kh // 2 > height or kw // 2 > width):
            raise ValueError(
                f"{where}: kernel_size={conv.kernel_size} with padding_mode='circular' pads the input_size "
                f"{(height, width)} by {(kh // 2, kw // 2)} on its wider sides, wrapping around more than once, "
                "which torch refuses: kh//2 ≤ H and kw//2 ≤ W"
            )
        self.image = (conv.out_channels, height, width)
        return (height, width), padding

    def _conv_layer(self, conv: nn.Conv2d, size: tuple[int, int], padding: Padding) -> Conv2dLayer:
        return Conv2dLayer(
            type="conv2d",
            kernel=KernelTensor.from_numpy(_numpy(conv.weight), b64=self.b64),
            bias=self._bias(conv),
            input_size=list(size),
            padding=padding,
            activation="linear",
        )

    def _flatten(self, flatten: nn.Flatten, where: str) -> None:
        """nn.Flatten(1, −1): images become vectors of c·H·W (torch's order is the contract's); vectors stay."""
        if flatten.start_dim != 1 or flatten.end_dim not in (-1, 3):
            raise ValueError(
                f"{where}: start_dim={flatten.start_dim}, end_dim={flatten.end_dim}; jacspec maps nn.Flatten() "
                "(start_dim=1, end_dim=-1) only"
            )
        if self.image is not None:
            channels, height, width = self.image
            self.width = channels * height * width
            self.image = None
        self.flat = True

    def _residual(self, block: Residual, where: str) -> None:
        """A Residual block: its layer, then its activation, with the identity skip or the projection P."""
        layer, projection = block.layer, block.projection
        activation = _activation(block.activation, f"{where}.activation")
        matrix: Any = None
        if isinstance(layer, nn.Linear):
            self._linear(layer, f"{where}.layer")
            if projection is not None:
                if not isinstance(projection, nn.Linear):
                    raise ValueError(f"{where}.projection: an nn.Linear layer needs an nn.Linear projection")
                if (projection.in_features, projection.out_features) != (layer.in_features, layer.out_features):
                    raise ValueError(
                        f"{where}.projection: in_features, out_features = {projection.in_features}, "
                        f"{projection.out_features}; the layer maps {layer.in_features} to {layer.out_features}"
                    )
                matrix = _numpy(projection.weight)
            spec: Layer | Conv2dLayer = Layer(weight=self._matrix(layer.weight), bias=self._bias(layer))
            inputs, outputs, unit = layer.in_features, layer.out_features, "in_features, out_features"
        else:
            size, padding = self._conv(layer, f"{where}.layer")
            if projection is not None:
                matrix = _conv_projection(projection, layer, f"{where}.projection")
            spec = self._conv_layer(layer, size, padding)
            inputs, outputs, unit = layer.in_channels, layer.out_channels, "in_channels, out_channels"
        if projection is not None and projection.bias is not None:
            raise ValueError(f"{where}.projection: bias must be None (bias=False): the skip is P·a, with no offset")
        if projection is None and inputs != outputs:
            raise ValueError(
                f"{where}.layer: {unit} = {inputs}, {outputs}; an identity skip needs them equal: give a projection"
            )
        projection_tensor = None if matrix is None else Tensor.from_numpy(matrix, b64=self.b64)
        update = {"activation": activation, "residual": True, "projection": projection_tensor}
        self.layers.append(spec.model_copy(update=update))
        self.activated = True  # a_j = S a_{j−1} + h(z_j): nothing may act on the sum

    def _matrix(self, weight: torch.Tensor) -> Tensor:
        return Tensor.from_numpy(_numpy(weight), b64=self.b64)

    def _bias(self, layer: nn.Linear | nn.Conv2d) -> Tensor | None:
        return None if layer.bias is None else self._matrix(layer.bias)


def _size(input_size: Sequence[int] | None) -> tuple[int, int] | None:
    """``input_size`` checked to be (H, W) of positive integers."""
    if input_size is None:
        return None
    values = tuple(input_size)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"input_size must be (H, W), two positive integers; got {input_size!r}")
    return values[0], values[1]


def _conv_padding(conv: nn.Conv2d, where: str) -> Padding:
    """The contract's padding mode of a stride-1, 'same'-size ``conv``; ValueError naming the attribute if it is
    not one: the output size H + 2p − k + 1 equals H only for p = (k − 1)/2, so odd kernels only take an integer
    padding, and even kernels need torch's asymmetric padding='same'."""
    stride, dilation, groups = tuple(conv.stride), tuple(conv.dilation), conv.groups
    if stride != (1, 1):
        raise ValueError(f"{where}: stride={stride}; jacspec maps stride-1 convolutions only")
    if dilation != (1, 1):
        raise ValueError(f"{where}: dilation={dilation}; jacspec maps dilation 1 only")
    if groups != 1:
        raise ValueError(f"{where}: groups={groups}; jacspec maps groups=1 only")
    kh, kw = conv.kernel_size
    padding = conv.padding
    same = padding == "same" or (
        not isinstance(padding, str) and kh % 2 == 1 and kw % 2 == 1 and tuple(padding) == (kh // 2, kw // 2)
    )
    if not same and not (padding == "valid" and (kh, kw) == (1, 1)):
        odd = f" or padding={(kh // 2, kw // 2)}" if kh % 2 == 1 and kw % 2 == 1 else " (an even kernel)"
        raise ValueError(
            f"{where}: padding={padding!r} with kernel_size={conv.kernel_size}; jacspec maps convolutions that keep "
            f"the input's size: padding='same'{odd}"
        )
    if (kh, kw) == (1, 1):
        return "zeros"  # nothing is padded: padding_mode does not matter
    mode = conv.padding_mode
    if mode not in ("zeros", "circular"):
        raise ValueError(f"{where}: padding_mode={mode!r}; jacspec maps 'zeros' and 'circular' only")
    return "zeros" if mode == "zeros" else "circular"


def _conv_projection(projection: nn.Module, layer: nn.Conv2d, where: str) -> Any:
    """The [c_out, c_in] matrix of a 1×1 convolution ``projection`` that matches ``layer``'s channels."""
    if not isinstance(projection, nn.Conv2d):
        raise ValueError(f"{where}: an nn.Conv2d layer needs a 1×1 nn.Conv2d projection")
    if tuple(projection.kernel_size) != (1, 1):
        raise ValueError(f"{where}: kernel_size={projection.kernel_size}; a projection is a 1×1 convolution")
    _conv_padding(projection, where)
    if (projection.in_channels, projection.out_channels) != (layer.in_channels, layer.out_channels):
        raise ValueError(
            f"{where}: in_channels, out_channels = {projection.in_channels}, {projection.out_channels}; the layer "
            f"maps {counted(layer.in_channels, 'channel')} to {layer.out_channels}"
        )
    return _numpy(projection.weight)[:, :, 0, 0]


def _lone_rnn(module: nn.Module) -> tuple[nn.RNN | None, str]:
    """The nn.RNN that is the whole network (the module itself, or the only module of an nn.Sequential), and
    where it is; (None, "") for other modules. ValueError for LSTM and GRU."""
    where = f"module ({type(module).__name__})"
    candidate = module
    if isinstance(module, nn.Sequential) and len(module) == 1:
        candidate = module[0]
        where = f"module [0] ({type(candidate).__name__})"
    if isinstance(candidate, nn.RNN):
        return candidate, where
    if isinstance(candidate, nn.RNNBase):
        raise ValueError(
            f"{where}: jacspec maps nn.RNN only, h_t = h(W h_(t-1) + U x_t + b); the gates of {candidate.mode} are "
            "not in the contract"
        )
    return None, ""


def _recurrent(rnn: nn.RNN, steps: int | None, where: str, b64: bool | None) -> Recurrent:
    """The contract's Recurrent of a single-layer, unidirectional nn.RNN unrolled over ``steps``."""
    if rnn.num_layers != 1:
        raise ValueError(f"{where}: num_layers={rnn.num_layers}; jacspec maps a single layer (num_layers=1)")
    if rnn.bidirectional:
        raise ValueError(f"{where}: bidirectional=True; jacspec maps one direction only")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"{where}: proj_size={rnn.proj_size}; jacspec maps no projection")
    if steps is None:
        raise ValueError(f"{where}: steps=T, the time steps to unroll, is needed for an nn.RNN")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{where}: steps must be a positive integer; got {steps!r}")
    activation: ActivationName = "tanh" if rnn.nonlinearity == "tanh" else "relu"
    bias = None
    if rnn.bias:
        total = rnn.get_parameter("bias_ih_l0").detach().double() + rnn.get_parameter("bias_hh_l0").detach().double()
        bias = Tensor.from_numpy(_numpy(total), b64=b64)
    return Recurrent(
        steps=steps,
        activation=activation,
        weight=Tensor.from_numpy(_numpy(rnn.get_parameter("weight_hh_l0")), b64=b64),
        input_weight=Tensor.from_numpy(_numpy(rnn.get_parameter("weight_ih_l0")), b64=b64),
        bias=bias,
    )


def _numpy(parameter: torch.Tensor) -> Any:
    """The parameter as a numpy array; float16 and bfloat16 (which numpy lacks) are widened to float32, exactly."""
    tensor = parameter.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.numpy()


def _activation(child: nn.Module, where: str) -> Activation:
    """The activation spec of one activation module, with its parameters."""
    plain: dict[type, ActivationName] = {
        nn.Identity: "linear",
        nn.ReLU: "relu",
        nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid",
        nn.SELU: "selu",
        nn.SiLU: "silu",
    }
    if type(child) in plain:
        return plain[type(child)]
    spec: dict[str, Any]
    if type(child) is nn.LeakyReLU:
        spec = {"name": "leaky_relu", "negative_slope": child.negative_slope}
    elif type(child) is nn.Hardtanh:
        spec = {"name": "hard_tanh", "min_val": child.min_val, "max_val": child.max_val}
    elif type(child) is nn.ELU:
        spec = {"name": "elu", "alpha": child.alpha}
    elif type(child) is nn.GELU and child.approximate == "none":
        spec = {"name": "gelu"}
    elif type(child) is nn.Softplus:
        spec = {"name": "softplus", "beta": child.beta}
    else:
        raise ValueError(f"{where}: jacspec cannot map this module (see jacspec.torch.network_from_module)")
    try:
        return _ACTIVATION.validate_python(spec)
    except ValidationError as exc:
        raise ValueError(f"{where}: {exc.errors()[0]['msg']}") from None


_ACTIVATION: TypeAdapter[Activation] = TypeAdapter(Activation)


# ---------------------------------------------------------------------------------------------------------------------
# Any traceable module: torch.fx, mapped node by node onto the contract's `network.graph`.

GraphSpec = dict[str, Any]
"""A ``network.graph`` in the contract's JSON shape."""

_MAX_ID = 64
_ROOT = "jacspec_traced_module"
"""The name a torch.nn module traced alone is held under (its nodes' ids and parameters do not carry it)."""
_NOT_ID = re.compile(r"[^A-Za-z0-9_.:\-]")
_TODO = (
    "rewrite that part with modules and functions jacspec maps (see jacspec.torch.network_from_module), "
    "or map a submodule that holds none"
)


def _graph_network(graph: GraphSpec) -> Network:
    """The network of a graph: the one place where the JSON shape becomes the contract's model; a node the
    contract refuses is named (ValueError)."""
    try:
        return Network.model_validate({"graph": graph})
    except ValidationError as exc:
        error = exc.errors()[0]
        location = list(error["loc"])
        where = "network.graph." + ".".join(str(part) for part in location[1:] if not str(part).endswith("_node"))
        if len(location) >= 3 and location[1] == "nodes" and isinstance(location[2], int):
            node = graph["nodes"][location[2]]
            where = f"node {node['id']!r} (op {node['op']}) at {where}"
        raise ValueError(f"{where}: {error['msg']} (this jacspec's contract cannot hold it)") from None


@dataclass(frozen=True)
class _Value:
    """A tensor of the traced model as the graph holds it: the id of the node that makes it (or ``input``), its
    full shape (the probes included) and the axis of the probes in it."""

    id: str
    shape: tuple[int, ...]
    batch: int

    @property
    def probe(self) -> tuple[int, ...]:
        """One probe's shape: the full shape without the batch axis."""
        return self.shape[: self.batch] + self.shape[self.batch + 1 :]

    def moved(self, shape: tuple[int, ...], batch: int) -> _Value:
        """The same tensor per probe, laid out with ``shape`` and the probes on axis ``batch``."""
        return _Value(self.id, shape, batch)


@dataclass(frozen=True)
class _Tuple:
    """A tuple a module returns (nn.LSTM's (output, (h_n, c_n)), nn.MultiheadAttention's (output, weights)):
    its items that the graph maps, None for the others."""

    items: tuple[_Value | None, ...]
    what: str


class _Tracer(fx.Tracer):
    """torch.fx's tracer with every torch.nn module a leaf except the containers (its default), so that modules
    arrive whole: nn.TransformerEncoderLayer's fast path is never traced into."""

    proxy_buffer_attributes = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m.__module__.startswith("torch.nn") and not isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict)


class _Recorder(ShapeProp):
    """ShapeProp (each node's ``tensor_meta``), also keeping every node's value: the constants a node takes
    (masks, sizes) are read from it."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n.name] = result
        return result


class _GraphMapper:
    """Traces a module with torch.fx, runs it on the example input (ShapeProp) and maps every node that the
    output depends on, in order, onto contract nodes."""

    def __init__(self, module: nn.Module, example: torch.Tensor, batch_dim: int, b64: bool | None, fold: bool) -> None:
        self.module, self.example, self.b64, self.fold = module, example, b64, fold
        if not -example.dim() <= batch_dim < example.dim():
            raise ValueError(f"batch_dim={batch_dim}: the example input has shape {list(example.shape)}")
        self.batch_dim = batch_dim % example.dim()
        self.nodes: list[dict[str, Any]] = []
        self.ids: set[str] = {"input"}
        self.env: dict[str, _Value | _Tuple] = {}
        self.values: dict[str, Any] = {}
        self.gm: fx.GraphModule | None = None

    # -- the trace ------------------------------------------------------------------------------------------------

    def graph(self) -> GraphSpec:
        """The contract's ``network.graph`` of the module."""
        gm = self._trace()
        recorder = _Recorder(gm)
        with torch.no_grad():
            recorder.propagate(self.example)
        self.values = recorder.values
        placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
        data = _data_nodes(gm.graph, placeholders[0])
        live = _live_nodes(gm.graph)
        output: _Value | None = None
        for node in gm.graph.nodes:
            if node.op == "output":
                output = self._output(node)
            elif node in data and node in live:
                self.env[node.name] = self._checked(node, self._map(node))
        source = self.env[placeholders[0].name]
        assert output is not None
        assert isinstance(source, _Value)
        return {"input_shape": list(source.probe), "nodes": self._serialised(), "output": output.id}

    def _trace(self) -> fx.GraphModule:
        """The module traced, every forward argument after the first fixed to its default."""
        signature = inspect.signature(self.module.forward)
        parameters = list(signature.parameters.values())
        if not parameters:
            raise ValueError(f"{type(self.module).__name__}.forward takes no input")
        concrete: dict[str, Any] = {}
        for parameter in parameters[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.default is parameter.empty:
                raise ValueError(
                    f"{type(self.module).__name__}.forward takes {parameter.name!r} without a default; jacspec maps a "
                    "network of one input: wrap the module in one whose forward(x) supplies the rest"
                )
            concrete[parameter.name] = parameter.default
        tracer = _Tracer()
        if tracer.is_leaf_module(self.module, ""):  # a torch.nn module alone: one call_module node of it
            holder = nn.Module()
            holder.add_module(_ROOT, self.module)
            graph = fx.Graph()
            graph.output(graph.call_module(_ROOT, (graph.placeholder("x"),)))
            self.gm = fx.GraphModule(holder, graph)
            return self.gm
        try:
            graph = tracer.trace(self.module, concrete_args=concrete or None)
        except Exception as exc:
            raise ValueError(
                f"torch.fx cannot trace {type(self.module).__name__}: {type(exc).__name__}: {exc}. Data-dependent "
                "control flow (an `if` on a tensor's values) does not trace: move it out of forward, or map the "
                "submodules that trace"
            ) from exc
        self.gm = fx.GraphModule(tracer.root, graph)
        return self.gm

    def _checked(self, node: fx.Node, value: _Value | _Tuple) -> _Value | _Tuple:
        """``value``, its shape checked against what ShapeProp found for ``node`` (a mapping error shows here)."""
        meta = node.meta.get("tensor_meta")
        if isinstance(value, _Value) and meta is not None and hasattr(meta, "shape"):
            if tuple(meta.shape) != value.shape:
                raise AssertionError(f"{self._where(node)}: mapped shape {value.shape} is not {tuple(meta.shape)}")
            if value.shape[value.batch] != self.example.shape[self.batch_dim]:
                raise ValueError(
                    f"{self._where(node)}: its output {list(value.shape)} has lost the batch axis; jacspec maps "
                    "networks that treat each probe alone"
                )
        return value

    def _output(self, node: fx.Node) -> _Value:
        result = node.args[0]
        value = self.env.get(result.name) if isinstance(result, fx.Node) else None
        if not isinstance(value, _Value):
            raise ValueError(
                f"the module's output is {type(self.values.get(getattr(result, 'name', ''), result)).__name__}, "
                "not one tensor that depends on the input; jacspec maps networks of one tensor output: return it alone"
            )
        if value.id == "input":
            raise ValueError("the module's output is its input: there is nothing to analyse")
        return value

    # -- dispatch -------------------------------------------------------------------------------------------------

    def _map(self, node: fx.Node) -> _Value | _Tuple:
        if node.op == "placeholder":
            shape = tuple(self.example.shape)
            return _Value("input", shape, self.batch_dim)
        args = fx.node.map_arg(node.args, self._lookup)
        kwargs = fx.node.map_arg(node.kwargs, self._lookup)
        if node.op == "call_module":
            assert isinstance(node.target, str)
            assert self.gm is not None
            path = "" if node.target == _ROOT else node.target
            return self._module(node, self.gm.get_submodule(node.target), path, args, kwargs)
        if node.op == "call_method":
            assert isinstance(node.target, str)
            handler = _METHODS.get(node.target)
        else:
            handler = _FUNCTIONS.get(node.target)
        if handler is None:
            raise ValueError(f"{self._where(node)}: {_target_name(node)} is not an op of the contract; {_TODO}")
        return handler(self, node, args, kwargs)

    def _lookup(self, node: fx.Node) -> Any:
        """A node's argument: the mapped tensor where it depends on the input, else its value (a constant)."""
        return self.env[node.name] if node.name in self.env else self.values[node.name]

    def _where(self, node: fx.Node) -> str:
        """The node, its op and target and the module it sits in, for messages."""
        stack = node.meta.get("nn_module_stack") or {}
        path = node.target if node.op == "call_module" else next(reversed(stack.values()), ("",))[0] if stack else ""
        path = "" if path == _ROOT else path
        module = f"module {path!r}" if path else f"the top-level {type(self.module).__name__}"
        return f"node {node.name!r} ({node.op} {_target_name(node)}, in {module})"

    def _module(self, node: fx.Node, module: nn.Module, path: str, args: Any, kwargs: Any) -> _Value | _Tuple:
        where = self._where(node)
        if isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d | nn.AlphaDropout | nn.Identity):
            return self._tensor(args[0], where)
        x = self._tensor(args[0], where)
        if (len(args) > 1 or kwargs) and not isinstance(module, _MULTI_ARGUMENT):
            raise ValueError(f"{where}: takes {len(args) + len(kwargs)} arguments; jacspec maps it on one input")
        if isinstance(module, nn.Linear):
            return self._linear(path, module, x, where)
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            return self._conv(path, module, x, where)
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            return self._batch_norm(node, path, module, x, where)
        if isinstance(module, nn.LayerNorm | nn.RMSNorm):
            return self._norm(path, module, x, where)
        if isinstance(module, nn.GroupNorm):
            return self._group_norm(path, module, x, where)
        if isinstance(module, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
            return self._pool(node, path, module, x, where)
        if isinstance(module, nn.RNNBase):
            return self._recurrent(node, path, module, args, kwargs, where)
        if isinstance(module, nn.MultiheadAttention):
            return self._multihead(path, module, args, kwargs, where)
        if isinstance(module, nn.TransformerEncoderLayer):
            bound = _bind(module.forward, args, kwargs)
            return self._encoder_layer(path, module, x, bound, where)
        if isinstance(module, nn.TransformerEncoder):
            return self._encoder(path, module, x, _bind(module.forward, args, kwargs), where)
        if isinstance(module, nn.Flatten):
            return self._flatten(path, x, module.start_dim, module.end_dim, where)
        if isinstance(module, nn.Unflatten):
            return self._reshape(node, path, x, where)
        if isinstance(module, nn.ReLU6):
            return self._act(path, {"name": "hard_tanh", "min_val": 0.0, "max_val": 6.0}, x, where)
        if type(module) is nn.GELU and module.approximate != "none":
            raise ValueError(
                f"{where}: GELU(approximate={module.approximate!r}); the contract's gelu is the exact erf form: "
                "use nn.GELU() (the two differ by < 1e-3)"
            )
        try:
            activation = _activation(module, where)
        except ValueError:
            raise ValueError(f"{where}: {type(module).__name__} is not an op of the contract; {_TODO}") from None
        return self._act(path, _ACTIVATION.dump_python(activation, mode="json"), x, where)

    def _tensor(self, value: Any, where: str) -> _Value:
        """``value`` as a tensor of the graph; ValueError for constants and tuples."""
        if isinstance(value, _Value):
            return value
        if isinstance(value, _Tuple):
            raise ValueError(f"{where}: takes the whole tuple that {value.what} returns; index it: output [0]")
        raise ValueError(
            f"{where}: acts on a {type(value).__name__} that does not depend on the input (a constant), which the "
            "contract cannot hold; make it a parameter of a mapped module or leave it out"
        )

    # -- emitting contract nodes ----------------------------------------------------------------------------------

    def _id(self, name: str) -> str:
        """A fresh node id from ``name``: the contract's characters, at most 64 of them, ``:1``, ``:2`` … on
        repeats (a module called twice)."""
        base = _NOT_ID.sub("_", name or type(self.module).__name__)[-_MAX_ID:]
        candidate, count = base, 0
        while candidate in self.ids:
            count += 1
            suffix = f":{count}"
            candidate = base[: _MAX_ID - len(suffix)] + suffix
        self.ids.add(candidate)
        return candidate

    def _emit(
        self,
        name: str,
        op: str,
        inputs: Sequence[_Value],
        full: tuple[int, ...],
        batch: int,
        params: dict[str, torch.Tensor] | None = None,
        **fields: Any,
    ) -> _Value:
        """Append a contract node ``op`` named after ``name`` on ``inputs``; the tensor it makes, of shape ``full``
        (the probes on axis ``batch``)."""
        spec: dict[str, Any] = {"id": self._id(name), "op": op, "inputs": [value.id for value in inputs], **fields}
        if params:
            spec["params"] = params
        self.nodes.append(spec)
        return _Value(spec["id"], full, batch)

    def _params(self, path: str, module: nn.Module, names: Sequence[str], where: str) -> dict[str, torch.Tensor]:
        """The module's tensors ``names`` (those it has), each checked finite (ValueError naming it)."""
        params: dict[str, torch.Tensor] = {}
        for name in names:
            tensor = _attribute(module, name)
            if tensor is None:
                continue
            _check_finite(tensor, _join(path, name), where)
            params[name] = tensor.detach()
        return params

    def _serialised(self) -> list[dict[str, Any]]:
        """The nodes with their tensors in the contract's form; ``inputs`` left out where it is the default (the
        previous node, or ``input`` for the first)."""
        previous = "input"
        nodes = []
        for spec in self.nodes:
            node = dict(spec)
            if node["inputs"] == [previous]:
                del node["inputs"]
            if "params" in node:
                node["params"] = {name: _tensor_json(t, self.b64) for name, t in node["params"].items()}
            nodes.append(node)
            previous = spec["id"]
        return nodes

    # -- ops of modules -------------------------------------------------------------------------------------------

    def _linear(self, path: str, module: nn.Linear, x: _Value, where: str) -> _Value:
        """y = x·Wᵀ + b on the last axis."""
        if x.batch == len(x.shape) - 1:
            raise ValueError(f"{where}: acts on the batch axis (the last of {list(x.shape)})")
        params = self._params(path, module, ("weight", "bias"), where)
        return self._emit(path, "linear", [x], (*x.shape[:-1], module.out_features), x.batch, params)

    def _conv(self, path: str, module: nn.Conv1d | nn.Conv2d, x: _Value, where: str) -> _Value:
        """torch's convolution with its stride, padding, dilation, groups and padding mode."""
        dims = 1 if isinstance(module, nn.Conv1d) else 2
        self._batch_first(x, dims + 2, f"(N, C, {'L' if dims == 1 else 'H, W'})", where)
        padding = module.padding if isinstance(module.padding, str) else list(module.padding)
        shape = _conv_shape(x.shape, module)
        return self._emit(
            path,
            f"conv{dims}d",
            [x],
            shape,
            0,
            self._params(path, module, ("weight", "bias"), where),
            stride=list(module.stride),
            padding=padding,
            dilation=list(module.dilation),
            groups=module.groups,
            padding_mode=module.padding_mode,
        )

    def _batch_first(self, x: _Value, ndim: int, layout: str, where: str) -> None:
        """ValueError unless ``x`` has ``ndim`` axes, the probes on the first."""
        if len(x.shape) != ndim or x.batch != 0:
            raise ValueError(
                f"{where}: takes {list(x.shape)} with the probes on axis {x.batch}; jacspec maps it on batches "
                f"{layout}, the probes on axis 0"
            )

    def _batch_norm(
        self, node: fx.Node, path: str, module: nn.BatchNorm1d | nn.BatchNorm2d, x: _Value, where: str
    ) -> _Value:
        """Inference batch norm, y = (x − μ)·γ/√(σ² + ε) + β per channel (axis 1), from the running statistics;
        folded into the convolution or linear layer before it when asked and exact to fold."""
        if module.running_mean is None or module.running_var is None:
            raise ValueError(
                f"{where}: track_running_stats=False normalises by each batch's own statistics, which couple the "
                "probes; jacspec maps inference batch norm: use track_running_stats=True"
            )
        if x.batch != 0 or len(x.shape) not in ((2, 3) if isinstance(module, nn.BatchNorm1d) else (4,)):
            raise ValueError(f"{where}: takes {list(x.shape)} with the probes on axis {x.batch}; needs them on axis 0")
        params = self._params(path, module, ("weight", "bias", "running_mean", "running_var"), where)
        producer = self.nodes[-1] if self.nodes and self.nodes[-1]["id"] == x.id else None
        source = node.args[0]
        foldable = producer is not None and (
            producer["op"] in ("conv1d", "conv2d") or (producer["op"] == "linear" and len(x.probe) == 1)
        )
        if self.fold and foldable and isinstance(source, fx.Node) and len(source.users) == 1:
            assert producer is not None
            _fold(producer, params, module.eps)
            return x
        return self._emit(path, "batch_norm", [x], x.shape, 0, params, eps=module.eps)

    def _norm(self, path: str, module: nn.LayerNorm | nn.RMSNorm, x: _Value, where: str) -> _Value:
        """LayerNorm γ·(x − mean)/√(var + ε) + β, or RMSNorm γ·x/√(mean(x²) + ε), over the last axes."""
        normalized = list(module.normalized_shape)
        if x.batch >= len(x.shape) - len(normalized):
            raise ValueError(f"{where}: normalises over the batch axis of {list(x.shape)}")
        if isinstance(module, nn.RMSNorm):
            params = self._params(path, module, ("weight",), where)
            return self._emit(
                path, "rms_norm", [x], x.shape, x.batch, params, normalized_shape=normalized, eps=module.eps
            )
        params = self._params(path, module, ("weight", "bias"), where)
        if "weight" in params and "bias" not in params:
            params["bias"] = torch.zeros_like(params["weight"])  # LayerNorm(bias=False): β = 0, exactly
        return self._emit(
            path, "layer_norm", [x], x.shape, x.batch, params, normalized_shape=normalized, eps=module.eps
        )

    def _group_norm(self, path: str, module: nn.GroupNorm, x: _Value, where: str) -> _Value:
        """GroupNorm over the channels (axis 1) in ``num_groups`` groups."""
        if x.batch != 0 or len(x.shape) < 2:
            raise ValueError(f"{where}: takes {list(x.shape)} with the probes on axis {x.batch}; needs them on axis 0")
        params = self._params(path, module, ("weight", "bias"), where)
        return self._emit(path, "group_norm", [x], x.shape, 0, params, num_groups=module.num_groups, eps=module.eps)

    def _pool(
        self,
        node: fx.Node,
        path: str,
        module: nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d,
        x: _Value,
        where: str,
    ) -> _Value:
        """max_pool2d, avg_pool2d and adaptive_avg_pool2d with torch's attributes."""
        self._batch_first(x, 4, "(N, C, H, W)", where)
        shape = _node_shape(node)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            size: Any = module.output_size
            pair = [size, size] if isinstance(size, int) else list(size)
            output = [x.shape[2 + i] if s is None else s for i, s in enumerate(pair)]
            return self._emit(path, "adaptive_avg_pool2d", [x], shape, 0, output_size=output)
        fields: dict[str, Any] = {
            "kernel_size": _pair(module.kernel_size),
            "stride": _pair(module.stride),
            "padding": _pair(module.padding),
            "ceil_mode": module.ceil_mode,
        }
        if isinstance(module, nn.MaxPool2d):
            if module.return_indices:
                raise ValueError(f"{where}: return_indices=True; jacspec maps the pooled values only")
            return self._emit(path, "max_pool2d", [x], shape, 0, dilation=_pair(module.dilation), **fields)
        if module.divisor_override is not None:
            fields["divisor_override"] = module.divisor_override
        return self._emit(path, "avg_pool2d", [x], shape, 0, count_include_pad=module.count_include_pad, **fields)

    def _recurrent(self, node: fx.Node, path: str, module: nn.RNNBase, args: Any, kwargs: Any, where: str) -> _Tuple:
        """nn.RNN, nn.LSTM, nn.GRU from h_0 = 0: the output sequence (T, D·hidden) per probe is item [0]."""
        bound = _bind(module.forward, args, kwargs)
        if bound.get("hx") is not None:
            raise ValueError(f"{where}: an initial state hx is given; jacspec maps recurrent layers from h_0 = 0")
        if getattr(module, "proj_size", 0):
            raise ValueError(f"{where}: proj_size={module.proj_size}; jacspec maps LSTMs without a projection")
        x = self._tensor(bound["input"], where)
        batch = 0 if module.batch_first else 1
        if len(x.shape) != 3 or x.batch != batch:
            raise ValueError(
                f"{where}: takes {list(x.shape)} with the probes on axis {x.batch}; with batch_first="
                f"{module.batch_first} it needs a batch of sequences with the probes on axis {batch}"
            )
        op = {"RNN_TANH": "rnn", "RNN_RELU": "rnn", "LSTM": "lstm", "GRU": "gru"}[module.mode]
        fields: dict[str, Any] = {
            "hidden_size": module.hidden_size,
            "num_layers": module.num_layers,
            "bias": module.bias,
            "bidirectional": module.bidirectional,
        }
        if op == "rnn":
            fields["nonlinearity"] = "tanh" if module.mode == "RNN_TANH" else "relu"
        names = [name for name, _ in module.named_parameters()]
        shape = (*x.shape[:2], module.hidden_size * (2 if module.bidirectional else 1))
        value = self._emit(path, op, [x], shape, batch, self._params(path, module, names, where), **fields)
        return _Tuple((value, None), f"nn.{type(module).__name__} {path!r}")

    def _multihead(self, path: str, module: nn.MultiheadAttention, args: Any, kwargs: Any, where: str) -> _Tuple:
        """nn.MultiheadAttention as self-attention (query, key and value the same tensor); item [0] its output."""
        bound = _bind(module.forward, args, kwargs)
        x = self._tensor(bound["query"], where)
        if bound["key"] is not bound["query"] or bound["value"] is not bound["query"]:
            raise ValueError(
                f"{where}: query, key and value are different tensors (cross-attention); the contract's attention "
                "is self-attention, attn(x, x, x)"
            )
        if bound.get("key_padding_mask") is not None:
            raise ValueError(f"{where}: key_padding_mask is given; jacspec maps attention on whole sequences")
        causal = _causal(bound.get("attn_mask"), bool(bound.get("is_causal")), where)
        return _Tuple((self._attention(path, module, x, causal, where), None), f"nn.MultiheadAttention {path!r}")

    def _attention(self, path: str, module: nn.MultiheadAttention, x: _Value, causal: bool, where: str) -> _Value:
        """The contract's attention op of an nn.MultiheadAttention on x (its parameters by torch's names)."""
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError(f"{where}: add_bias_kv or add_zero_attn is set; jacspec maps plain attention")
        batch = 0 if module.batch_first else 1
        if len(x.shape) != 3 or x.batch != batch:
            raise ValueError(
                f"{where}: takes {list(x.shape)} with the probes on axis {x.batch}; with batch_first="
                f"{module.batch_first} it needs them on axis {batch}"
            )
        names = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
        params = self._params(path, module, names, where)  # kdim = vdim = embed_dim: self-attention ran
        return self._emit(path, "attention", [x], x.shape, x.batch, params, num_heads=module.num_heads, causal=causal)

    def _encoder_layer(
        self, path: str, layer: nn.TransformerEncoderLayer, x: _Value, bound: dict[str, Any], where: str
    ) -> _Value:
        """nn.TransformerEncoderLayer decomposed (eval: its dropouts the identity): with sa = self_attn and
        ff = linear2 ∘ activation ∘ linear1,
        post-LN: x ← norm1(x + sa(x)), x ← norm2(x + ff(x));  pre-LN (norm_first): x ← x + sa(norm1(x)),
        x ← x + ff(norm2(x))."""
        if bound.get("src_key_padding_mask") is not None:
            raise ValueError(f"{where}: src_key_padding_mask is given; jacspec maps attention on whole sequences")
        causal = _causal(bound.get("src_mask"), bool(bound.get("is_causal")), where)
        activation = _layer_activation(layer.activation, f"{where}.activation")

        def attend(h: _Value) -> _Value:
            return self._attention(_join(path, "self_attn"), layer.self_attn, h, causal, where)

        def feed_forward(h: _Value) -> _Value:
            h = self._linear(_join(path, "linear1"), layer.linear1, h, where)
            h = self._act(_join(path, "activation"), activation, h, where)
            return self._linear(_join(path, "linear2"), layer.linear2, h, where)

        def add(name: str, a: _Value, b: _Value) -> _Value:
            return self._emit(_join(path, name), "add", [a, b], a.shape, a.batch)

        if layer.norm_first:
            x = add("add1", x, attend(self._norm(_join(path, "norm1"), layer.norm1, x, where)))
            return add("add2", x, feed_forward(self._norm(_join(path, "norm2"), layer.norm2, x, where)))
        x = self._norm(_join(path, "norm1"), layer.norm1, add("add1", x, attend(x)), where)
        return self._norm(_join(path, "norm2"), layer.norm2, add("add2", x, feed_forward(x)), where)

    def _encoder(
        self, path: str, encoder: nn.TransformerEncoder, x: _Value, bound: dict[str, Any], where: str
    ) -> _Value:
        """nn.TransformerEncoder: its layers in turn, then its norm (if any)."""
        layer_args = {
            "src_mask": bound.get("mask"),
            "src_key_padding_mask": bound.get("src_key_padding_mask"),
            "is_causal": bound.get("is_causal"),
        }
        for index, layer in enumerate(encoder.layers):
            assert isinstance(layer, nn.TransformerEncoderLayer)
            x = self._encoder_layer(_join(path, f"layers.{index}"), layer, x, layer_args, f"{where}.layers[{index}]")
        if encoder.norm is not None:
            assert isinstance(encoder.norm, nn.LayerNorm | nn.RMSNorm)
            x = self._norm(_join(path, "norm"), encoder.norm, x, where)
        return x

    def _act(self, name: str, activation: Any, x: _Value, where: str) -> _Value:
        """An elementwise activation (the contract's Activation, checked)."""
        try:
            checked = _ACTIVATION.validate_python(activation)
        except ValidationError as exc:
            raise ValueError(f"{where}: {exc.errors()[0]['msg']}") from None
        return self._emit(
            name, "activation", [x], x.shape, x.batch, activation=_ACTIVATION.dump_python(checked, mode="json")
        )

    # -- shapes ---------------------------------------------------------------------------------------------------

    def _flatten(self, name: str, x: _Value, start: int, end: int, where: str) -> _Value:
        """torch.flatten(x, start, end) of the full tensor, as a flatten of one probe's axes."""
        n = len(x.shape)
        s, e = start % n, end % n
        if s > e:
            raise ValueError(f"{where}: start_dim={start} comes after end_dim={end}")
        if s == e:
            return x
        if s <= x.batch <= e:
            raise ValueError(f"{where}: flattens the batch axis {x.batch} of {list(x.shape)} into others")
        batch = x.batch if x.batch < s else x.batch - (e - s)
        shape = (*x.shape[:s], math.prod(x.shape[s : e + 1]), *x.shape[e + 1 :])
        first = s - (x.batch < s)
        return self._emit(name, "flatten", [x], shape, batch, start_dim=first, end_dim=first + e - s)

    def _reshape(self, node: fx.Node, name: str, x: _Value, where: str) -> _Value:
        """A view, reshape, (un)squeeze or unflatten that keeps the probes on axis 0: one probe's tensor reshaped
        (row-major order is the same either way)."""
        shape = _node_shape(node)
        batch_size = self.example.shape[self.batch_dim]
        if x.batch != 0 or not shape or shape[0] != batch_size:
            raise ValueError(
                f"{where}: reshapes {list(x.shape)} (probes on axis {x.batch}) to {list(shape)}; jacspec maps "
                "reshapes that keep the probes on axis 0 (e.g. x.view(x.size(0), -1))"
            )
        if shape == x.shape:
            return x
        return self._emit(name, "reshape", [x], shape, 0, shape=list(shape[1:]))

    def _permute(self, name: str, x: _Value, dims: Sequence[int], where: str) -> _Value:
        """A permutation of the full tensor's axes (output axis i is input axis dims[i]): one of one probe's
        axes, and the batch axis moved; no node where one probe's order stays."""
        n = len(x.shape)
        perm = [d % n for d in dims]
        if sorted(perm) != list(range(n)):
            raise ValueError(f"{where}: dims {list(dims)} are not a permutation of {n} axes")
        shape = tuple(x.shape[d] for d in perm)
        batch = perm.index(x.batch)
        probe = [d - (d > x.batch) for d in perm if d != x.batch]
        if probe == sorted(probe):
            return x.moved(shape, batch)
        moved = [i for i, d in enumerate(probe) if d != i]
        if len(moved) == 2:
            return self._emit(name, "transpose", [x], shape, batch, dim0=moved[0], dim1=moved[1])
        return self._emit(name, "permute", [x], shape, batch, dims=probe)

    # -- functions and methods ------------------------------------------------------------------------------------

    def _f_identity(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """Dropout in eval mode (training=False), contiguous, clone: the identity."""
        if node.target is F.dropout and _argument(args, kwargs, 2, "training", True):
            raise ValueError(f"{self._where(node)}: dropout with training=True; pass training=self.training")
        return self._tensor(args[0], self._where(node))

    def _f_add(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """a + b (alpha·b for torch.add's alpha): the contract's add, no broadcasting."""
        where = self._where(node)
        alpha = _argument(args, kwargs, 2, "alpha", 1)
        terms = [self._operand(node, args[0]), self._operand(node, args[1])]
        if alpha != 1:
            terms[1] = self._emit(
                f"{node.name}.alpha", "mul", [terms[1]], terms[1].shape, terms[1].batch, constant=float(alpha)
            )
        return self._sum(node.name, terms, where)

    def _f_sub(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """a − b = a + (−1)·b."""
        a, b = self._operand(node, args[0]), self._operand(node, args[1])
        negated = self._emit(f"{node.name}.neg", "mul", [b], b.shape, b.batch, constant=-1.0)
        return self._sum(node.name, [a, negated], self._where(node))

    def _operand(self, node: fx.Node, value: Any) -> _Value:
        where = self._where(node)
        if isinstance(value, _Value):
            return value
        if isinstance(value, int | float | torch.Tensor):
            raise ValueError(
                f"{where}: adds a constant ({_describe(value)}), which the contract cannot hold (a learned offset "
                "belongs in a mapped module's bias)"
            )
        return self._tensor(value, where)

    def _sum(self, name: str, terms: list[_Value], where: str) -> _Value:
        first = terms[0]
        for term in terms[1:]:
            if term.shape != first.shape or term.batch != first.batch:
                raise ValueError(
                    f"{where}: adds tensors of shapes {list(first.shape)} and {list(term.shape)} (probes on axes "
                    f"{first.batch}, {term.batch}); the contract's add takes equal shapes, without broadcasting"
                )
        return self._emit(name, "add", terms, first.shape, first.batch)

    def _f_mul(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """c·x for a constant c."""
        return self._scale(node, args[0], args[1], invert=False)

    def _f_div(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """x / c = (1/c)·x."""
        if _argument(args, kwargs, 2, "rounding_mode", None) is not None:
            raise ValueError(f"{self._where(node)}: a rounding division is not differentiable")
        if not isinstance(args[0], _Value):
            raise ValueError(f"{self._where(node)}: divides a constant by a tensor, which the contract cannot hold")
        return self._scale(node, args[0], args[1], invert=True)

    def _f_neg(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        return self._scale(node, args[0], -1.0, invert=False)

    def _scale(self, node: fx.Node, a: Any, b: Any, *, invert: bool) -> _Value:
        where = self._where(node)
        x, constant = (a, b) if isinstance(a, _Value) else (b, a)
        if isinstance(constant, _Value | _Tuple):
            raise ValueError(
                f"{where}: multiplies two tensors that depend on the input (a gate?); the contract's mul is by a "
                "constant"
            )
        x = self._tensor(x, where)
        if isinstance(constant, torch.Tensor) and constant.numel() == 1:
            constant = constant.item()
        if isinstance(constant, bool) or not isinstance(constant, int | float):
            raise ValueError(f"{where}: multiplies by {_describe(constant)}; the contract's mul is by one number")
        value = 1.0 / constant if invert else float(constant)
        if not math.isfinite(value):
            raise ValueError(f"{where}: multiplies by {value}, not a finite number")
        return self._emit(node.name, "mul", [x], x.shape, x.batch, constant=value)

    def _f_cat(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """torch.cat along one probe axis."""
        where = self._where(node)
        tensors = [self._tensor(value, where) for value in _argument(args, kwargs, 0, "tensors", [])]
        dim = _argument(args, kwargs, 1, "dim", 0)
        first = tensors[0]
        n = len(first.shape)
        axis = dim % n
        if axis == first.batch:
            raise ValueError(f"{where}: concatenates along the batch axis {first.batch}")
        if any(t.batch != first.batch or len(t.shape) != n for t in tensors):
            raise ValueError(f"{where}: concatenates tensors laid out differently; give them the same axes")
        if len(tensors) == 1:
            return first
        shape = (*first.shape[:axis], sum(t.shape[axis] for t in tensors), *first.shape[axis + 1 :])
        return self._emit(node.name, "concat", tensors, shape, first.batch, dim=axis - (axis > first.batch))

    def _f_flatten(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        x = self._tensor(args[0], self._where(node))
        start = _argument(args, kwargs, 1, "start_dim", 0)
        end = _argument(args, kwargs, 2, "end_dim", -1)
        return self._flatten(node.name, x, start, end, self._where(node))

    def _f_reshape(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        return self._reshape(node, node.name, self._tensor(args[0], self._where(node)), self._where(node))

    def _f_transpose(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        x = self._tensor(args[0], self._where(node))
        n = len(x.shape)
        d0, d1 = (_argument(args, kwargs, 1, "dim0", 0) % n, _argument(args, kwargs, 2, "dim1", 1) % n)
        dims = list(range(n))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self._permute(node.name, x, dims, self._where(node))

    def _f_permute(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        x = self._tensor(args[0], self._where(node))
        dims = args[1:] if len(args) > 1 and isinstance(args[1], int) else _argument(args, kwargs, 1, "dims", ())
        return self._permute(node.name, x, list(dims), self._where(node))

    def _f_getitem(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """Item [0] of a module's tuple (the output of nn.LSTM or nn.MultiheadAttention)."""
        where = self._where(node)
        container, index = args
        if isinstance(container, _Tuple):
            item = container.items[index] if isinstance(index, int) and -2 <= index < 2 else None
            if item is None:
                raise ValueError(
                    f"{where}: item [{index}] of what {container.what} returns is not mapped (the final states or "
                    "the attention weights); jacspec maps the output, item [0]"
                )
            return item
        raise ValueError(
            f"{where}: indexes or slices a tensor (e.g. x[:, -1]), which is not an op of the contract; map the "
            "part before it, or end the network with the whole sequence"
        )

    def _f_activation(self, node: fx.Node, args: Any, kwargs: Any) -> _Value:
        """An activation function or method with its parameters."""
        where = self._where(node)
        x = self._tensor(args[0], where)
        spec = _function_activation(node, args, kwargs, where)
        return self._act(node.name, spec, x, where)


_MULTI_ARGUMENT = (nn.RNNBase, nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)
"""Modules whose forward takes more than the input (masks, states); the rest take one tensor."""


def _join(path: str, name: str) -> str:
    """A submodule's qualified name (``path`` empty for the traced module itself)."""
    return f"{path}.{name}" if path else name


def _function_activation(node: fx.Node, args: Any, kwargs: Any, where: str) -> dict[str, Any]:
    """The activation spec of an activation function (F.relu, torch.tanh, x.sigmoid(), F.gelu, …)."""
    name = _ACTIVATION_FUNCTIONS[node.target] if node.op == "call_function" else _ACTIVATION_METHODS[str(node.target)]
    if name == "leaky_relu":
        return {"name": name, "negative_slope": _argument(args, kwargs, 1, "negative_slope", 0.01)}
    if name == "elu":
        return {"name": name, "alpha": _argument(args, kwargs, 1, "alpha", 1.0)}
    if name == "hard_tanh":
        return {
            "name": name,
            "min_val": _argument(args, kwargs, 1, "min_val", -1.0),
            "max_val": _argument(args, kwargs, 2, "max_val", 1.0),
        }
    if name == "relu6":
        return {"name": "hard_tanh", "min_val": 0.0, "max_val": 6.0}
    if name == "softplus":
        return {"name": name, "beta": _argument(args, kwargs, 1, "beta", 1.0)}
    if name == "gelu":
        approximate = _argument(args, kwargs, 1, "approximate", "none")
        if approximate != "none":
            raise ValueError(
                f"{where}: gelu(approximate={approximate!r}); the contract's gelu is the exact erf form: use "
                "approximate='none' (the two differ by < 1e-3)"
            )
    return {"name": name}


def _layer_activation(activation: Any, where: str) -> Any:
    """An nn.TransformerEncoderLayer's activation (a module, or F.relu / F.gelu) as the contract's."""
    if isinstance(activation, nn.Module):
        return _ACTIVATION.dump_python(_activation(activation, where), mode="json")
    name = _ACTIVATION_FUNCTIONS.get(activation)
    if name is None:
        raise ValueError(f"{where}: {activation!r} is not an activation jacspec maps")
    return {"name": name}


def _data_nodes(graph: fx.Graph, placeholder: fx.Node) -> set[fx.Node]:
    """The nodes whose tensors depend on the input: the placeholder, and every node taking such a tensor whose
    value is a tensor or a tuple. Sizes (x.size(0)) and what depends on the input through them only (a mask cut to
    the sequence's length) are constants of the trace."""
    data = {placeholder}
    for node in graph.nodes:
        if node.op in ("call_module", "call_function", "call_method") and any(
            isinstance(arg, fx.Node) and arg in data for arg in node.all_input_nodes
        ):
            meta = node.meta.get("tensor_meta")
            if meta is not None or node.op == "call_module":
                data.add(node)
    return data


def _live_nodes(graph: fx.Graph) -> set[fx.Node]:
    """The nodes the output depends on."""
    live: set[fx.Node] = set()
    stack = [node for node in graph.nodes if node.op == "output"]
    while stack:
        node = stack.pop()
        if node not in live:
            live.add(node)
            stack.extend(node.all_input_nodes)
    return live


def _target_name(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method":
        return f"Tensor.{target}"
    if node.op == "call_module":
        return str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module in ("_operator", "operator"):
        module = "operator"
    elif module.startswith("torch.nn.functional") or getattr(F, name, None) is target:
        module = "torch.nn.functional"
    elif module.startswith("torch") or getattr(torch, name, None) is target:
        module = "torch"
    return f"{module}.{name}" if module else name


def _bind(method: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """The arguments of a module's forward by name, defaults filled in."""
    bound = inspect.signature(method).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _argument(args: Any, kwargs: Any, index: int, name: str, default: Any) -> Any:
    """A function's argument, given by position ``index`` or by ``name``, else ``default``."""
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _attribute(module: nn.Module, name: str) -> torch.Tensor | None:
    """The module's tensor ``name`` (dotted for a submodule's: ``out_proj.weight``), None where it has none."""
    owner: Any = module
    for part in name.split("."):
        owner = getattr(owner, part, None)
    return owner if isinstance(owner, torch.Tensor) else None


def _check_finite(tensor: torch.Tensor, name: str, where: str) -> None:
    """ValueError naming the parameter when ``tensor`` holds NaN or infinities."""
    bad = int((~torch.isfinite(tensor.detach())).sum())
    if bad:
        raise ValueError(
            f"parameter {name!r} ({where}) holds {counted(bad, 'NaN or infinite value')} of {tensor.numel()}; "
            "jacspec analyses finite weights: check the checkpoint or the training run that produced it"
        )


def _tensor_json(tensor: torch.Tensor, b64: bool | None) -> dict[str, Any]:
    """A parameter tensor in the contract's form (as ``Tensor.from_numpy``, of 1–4 dimensions): FP32 for float32
    (float16 and bfloat16 widened), FP64 otherwise; base64 bytes above 1024 elements unless ``b64`` says."""
    import numpy as np

    values = np.asarray(_numpy(tensor))
    datatype = "FP32" if values.dtype.kind == "f" and values.dtype.itemsize <= 4 else "FP64"
    values = np.ascontiguousarray(values.astype("<f4" if datatype == "FP32" else "<f8"))
    spec: dict[str, Any] = {"shape": list(values.shape), "datatype": datatype}
    if b64 if b64 is not None else values.size > B64_ABOVE:
        spec["b64"] = base64.b64encode(values.tobytes()).decode("ascii")
    else:
        spec["data"] = values.ravel().tolist()
    return spec


def _conv_shape(shape: tuple[int, ...], conv: nn.Conv1d | nn.Conv2d) -> tuple[int, ...]:
    """The output shape of ``conv`` on ``shape``: per spatial axis ⌊(n + 2p − d(k − 1) − 1)/s⌋ + 1."""
    spatial = shape[2:]
    if conv.padding == "same":
        out = spatial
    else:
        given: Any = conv.padding
        padding: tuple[int, ...] = (0,) * len(spatial) if given == "valid" else tuple(given)
        out = tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(spatial, padding, conv.dilation, conv.kernel_size, conv.stride, strict=True)
        )
    return (shape[0], conv.out_channels, *out)


def _node_shape(node: fx.Node) -> tuple[int, ...]:
    """The node's output shape as ShapeProp found it."""
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()


def _pair(value: Any) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def _fold(producer: dict[str, Any], params: dict[str, torch.Tensor], eps: float) -> None:
    """Fold inference batch norm into the linear map before it, exactly (in float64): with s = γ/√(σ² + ε),
    W' = s·W (row c scaled by s_c) and b' = s·(b − μ) + β."""
    weight = producer["params"]["weight"].double()
    scale = 1.0 / torch.sqrt(params["running_var"].double() + eps)
    if "weight" in params:
        scale = scale * params["weight"].double()
    bias = producer["params"].get("bias")
    shift = (torch.zeros_like(scale) if bias is None else bias.double()) - params["running_mean"].double()
    folded = scale * shift + (params["bias"].double() if "bias" in params else 0.0)
    producer["params"] = {"weight": weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), "bias": folded}


def _causal(mask: Any, is_causal: bool, where: str) -> bool:
    """Whether an attention mask is the causal one (True, or −∞, above the diagonal; False, or 0, elsewhere);
    False for none; ValueError for any other mask."""
    if mask is None:
        return is_causal
    if isinstance(mask, _Value | _Tuple) or not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"{where}: the attention mask is not a constant (T, T) tensor; jacspec maps a causal mask")
    length = mask.shape[0]
    above = torch.ones(length, length, dtype=torch.bool).triu(1)
    if mask.dtype == torch.bool:
        hidden, shown_ok = mask, True
    else:
        hidden = torch.isneginf(mask)
        shown_ok = bool((mask[~hidden] == 0).all())
    if shown_ok and bool((hidden == above).all()):
        return True
    if shown_ok and not bool(hidden.any()):
        return False
    raise ValueError(
        f"{where}: the attention mask is neither causal nor empty; the contract's attention takes causal=True "
        "(key s hidden from query t < s) or no mask"
    )


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a constant tensor of shape {list(value.shape)}"
    return repr(value)


_ACTIVATION_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.tanh: "tanh",
    torch.tanh: "tanh",
    F.sigmoid: "sigmoid",
    torch.sigmoid: "sigmoid",
    F.hardtanh: "hard_tanh",
    F.elu: "elu",
    F.selu: "selu",
    torch.selu: "selu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.softplus: "softplus",
}
_ACTIVATION_METHODS: dict[str, str] = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}

_Handler = Callable[[_GraphMapper, fx.Node, Any, Any], "_Value | _Tuple"]
_FUNCTIONS: dict[Any, _Handler] = {
    **dict.fromkeys(_ACTIVATION_FUNCTIONS, _GraphMapper._f_activation),
    **dict.fromkeys((operator.add, operator.iadd, torch.add), _GraphMapper._f_add),
    **dict.fromkeys((operator.sub, operator.isub, torch.sub), _GraphMapper._f_sub),
    **dict.fromkeys((operator.mul, operator.imul, torch.mul), _GraphMapper._f_mul),
    **dict.fromkeys((operator.truediv, operator.itruediv, torch.div), _GraphMapper._f_div),
    **dict.fromkeys((operator.neg, torch.neg), _GraphMapper._f_neg),
    **dict.fromkeys((torch.cat, torch.concat, torch.concatenate), _GraphMapper._f_cat),
    torch.flatten: _GraphMapper._f_flatten,
    **dict.fromkeys((torch.reshape, torch.squeeze, torch.unsqueeze, torch.unflatten), _GraphMapper._f_reshape),
    **dict.fromkeys((torch.transpose, torch.swapaxes), _GraphMapper._f_transpose),
    torch.permute: _GraphMapper._f_permute,
    operator.getitem: _GraphMapper._f_getitem,
    **dict.fromkeys((F.dropout, torch.clone), _GraphMapper._f_identity),
}
_METHODS: dict[str, _Handler] = {
    **dict.fromkeys(_ACTIVATION_METHODS, _GraphMapper._f_activation),
    "add": _GraphMapper._f_add,
    "add_": _GraphMapper._f_add,
    "sub": _GraphMapper._f_sub,
    "mul": _GraphMapper._f_mul,
    "div": _GraphMapper._f_div,
    "neg": _GraphMapper._f_neg,
    "flatten": _GraphMapper._f_flatten,
    **dict.fromkeys(("view", "reshape", "squeeze", "unsqueeze", "unflatten"), _GraphMapper._f_reshape),
    **dict.fromkeys(("transpose", "swapaxes"), _GraphMapper._f_transpose),
    "permute": _GraphMapper._f_permute,
    **dict.fromkeys(("contiguous", "clone"), _GraphMapper._f_identity),
}


from jacspec.monitor import Monitor, MonitorEvent  # noqa: E402 - the monitor maps models with the functions above
