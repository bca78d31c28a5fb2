"""The uploads ledger: output artifacts an action put in S3, recorded as S3 confirmed them.

An upload happens in the middle of an action's check, between two events of the job machine;
recorded here at once, a crash before the success report finds it and uploads nothing again
(engine.artifacts).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
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
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("uploads")
