"""The data's lifecycle: prune finished executions, rebuild the projection from the log.

The log has no end by itself: a worker doing a job a minute writes about half a million events
a year. `prune` removes whole executions that ended long enough ago; `rebuild` recomputes every
projection row from the log (the projection is a cache of the log, so it can always be made
again) and says what differed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from engine import defaults
from engine.errors import ConfigurationProblem
from engine.machine import JobState
from engine.projection import Event, Job, fold_checked
from engine.store import EventStore
from engine.store.upkeep import (
    Removed,
    drop_rows_without_events,
    prunable,
    prune_batch,
    rewrite_rows,
    rows_without_events,
)

PRUNE_FLOOR = defaults.JOB_TIMEOUT
"""The shortest --finished-before accepted: until CodePipeline's job timeout has passed, it may
still hand a job out again (a redispatch), and a worker must still know it."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in '90d', '12h', '45m', '30s', '2w' or a plain number of seconds."""
    matched = _DURATION.fullmatch(text)
    seconds = float(matched.group(1)) * _UNITS[(matched.group(2) or "s").lower()] \
        if matched else math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationProblem(
            f"{text!r} is not a duration",
            fix="write a number with a unit: 30d (days), 12h, 45m, 30s or 2w (weeks)")
    return seconds


@dataclass(frozen=True)
class PruneReport:
    removed: Removed
    batches: int
    dry_run: bool


def prune(store: EventStore, now: float, finished_before: float, batch: int = 200,
          dry_run: bool = False) -> PruneReport:
    """Remove executions whose every job is final and whose last event is older than
    `now - finished_before`; never a job in flight, never part of an execution."""
    if finished_before < PRUNE_FLOOR:
        raise ConfigurationProblem(
            f"--finished-before {finished_before / 3600:g} h is shorter than CodePipeline's job "
            f"timeout ({PRUNE_FLOOR / 3600:g} h): a job it may still hand out again must stay "
            "known", fix=f"use {PRUNE_FLOOR / 86400:g}d or longer")
    if batch < 1:
        raise ConfigurationProblem(f"--batch must be at least 1, not {batch}",
                                   fix="use e.g. 200")
    before = now - finished_before
    if dry_run:
        return PruneReport(prunable(store, before), 0, True)
    total, batches = Removed(), 0
    while True:
        removed = prune_batch(store, before, batch)
        if not removed.executions:
            return PruneReport(total, batches, False)
        total, batches = total + removed, batches + 1


@dataclass
class RebuildReport:
    jobs: int = 0
    """Histories read."""
    differences: dict[str, list[str]] = field(default_factory=dict)
    """Job id -> what its row had wrong (field: log says X, row had Y), or that it had none."""
    without_events: list[str] = field(default_factory=list)
    """Rows with no event at all: dropped (the log knows no such job)."""
    illegal: dict[str, str] = field(default_factory=dict)
    """Histories the machine refuses: their rows are left alone (see cpworker replay)."""
    moved: list[str] = field(default_factory=list)
    """Jobs a worker advanced while the rebuild ran: left as the worker wrote them."""
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "differences": self.differences,
                "without_events": self.without_events, "illegal": self.illegal,
                "moved": self.moved, "dry_run": self.dry_run}


_FIELDS = [f.name for f in fields(Job)]


def differences(rebuilt: Job, stored: Job | None) -> list[str]:
    """What `stored` has that the log does not say, field by field."""
    if stored is None:
        return ["no projection row"]
    found = []
    for name in _FIELDS:
        want, have = getattr(rebuilt, name), getattr(stored, name)
        if isinstance(want, float) and isinstance(have, float) and abs(want - have) < 1e-6:
            continue
        if want != have:
            shown = [v.value if isinstance(v, JobState) else v for v in (want, have)]
            found.append(f"{name}: log says {shown[0]!r}, row had {shown[1]!r}")
    return found


def rebuild(store: EventStore, dry_run: bool = False, batch: int = 500) -> RebuildReport:
    """Fold every history again; rewrite the rows that differ (unless `dry_run`)."""
    report = RebuildReport(dry_run=dry_run)
    pending: list[tuple[Job, int | None]] = []

    def flush() -> None:
        if pending and not dry_run:
            report.moved += rewrite_rows(store, pending)
        pending.clear()

    histories: list[list[Event]] = []
    for history in store.histories():
        histories.append(history)
        if len(histories) >= batch:
            _compare(store, histories, report, pending)
            histories = []
            flush()
    _compare(store, histories, report, pending)
    flush()
    report.without_events = rows_without_events(store)
    if report.without_events and not dry_run:
        drop_rows_without_events(store, report.without_events)
    return report


def _compare(store: EventStore, histories: list[list[Event]], report: RebuildReport,
             pending: list[tuple[Job, int | None]]) -> None:
    stored = store.get_many([h[0].job_id for h in histories])
    for history in histories:
        report.jobs += 1
        job_id = history[0].job_id
        rebuilt, _, refusal = fold_checked(history)
        if refusal is not None or rebuilt is None:
            report.illegal[job_id] = str(refusal)
            continue
        found = differences(rebuilt, stored.get(job_id))
        if found:
            report.differences[job_id] = found
            row = stored.get(job_id)
            pending.append((rebuilt, None if row is None else row.last_seq))


__all__ = ["PRUNE_FLOOR", "PruneReport", "RebuildReport", "differences", "parse_duration", "prune",
           "rebuild"]
