"""Every client method against the real app: in-process over ASGI, and over HTTP to a uvicorn process."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

import jacspec
from jacspec.models import ActivationInfo, AnalysisReport, BoundsResponse, InitSchemeInfo

TANH_INIT = {"activation": "tanh", "init": {"widths": [32, 32, 32, 4], "scheme": "orthogonal", "gain": 0.5}}
WEIGHTS = [np.array([[1.0, 0.5], [-0.5, 1.0]]), np.array([[0.3, 0.7]])]


@pytest.fixture
async def in_process(client: httpx.AsyncClient) -> AsyncIterator[jacspec.AsyncClient]:
    async with jacspec.AsyncClient(base_url=str(client.base_url), http_client=client) as sdk:
        yield sdk


def _check_tanh_report(report: AnalysisReport) -> None:
    """Orthogonal weights: every σ_j is the gain, so the bound on ‖∂a_L/∂a_j‖ is 0.5^(L−j) exactly."""
    assert isinstance(report, AnalysisReport)
    assert [layer.weight_norm for layer in report.layers] == pytest.approx([0.5] * 3, rel=1e-12)
    for layer in report.layers:
        assert layer.backward_bound_log10 == pytest.approx((3 - layer.index) * math.log10(0.5), abs=1e-12)
    assert report.summary.bound_gain == pytest.approx(1.0, rel=1e-9)


def _check_explicit_report(report: AnalysisReport) -> None:
    assert [layer.weight_norm for layer in report.layers] == pytest.approx(
        [float(np.linalg.norm(w, 2)) for w in WEIGHTS], rel=1e-12
    )
    assert [layer.activation for layer in report.layers] == ["tanh", "tanh"]


def _check_bounds(bounds: BoundsResponse) -> None:
    assert bounds.log10 == pytest.approx(10 * math.log10(0.5), abs=1e-12)
    assert bounds.value == 0.5**10
    assert bounds.verdict == "vanishing"


def _check_catalog(activations: list[ActivationInfo], schemes: list[InitSchemeInfo]) -> None:
    bounds = {a.name: a.derivative_bound for a in activations}
    assert bounds["sigmoid"] == 0.25
    assert bounds["tanh"] == 1.0
    assert {s.name for s in schemes} == {
        "gaussian", "uniform", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "lecun_normal",
        "orthogonal",
    }  # fmt: skip


@pytest.mark.anyio
async def test_async_client_in_process(in_process: jacspec.AsyncClient) -> None:
    _check_tanh_report(await in_process.analyze(TANH_INIT, inputs={"count": 4}))
    network = jacspec.Network.from_arrays(WEIGHTS, activation="tanh")
    _check_explicit_report(await in_process.analyze(network, options={"rtol": 1e-8}))
    _check_bounds(await in_process.bounds(factor=0.5, depth=10))
    suffix = await in_process.bounds(factors=[2.0, 0.5, 0.25])
    assert suffix.backward_bound_log10 == pytest.approx([math.log10(0.125), math.log10(0.25), 0.0], abs=1e-15)
    _check_catalog(await in_process.activations(), await in_process.init_schemes())
    assert (await in_process.health()).version == jacspec.__version__
    assert await in_process.ready() is True


@pytest.mark.anyio
async def test_async_client_raises_the_problem(in_process: jacspec.AsyncClient) -> None:
    chained_wrong = {"layers": [{"weight": [[1.0, 2.0]]}, {"weight": [[1.0, 2.0, 3.0]]}]}
    with pytest.raises(jacspec.UnprocessableEntityError) as caught:
        await in_process.analyze(chained_wrong)
    assert caught.value.errors[0].pointer == "/network/layers/1/weight"
    assert "does not chain" in str(caught.value)


def test_invalid_requests_are_refused_before_sending() -> None:
    """The request models validate on the client: a width of 0 never reaches the network."""
    transport = httpx.MockTransport(lambda request: pytest.fail("nothing should be sent"))
    with (
        jacspec.Client(http_client=httpx.Client(transport=transport)) as client,
        pytest.raises(ValueError, match="greater than or equal to 1"),
    ):
        client.analyze({"init": {"widths": [4, 0], "scheme": "orthogonal"}})


def test_sync_client_over_http(server_url: str) -> None:
    with jacspec.Client(base_url=server_url) as client:
        _check_tanh_report(client.analyze(TANH_INIT, inputs={"count": 4}))
        _check_explicit_report(client.analyze(jacspec.Network.from_arrays(WEIGHTS, activation="tanh")))
        _check_bounds(client.bounds(factor=0.5, depth=10))
        _check_catalog(client.activations(), client.init_schemes())
        assert client.health().status == "ok"
        assert client.ready() is True
        with pytest.raises(jacspec.NotFoundError):
            client.with_options(base_url=f"{server_url}/nothing-here").health()


@pytest.mark.anyio
async def test_async_client_over_http(server_url: str) -> None:
    async with jacspec.AsyncClient(base_url=server_url) as client:
        _check_tanh_report(await client.analyze(TANH_INIT, inputs={"count": 4}))
        _check_bounds(await client.bounds(factor=0.5, depth=10))
        _check_catalog(await client.activations(), await client.init_schemes())
        assert (await client.health()).status == "ok"


def test_ready_is_false_when_nothing_listens() -> None:
    with jacspec.Client(base_url="http://127.0.0.1:9", max_retries=0) as client:
        assert client.ready() is False
        with pytest.raises(jacspec.APIConnectionError):
            client.health()
