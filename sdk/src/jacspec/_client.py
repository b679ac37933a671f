"""``Client`` and ``AsyncClient``: one method per endpoint, typed answers, retries with jittered backoff.

    from jacspec import Client
    with Client() as client:
        report = client.analyze({"activation": "tanh",
                                 "init": {"widths": [256] * 31, "scheme": "orthogonal", "gain": 0.5}})
        quick = client.with_options(timeout=5.0, max_retries=0).bounds(factor=0.5, depth=10)
        raw = client.with_raw_response.bounds(factor=0.5, depth=10)   # raw.status_code, raw.request_id
    print(report.summary.verdict)          # vanishing

The shapes follow openai-python: ``with_options`` (an alias of ``copy``) gives a client with some settings
changed that sends through the same connection pool, and ``with_raw_response`` has the same methods
answering with an :class:`~jacspec.APIResponse`. sdk/README.md and docs/sdk.md have more; the test suite
runs their examples against a live server.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, Self, TypeVar, cast

import httpx
from pydantic import BaseModel, TypeAdapter

from jacspec._exceptions import APIConnectionError, APITimeoutError, status_error
from jacspec._jobs import AsyncJobs, Jobs
from jacspec._response import APIResponse
from jacspec._runs import AsyncRuns, Runs
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
    SurveyReport,
    Thresholds,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({429, 503})

T = TypeVar("T")
P = ParamSpec("P")
Timeout = float | httpx.Timeout | None
"""Seconds (one float for every phase), an ``httpx.Timeout`` per phase, or None: wait for ever."""
Multipart = dict[str, tuple[str | None, bytes | str, str]]
_ACTIVATIONS = TypeAdapter(list[ActivationInfo])
_INIT_SCHEMES = TypeAdapter(list[InitSchemeInfo])


class NotGiven:
    """The type of :data:`NOT_GIVEN`: an argument left out, told apart from ``timeout=None`` (no timeout)."""

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()


class _BaseClient:
    """What both clients share: configuration, request bodies, retry timing."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: Timeout, max_retries: int) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more; got {max_retries}")
        self.base_url = (base_url or os.environ.get("JACSPEC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("JACSPEC_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self._raw_response = False

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"jacspec-python/{__version__}"}
        if body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _answer(self, response: httpx.Response, parse: Callable[[bytes], T], retries_taken: int) -> T:
        """The parsed model; or, for a client behind ``with_raw_response``, the APIResponse typed as such there."""
        raw = APIResponse(response, parse, retries_taken=retries_taken)
        return cast(T, raw) if self._raw_response else raw.parse()

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
            raise APIConnectionError(request=error.request, cause=error) from error
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
        run: str | None = None,
        step: int | None = None,
    ) -> bytes:
        fields: dict[str, Any] = {"network": network, "run": run, "step": step}
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
        survey: bool,
    ) -> Multipart:
        """The multipart parts; ``survey`` says which report the server answers with (a SurveyReport or an
        AnalysisReport), so that each method parses the one it returns."""
        blob = weights if isinstance(weights, bytes) else Path(weights).read_bytes()
        fields: dict[str, Any] = {
            key: value for key, value in (("network", network), ("inputs", inputs), ("options", options)) if value
        }
        fields["survey"] = survey
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


def _to_raw(method: Callable[P, T]) -> Callable[P, APIResponse[T]]:
    """A method of a client whose ``_raw_response`` is set, typed as what it then returns."""
    return cast("Callable[P, APIResponse[T]]", method)


def _to_raw_async(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[APIResponse[T]]]:
    """The same for a coroutine method of an AsyncClient."""
    return cast("Callable[P, Awaitable[APIResponse[T]]]", method)


