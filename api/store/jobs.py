"""The jobs table and every query on it. Synchronous: callers run each in a thread (``anyio.to_thread``).

A job's request is kept as the raw body and its content type (so that a queued job can be run again after a
restart, through the same checks), its report as the exact bytes the worker encoded, its error as problem JSON.
Every query a client's request makes filters by ``owner``. Status changes are guarded updates (``WHERE status =
…``), so that a cancel and a finish racing each other leave one of them, never a mix; a job is claimed by one
runner only (PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED``; SQLite, whose writers take turns: an ``UPDATE``
guarded by ``status = 'queued'``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    Engine,
    Float,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.store.base import Base, UTCDateTime, now

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINAL = (SUCCEEDED, FAILED, CANCELLED)
ID_PREFIX = "job_"


class JobRow(Base):
    """One job (revision 0001_jobs)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    content_type: Mapped[str] = mapped_column(String(255))
    request: Mapped[bytes] = mapped_column(LargeBinary())
    run: Mapped[str | None] = mapped_column(String(100))
    step: Mapped[int | None] = mapped_column(BigInteger())
    done: Mapped[int] = mapped_column(Integer(), default=0)
    total: Mapped[int | None] = mapped_column(Integer())
    unit: Mapped[str] = mapped_column(String(16), default="layers")
    estimate_seconds: Mapped[float | None] = mapped_column(Float())
    report: Mapped[bytes | None] = mapped_column(LargeBinary())
    error: Mapped[str | None] = mapped_column(Text())


SUMMARY = [c for c in JobRow.__table__.columns if c.name not in ("request", "report", "content_type", "lease_until")]
"""The columns a job's status needs: not its request nor its report, which may be large, nor how it runs."""


@dataclass(frozen=True)
class JobRecord:
    """A job's state without its request and report."""

    id: str
    owner: str
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run: str | None
    step: int | None
    done: int
    total: int | None
    unit: str
    estimate_seconds: float | None
    error: str | None


@dataclass(frozen=True)
class Claimed:
    """A job a runner has claimed: its id and the request to run."""

    id: str
    owner: str
    content_type: str
    request: bytes
    run: str | None = None
    step: int | None = None


@dataclass(frozen=True)
class Bound:
    """At most ``jobs`` queued or running jobs of one owner, holding at most ``bytes`` of stored requests."""

    jobs: int
    bytes: int


class PendingError(Exception):
    """A new job would pass its owner's ``Bound``: ``count`` jobs queued or running hold ``held`` bytes without it."""

    def __init__(self, count: int, held: int) -> None:
        super().__init__(f"{count} jobs queued or running hold {held} bytes")
        self.count, self.held = count, held


_LOST = object()
"""A claim that another runner won."""


def new_id() -> str:
    """``job_`` and 32 random hexadecimal digits."""
    return ID_PREFIX + secrets.token_hex(16)


def _pending(owner: str) -> Select[int, int]:
    """The count of ``owner``'s queued and running jobs, and the bytes of their requests."""
    return select(func.count(), func.coalesce(func.sum(func.length(JobRow.request)), 0)).where(
        JobRow.owner == owner, JobRow.status.in_((QUEUED, RUNNING))
    )


def _lock_key(owner: str) -> int:
    """The owner's PostgreSQL advisory lock: 60 bits of sha256("jacspec-jobs:" + owner), a bigint."""
    return int(hashlib.sha256(f"jacspec-jobs:{owner}".encode()).hexdigest()[:15], 16)


def _record(row: object) -> JobRecord:
    return JobRecord(**{column.name: getattr(row, column.name) for column in SUMMARY})


