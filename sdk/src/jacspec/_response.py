"""``APIResponse``: one call's HTTP answer, what ``client.with_raw_response.<method>(...)`` returns.

Its ``status_code``, ``headers`` and ``request_id`` (the server's ``X-Request-ID``) are there at once, and
``parse()`` gives the model that the plain method returns::

    raw = client.with_raw_response.bounds(factor=0.5, depth=10)
    bounds = raw.parse()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import httpx

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-ID"


class APIResponse(Generic[T]):
    """The successful HTTP answer of one call, before it is parsed into the model the plain method returns.

    It comes after the same retries as the plain method, and an error answer still raises the same
    :class:`~jacspec.APIStatusError`. ``parse()`` validates the body once and keeps the result.
    """

    def __init__(self, http_response: httpx.Response, parse: Callable[[bytes], T], *, retries_taken: int) -> None:
        self.http_response = http_response
        """The ``httpx.Response`` itself (its body already read)."""
        self.retries_taken = retries_taken
        """How many times the call was retried before this answer (0: the first attempt answered)."""
        self._parse = parse
        self._parsed: tuple[T] | None = None

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def request_id(self) -> str | None:
        """The server's id for this request, its ``X-Request-ID`` header: quote it when reporting a problem."""
        request_id: str | None = self.http_response.headers.get(REQUEST_ID_HEADER)
        return request_id

    @property
    def url(self) -> httpx.URL:
        return self.http_response.url

    @property
    def content(self) -> bytes:
        """The body as received (JSON)."""
        return self.http_response.content

    def parse(self) -> T:
        """The body as the model the plain method returns (``AnalysisReport``, ``BoundsResponse``, …)."""
        if self._parsed is None:
            self._parsed = (self._parse(self.http_response.content),)
        return self._parsed[0]

    def __repr__(self) -> str:
        request = self.http_response.request
        return f"<APIResponse [{self.status_code}] {request.method} {request.url}>"
