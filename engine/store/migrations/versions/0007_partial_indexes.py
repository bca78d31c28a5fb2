"""The jobs' scheduling indexes hold unfinished jobs only (partial indexes).

A finished job's row has no due time (engine.projection: every final state clears
next_due_at) and no lease (every committed step clears it, and a final job is never claimed),
yet the plain indexes on next_due_at, (action, next_due_at) and lease_owner kept an entry for
each of them: with a million finished jobs and a hundred thousand in flight, nine entries in
ten of the indexes that claims, due times, capacity counts and lease look-ups read were of
jobs nobody would touch again. Restricted to `next_due_at IS NOT NULL` and
`lease_owner IS NOT NULL`, they stay the size of the work in flight however long the log
grows, and a job leaves them when it finishes. The queries that use them say the predicate
in their WHERE (or a comparison on the column, which implies it): SQLite uses a partial index
only when the query's WHERE implies the index's.

execution_id keeps its full index: prune and a redispatched job's look-up read finished jobs
by it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UNFINISHED = "next_due_at IS NOT NULL"
LEASED = "lease_owner IS NOT NULL"


def _partial(name: str, columns: list[str], where: str) -> None:
    op.create_index(name, "jobs", columns, sqlite_where=sa.text(where),
                    postgresql_where=sa.text(where))


def upgrade() -> None:
    op.drop_index("ix_jobs_next_due_at", "jobs")
    op.drop_index("ix_jobs_action_next_due_at", "jobs")
    op.drop_index("ix_jobs_lease_owner", "jobs")
    _partial("ix_jobs_unfinished_due", ["next_due_at"], UNFINISHED)
    _partial("ix_jobs_unfinished_action_due", ["action", "next_due_at"], UNFINISHED)
    _partial("ix_jobs_leased_owner", ["lease_owner"], LEASED)


def downgrade() -> None:
    op.drop_index("ix_jobs_leased_owner", "jobs")
    op.drop_index("ix_jobs_unfinished_action_due", "jobs")
    op.drop_index("ix_jobs_unfinished_due", "jobs")
    op.create_index("ix_jobs_lease_owner", "jobs", ["lease_owner"])
    op.create_index("ix_jobs_action_next_due_at", "jobs", ["action", "next_due_at"])
    op.create_index("ix_jobs_next_due_at", "jobs", ["next_due_at"])
