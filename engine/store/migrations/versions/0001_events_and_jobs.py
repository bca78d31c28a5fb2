"""The events log and the jobs projection.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# The types as they were at this revision (a migration never follows later schema changes).
UTCTime = sa.DateTime(timezone=True)
JSONData = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("at", UTCTime, nullable=False),
        sa.Column("version", sa.SmallInteger, nullable=False),
        sa.Column("data", JSONData, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("action_type", sa.String(200), nullable=False),
        sa.Column("execution_id", sa.String(100), nullable=False),
        sa.Column("created_at", UTCTime, nullable=False),
        sa.Column("updated_at", UTCTime, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("next_due_at", UTCTime, nullable=True),
        sa.Column("pipeline", JSONData, nullable=False),
        sa.Column("nonce", sa.String(100), nullable=True),
        sa.Column("external_id", sa.String(1500), nullable=True),
        sa.Column("run", JSONData, nullable=False),
        sa.Column("details", JSONData, nullable=True),
        sa.Column("pending", JSONData, nullable=True),
        sa.Column("continues", sa.String(64), nullable=True),
        sa.Column("continued_by", sa.String(64), nullable=True),
        sa.Column("continuation_token", sa.Text, nullable=True),
        sa.Column("problem", sa.Text, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("run_started_at", UTCTime, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("intent_by", sa.String(200), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", UTCTime, nullable=True),
    )
    op.create_index("ix_jobs_execution_id", "jobs", ["execution_id"])
    op.create_index("ix_jobs_next_due_at", "jobs", ["next_due_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_next_due_at", "jobs")
    op.drop_index("ix_jobs_execution_id", "jobs")
    op.drop_table("jobs")
    op.drop_table("events")
