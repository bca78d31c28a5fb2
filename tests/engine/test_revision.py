"""The revision CodePipeline releases reaches the action: the job's input artifacts, as
CodePipeline sends them (PROTOCOL A3), are recorded on the acquired event, handed to every
effect in JobContext.input_artifacts, and shown by `cpworker inspect`."""

from __future__ import annotations

import json
from pathlib import Path

from engine.action import Action, JobContext
from engine.devtools.testing import ActionHarness
from engine.machine import JobState
from engine.outcomes import ActionOutcome, Done, InProgress
from tests.e2e.conftest import invoke

REVISION = "3f786850e387550fdab836ed7e6dc881de23001b"


class Recording(Action):
    """Remembers what each effect was given."""

    name = "echo"
    definition_package = "tests.actions"
    definition_file = "echo.json"
    submit_grace = 0.0

    def __init__(self) -> None:
        self.seen: list[JobContext] = []

    def submit(self, job: JobContext) -> ActionOutcome:
        self.seen.append(job)
        return InProgress(data={"run": "r"})

    def check(self, job: JobContext) -> ActionOutcome:
        self.seen.append(job)
        return Done()


def test_every_effect_sees_the_input_artifacts_with_their_revisions(tmp_path: Path) -> None:
    action = Recording()
    with ActionHarness(action, tmp_path) as harness:
        execution = harness.start({"Outcome": "pass", "Token": "echo-secret-rev"},
                                  input_artifacts=[{"name": "Src", "revision": REVISION},
                                                   "Tools"], revision="a" * 40)
        assert harness.run(execution).state is JobState.SUCCEEDED
        [sent] = [j for j in harness.emulator.jobs() if j["actionExecutionId"] == execution]
        bucket = sent["inputArtifacts"][0]["location"]["s3Location"]["bucketName"]
        for context in action.seen:
            assert [dict(a) for a in context.input_artifacts] == [
                {"name": "Src", "revision": REVISION, "bucket": bucket,
                 "key": sent["inputArtifacts"][0]["location"]["s3Location"]["objectKey"]},
                {"name": "Tools", "revision": "a" * 40, "bucket": bucket,
                 "key": sent["inputArtifacts"][1]["location"]["s3Location"]["objectKey"]},
            ]
        job_id = harness.jobs(execution)[0].job_id
        shown = invoke("--db", f"sqlite:///{tmp_path / 'state.db'}", "inspect", job_id, "--json")
        assert shown.exit_code == 0, shown.output
        acquired = json.loads(shown.output)["events"][0]
        assert acquired["type"] == "acquired"
        revisions = [a["revision"] for a in acquired["data"]["pipeline"]["artifacts"]["input"]]
        assert revisions == [REVISION, "a" * 40]
