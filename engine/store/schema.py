"""The tables, in SQLAlchemy Core, portable between SQLite and PostgreSQL.

Migrations (engine/store/migrations) create exactly these; a test checks they agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()


UTCTime: sa.Double[float] = sa.Double()
"""A UTC instant as seconds since the Unix epoch (double precision), as the Clock gives it.

Migration 0003 moved from DATETIME columns: converting every timestamp on every row written
and read cost a quarter of the scheduler's time. A SQL shell shows them with
`datetime(at, 'unixepoch', 'subsec')` (SQLite) or `to_timestamp(at)` (PostgreSQL).
"""

JSONData = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

UNFINISHED = sa.text("next_due_at IS NOT NULL")
"""The rows of jobs not in a final state (engine.projection clears next_due_at at the end)."""
LEASED = sa.text("lease_owner IS NOT NULL")
"""The rows some worker holds or held a lease on, never a finished job's."""
FINISHED = sa.text("next_due_at IS NULL")
"""The rows of finished jobs, what prune reads (UNFINISHED's complement)."""

events = sa.Table(
    "events",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("at", UTCTime, nullable=False),
    sa.Column("version", sa.SmallInteger, nullable=False),
    sa.Column("data", JSONData, nullable=False),
    sa.Column("worker", sa.String(200), nullable=True),
)
"""Append-only. The key (job_id, seq) turns two writers racing on one job into an IntegrityError."""

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("action_type", sa.String(200), nullable=False),
    sa.Column("execution_id", sa.String(100), nullable=False, index=True),
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
    sa.Column("armed_until", UTCTime, nullable=True),
    sa.Column("armings", sa.Integer, nullable=False, server_default="0"),
    sa.Column("intended_at", UTCTime, nullable=True),
    sa.Index("ix_jobs_unfinished_due", "next_due_at",
             sqlite_where=UNFINISHED, postgresql_where=UNFINISHED),
    sa.Index("ix_jobs_unfinished_action_due", "action", "next_due_at",
             sqlite_where=UNFINISHED, postgresql_where=UNFINISHED),
    sa.Index("ix_jobs_leased_owner", "lease_owner",
             sqlite_where=LEASED, postgresql_where=LEASED),
    sa.Index("ix_jobs_finished_updated", "updated_at", "job_id",
             sqlite_where=FINISHED, postgresql_where=FINISHED),
)
"""The projection: one row per job, updated in the same transaction as each append.

The scheduling indexes are partial (migration 0007): they hold unfinished jobs only, so they
stay the size of the work in flight however many finished jobs the log keeps. A final state
has no due time and no lease, hence the predicates. (next_due_at) serves claims and due times
of a worker running every action, (action, next_due_at) those of workers that run only some
actions and their capacity counts, lease_owner release_dead_leases and the leases an owner
holds. A query reaches them only if its WHERE implies the predicate (SQLite takes it
literally): `next_due_at IS NOT NULL`, or a comparison on next_due_at, and the same for
lease_owner; tests/store/test_query_plans.py checks the plans. Finished jobs have their own
partial index, (updated_at, job_id) where `next_due_at IS NULL` (migration 0008): prune reads
the oldest of them in order without reading the jobs in flight or grouping the whole table.
"""


uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("execution_id", sa.String(100), primary_key=True),
    sa.Column("artifact", sa.String(100), primary_key=True),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("object_key", sa.String(1024), nullable=False),
    sa.Column("etag", sa.String(200), nullable=True),
    sa.Column("version_id", sa.String(1024), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("kms_key_id", sa.String(2048), nullable=True),
    sa.Column("at", UTCTime, nullable=False),
    sa.Column("worker", sa.String(200), nullable=True),
)
"""Output artifacts uploaded to S3, one row per (action execution, artifact), written the
moment S3 confirmed the upload (engine.artifacts). An upload is a side effect outside the job
machine's events (it happens in the middle of an action's check), so it has its own
append-only ledger: a crash before the report finds it recorded and uploads nothing again, and
the success event and `inspect` say what was uploaded. The first row wins: a second upload of
the same artifact for the same execution is refused by the key, never recorded twice.
"""
