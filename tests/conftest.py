"""Fixtures for every test: ``client`` (the app in-process), ``make_client`` (apps with other settings) and
``server_url`` (``python -m api`` for the session). What they are made of is in ``tests/helpers.py``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.helpers import ClientFactory, app_client, running_server
from tests.postgres import database_url, postgres_server  # noqa: F401  (fixtures)

if "JACSPEC_DATABASE_URL" not in os.environ:
    # Apps and servers started by the tests keep their jobs in a file of the session's own, not in the working
    # directory's jacspec.sqlite3 (which `make serve` uses); a test that needs a fresh database asks for one.
    _SESSION_DATABASE = tempfile.mkdtemp(prefix="jacspec-tests-")
    os.environ["JACSPEC_DATABASE_URL"] = f"sqlite:///{_SESSION_DATABASE}/jacspec.sqlite3"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app with the default settings."""
    async with app_client() as c:
        yield c


@pytest.fixture
def make_client() -> ClientFactory:
    """:func:`tests.helpers.app_client`: ``async with make_client(**settings) as client``."""
    return app_client


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """``python -m api`` with the default settings, for the whole session."""
    with running_server() as url:
        yield url
