"""When the execution's submission was first intended, on the job's row.

A resumed submission looks for the run an earlier attempt may have started; the external
system's lists are newest first, so the time of the first intent tells the lookup where to stop
reading (engine.action.JobContext.intended_at). Rows recorded before stay empty: their lookups
read back as far as the action allows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("intended_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("intended_at")