class Client(_BaseClient):
    """A synchronous jacspec client.

    ``base_url`` and ``api_key`` default to ``JACSPEC_BASE_URL`` (else http://127.0.0.1:8000) and
    ``JACSPEC_API_KEY``. ``timeout`` applies to every request (default: 300 s, 5 s to connect; with your own
    ``http_client``, that client's timeout). Connection errors, 429 and 503 are retried ``max_retries`` times
    with jittered exponential backoff, honouring ``Retry-After``; other errors raise at once. Pass
    ``http_client`` to bring your own ``httpx.Client`` (a proxy, a transport, ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        if isinstance(timeout, NotGiven):
            timeout = DEFAULT_TIMEOUT if http_client is None else http_client.timeout
        super().__init__(base_url, api_key, timeout, max_retries)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout)

    def copy(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        http_client: httpx.Client | None = None,
    ) -> Self:
        """A client with the given settings and this one's for the rest, sending through this client's connection
        pool (or through ``http_client``). The copy never closes that pool: closing this client does."""
        return self.__class__(
            base_url=base_url or self.base_url,
            api_key=(self.api_key or "") if api_key is None else api_key,
            timeout=self.timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
            http_client=http_client or self._client,
        )

    with_options = copy
    """``client.with_options(timeout=5.0, max_retries=0).analyze(...)``: settings for one call or a few."""

    @cached_property
    def with_raw_response(self) -> ClientWithRawResponse:
        """The same methods, each answering with an :class:`APIResponse` (status, headers, request id, ``parse()``)."""
        return ClientWithRawResponse(self)

    @cached_property
    def jobs(self) -> Jobs:
        """Analyses run in the background: ``create``, ``retrieve``, ``list``, ``cancel``, ``events``, ``wait``."""
        return Jobs(self)

    @cached_property
    def runs(self) -> Runs:
        """Training runs' points: ``list``, ``retrieve``, ``step``, ``compare``, ``add_event``, ``delete``."""
        return Runs(self)

    def _raw(self) -> Self:
        """A copy whose calls answer with the APIResponse (typed as the parsed model)."""
        raw = self.copy()
        raw._raw_response = True
        return raw

    def analyze(
        self,
        network: Network | Mapping[str, Any],
        *,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
        run: str | None = None,
        step: int | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses: the per-layer report of ``network`` (explicit ``layers`` or an ``init`` recipe);
        with ``run`` (and ``step``, else the run's last step + 1) it is also kept as that point of the run."""
        body = self._analysis_body(network, inputs, options, run, step)
        return self._call("POST", "/v1/analyses", AnalysisReport.model_validate_json, body=body)

    def analyze_safetensors(
        self,
        weights: str | os.PathLike[str] | bytes,
        *,
        network: SafetensorsNetwork | Mapping[str, Any] | None = None,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses with a .safetensors file (a path or its bytes): a PyTorch ``state_dict`` saved with
        ``safetensors.torch.save_file``, analysed as a chain of layers ``P.weight`` (``"survey": false``).
        ``network`` names the activations and, optionally, the layers in order. For a state dict that is no chain
        (a transformer's, a CNN's), ``survey_safetensors``."""
        parts = self._safetensors_parts(weights, network, inputs, options, survey=False)
        return self._call("POST", "/v1/analyses", AnalysisReport.model_validate_json, files=parts)

    def survey_safetensors(
        self, weights: str | os.PathLike[str] | bytes, *, options: Options | Mapping[str, Any] | None = None
    ) -> SurveyReport:
        """POST /v1/analyses with a .safetensors file and ``"survey": true``: σ_max, σ_min, the Frobenius norm and
        the stable rank of every matrix and convolution kernel in it, the other tensors listed as skipped
        (``options.spectrum`` adds their singular values)."""
        parts = self._safetensors_parts(weights, None, None, options, survey=True)
        return self._call("POST", "/v1/analyses", SurveyReport.model_validate_json, files=parts)

    def bounds(
        self,
        *,
        factors: Sequence[float] | None = None,
        factor: float | None = None,
        depth: int | None = None,
        thresholds: Thresholds | Mapping[str, float] | None = None,
    ) -> BoundsResponse:
        """POST /v1/bounds: ∏ f_j from per-layer ``factors``, or ``factor``^``depth``."""
        body = self._bounds_body(factors, factor, depth, thresholds)
        return self._call("POST", "/v1/bounds", BoundsResponse.model_validate_json, body=body)

    def activations(self) -> list[ActivationInfo]:
        """GET /v1/activations."""
        return self._call("GET", "/v1/activations", _ACTIVATIONS.validate_json)

    def init_schemes(self) -> list[InitSchemeInfo]:
        """GET /v1/init-schemes."""
        return self._call("GET", "/v1/init-schemes", _INIT_SCHEMES.validate_json)

    def health(self) -> Health:
        """GET /healthz."""
        return self._call("GET", "/healthz", Health.model_validate_json)

    def ready(self) -> bool:
        """GET /readyz, once: whether the server takes work now."""
        try:
            response = self._client.get(self._url("/readyz"), headers=self._headers(body=False), timeout=self.timeout)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[bytes], T],
        *,
        body: bytes | None = None,
        files: Multipart | None = None,
    ) -> T:
        """Send with retries; the parsed answer, or raise the error of the last attempt."""
        headers = self._headers(body is not None)
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.request(
                    method, self._url(path), content=body, files=files, headers=headers, timeout=self.timeout
                )
            except httpx.TransportError as exc:
                time.sleep(self._next_delay(attempt, error=exc))
                continue
            if response.is_success:
                return self._answer(response, parse, attempt)
            time.sleep(self._next_delay(attempt, response=response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        """Close the connection pool (not a client you passed in, nor the pool of the client this was copied from)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class ClientWithRawResponse:
    """``client.with_raw_response``: :class:`Client`'s methods (but ``ready``), each returning an
    :class:`APIResponse` whose ``parse()`` gives what the plain method returns."""

    def __init__(self, client: Client) -> None:
        raw = client.copy()
        raw._raw_response = True
        self.analyze = _to_raw(raw.analyze)
        self.analyze_safetensors = _to_raw(raw.analyze_safetensors)
        self.survey_safetensors = _to_raw(raw.survey_safetensors)
        self.bounds = _to_raw(raw.bounds)
        self.activations = _to_raw(raw.activations)
        self.init_schemes = _to_raw(raw.init_schemes)
        self.health = _to_raw(raw.health)


class AsyncClient(_BaseClient):
    """The asynchronous twin of :class:`Client`, on ``httpx.AsyncClient``: the same methods, awaited."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if isinstance(timeout, NotGiven):
            timeout = DEFAULT_TIMEOUT if http_client is None else http_client.timeout
        super().__init__(base_url, api_key, timeout, max_retries)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=timeout)

    def copy(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> Self:
        """A client with the given settings and this one's for the rest, sending through this client's connection
        pool (or through ``http_client``). The copy never closes that pool: closing this client does. Use it on
        the event loop this client's pool was used on."""
        return self.__class__(
            base_url=base_url or self.base_url,
            api_key=(self.api_key or "") if api_key is None else api_key,
            timeout=self.timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
            http_client=http_client or self._client,
        )

    with_options = copy
    """``await client.with_options(timeout=5.0, max_retries=0).analyze(...)``: settings for one call or a few."""

    @cached_property
    def with_raw_response(self) -> AsyncClientWithRawResponse:
        """The same methods, each answering with an :class:`APIResponse` (status, headers, request id, ``parse()``)."""
        return AsyncClientWithRawResponse(self)

    @cached_property
    def jobs(self) -> AsyncJobs:
        """Analyses run in the background: the methods of ``Client.jobs``, awaited."""
        return AsyncJobs(self)

    @cached_property
    def runs(self) -> AsyncRuns:
        """Training runs' points: the methods of ``Client.runs``, awaited."""
        return AsyncRuns(self)

    def _raw(self) -> Self:
        """A copy whose calls answer with the APIResponse (typed as the parsed model)."""
        raw = self.copy()
        raw._raw_response = True
        return raw

    async def analyze(
        self,
        network: Network | Mapping[str, Any],
        *,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
        run: str | None = None,
        step: int | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses (kept as the point (``run``, ``step``) with a ``run``)."""
        body = self._analysis_body(network, inputs, options, run, step)
        return await self._call("POST", "/v1/analyses", AnalysisReport.model_validate_json, body=body)

    async def analyze_safetensors(
        self,
        weights: str | os.PathLike[str] | bytes,
        *,
        network: SafetensorsNetwork | Mapping[str, Any] | None = None,
        inputs: Inputs | Mapping[str, Any] | None = None,
        options: Options | Mapping[str, Any] | None = None,
    ) -> AnalysisReport:
        """POST /v1/analyses with a .safetensors file (a path or its bytes), as a chain of layers."""
        parts = self._safetensors_parts(weights, network, inputs, options, survey=False)
        return await self._call("POST", "/v1/analyses", AnalysisReport.model_validate_json, files=parts)

    async def survey_safetensors(
        self, weights: str | os.PathLike[str] | bytes, *, options: Options | Mapping[str, Any] | None = None
    ) -> SurveyReport:
        """POST /v1/analyses with a .safetensors file and ``"survey": true``: the weight survey."""
        parts = self._safetensors_parts(weights, None, None, options, survey=True)
        return await self._call("POST", "/v1/analyses", SurveyReport.model_validate_json, files=parts)

    async def bounds(
        self,
        *,
        factors: Sequence[float] | None = None,
        factor: float | None = None,
        depth: int | None = None,
        thresholds: Thresholds | Mapping[str, float] | None = None,
    ) -> BoundsResponse:
        """POST /v1/bounds."""
        body = self._bounds_body(factors, factor, depth, thresholds)
        return await self._call("POST", "/v1/bounds", BoundsResponse.model_validate_json, body=body)

    async def activations(self) -> list[ActivationInfo]:
        """GET /v1/activations."""
        return await self._call("GET", "/v1/activations", _ACTIVATIONS.validate_json)

    async def init_schemes(self) -> list[InitSchemeInfo]:
        """GET /v1/init-schemes."""
        return await self._call("GET", "/v1/init-schemes", _INIT_SCHEMES.validate_json)

    async def health(self) -> Health:
        """GET /healthz."""
        return await self._call("GET", "/healthz", Health.model_validate_json)

    async def ready(self) -> bool:
        """GET /readyz, once."""
        try:
            response = await self._client.get(
                self._url("/readyz"), headers=self._headers(body=False), timeout=self.timeout
            )
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[bytes], T],
        *,
        body: bytes | None = None,
        files: Multipart | None = None,
    ) -> T:
        """Send with retries; the parsed answer, or raise the error of the last attempt."""
        headers = self._headers(body is not None)
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._client.request(
                    method, self._url(path), content=body, files=files, headers=headers, timeout=self.timeout
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(self._next_delay(attempt, error=exc))
                continue
            if response.is_success:
                return self._answer(response, parse, attempt)
            await asyncio.sleep(self._next_delay(attempt, response=response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def close(self) -> None:
        """Close the connection pool (not a client you passed in, nor the pool of the client this was copied from)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()


class AsyncClientWithRawResponse:
    """``async_client.with_raw_response``: :class:`AsyncClient`'s methods (but ``ready``), each awaiting to an
    :class:`APIResponse` whose ``parse()`` gives what the plain method returns."""

    def __init__(self, client: AsyncClient) -> None:
        raw = client.copy()
        raw._raw_response = True
        self.analyze = _to_raw_async(raw.analyze)
        self.analyze_safetensors = _to_raw_async(raw.analyze_safetensors)
        self.survey_safetensors = _to_raw_async(raw.survey_safetensors)
        self.bounds = _to_raw_async(raw.bounds)
        self.activations = _to_raw_async(raw.activations)
        self.init_schemes = _to_raw_async(raw.init_schemes)
        self.health = _to_raw_async(raw.health)
