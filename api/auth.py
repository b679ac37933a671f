"""API keys: with JACSPEC_API_KEYS set, every /v1 route needs ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

The check is a router-level dependency built from FastAPI's security classes (``auto_error=False``, so that a
missing key is our problem+json 401 rather than FastAPI's plain 403), which also puts both schemes in the
OpenAPI document: /docs shows an Authorize button. Each presented key is compared with every configured key
in constant time (``hmac.compare_digest``, all keys, no early exit). No key, right or wrong, is ever logged
or repeated in an answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api.problems import ProblemError

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <key>`, a key of JACSPEC_API_KEYS."
)
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: <key>`, the same keys."
)

Check = Callable[[HTTPAuthorizationCredentials | None, str | None], Awaitable[None]]


def require_key(keys: Sequence[SecretStr]) -> Check:
    """The dependency that refuses a request (401) unless it presents one of ``keys`` in either header."""
    # The keys as UTF-8, as the environment holds them; a header arrives as the latin-1 text of its raw bytes,
    # so it is re-encoded as latin-1 to compare the bytes the client sent.
    accepted = [key.get_secret_value().encode() for key in keys]

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        api_key: Annotated[str | None, Depends(api_key_header)],
    ) -> None:
        bearer_key = credentials.credentials if credentials is not None else None
        presented = [value.encode("latin-1") for value in (bearer_key, api_key) if value]
        if not any([matches(value, accepted) for value in presented]):  # noqa: C419 - every key is compared
            raise _unauthorized(bool(presented))

    return check


def matches(presented: bytes, accepted: Sequence[bytes]) -> bool:
    """Whether ``presented`` is one of ``accepted``: compared with each in constant time, with no early exit."""
    return any([hmac.compare_digest(presented, key) for key in accepted])  # noqa: C419 - every key is compared


def _unauthorized(presented: bool) -> ProblemError:
    detail = (
        "the API key is not valid"
        if presented
        else "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    )
    return ProblemError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
