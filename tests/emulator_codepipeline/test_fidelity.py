"""Where the emulator follows what is known of the real service, and where it is a setting:
input artifacts with revisions, completed jobs forgotten after a while, a maximum poll batch,
string lengths counted in a chosen unit, refusals set from outside, and bodies that end before
their Content-Length."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from engine.devtools.emulator._http import EmulatorServer
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from tests.emulator_codepipeline.conftest import (
    CONFIG,
    TRAVIS,
    TRAVIS_ID,
    Attach,
    admin,
    claim,
    create_type,
    make_client,
    poll,
)

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

EMOJI = "\U0001f600"


# --- input artifacts and their revisions ------------------------------------------------------


def test_an_input_artifact_carries_a_commit_like_revision_by_default(
    emulator: CodePipelineEmulator, client: CodePipelineClient, travis_type: dict[str, Any],
) -> None:
    emulator.start_execution(TRAVIS, CONFIG)
    [job] = poll(client)
    [artifact] = job["data"]["inputArtifacts"]
    assert re.fullmatch(r"[0-9a-f]{40}", artifact["revision"])
    assert artifact["name"] == "SourceArtifact"
    assert artifact["location"]["type"] == "S3"
    assert set(artifact["location"]["s3Location"]) == {"bucketName", "objectKey"}


def test_revisions_are_set_per_execution_or_per_artifact(
    emulator: CodePipelineEmulator, client: CodePipelineClient, travis_type: dict[str, Any],
) -> None:
    emulator.start_execution(TRAVIS, CONFIG, revision="b" * 40)
    emulator.start_execution(TRAVIS, CONFIG, input_artifacts=[
        {"name": "Src", "revision": "refs/tags/v1"}, "Other"], revision="c" * 40)
    first, second = poll(client, batch=2)
    assert [a["revision"] for a in first["data"]["inputArtifacts"]] == ["b" * 40]
    assert [(a["name"], a["revision"]) for a in second["data"]["inputArtifacts"]] == [
        ("Src", "refs/tags/v1"), ("Other", "c" * 40)]
    details = client.get_job_details(jobId=second["id"])["jobDetails"]["data"]
    assert details["inputArtifacts"] == second["data"]["inputArtifacts"]


def test_a_given_revision_does_not_shift_the_seeded_ids(clock: FakeClock, attach: Attach) -> None:
    answers = []
    for revision in (None, "d" * 40):
        emulator = CodePipelineEmulator(clock=clock, seed=7)
        create_type(make_client(attach(emulator).url))
        answers.append(emulator.start_execution(TRAVIS, CONFIG, revision=revision))
    assert answers[0] == answers[1]


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"revision": ""}, "1-1500 characters"),
    ({"revision": "r" * 1501}, "1-1500 characters"),
    ({"input_artifacts": [{"name": "Src", "commit": "x"}]}, "an input artifact is a name"),
    ({"output_artifacts": [{"name": "Out", "revision": "x"}]}, "an output artifact is a name"),
])
def test_bad_revisions_are_refused(
    emulator: CodePipelineEmulator, travis_type: dict[str, Any], kwargs: dict[str, Any],
    said: str,
) -> None:
    with pytest.raises(ValueError, match=said):
        emulator.start_execution(TRAVIS, CONFIG, **kwargs)


def test_revisions_over_the_admin_api(server: EmulatorServer, client: CodePipelineClient,
                                      travis_type: dict[str, Any]) -> None:
    status, started = admin(server.url, "POST", "/executions", {
        "action_type": TRAVIS, "configuration": CONFIG, "revision": "e" * 40})
    assert status == 201
    status, _ = admin(server.url, "POST", "/executions", {
        "action_type": TRAVIS, "configuration": CONFIG,
        "input_artifacts": [{"name": "Src", "revision": "f" * 40}]})
    assert status == 201
    status, answer = admin(server.url, "POST", "/executions", {
        "action_type": TRAVIS, "configuration": CONFIG, "revision": 7})
    assert status == 400 and "revision must be a string" in answer["error"]
    _, execution = admin(server.url, "GET", f"/executions/{started['pipelineExecutionId']}")
    assert execution["inputArtifacts"][0]["revision"] == "e" * 40
    assert [a["revision"] for job in poll(client, batch=2)
            for a in job["data"]["inputArtifacts"]] == ["e" * 40, "f" * 40]


# --- completed jobs are forgotten after a while ------------------------------------------------


def test_a_completed_job_is_forgotten_after_the_retention(
    emulator: CodePipelineEmulator, clock: FakeClock, client: CodePipelineClient,
    started: dict[str, str],
) -> None:
    job = claim(client)
    client.put_job_success_result(jobId=job["id"])
    clock.advance(emulator.job_retention - 1 if emulator.job_retention else 0)
    assert client.get_job_details(jobId=job["id"])["jobDetails"]["id"] == job["id"]
    clock.advance(1)
    calls: list[Callable[[], object]] = [
        lambda: client.get_job_details(jobId=job["id"]),
        lambda: client.acknowledge_job(jobId=job["id"], nonce=job["nonce"]),
        lambda: client.put_job_success_result(jobId=job["id"]),
    ]
    for call in calls:
        with pytest.raises(client.exceptions.JobNotFoundException) as caught:
            call()
        assert "forgets a completed job after its retention of 3600 s" in str(caught.value)
    view = emulator.job(job["id"])  # the test's side keeps it, flagged
    assert view["forgottenAt"] == view["completedAt"] + 3600


def test_an_abandoned_job_is_forgotten_too_and_none_keeps_them(
    clock: FakeClock, attach: Attach,
) -> None:
    for retention in (10.0, None):
        emulator = CodePipelineEmulator(clock=clock, job_retention=retention)
        client = make_client(attach(emulator).url)
        create_type(client)
        started = emulator.start_execution(TRAVIS, CONFIG)
        job = claim(client)
        emulator.stop_execution(started["pipelineExecutionId"], abandon=True)
        clock.advance(10)
        if retention is None:
            assert client.get_job_details(jobId=job["id"])["jobDetails"]["id"] == job["id"]
        else:
            with pytest.raises(client.exceptions.JobNotFoundException):
                client.get_job_details(jobId=job["id"])


def test_a_job_in_progress_is_never_forgotten(
    emulator: CodePipelineEmulator, clock: FakeClock, client: CodePipelineClient,
    started: dict[str, str],
) -> None:
    job = claim(client)
    clock.advance(20 * 3600)
    assert client.get_job_details(jobId=job["id"])["jobDetails"]["id"] == job["id"]


# --- the poll batch ---------------------------------------------------------------------------


def test_no_maximum_batch_by_default_as_the_model_sets_none(
    emulator: CodePipelineEmulator, client: CodePipelineClient, travis_type: dict[str, Any],
) -> None:
    for _ in range(3):
        emulator.start_execution(TRAVIS, CONFIG)
    assert len(poll(client, batch=1000)) == 3


def test_a_batch_over_the_set_maximum_is_a_validation_error(
    clock: FakeClock, attach: Attach,
) -> None:
    emulator = CodePipelineEmulator(clock=clock, max_batch_size=5)
    client = make_client(attach(emulator).url)
    create_type(client)
    for _ in range(7):
        emulator.start_execution(TRAVIS, CONFIG)
    with pytest.raises(client.exceptions.ValidationException) as caught:
        poll(client, batch=6)
    assert str(caught.value).endswith(
        "1 validation error detected: Value '6' at 'maxBatchSize' failed to satisfy "
        "constraint: Member must have value less than or equal to 5")
    assert emulator.jobs("Dispatched") == []  # refused before anything was handed out
    assert len(poll(client, batch=5)) == 5
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        CodePipelineEmulator(max_batch_size=0)


# --- the unit string lengths are counted in ---------------------------------------------------


@pytest.mark.parametrize(("unit", "summary", "refused"), [
    ("utf16", EMOJI * 1024, False),
    ("utf16", EMOJI * 1025, True),
    ("code_points", EMOJI * 2048, False),
    ("utf8", EMOJI * 512, False),
    ("utf8", EMOJI * 513, True),
])
def test_string_lengths_are_counted_in_the_set_unit(
    clock: FakeClock, attach: Attach, unit: str, summary: str, refused: bool,
) -> None:
    emulator = CodePipelineEmulator(clock=clock, length_unit=unit)
    client = make_client(attach(emulator).url)
    create_type(client)
    emulator.start_execution(TRAVIS, CONFIG)
    job = claim(client)
    report = {"jobId": job["id"], "executionDetails": {"summary": summary}}
    if not refused:
        client.put_job_success_result(**report)  # type: ignore[arg-type]
        return
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.put_job_success_result(**report)  # type: ignore[arg-type]
    assert "at 'executionDetails.summary' failed to satisfy constraint: Member must have " \
        "length less than or equal to 2048" in str(caught.value)


def test_the_output_variables_quota_is_122880_bytes_of_keys_and_values(
    emulator: CodePipelineEmulator, client: CodePipelineClient, started: dict[str, str],
) -> None:
    job = claim(client)
    over = {"Big": "\u00e9" * 61_439}  # 3 + 122,878 bytes
    with pytest.raises(client.exceptions.OutputVariablesSizeExceededException):
        client.put_job_success_result(jobId=job["id"], outputVariables=over)
    client.put_job_success_result(jobId=job["id"], outputVariables={"Big": "\u00e9" * 61_438})


# --- refusals set from outside ----------------------------------------------------------------


def test_a_refusal_answers_each_call_after_validation_and_is_recorded(
    emulator: CodePipelineEmulator, server: EmulatorServer, client: CodePipelineClient,
    started: dict[str, str],
) -> None:
    job = claim(client)
    status, answer = admin(server.url, "POST", "/refusals", {
        "operation": "PutJobSuccessResult", "code": "ValidationException",
        "message": "not today", "times": 2})
    assert status == 200
    assert answer["refusals"]["PutJobSuccessResult"]["times"] == 2
    for _ in range(2):
        with pytest.raises(client.exceptions.ValidationException, match="not today"):
            client.put_job_success_result(jobId=job["id"])
    client.put_job_success_result(jobId=job["id"])
    assert [r["error"] for r in emulator.job(job["id"])["results"]] == [
        "ValidationException", "ValidationException", None]
    assert admin(server.url, "GET", "/refusals") == (200, {"refusals": {}})
    assert admin(server.url, "POST", "/refusals", {"operation": "Nope"})[0] == 400


# --- bodies shorter than their Content-Length -------------------------------------------------


def _truncated(url: str, path: str, headers: dict[str, str], body: bytes,
               declared: int) -> tuple[int, dict[str, str], bytes]:
    """A request announcing `declared` body bytes, sending `body`, then closing its side."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}",
                f"Content-Length: {declared}"] + [f"{k}: {v}" for k, v in headers.items()]
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        conn.shutdown(socket.SHUT_WR)
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    answer_headers = dict(line.split(": ", 1) for line in header_block.decode().split("\r\n"))
    return int(status_line.split()[1]), answer_headers, payload


