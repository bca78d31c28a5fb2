"""Reading histories back: the timeline shows who worked a job, and replay checks the log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.history import inspect_json, replay_jobs, timeline
from engine.projection import Event, Job, project
from engine.store import Change, EventStore

T0 = 1_800_000_000.0
ACQUIRED = {"nonce": "n", "action": "ledger", "action_type": "Test/Custom/Ledger/1",
            "execution_id": "exec-1", "pipeline": {"pipeline_name": "web"}}


def write(store: EventStore, steps: list[tuple[str, Mapping[str, Any], str]]) -> Job:
    job: Job | None = None
    for seq, (kind, data, worker) in enumerate(steps, start=1):
        event = Event("job-1", seq, kind, T0 + seq, data, worker=worker)
        job = project(job, event)
        store.commit([Change([event], job, new=seq == 1)])
    assert job is not None
    return job


def test_the_timeline_shows_where_another_worker_took_over(tmp_store: EventStore) -> None:
    job = write(tmp_store, [
        ("acquired", ACQUIRED, "host:1:aa"),
        ("acknowledged", {}, "host:1:aa"),
        ("submit_intended", {"worker": "host:1:aa"}, "host:1:aa"),
        ("run_started", {"details": {"external_id": "run-9"},
                         "took_over_from": "host:1:aa"}, "host:2:bb"),
    ])
    text = timeline(tmp_store, job)
    assert "worked by host:1:aa" in text
    assert ("~~ worker host:2:bb took over from host:1:aa, whose lease ran out (it stopped, "
            "died or hung) ~~") in text
    assert text.index("submit_intended") < text.index("took over") < text.index("run_started")
    assert "external_id=run-9" in text
    shown = inspect_json(tmp_store, job)
    assert [e["worker"] for e in shown["events"]] == ["host:1:aa"] * 3 + ["host:2:bb"]
    assert shown["state"] == "running" and [e["seq"] for e in shown["events"]] == [1, 2, 3, 4]


def test_replay_finds_a_projection_that_drifted_from_its_log(tmp_store: EventStore) -> None:
    job = write(tmp_store, [("acquired", ACQUIRED, "w"), ("acknowledged", {}, "w")])
    [report] = replay_jobs(tmp_store, None)
    assert report.ok and report.state == "acknowledged"
    tmp_store.replace_projection([replace(job, external_id="forged")])
    [report] = replay_jobs(tmp_store, [job.job_id])
    assert not report.ok
    assert report.mismatches == ["external_id: log says None, projection has 'forged'"]


def test_replay_reports_what_the_machine_refuses_in_the_state_it_was_in(
        tmp_store: EventStore) -> None:
    job = write(tmp_store, [("acquired", ACQUIRED, "w"), ("acknowledged", {}, "w")])
    # A history an older or broken writer left behind: the run started without an intent.
    stray = Event("job-1", 3, "run_started", T0 + 3, {}, worker="w")
    tmp_store.commit([Change([stray], replace(job, last_seq=3), new=False)])
    [report] = replay_jobs(tmp_store, None)
    assert not report.ok and report.state == "acknowledged" and report.events == 3
    assert report.error is not None
    assert "'run_started' is not allowed in state 'acknowledged'" in report.error


def test_workers_sharing_jobs_read_as_sharing_and_waits_say_how_long(
    tmp_store: EventStore,
) -> None:
    job = write(tmp_store, [
        ("acquired", ACQUIRED, "host:1:aa"),
        ("acknowledged", {}, "host:2:bb"),
        ("submit_intended", {"worker": "host:2:bb"}, "host:2:bb"),
        ("attempt_failed", {"effect": "submit", "attempt": 1, "error": "HTTP 503",
                            "due_at": T0 + 4 + 90.0}, "host:2:bb"),
    ])
    text = timeline(tmp_store, job)
    assert ("-- continued by worker host:2:bb (after host:1:aa: workers share the jobs, each "
            "step by whoever claims it) --") in text
    assert "took over" not in text
    assert ("error=HTTP 503, attempt=1, effect=submit, waits 90.0 s, "
            "until 2027-01-15T08:01:34") in text


def test_the_timeline_shows_the_output_variables_a_success_reports(tmp_store: EventStore) -> None:
    variables = {f"Var{n}": f"value-{n}" for n in range(7)}
    job = write(tmp_store, [
        ("acquired", ACQUIRED, "host:1:aa"),
        ("acknowledged", {}, "host:1:aa"),
        ("submit_intended", {"worker": "host:1:aa"}, "host:1:aa"),
        ("run_succeeded", {"details": {"external_id": "run-9"},
                           "report": {"details": None, "output_variables": variables}},
         "host:1:aa"),
    ])
    text = timeline(tmp_store, job)
    assert ("outputs Var0=value-0, Var1=value-1, Var2=value-2, Var3=value-3, Var4=value-4 "
            "(+2 more)") in text
    shown = inspect_json(tmp_store, job)
    assert shown["events"][-1]["data"]["report"]["output_variables"] == variables
