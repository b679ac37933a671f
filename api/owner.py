"""The owner of a request's jobs and runs as a typed dependency: ``api.auth.owner_of`` (sha256 of the key the
request presented, its first 32 hexadecimal digits; "" on a server without keys). Every stored query filters by it,
so that another key's job or run answers 404 exactly like an unknown one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import owner_of
from api.deps import SettingsDep


def request_owner(request: Request, settings: SettingsDep) -> str:
    """The owner of the request's key ("" when the server has no keys)."""
    return owner_of(request, settings.api_keys)


OwnerDep = Annotated[str, Depends(request_owner)]