def test_a_truncated_aws_call_is_a_serialization_error_and_never_reaches_the_service(
    emulator: CodePipelineEmulator, server: EmulatorServer, travis_type: dict[str, Any],
) -> None:
    before = emulator.call_counts()
    body = json.dumps({"actionTypeId": TRAVIS_ID, "maxBatchSize": 1}).encode()
    status, headers, payload = _truncated(
        server.url, "/", {"Content-Type": "application/x-amz-json-1.1",
                          "X-Amz-Target": "CodePipeline_20150709.PollForJobs"},
        body[:20], len(body))
    assert status == 400 and headers["Connection"] == "close"
    answer = json.loads(payload)
    assert answer["__type"] == "SerializationException"
    assert f"ended after 20 of the {len(body)} bytes" in answer["message"]
    assert emulator.call_counts() == before


def test_a_truncated_admin_call_is_refused_not_read_as_empty(
    emulator: CodePipelineEmulator, server: EmulatorServer, travis_type: dict[str, Any],
) -> None:
    body = json.dumps({"action_type": TRAVIS, "configuration": CONFIG}).encode()
    status, _, _ = _truncated(server.url, "/_emulator/executions",
                              {"Content-Type": "application/json"}, body[:30], len(body))
    assert status == 400
    assert emulator.executions() == []


def test_the_travis_emulator_refuses_a_truncated_body_too() -> None:
    """The HTTP layer is shared: the Travis emulator words its own refusal, and no request is
    created from a body that never fully arrived."""
    travis = TravisEmulator()
    with EmulatorServer(travis) as running:
        body = json.dumps({"request": {"branch": "main", "message": "m"}}).encode()
        status, headers, _ = _truncated(
            running.url, "/repo/octo%2Fapp/requests",
            {"Content-Type": "application/json", "Travis-API-Version": "3",
             "Authorization": "token t"}, body[:10], len(body))
    assert status == 400 and headers["Connection"] == "close"
    assert travis.requests() == []
