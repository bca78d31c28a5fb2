"""Indexes for claims filtered by action and for lease owners; the arming columns.

Workers running different actions share one PostgreSQL: each claims, counts and waits for the
jobs of its own actions only, by (action, next_due_at). release_dead_leases looked for lease
owners by reading the whole table. `armed_until` and `armings` belong to the engine's Job
(engine/projection.py); `armings` starts at 0 for every job already recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("armed_until", sa.Double(), nullable=True))
        batch.add_column(sa.Column("armings", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_jobs_action_next_due_at", "jobs", ["action", "next_due_at"])
    op.create_index("ix_jobs_lease_owner", "jobs", ["lease_owner"])


def downgrade() -> None:
    op.drop_index("ix_jobs_lease_owner", "jobs")
    op.drop_index("ix_jobs_action_next_due_at", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("armings")
        batch.drop_column("armed_until")
