"""``Client`` and ``AsyncClient``: one method per endpoint, typed answers, retries with jittered backoff.

    from jacspec import Client
    with Client() as client:
        report = client.analyze({"activation": "tanh",
                                 "init": {"widths": [256] * 31, "scheme": "orthogonal", "gain": 0.5}})
    print(report.summary.verdict)          # vanishing

sdk/README.md has more; tests/sdk/test_readme.py runs its examples against a live server.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from jacspec._exceptions import APIConnectionError, APITimeoutError, status_error
from jacspec._version import __version__
from jacspec.models import (
    ActivationInfo,
    AnalysisReport,
    AnalysisRequest,
    BoundsRequest,
    BoundsResponse,
    Health,
    InitSchemeInfo,
    Inputs,
    Network,
    Options,
    SafetensorsNetwork,
    SafetensorsRequest,
    Thresholds,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({429, 503})

Model = TypeVar("Model", bound=BaseModel)
Multipart = dict[str, tuple[str | None, bytes | str, str]]
_ACTIVATIONS = TypeAdapter(list[ActivationInfo])
_INIT_SCHEMES = TypeAdapter(list[InitSchemeInfo])


class _BaseClient:
    """What both clients share: configuration, request bodies, retry timing."""

    def __init__(self, base_url: str | None, api_key: str | None, max_retries: int) -> None:
        self.base_url = (base_url or os.environ.get("JACSPEC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("JACSPEC_API_KEY")
        self.max_retries = max_retries

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"jacspec-python/{__version__}"}
        if body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _next_delay(
        self, attempt: int, *, response: httpx.Response | None = None, error: httpx.TransportError | None = None
    ) -> float:
        """Seconds to wait before retrying after this failed attempt, or raise its exception if it is final.

        Connection errors, 429 and 503 are retried until ``max_retries`` retries are spent; anything else raises.
        """
        last = attempt == self.max_retries
        if error is not None:
            if not last:
                return self._retry_delay(attempt, None)
            if isinstance(error, httpx.TimeoutException):
                raise APITimeoutError(error.request) from error
            raise APIConnectionError(request=error.request) from error
        assert response is not None
        if response.status_code in RETRY_STATUSES and not last:
            return self._retry_delay(attempt, response)
        raise status_error(response)

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        """``Retry-After`` when the server gives a sane one; else 0.5·2^attempt s, capped at 8 s, less up to 25%."""
        if response is not None:
            retry_after = _retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                return retry_after
        delay = min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY)
        return delay * (1.0 - 0.25 * random.random())

    @staticmethod
    def _analysis_body(
        network: Network | Mapping[str, Any],
        inputs: Inputs | Mapping[str, Any] | None,
        options: Options | Mapping[str, Any] | None,
    ) -> bytes:
        fields: dict[str, Any] = {"network": network}
        if inputs is not None:
            fields["inputs"] = inputs
        if options is not None:
            fields["options"] = options
        return _json(AnalysisRequest.model_validate(fields))

    @staticmethod
    def _safetensors_parts(
        weights: str | os.PathLike[str] | bytes,
        network: SafetensorsNetwork | Mapping[str, Any] | None,
        inputs: Inputs | Mapping[str, Any] | None,
        options: Options | Mapping[str, Any] | None,
    ) -> Multipart:
        blob = weights if isinstance(weights, bytes) else Path(weights).read_bytes()
        fields = {
            key: value for key, value in (("network", network), ("inputs", inputs), ("options", options)) if value
        }
        request = SafetensorsRequest.model_validate(fields).model_dump_json(exclude_none=True)
        return {
            "weights": ("model.safetensors", blob, "application/octet-stream"),
            "request": (None, request, "application/json"),
        }

    @staticmethod
    def _bounds_body(
        factors: Sequence[float] | None,
        factor: float | None,
        depth: int | None,
        thresholds: Thresholds | Mapping[str, float] | None,
    ) -> bytes:
        fields: dict[str, Any] = {"factors": factors, "factor": factor, "depth": depth}
        if thresholds is not None:
            fields["thresholds"] = thresholds
        return _json(BoundsRequest.model_validate(fields))


def _json(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` of delay-seconds or an HTTP date; None if absent or unreasonable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return seconds if 0.0 <= seconds <= MAX_RETRY_AFTER else None


class Client(_BaseClient):
    """A synchronous jacspec client.

    ``base_url`` and ``api_key`` default to ``JACSPEC_BASE_URL`` (else http://127.0.0.1:8000) and
    ``JACSPEC_API_KEY``. Connection errors, 429 and 503 are retried ``max_retries`` times with jittered
    exponential backoff, honouring ``Retry-After``; other errors raise at once. Pass ``http_client`` to
    bring your own ``httpx.Client`` (a proxy, a transport, ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout)

    def analyze(
        self,
        network: Network | Mapping[str, Any],
        *,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses: the per-layer report of ``network`` (explicit ``layers`` or an ``init`` recipe)."""
        response = self._request("POST", "/v1/analyses", self._analysis_body(network, inputs, options))
        return AnalysisReport.model_validate_json(response.content)

    def analyze_safetensors(
        self,
        weights: str | os.PathLike[str] | bytes,
        *,
        network: SafetensorsNetwork | Mapping[str, Any] | None = None,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses with a .safetensors file (a path or its bytes): a PyTorch ``state_dict`` saved with
        ``safetensors.torch.save_file``. ``network`` names the activations and, optionally, the layers in order."""
        parts = self._safetensors_parts(weights, network, inputs, options)
        response = self._request("POST", "/v1/analyses", files=parts)
        return AnalysisReport.model_validate_json(response.content)

    def bounds(
        self,
        *,
        factors: Sequence[float] | None = None,
        factor: float | None = None,
        depth: int | None = None,
        thresholds: Thresholds | Mapping[str, float] | None = None,
    ) -> BoundsResponse:
        """POST /v1/bounds: ∏ f_j from per-layer ``factors``, or ``factor``^``depth``."""
        response = self._request("POST", "/v1/bounds", self._bounds_body(factors, factor, depth, thresholds))
        return BoundsResponse.model_validate_json(response.content)

    def activations(self) -> list[ActivationInfo]:
        """GET /v1/activations."""
        return _ACTIVATIONS.validate_json(self._request("GET", "/v1/activations").content)

    def init_schemes(self) -> list[InitSchemeInfo]:
        """GET /v1/init-schemes."""
        return _INIT_SCHEMES.validate_json(self._request("GET", "/v1/init-schemes").content)

    def health(self) -> Health:
        """GET /healthz."""
        return Health.model_validate_json(self._request("GET", "/healthz").content)

    def ready(self) -> bool:
        """GET /readyz, once: whether the server takes work now."""
        try:
            response = self._client.get(self._url("/readyz"), headers=self._headers(body=False))
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _request(
        self, method: str, path: str, body: bytes | None = None, *, files: Multipart | None = None
    ) -> httpx.Response:
        headers = self._headers(body is not None)
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.request(method, self._url(path), content=body, files=files, headers=headers)
            except httpx.TransportError as exc:
                time.sleep(self._next_delay(attempt, error=exc))
                continue
            if response.is_success:
                return response
            time.sleep(self._next_delay(attempt, response=response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        """Close the connection pool (not a client you passed in)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The asynchronous twin of :class:`Client`, on ``httpx.AsyncClient``: the same methods, awaited."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=timeout)

    async def analyze(
        self,
        network: Network | Mapping[str, Any],
        *,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses."""
        response = await self._request("POST", "/v1/analyses", self._analysis_body(network, inputs, options))
        return AnalysisReport.model_validate_json(response.content)

    async def analyze_safetensors(
        self,
        weights: str | os.PathLike[str] | bytes,
        *,
        network: SafetensorsNetwork | Mapping[str, Any] | None = None,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses with a .safetensors file (a path or its bytes)."""
        parts = self._safetensors_parts(weights, network, inputs, options)
        response = await self._request("POST", "/v1/analyses", files=parts)
        return AnalysisReport.model_validate_json(response.content)

    async def bounds(
        self,
        *,
        factors: Sequence[float] | None = None,
        factor: float | None = None,
        depth: int | None = None,
        thresholds: Thresholds | Mapping[str, float] | None = None,
    ) -> BoundsResponse:
        """POST /v1/bounds."""
        response = await self._request("POST", "/v1/bounds", self._bounds_body(factors, factor, depth, thresholds))
        return BoundsResponse.model_validate_json(response.content)

    async def activations(self) -> list[ActivationInfo]:
        """GET /v1/activations."""
        return _ACTIVATIONS.validate_json((await self._request("GET", "/v1/activations")).content)

    async def init_schemes(self) -> list[InitSchemeInfo]:
        """GET /v1/init-schemes."""
        return _INIT_SCHEMES.validate_json((await self._request("GET", "/v1/init-schemes")).content)

    async def health(self) -> Health:
        """GET /healthz."""
        return Health.model_validate_json((await self._request("GET", "/healthz")).content)

    async def ready(self) -> bool:
        """GET /readyz, once."""
        try:
            response = await self._client.get(self._url("/readyz"), headers=self._headers(body=False))
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def _request(
        self, method: str, path: str, body: bytes | None = None, *, files: Multipart | None = None
    ) -> httpx.Response:
        headers = self._headers(body is not None)
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._client.request(
                    method, self._url(path), content=body, files=files, headers=headers
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(self._next_delay(attempt, error=exc))
                continue
            if response.is_success:
                return response
            await asyncio.sleep(self._next_delay(attempt, response=response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()
