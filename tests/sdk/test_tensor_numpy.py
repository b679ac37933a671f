"""``Tensor.from_numpy`` / ``Tensor.to_numpy`` and ``Network.from_arrays``, through the real app."""

from __future__ import annotations

import itertools
from typing import Any, cast

import httpx
import numpy as np
import pytest

import jacspec
from jacspec.models import Layer, Network, Tensor
from jacspec.models.tensor import B64_ABOVE as TENSOR_B64_ABOVE

pytestmark = pytest.mark.anyio


def _arrays() -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(5)
    arrays: list[np.ndarray[Any, Any]] = []
    for dtype in (np.float64, np.float32):
        arrays += [
            rng.normal(size=7).astype(dtype),
            rng.normal(size=(3, 4)).astype(dtype),
            rng.normal(size=(40, 40)).astype(dtype),
            rng.normal(size=2000).astype(dtype),
            # values that JSON text and base64 must both carry to the last bit
            np.array(
                [[np.finfo(dtype).tiny, -np.finfo(dtype).max, 1 / 3], [0.1, -0.0, np.nextafter(dtype(1), 2)]]
            ).astype(dtype),
        ]
    return arrays


ARRAYS = _arrays()
IDS = [f"{a.dtype}-{'x'.join(map(str, a.shape))}" for a in ARRAYS]


@pytest.mark.parametrize("array", ARRAYS, ids=IDS)
@pytest.mark.parametrize("b64", [True, False, None], ids=["b64", "data", "default"])
def test_round_trip_exact(array: np.ndarray[Any, Any], b64: bool | None) -> None:
    tensor = Tensor.from_numpy(array, b64=b64)
    assert tensor.shape == list(array.shape)
    assert tensor.datatype == ("FP32" if array.dtype == np.float32 else "FP64")
    uses_b64 = b64 if b64 is not None else array.size > TENSOR_B64_ABOVE
    assert (tensor.b64 is not None) == uses_b64
    assert (tensor.data is not None) == (not uses_b64)
    back = tensor.to_numpy()
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    assert np.array_equal(back, array)
    assert np.array_equal(np.signbit(back), np.signbit(array))  # −0.0 survives
    # and through JSON, as the server receives it
    again = Tensor.model_validate_json(tensor.model_dump_json(exclude_none=True)).to_numpy()
    assert again.dtype == array.dtype
    assert np.array_equal(again, array)


def test_default_threshold() -> None:
    assert TENSOR_B64_ABOVE == 1024
    big = Tensor.from_numpy(np.ones((40, 40)))
    assert big.b64 is not None
    assert big.data is None
    small = Tensor.from_numpy(np.ones((3, 3)))
    assert small.data is not None
    assert small.b64 is None
    assert Tensor.from_numpy(np.ones(1024)).data is not None  # "above 1024 elements"
    assert Tensor.from_numpy(np.ones(1025)).b64 is not None


@pytest.mark.parametrize("b64", [True, False])
def test_float16_becomes_fp32(b64: bool) -> None:
    array = np.array([[0.1, -2.5, 65504.0], [6e-8, 1.0, -0.0]], dtype=np.float16)
    tensor = Tensor.from_numpy(array, b64=b64)
    assert tensor.datatype == "FP32"
    back = tensor.to_numpy()
    assert back.dtype == np.float32
    assert np.array_equal(back, array.astype(np.float32))  # widening is exact


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.int8])
@pytest.mark.parametrize("b64", [True, False])
def test_ints_become_fp64(dtype: type[np.generic], b64: bool) -> None:
    array = np.array([[0, 1, 2], [3, 100, 7]], dtype=dtype)
    tensor = Tensor.from_numpy(array, b64=b64)
    assert tensor.datatype == "FP64"
    back = tensor.to_numpy()
    assert back.dtype == np.float64
    assert np.array_equal(back, array.astype(np.float64))


@pytest.mark.parametrize("b64", [True, False])
def test_layouts_and_byte_order(b64: bool) -> None:
    """Fortran order, transposed and strided views and big-endian arrays are sent row-major little-endian."""
    base = np.arange(24, dtype=np.float64).reshape(4, 6) / 7.0
    for array in (np.asfortranarray(base), base.T, base[::2, ::3], base.astype(">f8"), base.astype(">f4")):
        tensor = Tensor.from_numpy(array, b64=b64)
        assert tensor.shape == list(array.shape)
        assert np.array_equal(tensor.to_numpy(), array)


def test_nested_lists_read_like_flat() -> None:
    flat = Tensor(shape=[2, 3], datatype="FP32", data=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    nested = Tensor(shape=[2, 3], datatype="FP32", data=[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    expected = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=np.float32)
    assert np.array_equal(flat.to_numpy(), expected)
    assert np.array_equal(nested.to_numpy(), expected)


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 1, 1, 1)])
@pytest.mark.parametrize("b64", [True, False, None])
def test_more_than_2d_refused(shape: tuple[int, ...], b64: bool | None) -> None:
    with pytest.raises(ValueError, match="1-D or 2-D"):
        Tensor.from_numpy(np.zeros(shape), b64=b64)


def test_scalar_refused() -> None:
    with pytest.raises(ValueError, match="1-D or 2-D"):
        Tensor.from_numpy(np.float64(1.0))


def _weights() -> tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(9)
    widths = [12, 40, 40, 30, 3]  # the 40×40 and 30×40 weights go as base64 by default, the rest as numbers
    weights = [rng.normal(0.0, 1.0 / np.sqrt(n), size=(m, n)) for n, m in itertools.pairwise(widths)]
    biases = [rng.normal(0.0, 0.1, size=m) for m in widths[1:]]
    return weights, biases


async def test_from_arrays_equals_nested_lists(client: httpx.AsyncClient) -> None:
    weights, biases = _weights()
    activations: list[Any] = [None, {"name": "leaky_relu", "negative_slope": 0.1}, None, "linear"]
    network = Network.from_arrays(weights, biases, activation="tanh", activations=activations)
    assert network.layers is not None
    assert all(isinstance(layer, Layer) for layer in network.layers)
    sent = [cast(Layer, layer).weight for layer in network.layers]
    assert all(isinstance(w, Tensor) for w in sent)
    assert [w.b64 is not None for w in sent if isinstance(w, Tensor)] == [False, True, True, False]

    lists = {
        "activation": "tanh",
        "layers": [
            {"weight": w.tolist(), "bias": b.tolist(), **({"activation": a} if a is not None else {})}
            for w, b, a in zip(weights, biases, activations, strict=True)
        ],
    }
    async with jacspec.AsyncClient(base_url="http://jacspec.test", http_client=client) as sdk:
        from_arrays = await sdk.analyze(network, inputs={"count": 5, "seed": 3})
        from_lists = await sdk.analyze(lists, inputs={"count": 5, "seed": 3})
    assert from_arrays.layers == from_lists.layers
    assert from_arrays.summary == from_lists.summary
    assert [layer.activation for layer in from_arrays.layers] == ["tanh", "leaky_relu", "tanh", "linear"]
    # and against numpy
    assert [layer.weight_norm for layer in from_arrays.layers] == pytest.approx(
        [float(np.linalg.norm(w, 2)) for w in weights], rel=1e-10
    )


def test_from_arrays_length_mismatch() -> None:
    weights, biases = _weights()
    with pytest.raises(ValueError, match="one entry per layer"):
        Network.from_arrays(weights, biases[:-1])
    with pytest.raises(ValueError, match="one entry per layer"):
        Network.from_arrays(weights, activations=["tanh"])
