"""The run points and run events tables and every query on them. Synchronous: callers run each in a thread
(``anyio.to_thread``), each in a ``Session`` they commit (``with Session(engine) as s, s.begin(): …``).

A point is a report kept as step ``step`` of ``run`` for ``owner``: its exact bytes, its verdict and kind (read
once when it is stored, so that listing runs reads no report). The same (owner, run, step) again replaces it
(one row: ``INSERT … ON CONFLICT DO UPDATE`` on both databases). Every query filters by ``owner``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CursorResult,
    Delete,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.store.base import Base, UTCDateTime, now

SURVEY = "survey"
ANALYSIS = "analysis"


class RunPointRow(Base):
    """One point of a run (revision 0002_runs)."""

    __tablename__ = "run_points"
    __table_args__ = (
        UniqueConstraint("owner", "run", "step", name="run_points_owner_run_step"),
        Index("run_points_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(32))
    run: Mapped[str] = mapped_column(String(100))
    step: Mapped[int] = mapped_column(BigInteger())
    verdict: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    report: Mapped[bytes] = mapped_column(LargeBinary())
    job_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunEventRow(Base):
    """One event of a run (revision 0002_runs)."""

    __tablename__ = "run_events"
    __table_args__ = (Index("run_events_owner_run", "owner", "run", "id"),)

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(32))
    run: Mapped[str] = mapped_column(String(100))
    step: Mapped[int] = mapped_column(BigInteger())
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text())
    parameter: Mapped[str | None] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class StoredPoint:
    step: int
    created_at: datetime
    report: bytes


@dataclass(frozen=True)
class RunRecord:
    """A run as GET /v1/runs lists it."""

    run: str
    points: int
    first_step: int
    last_step: int
    last_verdict: str
    updated_at: datetime


@dataclass(frozen=True)
class EventRecord:
    step: int
    kind: str
    message: str
    parameter: str | None
    created_at: datetime


def verdict_and_kind(report: bytes) -> tuple[str, str]:
    """A report's ``summary.verdict`` and ``analysis``; a survey's ``survey`` twice."""
    document = json.loads(report)
    if document.get("kind") == SURVEY:
        return SURVEY, SURVEY
    return str(document.get("summary", {}).get("verdict", "")), ANALYSIS


def next_step(session: Session, owner: str, run: str) -> int:
    """The run's last step + 1, or 0 for a run without points."""
    last = session.scalar(select(func.max(RunPointRow.step)).where(_of(owner, run)))
    return 0 if last is None else int(last) + 1


def record_point(
    session: Session, owner: str, run: str, step: int | None, report_bytes: bytes, job_id: str | None = None
) -> int:
    """Keep ``report_bytes`` as the point (run, step) of ``owner``, replacing one at that step; ``step`` None is
    the run's last step + 1 (or 0). Returns the step."""
    if step is None:
        step = next_step(session, owner, run)
    verdict, kind = verdict_and_kind(report_bytes)
    values = {
        "owner": owner,
        "run": run,
        "step": step,
        "verdict": verdict,
        "kind": kind,
        "report": report_bytes,
        "job_id": job_id,
        "created_at": now(),
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(RunPointRow).values(**values)
    replaced = {key: statement.excluded[key] for key in ("verdict", "kind", "report", "job_id", "created_at")}
    session.execute(statement.on_conflict_do_update(index_elements=["owner", "run", "step"], set_=replaced))
    return step


def _of(owner: str, run: str) -> ColumnElement[bool]:
    return (RunPointRow.owner == owner) & (RunPointRow.run == run)


def points(session: Session, owner: str, run: str) -> list[StoredPoint]:
    """Every point of the run, by step."""
    rows = session.execute(
        select(RunPointRow.step, RunPointRow.created_at, RunPointRow.report)
        .where(_of(owner, run))
        .order_by(RunPointRow.step)
    )
    return [StoredPoint(int(step), created_at, report) for step, created_at, report in rows]


def point(session: Session, owner: str, run: str, step: int) -> StoredPoint | None:
    """The point at ``step``, or None."""
    row = session.execute(
        select(RunPointRow.step, RunPointRow.created_at, RunPointRow.report).where(
            _of(owner, run), RunPointRow.step == step
        )
    ).first()
    return None if row is None else StoredPoint(int(row[0]), row[1], row[2])


def list_runs(
    session: Session, owner: str, cursor: tuple[datetime, str] | None, limit: int
) -> tuple[list[RunRecord], tuple[datetime, str] | None]:
    """``owner``'s runs, most recently updated first (then by name), after ``cursor`` (the last one's
    ``(updated_at, run)``), at most ``limit``; and the next page's cursor (None on the last)."""
    updated = func.max(RunPointRow.created_at)
    grouped = (
        select(
            RunPointRow.run.label("run"),
            func.count().label("points"),
            func.min(RunPointRow.step).label("first_step"),
            func.max(RunPointRow.step).label("last_step"),
            updated.label("updated_at"),
        )
        .where(RunPointRow.owner == owner)
        .group_by(RunPointRow.run)
        .subquery()
    )
    query = select(grouped)
    if cursor is not None:
        at, last = cursor
        query = query.where((grouped.c.updated_at < at) | ((grouped.c.updated_at == at) & (grouped.c.run > last)))
    rows = session.execute(query.order_by(grouped.c.updated_at.desc(), grouped.c.run).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    records = []
    for row in rows:
        updated_at = UTCDateTime().process_result_value(row.updated_at, session.get_bind().dialect)
        assert updated_at is not None
        verdict = session.scalar(
            select(RunPointRow.verdict).where(_of(owner, row.run), RunPointRow.step == row.last_step)
        )
        records.append(
            RunRecord(row.run, int(row.points), int(row.first_step), int(row.last_step), str(verdict), updated_at)
        )
    following = (records[-1].updated_at, records[-1].run) if more else None
    return records, following


def add_event(
    session: Session, owner: str, run: str, step: int, kind: str, message: str, parameter: str | None
) -> EventRecord:
    """Keep an event of the run."""
    created_at = now()
    session.add(
        RunEventRow(
            owner=owner, run=run, step=step, kind=kind, message=message, parameter=parameter, created_at=created_at
        )
    )
    return EventRecord(step, kind, message, parameter, created_at)


def events(session: Session, owner: str, run: str) -> list[EventRecord]:
    """The run's events in the order they came."""
    rows = session.scalars(
        select(RunEventRow).where(RunEventRow.owner == owner, RunEventRow.run == run).order_by(RunEventRow.id)
    )
    return [EventRecord(int(r.step), r.kind, r.message, r.parameter, r.created_at) for r in rows]


def delete_run(session: Session, owner: str, run: str) -> bool:
    """Delete the run's points and events; whether there was anything."""
    gone = _deleted(session, delete(RunPointRow).where(_of(owner, run)))
    gone += _deleted(session, delete(RunEventRow).where(RunEventRow.owner == owner, RunEventRow.run == run))
    return bool(gone)


def purge_runs(session: Session, before: datetime) -> int:
    """Delete every point and event stored before ``before`` (retention: JACSPEC_RETENTION_SECONDS); how many."""
    gone = _deleted(session, delete(RunPointRow).where(RunPointRow.created_at < before))
    gone += _deleted(session, delete(RunEventRow).where(RunEventRow.created_at < before))
    return gone


def _deleted(session: Session, statement: Delete) -> int:
    """The rows ``statement`` deleted."""
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)
