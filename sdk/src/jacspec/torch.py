"""PyTorch models as jacspec networks (torch is an optional extra: ``pip install 'jacspec[torch]'``).

>>> import torch.nn as nn
>>> from jacspec.torch import network_from_module
>>> model = nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 10))
>>> network = network_from_module(model)
>>> [(layer.weight.shape, layer.activation) for layer in network.layers]
[([256, 784], 'tanh'), ([10, 256], 'linear')]

Then ``jacspec.Client().analyze(network)`` reports on it.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from jacspec.models import Activation, ActivationName, Layer, Network, Tensor


def network_from_module(module: Any, *, b64: bool | None = None) -> Network:
    """A network spec from an ``nn.Sequential`` of ``nn.Linear`` layers, each optionally followed by one activation.

    Supported activations: Identity, ReLU, LeakyReLU, Tanh, Sigmoid, Hardtanh, ELU, SELU, GELU (exact erf form),
    SiLU and Softplus (its linear tail above ``threshold`` is ignored: a difference below e^−threshold).
    ``nn.Dropout`` is skipped (it is the identity in eval mode). Anything else raises ``ValueError`` naming the
    module and its position. Weights are copied as float32 or float64, as the module holds them.
    """
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        module = nn.Sequential(module)
    if not isinstance(module, nn.Sequential):
        raise ValueError(f"expected nn.Sequential or nn.Linear; got {type(module).__name__}")
    layers: list[Layer] = []
    activated = True
    for position, child in enumerate(module):
        where = f"module [{position}] ({type(child).__name__})"
        if isinstance(child, nn.Linear):
            weight = Tensor.from_numpy(_numpy(child.weight), b64=b64)
            bias = None if child.bias is None else Tensor.from_numpy(_numpy(child.bias), b64=b64)
            layers.append(Layer(weight=weight, bias=bias, activation="linear"))
            activated = False
        elif isinstance(child, nn.Dropout):
            continue
        else:
            activation = _activation(child, where)
            if not layers or activated:
                raise ValueError(f"{where}: an activation must follow an nn.Linear, once")
            layers[-1] = layers[-1].model_copy(update={"activation": activation})
            activated = True
    if not layers:
        raise ValueError("the module holds no nn.Linear layer")
    return Network(layers=layers)


def _numpy(parameter: Any) -> Any:
    """The parameter as a numpy array; float16 and bfloat16 (which numpy lacks) are widened to float32, exactly."""
    import torch

    tensor = parameter.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.numpy()


def _activation(child: Any, where: str) -> Activation:
    """The activation spec of one activation module, with its parameters."""
    import torch.nn as nn

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
