"""The run points (a report kept as step `step` of `run`, one per (owner, run, step)) and run events tables.

Revision ID: 0002_runs
Revises: 0001_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_runs"
down_revision = "0001_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_points",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("run", sa.String(100), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("report", sa.LargeBinary(), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "run", "step", name="run_points_owner_run_step"),
    )
    op.create_index("run_points_created", "run_points", ["created_at"])
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("run", sa.String(100), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("parameter", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("run_events_owner_run", "run_events", ["owner", "run", "id"])


def downgrade() -> None:
    op.drop_index("run_events_owner_run", "run_events")
    op.drop_table("run_events")
    op.drop_index("run_points_created", "run_points")
    op.drop_table("run_points")
