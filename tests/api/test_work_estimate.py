"""The work estimate of a request, from its declared sizes (api.sizes → service.cost), against its parts written
out here; the issue's examples refused with a 413 naming the change that would fit; and a size beyond float64's
range is a 413, not a 500."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save as save_numpy

from api.ingest import safetensors
from api.settings import Settings
from api.sizes import analysis_size, safetensors_size
from jacspec.models import AnalysisRequest, SafetensorsRequest
from service import cost
from service.cost import (
    EIGH,
    LAYER_BYTES,
    MEANFIELD_LAYER,
    QR,
    RESPONSE_BASE,
    SPECTRUM_BYTES,
    SUMMARY_VALUES,
    VALUE_BYTES,
    Declared,
    changes_that_fit,
    estimate,
)
from tests.helpers import ClientFactory

B = 3
"""Probes in every request here."""


def _size(network: dict[str, Any], count: int = B, **options: Any) -> Any:
    body = {"network": network, "inputs": {"count": count}, "options": options}
    return analysis_size(AnalysisRequest.model_validate(body))


def _init(widths: list[int], scheme: str = "gaussian", **more: Any) -> dict[str, Any]:
    return {"activation": "relu", "init": {"widths": widths, "scheme": scheme, **more}}


def test_an_init_recipe() -> None:
    work, fields, _ = _size(_init([5, 7, 2], "orthogonal", bias_std=0.1))
    assert work.widths == (5, 7, 2)
    assert work.parameters == 5 * 7 + 7 + 7 * 2 + 2
    assert work.flops_without_spectrum == work.flops
    assert (fields.network, fields.probes, fields.spectrum, fields.rtol) == (
        "/network/init/widths",
        "/inputs/count",
        "/options/spectrum",
        "/options/rtol",
    )


def test_the_orthogonal_draw_is_counted_and_grows_as_n_cubed() -> None:
    """An orthogonal n × n draw is a QR of a normal matrix, QR·(4n³ − 4n³/3) flops on top of the same normal draw
    (and its signs, ELEMENT an entry): over a Gaussian draw of the same sizes, written out here, for the n × n
    layer and the 1 × n one."""
    extra = {}
    for n in (1024, 2048):
        orthogonal, _, _ = _size(_init([n, n, 1], "orthogonal"))
        gaussian, _, _ = _size(_init([n, n, 1], "gaussian"))
        extra[n] = orthogonal.flops - gaussian.flops
        square = QR * (8.0 / 3.0) * n**3 + cost.ELEMENT * n * n
        row = QR * (4.0 * n - 4.0 / 3.0) + cost.ELEMENT * n
        assert extra[n] == pytest.approx(square + row, rel=1e-9)
    assert extra[2048] / extra[1024] == pytest.approx(8.0, rel=1e-2)


def test_an_rtol_below_lanczos_min_forces_the_dense_solver_and_costs_its_eigenvalues() -> None:
    """rtol 1e-13 takes every norm densely: for a 2048 × 2048 weight and one probe, at least two eigvalsh of
    2048 × 2048 (the weight's Gram matrix and the probe's), EIGH·n³ each, and the Gram matrix itself 2·n³."""
    n = 2048
    dense, _, _ = _size(_init([n, n, 1]), count=1, rtol=1e-13)
    lanczos, _, _ = _size(_init([n, n, 1]), count=1, rtol=1e-12)
    assert dense.flops > 2 * EIGH * n**3 + 2.0 * n**3 > lanczos.flops


def test_explicit_tanh_layers_count_their_mean_field_solves_and_relu_layers_do_not() -> None:
    layer = {"weight": [[1.0, 0.0], [0.0, 1.0]]}
    tanh, _, _ = _size({"activation": "tanh", "layers": [layer, layer]})
    relu, _, _ = _size({"activation": "relu", "layers": [layer, layer]})
    assert tanh.flops - relu.flops == pytest.approx(2 * MEANFIELD_LAYER, rel=1e-12)
    assert relu.parameters == 2 * (4 + 2)


def test_a_recurrent_network_takes_its_shared_weight_once() -> None:
    init = {"hidden_size": 6, "input_size": 3, "scheme": "orthogonal"}
    work, fields, declared = _size({"recurrent": {"activation": "relu", "steps": 4, "init": init}})
    assert work.widths == (6,) * 5
    assert work.parameters == 6 * 6 + 6 * 3 + 6
    assert [layer.count for layer in declared.layers] == [1, 3]
    assert not declared.layers[0].shared
    assert declared.layers[1].shared
    assert fields.network == "/network/recurrent"
    # the probes drawn: T·n_in inputs and n targets each
    assert declared.input_width == 4 * 3


def test_equal_layers_are_counted_once_with_their_count() -> None:
    """A run of 1000 equal layers is one LayerCost of count 1000, estimated as the 1000 layers one by one."""
    work, _, declared = _size(_init([8] * 1001))
    assert [layer.count for layer in declared.layers] == [1000]
    one_by_one = Declared(tuple(cost.init_layers([8, 8], False)) * 1000, B)
    assert work.flops == pytest.approx(estimate(one_by_one).flops, rel=1e-12)
    assert work.depth == 1000


def test_a_spectrum_adds_to_the_work_and_is_named() -> None:
    """Every weight's SVD, the probes' Jacobians formed and their SVDs, and PROBE_SPECTRUM per probe."""
    work, _, _ = _size(_init([4, 4]), spectrum="full")
    assert work.flops - work.flops_without_spectrum >= 2 * cost.svd_flops(4, 4) + B * cost.PROBE_SPECTRUM
    assert work.spectrum == "full"


def test_the_answer_size_is_counted() -> None:
    """RESPONSE_BASE, LAYER_BYTES a layer, and with a spectrum SPECTRUM_BYTES + VALUE_BYTES a value for every
    layer's weight and every probe, written out here."""
    none, _, _ = _size(_init([30, 20, 10]))
    assert none.response_bytes == RESPONSE_BASE + 2 * LAYER_BYTES
    summary, _, _ = _size(_init([30, 20, 10]), spectrum="summary")
    spectrum = SPECTRUM_BYTES + VALUE_BYTES * SUMMARY_VALUES
    assert summary.response_bytes == RESPONSE_BASE + 2 * LAYER_BYTES + (2 + B) * spectrum
    full, _, _ = _size(_init([30, 20, 10]), spectrum="full")
    values = 20 + 10 + B * 10
    assert full.response_bytes == RESPONSE_BASE + 2 * LAYER_BYTES + (2 + B) * SPECTRUM_BYTES + VALUE_BYTES * values


