"""The admin side: CodePipeline's own hand on the emulator, in Python and over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from engine.clock import FakeClock, SystemClock
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
    raw_call,
)

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient


# ------------------------------------------------------------------ Python API


def test_start_execution_accepts_an_action_type_id_mapping(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    type_id = {"category": "Test", "owner": "Custom", "provider": "Travis", "version": "1"}
    started = emulator.start_execution(
        type_id, CONFIG, pipeline_name="web-app", stage="Verify", action="Travis-CI"
    )
    [job] = poll(client)
    context = job["data"]["pipelineContext"]
    assert (context["pipelineName"], context["stage"]["name"], context["action"]["name"]) == (
        "web-app", "Verify", "Travis-CI",
    )
    assert set(started) == {"pipelineExecutionId", "actionExecutionId", "jobId"}


@pytest.mark.parametrize(
    ("action_type", "configuration", "kwargs", "complaint"),
    [
        ("Test/Custom/Nobody/1", CONFIG, {}, "does not exist"),
        ("Test/Travis/1", CONFIG, {}, "must read Category/Owner/Provider/Version"),
        ("Test/AWS/Travis/1", CONFIG, {}, "not owner 'AWS'"),
        ({"category": "Test", "owner": "Custom"}, CONFIG, {}, "lacks ['provider', 'version']"),
        (TRAVIS, {"Repository": "octo/app"}, {}, "required properties missing: ['ApiToken']"),
        (TRAVIS, {**CONFIG, "Colour": "blue"}, {}, "unknown properties ['Colour']"),
        (TRAVIS, {**CONFIG, "Branch": ""}, {}, "must be 1-1000 characters"),
        (TRAVIS, CONFIG, {"pipeline_name": "has space"}, "pipeline_name 'has space'"),
        (TRAVIS, CONFIG, {"input_artifacts": 6}, "takes 0-5 input artifacts, not 6"),
        (TRAVIS, CONFIG, {"input_artifacts": ["a", "a"]}, "must be unique"),
        (TRAVIS, CONFIG, {"encryption_key": ""}, "encryption_key"),
    ],
)
def test_start_execution_refuses_what_a_pipeline_could_not_hold(
    emulator: CodePipelineEmulator,
    travis_type: dict[str, Any],
    action_type: Any,
    configuration: dict[str, str],
    kwargs: dict[str, Any],
    complaint: str,
) -> None:
    with pytest.raises(ValueError) as caught:
        emulator.start_execution(action_type, configuration, **kwargs)
    assert complaint in str(caught.value)
    assert emulator.jobs() == []


def test_a_deleted_type_cannot_start(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    client.delete_custom_action_type(category="Test", provider="Travis", version="1")
    with pytest.raises(ValueError, match="was deleted"):
        emulator.start_execution(TRAVIS, CONFIG)


def test_a_queryable_value_must_fit_what_polls_can_ask_for(
    client: CodePipelineClient, emulator: CodePipelineEmulator
) -> None:
    properties = [
        {"name": "Project", "required": True, "key": True, "secret": False, "queryable": True}
    ]
    create_type(client, properties=properties)
    with pytest.raises(ValueError, match="at most 20 characters"):
        emulator.start_execution(TRAVIS, {"Project": "x" * 21})
    emulator.start_execution(TRAVIS, {"Project": "x" * 20})


def test_jobs_filter_by_status(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    first = emulator.start_execution(TRAVIS, CONFIG)
    second = emulator.start_execution(TRAVIS, CONFIG)
    claim(client)
    assert [j["id"] for j in emulator.jobs("InProgress")] == [first["jobId"]]
    assert [j["id"] for j in emulator.jobs("Queued")] == [second["jobId"]]
    assert [j["id"] for j in emulator.jobs()] == [first["jobId"], second["jobId"]]
    with pytest.raises(ValueError, match="unknown job status 'Running'"):
        emulator.jobs("Running")


def test_a_job_view_tells_its_whole_story(
    client: CodePipelineClient,
    emulator: CodePipelineEmulator,
    clock: FakeClock,
    started: dict[str, str],
) -> None:
    job = claim(client)
    clock.advance(10)
    client.put_job_success_result(jobId=job["id"], continuationToken="t1")
    refused = {"jobId": job["id"], "failureDetails": {"type": "JobFailed", "message": "late"}}
    with pytest.raises(client.exceptions.InvalidJobStateException):
        client.put_job_failure_result(**refused)  # type: ignore[arg-type]
    view = emulator.job(job["id"])
    assert view["status"] == "Succeeded"
    assert view["nonce"] == job["nonce"]
    assert view["dispatchCount"] == 1
    assert (view["createdAt"], view["completedAt"]) == (1_800_000_000.0, 1_800_000_010.0)
    assert view["pipelineExecutionId"] == started["pipelineExecutionId"]
    assert view["results"] == [
        {"operation": "PutJobSuccessResult", "at": 1_800_000_010.0, "accepted": True,
         "error": None, "request": {"jobId": job["id"], "continuationToken": "t1"}},
        {"operation": "PutJobFailureResult", "at": 1_800_000_010.0, "accepted": False,
         "error": "InvalidJobStateException", "request": refused},
    ]
    follow = emulator.job(emulator.executions()[0]["jobIds"][1])
    assert (follow["continuationToken"], follow["status"]) == ("t1", "Created")


def test_unknown_ids_raise_key_error(emulator: CodePipelineEmulator) -> None:
    with pytest.raises(KeyError):
        emulator.job("nope")
    with pytest.raises(KeyError):
        emulator.stop_execution("nope")


def test_a_finished_execution_cannot_be_stopped(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    client.put_job_success_result(jobId=job["id"])
    with pytest.raises(ValueError, match="already Succeeded"):
        emulator.stop_execution(started["pipelineExecutionId"])


def test_the_same_seed_gives_the_same_ids_and_reset_restarts_it(
    clock: FakeClock, attach: Attach
) -> None:
    def run(emulator: CodePipelineEmulator) -> tuple[dict[str, str], str]:
        client = make_client(attach(emulator).url)
        create_type(client)
        started = emulator.start_execution(TRAVIS, CONFIG)
        return started, poll(client)[0]["nonce"]

    emulator = CodePipelineEmulator(clock=clock, seed=5)
    first = run(emulator)
    assert run(CodePipelineEmulator(clock=clock, seed=5)) == first
    assert run(CodePipelineEmulator(clock=clock, seed=6)) != first
    emulator.faults.configure(throttle_rate=0.5)
    emulator.reset()
    assert emulator.jobs() == [] and emulator.executions() == [] and emulator.call_counts() == {}
    assert emulator.faults.as_dict()["throttle_rate"] == 0.0
    assert run(emulator) == first


def test_constructor_arguments_are_checked(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        CodePipelineEmulator(clock=clock, account_id="123")
    with pytest.raises(ValueError, match="ack_timeout"):
        CodePipelineEmulator(clock=clock, ack_timeout=-1)


# ------------------------------------------------------------------ HTTP routes


def test_health(server: EmulatorServer) -> None:
    status, body = admin(server.url, "GET", "/health")
    assert status == 200
    assert body["status"] == "ok" and body["region"] == "us-east-1"


def test_start_an_execution_over_http_and_poll_its_job(
    server: EmulatorServer, client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    status, started = admin(
        server.url, "POST", "/executions",
        {"action_type": TRAVIS, "configuration": CONFIG, "pipeline_name": "web",
         "output_artifacts": ["built"]},
    )
    assert status == 201
    [job] = poll(client)
    assert job["id"] == started["jobId"]
    assert job["data"]["pipelineContext"]["pipelineName"] == "web"
    assert job["data"]["outputArtifacts"][0]["name"] == "built"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"configuration": CONFIG}, "action_type is required"),
        ({"action_type": TRAVIS, "configuration": CONFIG, "colour": "red"}, "unknown keys"),
        ({"action_type": TRAVIS, "configuration": {"Repository": 5}}, "must be strings"),
        ({"action_type": TRAVIS, "configuration": CONFIG, "input_artifacts": True}, "a count"),
        ({"action_type": TRAVIS, "configuration": {"Repository": "x"}}, "ApiToken"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_start_requests_are_400_with_a_reason(
    server: EmulatorServer, travis_type: dict[str, Any], body: Any, complaint: str
) -> None:
    status, answer = admin(server.url, "POST", "/executions", body)
    assert status == 400
    assert complaint in answer["error"]


def test_stop_list_and_inspect_over_http(
    server: EmulatorServer, client: CodePipelineClient, started: dict[str, str]
) -> None:
    job = claim(client)
    execution_id = started["pipelineExecutionId"]
    status, stopped = admin(
        server.url, "POST", f"/executions/{execution_id}/stop",
        {"abandon": True, "reason": "manual"},
    )
    assert status == 200
    assert (stopped["status"], stopped["stopReason"]) == ("Stopped", "manual")
    status, listed = admin(server.url, "GET", "/executions")
    assert [e["id"] for e in listed["executions"]] == [execution_id]
    assert admin(server.url, "GET", f"/executions/{execution_id}")[1]["abandoned"] is True
    status, jobs = admin(server.url, "GET", "/jobs?status=Abandoned")
    assert [j["id"] for j in jobs["jobs"]] == [job["id"]]
    assert admin(server.url, "GET", "/jobs?status=Queued")[1] == {"jobs": []}
    assert admin(server.url, "GET", f"/jobs/{job['id']}")[1]["status"] == "Abandoned"
    again = admin(server.url, "POST", f"/executions/{execution_id}/stop", {})
    assert again[0] == 400 and "already Stopped" in again[1]["error"]


def test_unknown_ids_are_404_and_wrong_methods_405(server: EmulatorServer) -> None:
    assert admin(server.url, "GET", "/jobs/nope")[0] == 404
    assert admin(server.url, "POST", "/executions/nope/stop", {})[0] == 404
    status, answer = admin(server.url, "DELETE", "/jobs")
    assert status == 405 and "use GET" in answer["error"]
    assert admin(server.url, "GET", "/nothing-here")[0] == 404
    assert admin(server.url, "GET", "/jobs?status=Bogus")[0] == 400


def test_calls_action_types_and_reset_over_http(
    server: EmulatorServer, client: CodePipelineClient, started: dict[str, str]
) -> None:
    poll(client)
    assert admin(server.url, "GET", "/calls")[1] == {
        "calls": {"CreateCustomActionType": 1, "PollForJobs": 1},
        "faults": {"throttle": 0, "error": 0, "lost": 0, "refused": 0},
    }
    assert admin(server.url, "GET", "/action-types")[1]["actionTypes"][0]["id"] == TRAVIS_ID
    assert admin(server.url, "POST", "/reset")[0] == 200
    assert admin(server.url, "GET", "/jobs")[1] == {"jobs": []}
    with pytest.raises(client.exceptions.ActionTypeNotFoundException):
        poll(client)


def test_faults_over_http_leave_the_admin_routes_alone(
    server: EmulatorServer, client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    status, faults = admin(server.url, "POST", "/faults", {"throttle_rate": 1.0, "seed": 9})
    assert status == 200
    assert faults == {"seed": 9, "throttle_rate": 1.0, "error_rate": 0.0, "lost_rate": 0.0,
                      "latency": 0.0, "outage": None}
    assert admin(server.url, "GET", "/faults")[1]["throttle_rate"] == 1.0
    assert admin(server.url, "GET", "/health")[0] == 200
    with pytest.raises(Exception, match="ThrottlingException"):
        poll(client)
    bad = admin(server.url, "POST", "/faults", {"throttle_rate": 2})
    assert bad[0] == 400 and "between 0 and 1" in bad[1]["error"]
    unknown = admin(server.url, "POST", "/faults", {"rate": 1})
    assert unknown[0] == 400 and "unknown fault settings" in unknown[1]["error"]


def test_the_clock_moves_over_http_only_when_it_is_fake(
    server: EmulatorServer, clock: FakeClock, attach: Attach
) -> None:
    status, answer = admin(server.url, "POST", "/clock/advance", {"seconds": 30})
    assert (status, answer["now"]) == (200, 1_800_000_030.0)
    assert clock.now() == 1_800_000_030.0
    real = attach(CodePipelineEmulator(clock=SystemClock())).url
    status, answer = admin(real, "POST", "/clock/advance", {"seconds": 30})
    assert status == 409 and "FakeClock" in answer["error"]


def test_admin_routes_need_no_signature_and_aws_calls_do(server: EmulatorServer) -> None:
    """The admin prefix is the test's side; everything else is AWS's and wants SigV4."""
    assert admin(server.url, "GET", "/jobs")[0] == 200
    assert raw_call(server.url, "PollForJobs", {}, sign=None)[0] == 400
