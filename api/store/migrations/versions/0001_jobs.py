"""The jobs table: one row per job, its request as the raw body, its report as the bytes the worker encoded.

Revision ID: 0001_jobs
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_jobs"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("request", sa.LargeBinary(), nullable=False),
        sa.Column("run", sa.String(100), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("unit", sa.String(16), nullable=False, server_default="layers"),
        sa.Column("estimate_seconds", sa.Float(), nullable=True),
        sa.Column("report", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("jobs_owner_created", "jobs", ["owner", "created_at", "id"])
    op.create_index("jobs_status_created", "jobs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("jobs_status_created", "jobs")
    op.drop_index("jobs_owner_created", "jobs")
    op.drop_table("jobs")
