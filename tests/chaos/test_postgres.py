"""Scenarios b and c: workers sharing one PostgreSQL (the suite's throwaway cluster).

b. Three workers with different restart rhythms (one never killed, one killed once it has
   committed 3-20 events and one 20-80 events after each start: about 1-3 s and 4-8 s of work on a
   quick machine), 50 executions, and PostgreSQL itself restarted with `pg_ctl restart -m fast`
   once a third of them have ended. No worker may end because of the restart: every worker the
   test did not kill is alive afterwards and exits 0 when stopped. The time from the server
   being back to the next event committed is reported.
c. Two workers with different action sets (the ledger, and the ledger under a second type) on one
   database, each killed once it has committed 5-40 events and restarted: neither touches the
   other's jobs.
"""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa

from tests.chaos.conftest import MakeChaos
from tests.chaos.kit import Chaos, Figures, Rhythm
from tests.pg import PostgresServer

pytestmark = [pytest.mark.slow]

SEED = 20261202


def _event_time(engine: sa.Engine, query: str, at: float) -> float | None:
    """An event time (epoch seconds, as recorded) from a min/max query; None when there is none
    or the server does not answer."""
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(query, (at,)).scalar()
    except sa.exc.OperationalError:
        return None
    return None if found is None else float(found)


@pytest.mark.chaos(deadline=330)
def test_three_workers_keep_working_through_a_postgresql_restart(
    make_chaos: MakeChaos, postgres_url: str, postgres_server: PostgresServer,
) -> None:
    if not postgres_server.restartable:
        pytest.skip("the PostgreSQL server comes from CPWORKER_TEST_POSTGRES_URL: only the "
                    "throwaway cluster this session started is restarted")
    chaos = make_chaos(postgres_url)
    chance = random.Random(SEED)
    figures = Figures("b-postgres-restart")
    slots = [
        Rhythm(chaos, "steady", ["ledger"], None),
        Rhythm.seeded(chaos, "quick", ["ledger"], 3, 20, SEED + 1, in_events=True),
        Rhythm.seeded(chaos, "slow", ["ledger"], 20, 80, SEED + 2, in_events=True),
    ]
    counter = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    problems: list[str] = []
    total = 50
    try:
        began = time.monotonic()
        restarted = False
        while time.monotonic() - began < 200:
            due = min(total, int((time.monotonic() - began) * 2) + 1)
            while len(chaos.runs) < due:
                chaos.start("ledger", "pass" if chance.random() < 0.7 else "fail",
                            steps=chance.randint(10, 30))
            for slot in slots:
                slot.tick()
            if not restarted and chaos.finished() >= total // 3:
                restarted = True
                _restart_under_load(chaos, postgres_server, slots, counter, figures, problems)
            if len(chaos.runs) == total and not chaos.unfinished():
                break
            time.sleep(0.05)
        figures.extra["chaos_seconds"] = time.monotonic() - began
        if not restarted:
            problems.append("PostgreSQL was never restarted: too few executions ended")
        unfinished = chaos.unfinished()
        if unfinished:
            problems.append(f"{len(unfinished)} of {total} executions unfinished after 200 s: "
                            f"{[r.where for r in unfinished][:5]}")
        for slot in slots:  # the test's stop: every worker still running must exit 0
            label, proc = slot.label, slot.current
            code = slot.stop()
            if proc is not None and code != 0:
                problems.append(f"the {label} worker exited {code} when stopped: "
                                f"{proc.worker.stderr[-1500:]}")
        if not unfinished:
            problems += chaos.settle(["ledger"])
    finally:
        counter.dispose()
        problems += chaos.verdict(figures)
        figures.emit(chaos.directory)
    assert not problems, "\n".join(problems[:30])


