"""The event store: an append-only log of job events plus the jobs projection, on SQLAlchemy."""

from engine.store.opening import open_store
from engine.store.sql import Change, Claim, ClaimRequest, EventStore

__all__ = ["Change", "Claim", "ClaimRequest", "EventStore", "open_store"]
