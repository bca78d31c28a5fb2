"""Finished jobs indexed by when they finished (a partial index), for prune.

`cpworker prune` removes the oldest finished executions a batch at a time. It chose them by
grouping the whole jobs table by execution for every batch: with a million finished jobs that
read every row to remove 200 executions, about a hundred jobs a second. Indexed by
(updated_at, job_id) where `next_due_at IS NULL` (a final state has no due time, every other
state has one: engine.projection), the oldest finished jobs are read in order from the start of
the index, and each candidate execution is then checked through the execution_id index, so a
batch reads about what it removes. Jobs in flight are not in this index.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FINISHED = "next_due_at IS NULL"


def upgrade() -> None:
    op.create_index("ix_jobs_finished_updated", "jobs", ["updated_at", "job_id"],
                    sqlite_where=sa.text(FINISHED), postgresql_where=sa.text(FINISHED))


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_updated", "jobs")
