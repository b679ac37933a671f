"""The database layer: the declarative ``Base``, ``engine_for(url)`` and ``migrate(url)``.

SQLAlchemy 2 rather than a hand-written layer: one API over SQLite (the default file, zero set-up) and PostgreSQL
(several replicas), with Alembic for the schema's migrations, run programmatically at startup (no alembic.ini):
the scripts live in ``api/store/migrations``. Two processes starting at once (``JACSPEC_WORKERS`` > 1, or several
replicas) migrate one after the other: PostgreSQL under an advisory lock, a SQLite file under a ``flock`` of a lock
file beside it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from anyio import to_thread
from sqlalchemy import DateTime, Engine, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "head"
MIGRATION_LOCK = 0x6A616373  # "jacs": the advisory lock PostgreSQL migrations hold
BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection waits for another's write lock before failing (``sqlite3.connect(timeout=)``)."""


class Base(DeclarativeBase):
    """The declarative base of every table (``api.store.jobs``, ``api.store.runs``)."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime``: PostgreSQL's ``timestamptz``; SQLite stores the naive UTC time, read back
    with ``tzinfo=UTC``."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def engine_for(url: str) -> Engine:
    """An engine for ``url``. SQLite: write-ahead logging (readers do not wait for the writer), foreign keys on,
    usable from any thread, a busy timeout; an in-memory database is one connection shared by every thread."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    memory = parsed.database in (None, "", ":memory:")
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}}
    if memory:
        options["poolclass"] = StaticPool
    engine = create_engine(url, **options)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config(url: str) -> Config:
    """Alembic's configuration for ``url`` without an ini file: the scripts in ``api/store/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, engine: Engine | None = None) -> None:
    """Bring the database at ``url`` to the newest revision (``alembic upgrade head``); nothing when it is there.

    A second process migrating at the same time waits for the first, then finds nothing left to do.
    """
    engine = engine or engine_for(url)
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, HEAD)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive ``flock`` on ``<file>.migrate.lock`` for a SQLite file; nothing for other databases."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        yield
        return
    with open(f"{database}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def in_session(engine: Engine, query: Callable[[Session], T]) -> T:
    """``query(session)`` in a thread (never on the event loop), in one transaction committed when it returns."""

    def call() -> T:
        with Session(engine) as session, session.begin():
            return query(session)

    return await to_thread.run_sync(call)


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)
