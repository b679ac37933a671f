"""The SDK against an app with JACSPEC_API_KEYS set: its key (argument or $JACSPEC_API_KEY) is accepted."""

from __future__ import annotations

import pytest

import jacspec
from tests.helpers import ClientFactory

pytestmark = pytest.mark.anyio

KEY = "sdk-key-0123456789"


async def test_the_sdk_key_is_accepted(make_client: ClientFactory) -> None:
    async with (
        make_client(api_keys=[KEY]) as http,
        jacspec.AsyncClient(base_url=str(http.base_url), api_key=KEY, http_client=http) as sdk,
    ):
        bounds = await sdk.bounds(factor=0.5, depth=10)
    assert bounds.verdict == "vanishing"


async def test_the_key_from_the_environment_is_accepted(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JACSPEC_API_KEY", KEY)
    async with (
        make_client(api_keys=[KEY]) as http,
        jacspec.AsyncClient(base_url=str(http.base_url), http_client=http) as sdk,
    ):
        activations = await sdk.activations()
    assert "tanh" in {a.name for a in activations}


@pytest.mark.parametrize("key", ["not-the-key", ""])
async def test_a_wrong_or_missing_key_raises_authentication_error(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.delenv("JACSPEC_API_KEY", raising=False)
    async with (
        make_client(api_keys=[KEY]) as http,
        jacspec.AsyncClient(base_url=str(http.base_url), api_key=key, http_client=http) as sdk,
    ):
        with pytest.raises(jacspec.AuthenticationError) as caught:
            await sdk.init_schemes()
    error = caught.value
    assert error.status_code == 401
    assert error.request_id is not None
    assert error.request_id == error.response.headers["x-request-id"]
    assert KEY not in str(error)