def test_the_changes_that_fit_do_and_one_more_probe_would_not() -> None:
    """A limit that the request misses but meets without its spectrum, or with rtol 1e-6: both changes named, and
    the most probes that fit."""
    _, _, declared = _size(_init([2048, 2048, 1]), count=4, spectrum="summary", rtol=1e-13)
    limit = max(estimate(replace(declared, spectrum="none")).flops, estimate(replace(declared, rtol=1e-6)).flops)
    assert estimate(declared).flops > limit
    changes = changes_that_fit(declared, lambda work: work.flops <= limit)
    assert {change.what for change in changes} >= {"spectrum", "rtol"}
    assert all(change.work.flops <= limit for change in changes)
    _, _, declared = _size(_init([64, 64, 1]), count=4096)
    limit = estimate(declared).flops / 4.0
    changes = changes_that_fit(declared, lambda work: work.flops <= limit)
    probes = next(change for change in changes if change.what == "probes")
    assert estimate(replace(declared, probes=int(probes.value) + 1)).flops > limit


def test_an_uploaded_state_dict_counts_the_tensors_its_header_declares() -> None:
    tensors = {"0.weight": np.zeros((4, 3)), "0.bias": np.zeros(4), "1.weight": np.zeros((2, 4))}
    file = safetensors.parse(save_numpy(tensors))
    spec = SafetensorsRequest.model_validate({"inputs": {"count": B}})
    work, fields, _ = safetensors_size(file, ["0", "1"], spec)
    assert work.widths == (3, 4, 2)
    assert work.parameters == 12 + 4 + 8
    assert (fields.network, fields.probes) == ("/weights", "/request/inputs/count")


