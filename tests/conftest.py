"""Fixtures shared by every test: the app in-process over ASGI, with its lifespan run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest

from api.main import create_app
from api.settings import Settings

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def app_client(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a fresh app made with ``Settings(**settings)``."""
    app = create_app(Settings(**settings))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jacspec.test") as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client() as c:
        yield c


@pytest.fixture
def make_client() -> ClientFactory:
    return app_client
