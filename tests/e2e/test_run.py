"""`cpworker run` as a real process: it finishes what is queued, gives up what nobody wants,
stops cleanly on SIGTERM, and the reading commands work on what it wrote."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime

import pytest

from engine.machine import JobState
from tests.e2e.conftest import E2E, Execution, is_final_result, wait_until

pytestmark = pytest.mark.slow

FIRST_JOB = ["acquired", "acknowledged", "submit_intended", "run_started", "progress_changed",
             "continuation_reported", "continuation_joined"]
"""A first job hands the run on to a continuation job as soon as the run has an id."""


def first_job_types(types: list[str]) -> list[str]:
    # A continuation polled before the progress report's outcome is committed joins from
    # handing_on, and that outcome is then dropped: the same story, one event shorter.
    return [t for t in types if t != "continuation_reported"]


def test_until_idle_finishes_every_queued_job_with_the_right_result(e2e: E2E) -> None:
    passing = [e2e.start("pass"), e2e.start("pass")]
    failing = e2e.start("fail")
    broken = e2e.start("error")

    worker = e2e.run()

    assert worker.returncode == 0, worker.stderr[-4000:]
    assert "nothing in flight and nothing to poll: exiting (--until-idle)" in worker.stderr
    e2e.assert_ended_right()
    for execution in e2e.executions:
        first, last = e2e.worker_jobs(execution)
        assert first_job_types(e2e.event_types(first.job_id)) == first_job_types(FIRST_JOB)
        assert first.continued_by == last.job_id and last.continues == first.job_id
        assert last.external_id == e2e.run_file(execution)["run_id"]
    for execution in passing:
        assert e2e.event_types(e2e.worker_jobs(execution)[-1].job_id) == [
            "acquired", "acknowledged", "continuation_resumed", "checked", "run_succeeded",
            "result_reported"]
    assert e2e.event_types(e2e.worker_jobs(failing)[-1].job_id) == [
        "acquired", "acknowledged", "continuation_resumed", "checked", "run_failed",
        "result_reported"]
    broken_types = e2e.event_types(e2e.worker_jobs(broken)[-1].job_id)
    assert broken_types.count("attempt_failed") == 5  # the default --max-attempts 6, minus one
    assert broken_types[-2:] == ["run_failed", "result_reported"]
    failure = e2e.emulator_execution(broken)["failureDetails"]
    assert "gave up after 6 attempts to check" in failure["message"]
    assert "the ledger broke" in failure["message"]
    assert e2e.emulator.call_counts().get("PutJobSuccessResult", 0) == 4 + 2  # progress + pass

    _reading_commands_show_what_it_wrote(e2e, passing[0], worker.worker_id)


def _reading_commands_show_what_it_wrote(e2e: E2E, execution: Execution, worker: str) -> None:
    listed = e2e.cli_process("jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 8
    assert sorted(r["state"] for r in rows) == sorted(["handed_on"] * 4 + ["succeeded"] * 2
                                                      + ["failed"] * 2)
    assert {r["execution_id"] for r in rows} == {e.action_execution_id for e in e2e.executions}
    assert {r["job_id"] for r in rows} == {
        j["id"] for e in e2e.executions for j in e2e.emulator_jobs(e)}
    assert all(r["pipeline"].startswith("e2e-") for r in rows)

    first, last = e2e.worker_jobs(execution)
    shown = e2e.cli("inspect", last.job_id[:13], "--json")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert document["job_id"] == last.job_id and document["state"] == "succeeded"
    assert [e["seq"] for e in document["events"]] == list(range(1, len(document["events"]) + 1))
    assert [e["type"] for e in document["events"]] == e2e.event_types(last.job_id)
    for event in document["events"]:
        assert {"seq", "type", "at", "data"} <= set(event)
        assert isinstance(event["data"], dict)
        datetime.fromisoformat(event["at"])
    assert document["events"][0]["data"]["continues"] == first.job_id
    assert {event["worker"] for event in document["events"]} == {worker}

    timeline = e2e.cli("inspect", last.job_id[:13])
    assert timeline.exit_code == 0, timeline.output
    text = timeline.stdout
    assert f"execution {execution.action_execution_id}" in text and "2 job(s)" in text
    assert f"job {first.job_id}  state handed_on\n" in text
    assert f"job {last.job_id}  state succeeded  <- asked for" in text
    assert text.index(first.job_id) < text.index(last.job_id)
    for event_type in set(FIRST_JOB) | {"continuation_resumed", "run_succeeded"}:
        assert re.search(rf"^\s+\S+\s+\d+\s+{event_type}\s", text, re.MULTILINE), event_type
    # The output variables the success reported (the ledger's RunId), as CodePipeline got them.
    assert f"outputs RunId={e2e.run_file(execution)['run_id']}" in text

    replayed = e2e.cli_process("replay", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "8 job(s) replayed, 0 with problems" in replayed.stdout


def test_abandoned_and_never_continued_executions_are_given_up_and_cancelled(e2e: E2E) -> None:
    # Runs that only end when the worker gives them up. Continuation jobs take 2 s to be queued,
    # so an execution can be stopped while CodePipeline owes its continuation job.
    e2e.emulator.continuation_delay = 2.0
    stopped = e2e.start("pass", steps=100_000)
    orphaned = e2e.start("pass", steps=100_000)

    worker = e2e.spawn("--progress-interval", "1.5")

    def progress_reported(execution: Execution) -> bool:
        return any(r["accepted"] and "continuationToken" in r["request"]
                   for r in e2e.results(execution))

    def continuation_running(execution: Execution) -> bool:
        return any(j["status"] == "InProgress" and j["continuationToken"]
                   for j in e2e.emulator_jobs(execution))

    # Abandoned in the 2 s before its continuation job is queued: that job never comes.
    wait_until("the orphan's progress report", lambda: progress_reported(orphaned))
    e2e.emulator.stop_execution(orphaned.pipeline_execution_id, abandon=True, reason="e2e")
    # Stopped and abandoned while its continuation job runs: CodePipeline tells the worker
    # nothing; the worker learns it when its next periodic progress report is refused.
    wait_until("a running continuation job", lambda: continuation_running(stopped))
    e2e.emulator.stop_execution(stopped.pipeline_execution_id, abandon=True, reason="e2e")

    assert worker.wait() == 0, worker.stderr[-4000:]

    for execution in (stopped, orphaned):
        view = e2e.emulator_execution(execution)
        assert view["status"] == "Stopped" and view["abandoned"]
        assert not [r for r in e2e.results(execution) if is_final_result(r)]
        assert e2e.run_file(execution)["cancelled"] is True
    started = [line[0] for line in e2e.submissions()]
    assert sorted(started) == sorted([stopped.action_execution_id, orphaned.action_execution_id])

    first, last = e2e.worker_jobs(stopped)
    assert (first.state, last.state) == (JobState.HANDED_ON, JobState.ABANDONED)
    types = e2e.event_types(last.job_id)
    assert types[-3:] == ["progress_changed", "job_rejected", "run_cancelled"], types
    assert last.reason is not None and "InvalidJobStateException" in last.reason
    refused = e2e.emulator_jobs(stopped)[-1]["results"]
    assert [(r["operation"], r["accepted"], r["error"]) for r in refused] == [
        ("PutJobSuccessResult", False, "InvalidJobStateException")]

    (only,) = e2e.worker_jobs(orphaned)
    assert only.state is JobState.ABANDONED
    # The wait is postponed while no poll has been made since it fell due (a poll is what would
    # bring the continuation job), then given up.
    types = [t for t in e2e.event_types(only.job_id) if t != "continuation_postponed"]
    assert types[-3:] == ["continuation_reported", "continuation_missing", "run_cancelled"], types
    with e2e.store() as store:
        missing = next(e for e in store.history(only.job_id) if e.type == "continuation_missing")
    assert "sent no continuation job within 5 s" in str(missing.data["reason"])
    never = [j for j in e2e.emulator_jobs(orphaned) if j["continuationToken"]]
    assert [(j["status"], j["dispatchCount"]) for j in never] == [("Abandoned", 0)]

    timeline = e2e.cli("inspect", only.job_id)
    assert "continuation_missing" in timeline.stdout
    assert "the execution is given up" in timeline.stdout
    replayed = e2e.cli("replay", "--all")
    assert replayed.exit_code == 0, replayed.output


def test_sigterm_stops_cleanly_and_a_restart_finishes_the_jobs(e2e: E2E) -> None:
    executions = [e2e.start("pass", steps=12), e2e.start("fail", steps=12)]
    worker = e2e.spawn(until_idle=False)

    def running() -> bool:
        return all(len(e2e.emulator_jobs(e)) == 2
                   and e2e.emulator_jobs(e)[-1]["status"] == "InProgress" for e in executions)

    wait_until("both continuation jobs to run", running)
    worker.signal(signal.SIGTERM)

    assert worker.wait(20) == 0, worker.stderr[-4000:]
    assert "SIGTERM received: stopping; running effects get 30 s to finish" in worker.stderr
    unfinished = re.search(r"stopped; (\d+) unfinished job\(s\) will resume", worker.stderr)
    assert unfinished and int(unfinished.group(1)) == 2, worker.stderr[-2000:]
    assert "Traceback" not in worker.stderr
    assert len(e2e.unfinished()) == 2
    with e2e.store() as store:
        assert store.count_active() == 2
        assert {j.state for j in store.list_jobs() if not j.final} == {JobState.RUNNING}
    replayed = e2e.cli("replay", "--all")
    assert replayed.exit_code == 0, replayed.output

    restarted = e2e.run()

    assert restarted.returncode == 0, restarted.stderr[-4000:]
    assert "2 unfinished job(s) to resume" in restarted.stderr
    e2e.assert_ended_right()
    for execution in executions:
        assert e2e.run_file(execution)["checks"] == 12
        assert e2e.event_types(e2e.worker_jobs(execution)[-1].job_id).count(
            "continuation_resumed") == 1


def test_a_second_signal_stops_at_once_and_every_line_stays_json(
    e2e: E2E, silent_codepipeline: str
) -> None:
    """The first SIGINT waits for the poller, which hangs on a CodePipeline that never answers
    (up to its read timeout); the second ends the process at once, saying so in JSON."""
    worker = e2e.spawn("--log-format", "json", until_idle=False,
                       env={"AWS_ENDPOINT_URL_CODEPIPELINE": silent_codepipeline})
    worker.wait_for_log("starting")
    worker.signal(signal.SIGINT)
    worker.wait_for_log("SIGINT received: stopping")
    worker.signal(signal.SIGINT)
    assert worker.wait(10) == 128 + signal.SIGINT, worker.stderr[-3000:]
    lines = [json.loads(line) for line in worker.stderr.splitlines() if line.strip()]
    said = [line["message"] for line in lines]
    assert any(m.startswith("SIGINT received again: stopping at once; 0 job(s) resume at the "
                            "next start") for m in said), said[-5:]
    assert "Traceback" not in worker.stderr


def test_until_idle_exits_5_when_this_run_gave_a_job_up(e2e: E2E) -> None:
    """CodePipeline refuses every report, in every form: the job is given up, and a cron job or
    CI step running `--until-idle` must not go green."""
    execution = e2e.start("pass")
    for operation in ("PutJobSuccessResult", "PutJobFailureResult"):
        e2e.emulator.refuse(operation, "ValidationException", "refused by the test", None)
    worker = e2e.run()
    assert worker.returncode == 5, worker.stderr[-3000:]
    (job,) = e2e.worker_jobs(execution)
    assert job.state is JobState.ABANDONED and "gave_up" in e2e.event_types(job.job_id)
    assert f"1 job(s) were given up by this run (a result CodePipeline would not take): " \
           f"{job.job_id}" in worker.stderr
    assert "Traceback" not in worker.stderr
