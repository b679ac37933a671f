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

Unlike the rest of the SDK this module needs torch to be imported: it defines :class:`Residual`, an ``nn.Module``.
``import jacspec`` never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from jacspec._text import counted
from jacspec.models import Activation, ActivationName, Conv2dLayer, KernelTensor, Layer, Network, Recurrent, Tensor

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - the test suite has torch
    raise ImportError(
        "jacspec.torch needs PyTorch; its CPU build is enough: "
        "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    ) from exc

__all__ = ["Residual", "network_from_module"]

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
    *,
    input_size: Sequence[int] | None = None,
    steps: int | None = None,
    b64: bool | None = None,
) -> Network:
    """A network spec from a PyTorch module.

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
