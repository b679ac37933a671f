"""api.store.runs on both databases: revision 0002_runs from empty, a point replaced in place, purge_runs."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.store import runs
from api.store.base import engine_for, migrate, now


def report(verdict: str) -> bytes:
    return json.dumps({"layers": [], "summary": {"verdict": verdict}}).encode()


def test_points_replace_assign_and_purge(database_url: str) -> None:
    migrate(database_url)
    engine = engine_for(database_url)
    try:
        assert {"run_points", "run_events"} <= set(sa.inspect(engine).get_table_names())
        with Session(engine) as s, s.begin():
            assert runs.record_point(s, "o", "r", None, report("healthy")) == 0
            assert runs.record_point(s, "o", "r", None, report("healthy")) == 1
            assert runs.record_point(s, "o", "r", 0, report("exploding"), job_id="job_x") == 0
            runs.add_event(s, "o", "r", 1, "diverged", "NaN", "w")
        with Session(engine) as s, s.begin():
            stored = runs.points(s, "o", "r")
            assert [p.step for p in stored] == [0, 1]
            assert stored[0].report == report("exploding")
            assert s.scalar(sa.select(sa.func.count()).select_from(runs.RunPointRow)) == 2
            assert runs.points(s, "other", "r") == []
        with Session(engine) as s, s.begin():
            assert runs.purge_runs(s, now() - timedelta(hours=1)) == 0
            assert runs.purge_runs(s, now() + timedelta(seconds=1)) == 3
            assert runs.points(s, "o", "r") == []
    finally:
        engine.dispose()
