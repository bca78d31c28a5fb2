"""Issue 12's artifact acceptance: an action reads its input artifact from the emulator's S3 (moto
behind it) with credentials that expire mid-job, writes its output with SSE-KMS where the
pipeline expects it, and a worker killed between the upload and the report uploads once and
reports once."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from pathlib import Path

import pytest

from engine.devtools.testing import ActionHarness, codepipeline_client
from engine.machine import JobState
from tests.actions.artifact import ArtifactAction
from tests.e2e.conftest import E2E, invoke

ARTIFACT_ACTION = "tests.actions.artifact:ArtifactAction"
TYPE = "Build/Custom/ArtifactBuild/1"
REVISION = "1f0c" * 10


def _zip_members(data: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist()}


def test_credentials_expiring_mid_job_are_renewed_and_the_output_lands_encrypted(
        tmp_path: Path) -> None:
    with ActionHarness(ArtifactAction(), tmp_path) as harness:
        store = harness.emulator.artifact_store
        assert store is not None, "moto is installed: the emulator must serve artifacts"
        key = store.kms_key_id
        token = f"tok-{secrets.token_hex(12)}"
        execution = harness.start({"Project": "demo", "Token": token}, revision=REVISION,
                                  output_artifacts=1, encryption_key=key)
        for _ in range(50):  # to the moment the run is known: submit downloaded the input once
            harness.step()
            jobs = harness.jobs(execution)
            if jobs and jobs[-1].state is JobState.RUNNING:
                break
        else:
            raise AssertionError(f"never running: {harness.event_types(execution)}")
        job_id = harness.jobs(execution)[-1].job_id
        issued_before = len(harness.emulator.job(job_id)["artifactCredentials"])
        assert harness.emulator.expire_credentials() >= 1

        finished = harness.run(execution)

        assert finished.state is JobState.SUCCEEDED, harness.event_types(execution)
        job = harness.emulator.job(job_id)
        assert len(job["artifactCredentials"]) > issued_before, "expired credentials not renewed"
        pipeline_execution = job["pipelineExecutionId"]
        upload = harness.emulator.uploads(pipeline_execution)["OutputArtifact"]
        assert upload is not None and upload["uploads"] == 1
        assert upload["serverSideEncryption"] == "aws:kms" and upload["kmsKeyMatches"] is True
        members = _zip_members(harness.emulator.artifact_bytes(pipeline_execution,
                                                               "OutputArtifact"))
        assert members["build.txt"] == f"demo built {REVISION}\n"
        assert members["sources.txt"].splitlines() == ["README.md", "revision.txt"]
        success = [r for r in harness.results(execution)
                   if r["operation"] == "PutJobSuccessResult" and r["accepted"]]
        assert success[-1]["request"]["outputVariables"]["Revision"] == REVISION
        # The success event says what was uploaded, and the ledger holds it.
        succeeded = [e for e in harness.history(execution) if e.type == "run_succeeded"]
        recorded = succeeded[-1].data["uploads"]
        assert isinstance(recorded, list) and recorded[0]["artifact"] == "OutputArtifact"
        assert recorded[0]["etag"] == upload["eTag"]
        # No credential of any set issued reached the database.
        raw = (tmp_path / "state.db").read_bytes()
        for issued in job["artifactCredentials"]:
            for value in issued.values():
                assert value.encode() not in raw
        assert token.encode() not in raw


@pytest.mark.slow
def test_a_worker_killed_between_upload_and_report_uploads_once_and_reports_once(
        e2e: E2E) -> None:
    store = e2e.emulator.artifact_store
    assert store is not None
    codepipeline_client(e2e.url).create_custom_action_type(
        **ArtifactAction.definition().document)
    configuration = {"Project": "crash", "Token": f"tok-{secrets.token_hex(8)}"}
    started = e2e.emulator.start_execution(
        TYPE, configuration, action="Build",
        pipeline_name="e2e-artifacts", revision=REVISION, output_artifacts=1,
        encryption_key=store.kms_key_id)
    flags = ("--action", ARTIFACT_ACTION, "--s3-endpoint-url", e2e.url)

    e2e.crash("after:upload", *flags)
    pipeline_execution = started["pipelineExecutionId"]
    upload = e2e.emulator.uploads(pipeline_execution)["OutputArtifact"]
    assert upload is not None and upload["uploads"] == 1  # it landed before the kill
    assert e2e.emulator.execution(pipeline_execution)["status"] == "InProgress"

    e2e.finish(*flags)

    assert e2e.emulator.execution(pipeline_execution)["status"] == "Succeeded"
    upload = e2e.emulator.uploads(pipeline_execution)["OutputArtifact"]
    assert upload is not None and upload["uploads"] == 1, upload
    calls = [c for job in e2e.emulator.jobs() if job["pipelineExecutionId"] == pipeline_execution
             for c in job["results"]]
    final = [c for c in calls if "continuationToken" not in c["request"]]
    assert [(c["operation"], c["accepted"]) for c in final] == \
        [("PutJobSuccessResult", True)], calls
    assert final[0]["request"]["outputVariables"]["ArtifactETag"] == upload["eTag"]
    shown = invoke("--db", e2e.db_url, "inspect", "--json", started["jobId"])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert [u["artifact"] for u in document["uploads"]] == ["OutputArtifact"]
    # Every set of artifact credentials issued, and the secret token: in no log, no database.
    issued = [value for job in e2e.emulator.jobs()
              if job["pipelineExecutionId"] == pipeline_execution
              for credentials in job["artifactCredentials"] for value in credentials.values()]
    assert issued
    texts = [w.output() for w in e2e.workers] + [shown.output]
    raw = e2e.db_path.read_bytes()
    for value in [*issued, configuration["Token"]]:
        assert value.encode() not in raw
        assert not any(value in text for text in texts)
