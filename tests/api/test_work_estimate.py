"""The work estimate of a request, from its declared sizes (api.sizes → service.cost), against the formulas of
service.cost.estimate_flops written out here; and a size beyond float64's range is a 413, not a 500."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save as save_numpy

from api.ingest import safetensors
from api.sizes import analysis_size, safetensors_size
from jacspec.models import AnalysisRequest, SafetensorsRequest
from service.cost import LAYER_OVERHEAD, MEANFIELD_LAYER

B = 3
"""Probes in every request here."""


def _size(network: dict[str, Any], **options: Any) -> Any:
    request = AnalysisRequest.model_validate({"network": network, "inputs": {"count": B}, "options": options})
    return analysis_size(request)


def _dense(m: int, n: int, n_out: int, shared: bool = False) -> float:
    """One dense m × n layer of a network of output width n_out, as estimate_flops's docstring states it: forward,
    adjoint and gradient 6·B·m·n, the backward product 2·B·n_out·m·n, and B + 1 dense norms (B when the weight is
    shared) of 4·m·n·min(m, n) each."""
    norms = B if shared else B + 1
    return 6.0 * B * m * n + 2.0 * B * n_out * m * n + norms * 4.0 * m * n * min(m, n) + LAYER_OVERHEAD


def test_an_init_recipe() -> None:
    work, fields = _size({"init": {"widths": [5, 7, 2], "scheme": "orthogonal", "bias_std": 0.1}})
    assert work.widths == (5, 7, 2)
    assert work.parameters == 5 * 7 + 7 + 7 * 2 + 2
    assert work.flops == pytest.approx(_dense(7, 5, 2) + _dense(2, 7, 2), rel=1e-12)
    assert work.flops_without_spectrum == work.flops
    assert (fields.network, fields.probes, fields.spectrum) == (
        "/network/init/widths",
        "/inputs/count",
        "/options/spectrum",
    )


def test_explicit_tanh_layers_count_their_mean_field_solves_and_relu_layers_do_not() -> None:
    layer = {"weight": [[1.0, 0.0], [0.0, 1.0]]}
    tanh, _ = _size({"activation": "tanh", "layers": [layer, layer]})
    relu, _ = _size({"activation": "relu", "layers": [layer, layer]})
    assert tanh.flops - relu.flops == pytest.approx(2 * MEANFIELD_LAYER, rel=1e-12)
    assert relu.flops == pytest.approx(2 * _dense(2, 2, 2), rel=1e-12)
    assert relu.parameters == 2 * (4 + 2)


def test_a_recurrent_network_takes_its_shared_weight_once() -> None:
    init = {"hidden_size": 6, "input_size": 3, "scheme": "orthogonal"}
    network = {"recurrent": {"activation": "relu", "steps": 4, "init": init}}
    work, fields = _size(network)
    assert work.widths == (6,) * 5
    assert work.parameters == 6 * 6 + 6 * 3 + 6
    assert work.flops == pytest.approx(_dense(6, 6, 6) + 3 * _dense(6, 6, 6, shared=True), rel=1e-12)
    assert fields.network == "/network/recurrent"


def test_a_spectrum_adds_to_the_work_and_is_named() -> None:
    work, _ = _size({"init": {"widths": [4, 4], "scheme": "orthogonal"}}, spectrum="full")
    # every weight's SVD 8·m·n·min(m, n), each probe's Jacobian formed (B·min(n_0, n_L) products of 2·m·n) and its
    # SVD 8·B·n_L·n_0·min(n_0, n_L)
    spectrum = 8.0 * 4**3 + B * 4 * 2.0 * 4 * 4 + 8.0 * B * 4**3
    assert work.flops - work.flops_without_spectrum == pytest.approx(spectrum, rel=1e-12)
    assert work.spectrum == "full"


def test_an_uploaded_state_dict_counts_the_tensors_its_header_declares() -> None:
    tensors = {"0.weight": np.zeros((4, 3)), "0.bias": np.zeros(4), "1.weight": np.zeros((2, 4))}
    file = safetensors.parse(save_numpy(tensors))
    spec = SafetensorsRequest.model_validate({"inputs": {"count": B}})
    work, fields = safetensors_size(file, ["0", "1"], spec)
    assert work.widths == (3, 4, 2)
    assert work.parameters == 12 + 4 + 8
    assert (fields.network, fields.probes) == ("/weights", "/request/inputs/count")


HUGE = 10**400
"""A width beyond float64's range (about 1.8·10³⁰⁸): the contract refuses it (every width is at most 2^20), so
that no size estimate ever sees it."""


def _conv(channels: int, size: list[int], **layer: Any) -> dict[str, Any]:
    kernel = {"shape": [channels, 1, 1, 1], "data": [1.0] * channels}
    return {"network": {"layers": [{"type": "conv2d", "kernel": kernel, "input_size": size, **layer}]}}


BEYOND_FLOAT64 = {
    "a width": ({"network": {"init": {"widths": [HUGE, 2], "scheme": "orthogonal"}}}, "/network/init/widths/0"),
    "a convolution's input size": (_conv(1, [HUGE, 1]), "/network/layers/0/input_size/0"),
    "an empty circular convolution's spectrum (∞·0)": (
        {**_conv(0, [HUGE, 1], padding="circular"), "options": {"spectrum": "full"}},
        "/network/layers/0/input_size/0",
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", BEYOND_FLOAT64)
async def test_a_size_beyond_float64_is_a_422_naming_the_field(client: httpx.AsyncClient, case: str) -> None:
    body, pointer = BEYOND_FLOAT64[case]
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert pointer in [error["pointer"] for error in response.json()["errors"]]