def _restart_under_load(chaos: Chaos, server: PostgresServer, slots: list[Rhythm],
                        counter: sa.Engine, figures: Figures, problems: list[str]) -> None:
    """pg_ctl restart -m fast while the workers run; then how long nothing was committed, and
    which workers did not live through it.

    commit_gap_seconds: from the last event committed before the restart to the first after it
    (the whole pause, the restart included); resume_seconds: from the server taking logins
    again to that first event (the workers' part of the pause), from the recorded times.
    """
    alive = [slot.current for slot in slots if slot.current is not None and slot.current.alive]
    down = time.time()
    server.restart()  # pg_ctl restart -m fast -w, then until logins work again
    up = time.time()
    figures.extra["restart_seconds"] = up - down
    first_after = None
    while first_after is None and time.time() - up < 60:
        for slot in slots:
            slot.tick()
        first_after = _event_time(counter, "SELECT min(at) FROM events WHERE at > %s", down)
        time.sleep(0.05)
    last_before = _event_time(counter, "SELECT max(at) FROM events WHERE at <= %s", down)
    if first_after is None:
        figures.extra["resume_seconds"] = "never"
        problems.append("no event was committed within 60 s of PostgreSQL coming back")
    else:
        figures.extra["resume_seconds"] = max(0.0, first_after - up)
        if last_before is not None:
            figures.extra["commit_gap_seconds"] = first_after - last_before
    for proc in alive:
        if not proc.alive and not proc.killed:
            chaos.note_exit(proc)
    figures.extra["workers_through_restart"] = sum(
        1 for proc in alive if proc.alive or proc.killed)


@pytest.mark.chaos(deadline=240)
def test_workers_of_different_actions_never_touch_each_others_jobs(
    make_chaos: MakeChaos, postgres_url: str,
) -> None:
    chaos = make_chaos(postgres_url)
    chance = random.Random(SEED + 10)
    figures = Figures("c-action-sets")
    slots = [Rhythm.seeded(chaos, "ledger", ["ledger"], 5, 40, SEED + 11, in_events=True),
             Rhythm.seeded(chaos, "other", ["other-ledger"], 5, 40, SEED + 12, in_events=True)]
    problems: list[str] = []
    total = 24
    try:
        began = time.monotonic()
        while time.monotonic() - began < 120:
            due = min(total, int(time.monotonic() - began) + 1)
            while len(chaos.runs) < due:
                chaos.start("ledger" if len(chaos.runs) % 2 else "other-ledger",
                            "pass" if chance.random() < 0.7 else "fail",
                            steps=chance.randint(8, 20))
            for slot in slots:
                slot.tick()
            if len(chaos.runs) == total and not chaos.unfinished():
                break
            time.sleep(0.05)
        figures.extra["chaos_seconds"] = time.monotonic() - began
        for slot in slots:
            slot.stop()
        unfinished = chaos.unfinished()
        if unfinished:
            problems.append(f"{len(unfinished)} of {total} executions unfinished after 120 s: "
                            f"{[r.where for r in unfinished][:5]}")
        else:
            problems += chaos.settle(["ledger"]) + chaos.settle(["other-ledger"])
    finally:
        problems += _strangers(chaos, figures)
        problems += chaos.verdict(figures)
        figures.emit(chaos.directory)
    assert not problems, "\n".join(problems[:30])


def _strangers(chaos: Chaos, figures: Figures) -> list[str]:
    """Failures CodePipeline got for a job from a worker not running its action, and events
    written by such a worker."""
    problems: list[str] = []
    runs_action: dict[str, set[str]] = {}
    for proc in chaos.procs:
        worker = proc.worker_id()
        if worker is not None:
            runs_action[worker] = set(proc.kinds)
    refused = [r for job in chaos.codepipeline.jobs() for r in job["results"]
               if r["operation"] == "PutJobFailureResult"
               and "does not run the action" in r["request"]["failureDetails"]["message"]]
    figures.extra["failures_for_other_set"] = len(refused)
    if refused:
        problems.append(f"{len(refused)} PutJobFailureResult for jobs of the other action set: "
                        f"{refused[0]['request']['failureDetails']['message']}")
    strangers = 0
    with chaos.store() as store:
        for run in chaos.runs:
            for job in store.by_execution(run.action_execution_id):
                for event in store.history(job.job_id):
                    if run.kind.name not in runs_action.get(event.worker or "", set()):
                        strangers += 1
                        if strangers <= 5:
                            problems.append(
                                f"{run.where}: event {event.seq} {event.type} of job "
                                f"{job.job_id[:8]} was written by {event.worker}, which runs "
                                f"{sorted(runs_action.get(event.worker or '', {'nothing known'}))}")
    figures.extra["events_by_strangers"] = strangers
    return problems
