"""api.store.jobs on SQLite and PostgreSQL: retention purges only old finished jobs, each queued job is claimed
by one runner alone (threads claiming at once), status changes are guarded, an expired lease is interrupted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update

from api.store.base import engine_for, migrate, now
from api.store.jobs import JobRow, JobStore


@pytest.fixture
def store(database_url: str) -> JobStore:
    engine = engine_for(database_url)
    migrate(database_url, engine)
    return JobStore(engine, lease_seconds=30.0)


def finished(store: JobStore, owner: str = "o") -> str:
    job = store.create(owner, "application/json", b"{}")
    claimed = store.claim_next()
    assert claimed is not None
    assert claimed.id == job.id
    assert store.succeed(job.id, b'{"r": 1}')
    return job.id


def age(store: JobStore, job_id: str, days: float) -> None:
    with store.engine.begin() as connection:
        connection.execute(update(JobRow).where(JobRow.id == job_id).values(finished_at=now() - timedelta(days=days)))


def test_retention_purges_old_finished_jobs_only(store: JobStore) -> None:
    old, recent = finished(store), finished(store)
    age(store, old, 40)
    waiting = store.create("o", "application/json", b"{}")
    with store.engine.begin() as connection:  # a queued job is never purged, however old
        connection.execute(update(JobRow).where(JobRow.id == waiting.id).values(created_at=now() - timedelta(days=90)))
    assert store.purge(now() - timedelta(days=30)) == 1
    assert store.get("o", old) is None
    assert store.get("o", recent) is not None
    assert store.report("o", recent) == b'{"r": 1}'
    assert store.get("o", waiting.id) is not None


def test_each_job_is_claimed_once(store: JobStore) -> None:
    ids = {store.create("o", "application/json", b"{}").id for _ in range(12)}
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda _: store.claim_next(), range(20)))
    claimed = [c.id for c in claims if c is not None]
    assert sorted(claimed) == sorted(ids)
    assert store.claim_next() is None


def test_status_changes_are_guarded(store: JobStore) -> None:
    job = store.create("o", "application/json", b"{}")
    assert store.claim_next() is not None
    cancelled = store.cancel("o", job.id)
    assert cancelled is not None
    assert cancelled.status == "cancelled"
    assert not store.succeed(job.id, b"{}")  # a cancelled job stays cancelled
    assert not store.progress(job.id, 1, 2, "stages")
    assert store.report("o", job.id) is None
    assert store.cancel("someone else", job.id) is None


def test_an_expired_lease_is_interrupted(store: JobStore) -> None:
    job = store.create("o", "application/json", b"{}")
    assert store.claim_next() is not None
    assert store.interrupted('{"type": "t"}') == 0  # its lease runs
    with store.engine.begin() as connection:
        connection.execute(update(JobRow).where(JobRow.id == job.id).values(lease_until=now() - timedelta(seconds=1)))
    assert store.interrupted('{"type": "t"}') == 1
    record = store.get("o", job.id)
    assert record is not None
    assert record.status == "failed"
    assert record.error == '{"type": "t"}'
