"""The event store: an append-only log of job events plus the jobs projection, on SQLAlchemy."""

from engine.store.sql import Change, EventStore, open_store

__all__ = ["Change", "EventStore", "open_store"]
