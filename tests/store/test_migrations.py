"""Alembic's migrations from an empty database, on SQLite and on a real PostgreSQL server: the tables exist with
their columns, ``alembic current`` is the head revision, and a second upgrade changes nothing."""

from __future__ import annotations

import io

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from api.store.base import alembic_config, engine_for, migrate

JOB_COLUMNS = {"id", "owner", "status", "created_at", "started_at", "finished_at", "lease_until", "request", "report"}


def _current(url: str) -> str:
    """What ``alembic current`` prints for ``url``."""
    config = alembic_config(url)
    config.stdout = io.StringIO()
    command.current(config)
    return config.stdout.getvalue()


def _schema(url: str) -> dict[str, set[str]]:
    engine = engine_for(url)
    try:
        inspector = sa.inspect(engine)
        return {table: {c["name"] for c in inspector.get_columns(table)} for table in inspector.get_table_names()}
    finally:
        engine.dispose()


def test_migrations_from_empty_reach_head_and_are_idempotent(database_url: str) -> None:
    assert _schema(database_url) == {}
    migrate(database_url)
    schema = _schema(database_url)
    assert {"alembic_version", "jobs"} <= set(schema)
    assert schema["jobs"] >= JOB_COLUMNS
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head is not None
    assert f"{head} (head)" in _current(database_url)
    migrate(database_url)
    assert _schema(database_url) == schema
    engine = engine_for(database_url)
    with engine.connect() as connection:
        versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert versions == [head]


def test_revisions_form_one_line_from_0001_jobs(database_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    revisions = list(script.walk_revisions())
    assert revisions[-1].revision == "0001_jobs"
    assert revisions[-1].down_revision is None
    assert len(script.get_heads()) == 1
