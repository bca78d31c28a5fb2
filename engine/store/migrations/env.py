"""Alembic environment: migrations run on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from engine.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "cpworker migrations run through the store (engine.store.open_store), "
        "which passes its connection; do not call alembic on them directly"
    )
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