class JobStore:
    """The jobs of one database; ``lease_seconds``: how long a claim holds without renewal."""

    def __init__(self, engine: Engine, lease_seconds: float = 15.0) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)

    def create(
        self,
        owner: str,
        content_type: str,
        body: bytes,
        run: str | None = None,
        step: int | None = None,
        bound: Bound | None = None,
    ) -> JobRecord:
        """A new queued job of ``owner`` with the request ``body``; ``PendingError`` (nothing written) when it would
        pass ``bound``. The check and the insert are one transaction, and the owner's submits take turns through it
        (SQLite: the insert's write lock, taken before the check reads; PostgreSQL: an advisory lock on the owner),
        so that concurrent submits cannot all pass a check made before any of them was written."""
        row = JobRow(
            id=new_id(),
            owner=owner,
            status=QUEUED,
            created_at=now(),
            content_type=content_type,
            request=body,
            run=run,
            step=step,
            done=0,
            unit="layers",
        )
        with Session(self.engine) as session, session.begin():
            if bound is not None and self.engine.dialect.name == "postgresql":
                session.execute(select(func.pg_advisory_xact_lock(_lock_key(owner))))
            session.add(row)
            session.flush()
            if bound is not None:
                count, held = session.execute(_pending(owner)).one()
                if count > bound.jobs or held > bound.bytes:
                    raise PendingError(int(count) - 1, int(held) - len(body))  # rolls the insert back
            return _record(row)

    def get(self, owner: str, job_id: str) -> JobRecord | None:
        """The job, if it is ``owner``'s."""
        with self.engine.connect() as connection:
            row = connection.execute(select(*SUMMARY).where(JobRow.id == job_id, JobRow.owner == owner)).first()
        return None if row is None else _record(row)

    def pending(self, owner: str) -> tuple[int, int]:
        """How many of ``owner``'s jobs are queued or running, and the bytes of their stored requests."""
        with self.engine.connect() as connection:
            count, held = connection.execute(_pending(owner)).one()
        return int(count), int(held)

    def report(self, owner: str, job_id: str) -> bytes | None:
        """The stored report bytes of ``owner``'s job (None when it has none)."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(JobRow.report).where(JobRow.id == job_id, JobRow.owner == owner)
            ).scalar_one_or_none()

    def list(
        self, owner: str, cursor: tuple[datetime, str] | None, limit: int, status: str | None = None
    ) -> tuple[list[JobRecord], tuple[datetime, str] | None]:
        """``owner``'s jobs, newest first, after ``cursor`` (the last one's ``(created_at, id)``), at most
        ``limit``; and the cursor of the next page (None on the last)."""
        query = select(*SUMMARY).where(JobRow.owner == owner)
        if status is not None:
            query = query.where(JobRow.status == status)
        if cursor is not None:
            at, last = cursor
            query = query.where(or_(JobRow.created_at < at, and_(JobRow.created_at == at, JobRow.id < last)))
        query = query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
        with self.engine.connect() as connection:
            records = [_record(row) for row in connection.execute(query)]
        if len(records) <= limit:
            return records, None
        records = records[:limit]
        return records, (records[-1].created_at, records[-1].id)

    def claim_next(self) -> Claimed | None:
        """The oldest queued job, now running with a fresh lease, claimed by this caller alone; None if none.
        A claim lost to another runner between the select and the update is tried again with the next job."""
        while True:
            claimed = self._claim_once()
            if claimed is None or isinstance(claimed, Claimed):
                return claimed

    def _claim_once(self) -> Claimed | object | None:
        with Session(self.engine) as session, session.begin():
            query = select(JobRow.id).where(JobRow.status == QUEUED).order_by(JobRow.created_at, JobRow.id).limit(1)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            job_id = session.execute(query).scalar_one_or_none()
            if job_id is None:
                return None
            moment = now()
            claimed = cast(
                CursorResult[Any],
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == QUEUED)
                    .values(status=RUNNING, started_at=moment, lease_until=moment + self.lease)
                ),
            )
            if claimed.rowcount != 1:  # another runner claimed it between the two statements
                return _LOST
            row = session.execute(
                select(JobRow.owner, JobRow.content_type, JobRow.request, JobRow.run, JobRow.step).where(
                    JobRow.id == job_id
                )
            ).one()
            return Claimed(job_id, row.owner, row.content_type, row.request, row.run, row.step)

    def progress(
        self, job_id: str, done: int, total: int | None, unit: str, estimate_seconds: float | None = None
    ) -> bool:
        """Record a running job's progress and renew its lease; False once it is no longer running (cancelled)."""
        values: dict[str, object] = {"done": done, "total": total, "unit": unit, "lease_until": now() + self.lease}
        if estimate_seconds is not None:
            values["estimate_seconds"] = estimate_seconds
        return self._running_update(job_id, values)

    def renew(self, job_id: str) -> bool:
        """Renew a running job's lease; False once it is no longer running."""
        return self._running_update(job_id, {"lease_until": now() + self.lease})

    def succeed(self, job_id: str, report: bytes, parts: tuple[int, int | None, str] | None = None) -> bool:
        """A running job succeeded with ``report`` (the bytes the worker encoded) and its last progress ``parts``
        (done, total, unit); False if it was not running."""
        values: dict[str, object] = {"status": SUCCEEDED, "report": report, "finished_at": now(), "lease_until": None}
        if parts is not None:
            values.update(done=parts[0], total=parts[1], unit=parts[2])
        return self._running_update(job_id, values)

    def fail(self, job_id: str, error: str) -> bool:
        """A running job failed with ``error`` (problem JSON); False if it was not running."""
        return self._running_update(
            job_id, {"status": FAILED, "error": error, "finished_at": now(), "lease_until": None}
        )

    def requeue(self, job_id: str) -> bool:
        """A running job put back in the queue (its server is stopping before it could finish)."""
        return self._running_update(job_id, {"status": QUEUED, "started_at": None, "lease_until": None, "done": 0})

    def _running_update(self, job_id: str, values: dict[str, object]) -> bool:
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.status == RUNNING).values(**values)
            )
        return changed.rowcount == 1

    def cancel(self, owner: str, job_id: str) -> JobRecord | None:
        """Cancel ``owner``'s job if it is queued or running; the job as it is then (None if it is not theirs)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.owner == owner, JobRow.status.in_((QUEUED, RUNNING)))
                .values(status=CANCELLED, finished_at=now(), lease_until=None)
            )
        return self.get(owner, job_id)

    def interrupted(self, error: str) -> int:
        """Mark failed, with ``error``, every running job whose lease has expired (its server died); how many."""
        moment = now()
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(JobRow)
                .where(JobRow.status == RUNNING, JobRow.lease_until < moment)
                .values(status=FAILED, error=error, finished_at=moment, lease_until=None)
            )
        return changed.rowcount

    def purge(self, older_than: datetime) -> int:
        """Delete the finished jobs that finished before ``older_than``; how many."""
        with self.engine.begin() as connection:
            gone = connection.execute(delete(JobRow).where(JobRow.status.in_(FINAL), JobRow.finished_at < older_than))
        return gone.rowcount
