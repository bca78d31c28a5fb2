"""prune and rebuild, run against every backend (a SQLite file and a PostgreSQL database).

prune removes whole executions that ended before a moment, never a job in flight and never part
of an execution; rebuild recomputes the projection from the log, says what differed and leaves
alone what a worker moved meanwhile.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from engine.cli import main
from engine.errors import ConfigurationProblem
from engine.history import replay_jobs
from engine.maintenance import parse_duration, prune, rebuild
from engine.projection import fold
from engine.store import EventStore, open_store
from engine.store.schema import events, jobs
from engine.store.upkeep import rewrite_rows
from tests.store.builders import (
    HANDED_ON,
    LEASE,
    LOST,
    SUCCESS,
    T0,
    assert_leased,
    then,
    write,
)

DAY = 86400.0


def _executions(store: EventStore) -> set[str]:
    return {job.execution_id for job in store.list_jobs()}


def _event_count(store: EventStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() or 0)


def _fill(store: EventStore) -> None:
    """Executions of every kind; "old" ones ended on day 0, "recent" ones on day 5."""
    write(store, "old-1", T0, *SUCCESS, execution_id="exec-old")
    # Handed on: the first job and its continuation go together.
    write(store, "handed-1", T0, *HANDED_ON, execution_id="exec-handed")
    write(store, "handed-2", T0 + 10, *SUCCESS, execution_id="exec-handed")
    write(store, "lost-1", T0, *LOST, execution_id="exec-lost")
    # One job over, one still running: the execution is in flight.
    write(store, "mixed-1", T0, *SUCCESS, execution_id="exec-mixed")
    write(store, "mixed-2", T0, *SUCCESS[:4], execution_id="exec-mixed")
    # One job over long ago, the other only recently: the execution ended recently.
    write(store, "late-1", T0, *LOST, execution_id="exec-late")
    write(store, "late-2", T0 + 5 * DAY, *SUCCESS, execution_id="exec-late")
    write(store, "recent-1", T0 + 5 * DAY, *SUCCESS, execution_id="exec-recent")
    write(store, "waiting-1", T0, execution_id="exec-waiting")  # acquired, never acknowledged


def test_prune_removes_whole_finished_executions_only(store: EventStore) -> None:
    _fill(store)
    kept_histories = {job_id: store.history(job_id) for job_id in
                      ("mixed-1", "mixed-2", "late-1", "late-2", "recent-1", "waiting-1")}
    before = _event_count(store)
    report = prune(store, now=T0 + 3 * DAY, finished_before=2 * DAY, batch=1)
    assert _executions(store) == {"exec-mixed", "exec-late", "exec-recent", "exec-waiting"}
    assert (report.removed.executions, report.removed.jobs) == (3, 4)
    assert report.batches == 3
    removed_events = (1 + len(SUCCESS)) * 2 + 1 + len(HANDED_ON) + 1 + len(LOST)
    assert report.removed.events == removed_events == before - _event_count(store)
    for job_id, history in kept_histories.items():
        assert store.history(job_id) == history
    for job_id in ("old-1", "handed-1", "handed-2", "lost-1"):
        assert store.history(job_id) == [] and store.get(job_id) is None
    assert all(r.ok for r in replay_jobs(store, None))
    # Again: nothing more is old enough.
    assert prune(store, now=T0 + 3 * DAY, finished_before=2 * DAY).removed.executions == 0


def test_prune_steps_over_a_long_execution_among_the_oldest_jobs(store: EventStore) -> None:
    """A long run's handed-on jobs are among the oldest finished ones while its newest job
    still works: prune scans past them, page after page, to the finished executions behind."""
    for n in range(12):
        write(store, f"long-{n:02d}", T0 + n, *HANDED_ON, execution_id="exec-long")
    write(store, "long-12", T0 + 12, *SUCCESS[:4], execution_id="exec-long")
    for n in range(3):
        write(store, f"after-{n}", T0 + 100 + n, *SUCCESS, execution_id=f"exec-after-{n}")
    # Two executions a batch: a page holds 8 finished jobs, all of exec-long at first.
    report = prune(store, now=T0 + 3 * DAY, finished_before=2 * DAY, batch=2)
    assert _executions(store) == {"exec-long"}
    assert (report.removed.executions, report.removed.jobs, report.batches) == (3, 3, 2)
    assert len(store.by_execution("exec-long")) == 13


def test_a_dry_prune_counts_the_same_and_changes_nothing(store: EventStore) -> None:
    _fill(store)
    before = (_executions(store), _event_count(store))
    dry = prune(store, now=T0 + 3 * DAY, finished_before=2 * DAY, dry_run=True)
    assert (_executions(store), _event_count(store)) == before
    real = prune(store, now=T0 + 3 * DAY, finished_before=2 * DAY, batch=2)
    assert dry.removed == real.removed and dry.dry_run and not real.dry_run


def test_prune_refuses_to_forget_what_codepipeline_may_still_hand_out(store: EventStore) -> None:
    _fill(store)
    with pytest.raises(ConfigurationProblem, match="job timeout"):
        prune(store, now=T0 + 3 * DAY, finished_before=3600.0)
    assert "exec-old" in _executions(store)


@pytest.mark.parametrize("text, seconds", [("90d", 90 * DAY), ("12h", 43200.0), ("45m", 2700.0),
                                           ("30", 30.0), ("2w", 14 * DAY), (" 1.5D ", 1.5 * DAY)])
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-3d", "0", "3 days", "1e400"])
def test_a_bad_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigurationProblem, match="30d"):
        parse_duration(text)


def _damage(store: EventStore) -> dict[str, object]:
    for name, steps in {"ok": SUCCESS, "lost": LOST, "run": SUCCESS[:4], "new": []}.items():
        write(store, f"job-{name}", T0, *steps)
    truth = {j.job_id: j for j in store.list_jobs()}
    store.claim_due(T0 + 100, 1, "w1", LEASE, skip=[i for i in truth if i != "job-new"])
    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.job_id.in_(["job-ok", "job-run"]))
                     .values(state="acquired", attempt=99, run={"wrong": True}))
        conn.execute(jobs.delete().where(jobs.c.job_id == "job-lost"))
        row = {c.name: getattr(truth["job-new"], c.name, None) for c in jobs.c
               if c.name in truth["job-new"].__dataclass_fields__}
        row["state"] = "acquired"
        row["job_id"] = "job-ghost"
        conn.execute(jobs.insert().values(**row))
    return dict(truth)


def test_rebuild_rewrites_what_differs_and_keeps_leases(store: EventStore) -> None:
    truth = _damage(store)
    dry = rebuild(store, dry_run=True)
    assert set(dry.differences) == {"job-ok", "job-run", "job-lost"}
    assert any(d.startswith("attempt: log says 0, row had 99") for d in dry.differences["job-ok"])
    assert dry.differences["job-lost"] == ["no projection row"]
    assert dry.without_events == ["job-ghost"]
    assert store.get("job-ok") != truth["job-ok"]  # a dry run changes nothing
    done = rebuild(store)
    assert done.moved == [] and done.jobs == 4
    assert {j.job_id: j for j in store.list_jobs()} == truth
    assert_leased(store, "job-new", "w1", T0 + 100)
    again = rebuild(store, dry_run=True)
    assert again.differences == {} and again.without_events == []


def test_rebuild_leaves_a_row_a_worker_moved_meanwhile(store: EventStore) -> None:
    job = write(store, "job-a", T0, *SUCCESS[:3])
    rebuilt = fold(store.history("job-a"))
    assert rebuilt is not None
    stale = replace(rebuilt, attempt=5)
    # A worker appends after the rebuild read the log: the rebuilt row is out of date.
    store.commit([then(job, T0 + 50, SUCCESS[3])])
    assert rewrite_rows(store, [(stale, job.last_seq)]) == ["job-a"]
    assert store.get("job-a") == fold(store.history("job-a"))


def test_prune_and_rebuild_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    _damage(store)
    store.close()
    runner = CliRunner()
    dry = runner.invoke(main, ["--db", url, "rebuild", "--dry-run"])
    assert dry.exit_code == 1, dry.output
    assert "job-ghost  a row without events: would be dropped" in dry.output
    fixed = runner.invoke(main, ["--db", url, "rebuild"])
    assert fixed.exit_code == 0 and "4 rewritten" in fixed.output, fixed.output
    assert runner.invoke(main, ["--db", url, "rebuild", "--dry-run"]).exit_code == 0
    pruned = runner.invoke(main, ["--db", url, "prune", "--finished-before", "1d"])
    assert pruned.exit_code == 0 and pruned.output.startswith("removed 0 execution(s)")
    short = runner.invoke(main, ["--db", url, "prune", "--finished-before", "2h"])
    assert short.exit_code == 2 and "Traceback" not in short.output
