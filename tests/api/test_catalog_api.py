"""GET /v1/activations and /v1/init-schemes: the catalogue, its closed-form bounds and the SDK's agreement with it."""

from __future__ import annotations

import math
import typing
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from jacspec.models import ActivationName, ActivationSpec, InitSchemeName

pytestmark = pytest.mark.anyio

NAMES = ["linear", "relu", "leaky_relu", "tanh", "sigmoid", "hard_tanh", "elu", "selu", "gelu", "silu", "softplus"]
SCHEMES = [
    "gaussian",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "orthogonal",
]


def _phi(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _big_phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _silu_derivative(z: float) -> float:
    s = 1 / (1 + math.exp(-z))
    return s * (1 + z * (1 - s))


def _silu_bound() -> float:
    """sup of SiLU' by golden-section search on [0, 5] (it is unimodal there), no scipy."""
    lo, hi = 0.0, 5.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if _silu_derivative(a) < _silu_derivative(b):
            lo = a
        else:
            hi = b
    return _silu_derivative((lo + hi) / 2)


BOUNDS = {
    "linear": 1.0,
    "relu": 1.0,
    "leaky_relu": 1.0,  # max(1, 0.01)
    "tanh": 1.0,
    "sigmoid": 0.25,
    "hard_tanh": 1.0,
    "elu": 1.0,  # max(1, alpha = 1)
    "selu": 1.0507009873554805 * 1.6732632423543772,
    "gelu": _big_phi(math.sqrt(2)) + math.sqrt(2) * _phi(math.sqrt(2)),
    "silu": _silu_bound(),
    "softplus": 1.0,
}
PARAMETERS = {
    "leaky_relu": {"negative_slope": 0.01},
    "elu": {"alpha": 1.0},
    "softplus": {"beta": 1.0},
    "hard_tanh": {"min_val": -1.0, "max_val": 1.0},
}


async def catalog(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    entries: list[dict[str, Any]] = response.json()
    return entries


async def test_activations_are_the_eleven(client: httpx.AsyncClient) -> None:
    entries = await catalog(client, "/v1/activations")
    names = [entry["name"] for entry in entries]
    assert sorted(names) == sorted(NAMES)
    assert len(names) == len(set(names))


async def test_derivative_bounds_match_closed_forms(client: httpx.AsyncClient) -> None:
    entries = {entry["name"]: entry for entry in await catalog(client, "/v1/activations")}
    for name, expected in BOUNDS.items():
        assert entries[name]["derivative_bound"] == pytest.approx(expected, rel=1e-12), name
    # The numbers DESIGN §1 quotes.
    assert entries["gelu"]["derivative_bound"] == pytest.approx(1.1289, abs=1e-4)
    assert entries["silu"]["derivative_bound"] == pytest.approx(1.0998, abs=1e-4)
    assert entries["selu"]["derivative_bound"] == pytest.approx(1.7581, abs=1e-4)


async def test_activation_entries_are_complete(client: httpx.AsyncClient) -> None:
    for entry in await catalog(client, "/v1/activations"):
        for key in ("formula", "derivative_formula", "bound_formula"):
            assert isinstance(entry[key], str)
            assert entry[key], (entry["name"], key)
        expected = PARAMETERS.get(entry["name"], {})
        assert {p["name"]: p["default"] for p in entry["parameters"]} == expected, entry["name"]
        assert all(p["description"] for p in entry["parameters"])


async def test_sdk_activation_names_equal_the_servers(client: httpx.AsyncClient) -> None:
    server = {entry["name"] for entry in await catalog(client, "/v1/activations")}
    sdk = set(typing.get_args(ActivationName))
    assert sdk == server


def _sdk_activation_models() -> dict[str, type[BaseModel]]:
    union = typing.get_args(ActivationSpec)[0]  # Annotated[Union[...], Field(discriminator=...)]
    found: dict[str, type[BaseModel]] = {}
    for member in typing.get_args(union):
        assert issubclass(member, BaseModel)
        (name,) = typing.get_args(member.model_fields["name"].annotation)
        found[name] = member
    return found


async def test_sdk_activation_parameters_equal_the_servers(client: httpx.AsyncClient) -> None:
    server = {
        entry["name"]: {p["name"]: p["default"] for p in entry["parameters"]}
        for entry in await catalog(client, "/v1/activations")
    }
    sdk_models = _sdk_activation_models()
    assert set(sdk_models) == set(server)
    for name, model in sdk_models.items():
        sdk = {field: info.default for field, info in model.model_fields.items() if field != "name"}
        assert sdk == server[name], name


async def test_activation_parameters_are_accepted_by_analyses(client: httpx.AsyncClient) -> None:
    """Each parameter the catalogue lists is accepted by POST /v1/analyses and changes the bound where it should."""
    weight = [[2.0, 0.0], [0.0, 1.0]]
    for name, params in PARAMETERS.items():
        body = {"network": {"activation": {"name": name, **params}, "layers": [{"weight": weight}]}}
        response = await client.post("/v1/analyses", json=body)
        assert response.status_code == 200, (name, response.text)
    body = {"network": {"activation": {"name": "leaky_relu", "negative_slope": 3.0}, "layers": [{"weight": weight}]}}
    response = await client.post("/v1/analyses", json=body)
    assert response.status_code == 200
    assert response.json()["layers"][0]["derivative_bound"] == 3.0


async def test_init_schemes_are_the_eight(client: httpx.AsyncClient) -> None:
    entries = await catalog(client, "/v1/init-schemes")
    names = [entry["name"] for entry in entries]
    assert sorted(names) == sorted(SCHEMES)
    assert len(names) == len(set(names))
    assert set(typing.get_args(InitSchemeName)) == set(names)
    for entry in entries:
        assert entry["distribution"] in {"normal", "uniform", "orthogonal"}
        assert entry["std_formula"]
        assert entry["torch_equivalent"]
    distribution = {entry["name"]: entry["distribution"] for entry in entries}
    assert distribution["orthogonal"] == "orthogonal"
    assert distribution["xavier_uniform"] == "uniform"
    assert distribution["he_normal"] == "normal"
