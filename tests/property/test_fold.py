"""Property 1: a legal history folds to one row, however it is folded.

All at once (`fold`), one event at a time from the previous row (`project`, what the scheduler
does), checked (`fold_checked`, what `cpworker replay` does), through the `transitions` Machine
(`replay`), and after a round trip through a real store: appended in random batches, each
batch's row written with it, then the row and the history read back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.machine import replay
from engine.projection import Event, Job, fold, fold_checked, project
from engine.store import Change, EventStore, open_store
from tests.property.conftest import examples
from tests.property.strategies import histories


def _incrementally(history: list[Event]) -> Job | None:
    row: Job | None = None
    for event in history:
        row = project(row, event)
    return row


@given(histories())
def test_a_history_folds_to_the_same_row_all_at_once_and_one_event_at_a_time(
    history: list[Event],
) -> None:
    row = fold(history)
    assert row is not None
    assert _incrementally(history) == row
    assert fold_checked(history) == (row, len(history), None)
    replayed = replay([e.type for e in history], row.job_id)
    assert (replayed.state, replayed.accepted, replayed.error) == (row.state, len(history), None)
    assert row.last_seq == len(history) and row.updated_at == history[-1].at
    # What count_active and the claims rely on: a working row is due some time, a final one never.
    assert (row.next_due_at is None) == row.final


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    """One SQLite file for every example (each job has an id of its own). synchronous=OFF: what
    is tested is what the store gives back, not what survives a power cut."""
    path: Path = tmp_path_factory.mktemp("property") / "state.db"
    opened = open_store(f"sqlite:///{path}", synchronous="OFF")
    try:
        yield opened
    finally:
        opened.close()


_ids = itertools.count(1)


@settings(max_examples=examples(40))
@given(history=histories(), cuts=st.lists(st.integers(1, 40), max_size=6))
def test_a_history_stored_in_random_batches_reads_back_as_it_folds(
    store: EventStore, history: list[Event], cuts: list[int],
) -> None:
    job_id = f"job-{next(_ids):06d}"
    history = [replace(e, job_id=job_id) for e in history]
    bounds = sorted({0, len(history), *(c for c in cuts if c < len(history))})
    row: Job | None = None
    for start, end in itertools.pairwise(bounds):
        batch = history[start:end]
        new = row is None
        for event in batch:
            row = project(row, event)
        assert row is not None
        store.commit([Change(batch, row, new=new)])
        assert store.get(job_id) == row  # the projection as of every commit, not only the last
    assert row == fold(history)
    stored = store.history(job_id)
    assert stored == history
    assert fold(stored) == store.get(job_id) == row
