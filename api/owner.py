"""Who owns a job or a run: ``sha256(api_key).hexdigest()[:32]`` of the key the request presented (the key check
has already accepted it), or "" on a server without keys. Every stored query filters by it, so that another key's
job or run answers 404 exactly like an unknown one."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request

from api.auth import presented_keys
from api.deps import SettingsDep

OWNER_DIGITS = 32


def owner_of_key(key: bytes) -> str:
    """The owner of ``key``: the first 32 hexadecimal digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:OWNER_DIGITS]


def request_owner(request: Request, settings: SettingsDep) -> str:
    """The owner of the request's key ("" when the server has no keys); its first key header when it sent several
    (every one of them is a valid key, or the key check refused it)."""
    if not settings.api_keys:
        return ""
    keys = presented_keys(request.headers.getlist("authorization"), request.headers.getlist("x-api-key"))
    return owner_of_key(keys[0]) if keys else ""


OwnerDep = Annotated[str, Depends(request_owner)]