def _refused(response: httpx.Response) -> tuple[str, list[str]]:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    return problem["detail"], [error["pointer"] for error in problem["errors"]]


@pytest.mark.anyio
async def test_the_issues_orthogonal_8192_is_refused_naming_narrower_widths(client: httpx.AsyncClient) -> None:
    body = {"network": {"activation": "tanh", **_init([8192, 8192, 1], "orthogonal")}, "inputs": {"count": 1}}
    detail, pointers = _refused(await client.post("/v1/analyses", json=body))
    assert "JACSPEC_MAX_FLOPS" in detail
    assert "with every width at most" in detail
    assert "which fits" in detail
    assert "/network/init/widths" in pointers


@pytest.mark.anyio
async def test_the_issues_rtol_1e13_on_4096_is_refused_naming_a_larger_rtol(client: httpx.AsyncClient) -> None:
    body = {"network": _init([4096, 4096, 1]), "inputs": {"count": 1}, "options": {"rtol": 1e-13}}
    detail, pointers = _refused(await client.post("/v1/analyses", json=body))
    assert "with options.rtol ≥" in detail
    assert "which fits" in detail
    assert "/options/rtol" in pointers
    assert Settings().max_flops < estimate(_size(_init([4096, 4096, 1]), count=1, rtol=1e-13)[2]).flops


@pytest.mark.anyio
async def test_the_issues_100000_rows_with_a_summary_are_refused_for_their_answer(client: httpx.AsyncClient) -> None:
    body = {"network": _init([1, 1]), "inputs": {"data": [[0.5]] * 100_000}, "options": {"spectrum": "summary"}}
    detail, pointers = _refused(await client.post("/v1/analyses", json=body))
    assert "JACSPEC_MAX_RESPONSE_BYTES" in detail
    assert 'with options.spectrum = "none"' in detail
    assert {"/inputs/data", "/options/spectrum"} <= set(pointers)


@pytest.mark.anyio
async def test_a_million_layers_are_refused_by_their_depth_alone(client: httpx.AsyncClient) -> None:
    """Past the contract's depth (10⁵ layers) a 422; below it, deeper than the work limit allows, a 413 that says
    how many layers would fit, decided from the depth before any layer is looked at."""
    response = await client.post("/v1/analyses", json={"network": _init([1] * 1_000_000)})
    assert response.status_code == 422, response.text
    assert [error["pointer"] for error in response.json()["errors"]] == ["/network/init/widths"]
    detail, pointers = _refused(await client.post("/v1/analyses", json={"network": _init([1] * 50_001)}))
    assert "50000 layers" in detail
    assert "layers it could fit" in detail
    assert pointers == ["/network/init/widths"]


@pytest.mark.anyio
async def test_a_response_limit_refuses_a_full_spectrum_that_would_fit_as_a_summary(
    make_client: ClientFactory,
) -> None:
    body = {"network": _init([200, 200]), "inputs": {"count": 8}, "options": {"spectrum": "full"}}
    full = estimate(_size(_init([200, 200]), count=8, spectrum="full")[2]).response_bytes
    async with make_client(max_response_bytes=full - 1) as client:
        detail, _ = _refused(await client.post("/v1/analyses", json=body))
        assert 'with options.spectrum = "summary"' in detail
        summary = {**body, "options": {"spectrum": "summary"}}
        assert (await client.post("/v1/analyses", json=summary)).status_code == 200


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


def test_equal_runs_of_layers_are_one_object_so_that_estimates_compute_each_once() -> None:
    """Alternating widths make 2·10⁴ runs but two distinct layers; explicit equal layers one run."""
    _, _, declared = _size(_init([3, 5] * 10_000))
    assert len(declared.layers) == 19_999
    assert len({id(layer) for layer in declared.layers}) == 2
    layer = {"weight": [[1.0, 0.0], [0.0, 1.0]]}
    _, _, explicit = _size({"activation": "relu", "layers": [layer] * 50})
    assert [run.count for run in explicit.layers] == [50]
