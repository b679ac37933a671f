"""API keys: with JACSPEC_API_KEYS set, every /v1 route needs ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

The check is a router-level dependency built from FastAPI's security classes (``auto_error=False``, so that a
missing key is our problem+json 401 rather than FastAPI's plain 403), which also puts both schemes in the
OpenAPI document: /docs shows an Authorize button. Each presented key is compared with every configured key
in constant time (``hmac.compare_digest``, all keys, no early exit). Every key header that is present must hold a
valid key: with both headers, both are checked, and an ``Authorization`` header that is not ``Bearer <key>``
(another scheme, or no key after it) is refused 401 rather than ignored. No key, right or wrong, is ever logged
or repeated in an answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api.problems import ProblemError

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <key>`, a key of JACSPEC_API_KEYS."
)
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: <key>`, the same keys."
)

Check = Callable[[Request, HTTPAuthorizationCredentials | None, str | None], Awaitable[None]]


def require_key(keys: Sequence[SecretStr]) -> Check:
    """The dependency that refuses a request (401) unless it presents a key header and every key header it presents
    (each ``Authorization`` and each ``X-API-Key``) holds one of ``keys``."""
    # The keys as UTF-8, as the environment holds them; a header arrives as the latin-1 text of its raw bytes,
    # so it is re-encoded as latin-1 to compare the bytes the client sent.
    accepted = [key.get_secret_value().encode() for key in keys]

    async def check(
        request: Request,
        # The security classes are dependencies only so that OpenAPI documents both schemes; the headers are read
        # whole below, because HTTPBearer reads an Authorization of another scheme as no header at all.
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        _api_key: Annotated[str | None, Depends(api_key_header)],
    ) -> None:
        presented = presented_keys(request.headers.getlist("authorization"), request.headers.getlist("x-api-key"))
        if not presented or not all([matches(value, accepted) for value in presented]):  # noqa: C419 - compare all
            raise _unauthorized(bool(presented))

    return check


def presented_keys(authorizations: Sequence[str], api_keys: Sequence[str]) -> list[bytes]:
    """The bytes of every key the headers present. An ``Authorization`` that is not ``Bearer <key>`` presents an
    empty key, which matches none, so that it is refused rather than ignored."""
    keys = [_bearer_key(value) for value in authorizations]
    keys += [value.encode("latin-1") for value in api_keys]
    return keys


def _bearer_key(authorization: str) -> bytes:
    scheme, _, key = authorization.strip().partition(" ")
    return key.strip().encode("latin-1") if scheme.lower() == "bearer" else b""


def matches(presented: bytes, accepted: Sequence[bytes]) -> bool:
    """Whether ``presented`` is one of ``accepted``: compared with each in constant time, with no early exit (an
    empty key matches none)."""
    return any([hmac.compare_digest(presented, key) for key in accepted]) and bool(presented)  # noqa: C419 - every key is compared


def _unauthorized(presented: bool) -> ProblemError:
    detail = (
        "the API key is not valid"
        if presented
        else "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    )
    return ProblemError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def owner_of(request: Request, keys: Sequence[SecretStr]) -> str:
    """Whose jobs and runs a request sees: the first 32 hexadecimal digits of sha256(its API key), or "" when the
    server has no keys. The key check (``require_key``) has passed: every key presented is valid."""
    if not keys:
        return ""
    presented = presented_keys(request.headers.getlist("authorization"), request.headers.getlist("x-api-key"))
    return hashlib.sha256(presented[0]).hexdigest()[:32]
