"""The CodePipeline emulator's action events, delivered to moto's SQS over HTTP on 127.0.0.1 as
an EventBridge rule with an SQS target would deliver them, and read back with engine.events."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from engine.clock import FakeClock
from engine.devtools.emulator._cp_events import LocalSqs
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from engine.devtools.testing import SharedServer
from engine.events import ActionEvent, parse
from tests.devtools.conftest import CPWORKER, subprocess_env
from tests.emulator_codepipeline.conftest import (
    CONFIG,
    TRAVIS,
    admin,
    claim,
    create_type,
    make_client,
)

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

IDLE = 15.0
"""Real seconds the publisher may take to send what is due (it sends at once on loopback)."""


@pytest.fixture(scope="module")
def local_sqs() -> Iterator[LocalSqs]:
    with LocalSqs() as sqs:
        yield sqs


@pytest.fixture
def sqs(local_sqs: LocalSqs) -> Any:
    return local_sqs.client()


@pytest.fixture
def queue(local_sqs: LocalSqs) -> str:
    """A queue of this test's own (moto's state is per process, shared by every test)."""
    return local_sqs.create_queue(f"cp-events-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Setup:
    """An emulator publishing to `queue`, served on loopback, with a client and the Travis
    type; `events()` reads what reached the queue."""

    def __init__(self, emulator: CodePipelineEmulator, url: str, sqs: Any, queue: str) -> None:
        self.emulator = emulator
        self.url = url
        self.client: CodePipelineClient = make_client(url)
        self.sqs = sqs
        self.queue = queue
        create_type(self.client)

    def events(self) -> list[dict[str, Any]]:
        """Every message sent so far (once the publisher is idle), taken off the queue."""
        assert self.emulator.events.wait_idle(IDLE), "the publisher did not send in time"
        bodies: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10,
                                              WaitTimeSeconds=0)
            messages = answer.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue,
                                        ReceiptHandle=message["ReceiptHandle"])

    def states(self) -> list[str]:
        return [body["detail"]["state"] for body in self.events()]


@pytest.fixture
def make(shared_server: SharedServer, sqs: Any, queue: str,
         clock: FakeClock) -> Iterator[Any]:
    made: list[CodePipelineEmulator] = []

    def build(**settings: Any) -> Setup:
        emulator = CodePipelineEmulator(clock=clock, events_queue_url=queue, **settings)
        made.append(emulator)
        return Setup(emulator, shared_server.plug(emulator).url, sqs, queue)

    yield build
    shared_server.unplug()
    for emulator in made:
        emulator.close()


@pytest.fixture
def setup(make: Any) -> Setup:
    built: Setup = make()
    return built


def test_start_execution_publishes_started_in_the_guides_shape(setup: Setup) -> None:
    started = setup.emulator.start_execution(TRAVIS, CONFIG, pipeline_name="web",
                                             stage="Checks", action="Travis")
    [body] = setup.events()
    assert re.fullmatch(r"[0-9a-f-]{36}", body.pop("id"))
    assert body == {
        "version": "0",
        "detail-type": "CodePipeline Action Execution State Change",
        "source": "aws.codepipeline",
        "account": setup.emulator.account_id,
        "time": "2027-01-15T08:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:codepipeline:us-east-1:{setup.emulator.account_id}:web"],
        "detail": {
            "pipeline": "web",
            "version": "1",
            "execution-id": started["pipelineExecutionId"],
            "stage": "Checks",
            "action": "Travis",
            "state": "STARTED",
            "region": "us-east-1",
            "type": {"owner": "Custom", "category": "Test", "provider": "Travis",
                     "version": 1},
        },
    }


def test_the_worker_side_parser_reads_what_the_emulator_sends(setup: Setup) -> None:
    started = setup.emulator.start_execution(TRAVIS, CONFIG)
    [body] = setup.events()
    event = parse(json.dumps(body))
    assert isinstance(event, ActionEvent)
    assert (event.state, event.owner, event.type_id) == ("STARTED", "Custom",
                                                         ("Test", "Travis", "1"))
    assert event.pipeline_execution_id == started["pipelineExecutionId"]


def test_a_final_success_publishes_succeeded_a_continuation_nothing(setup: Setup,
                                                                     clock: FakeClock) -> None:
    setup.emulator.start_execution(TRAVIS, CONFIG)
    job = claim(setup.client)
    setup.client.put_job_success_result(jobId=job["id"], continuationToken="run-1")
    assert setup.states() == ["STARTED"]
    clock.advance(30)
    follow = claim(setup.client)
    setup.client.put_job_success_result(jobId=follow["id"])
    assert setup.states() == ["SUCCEEDED"]


def test_a_failure_result_publishes_failed(setup: Setup) -> None:
    started = setup.emulator.start_execution(TRAVIS, CONFIG)
    job = claim(setup.client)
    setup.client.put_job_failure_result(
        jobId=job["id"], failureDetails={"type": "JobFailed", "message": "tests failed"})
    events = setup.events()
    assert [e["detail"]["state"] for e in events] == ["STARTED", "FAILED"]
    assert events[1]["detail"]["execution-id"] == started["pipelineExecutionId"]


def test_a_job_timeout_publishes_failed_at_the_deadline(setup: Setup, clock: FakeClock) -> None:
    setup.emulator.start_execution(TRAVIS, CONFIG)
    claim(setup.client)
    assert setup.states() == ["STARTED"]
    clock.advance(86400 + 3600)
    setup.emulator.jobs()  # any call applies the deadlines that passed
    [failed] = setup.events()
    assert failed["detail"]["state"] == "FAILED"
    assert failed["time"] == "2027-01-16T08:00:00Z"  # when it timed out, not when it was seen


def test_stop_and_abandon_publishes_abandoned(setup: Setup) -> None:
    started = setup.emulator.start_execution(TRAVIS, CONFIG)
    claim(setup.client)
    setup.emulator.stop_execution(started["pipelineExecutionId"], abandon=True)
    events = setup.events()
    assert [e["detail"]["state"] for e in events] == ["STARTED", "ABANDONED"]
    assert events[1]["detail"]["execution-id"] == started["pipelineExecutionId"]


def test_stop_and_wait_publishes_nothing_until_the_action_ends(setup: Setup) -> None:
    started = setup.emulator.start_execution(TRAVIS, CONFIG)
    job = claim(setup.client)
    setup.emulator.stop_execution(started["pipelineExecutionId"], abandon=False)
    assert setup.states() == ["STARTED"]
    setup.client.put_job_success_result(jobId=job["id"])
    assert setup.states() == ["SUCCEEDED"]
    assert setup.emulator.execution(started["pipelineExecutionId"])["status"] == "Stopped"


def test_the_abandoned_state_is_a_setting(setup: Setup) -> None:
    status, answer = admin(setup.url, "POST", "/events", {"abandoned_state": None})
    assert status == 200 and answer["abandoned_state"] is None
    started = setup.emulator.start_execution(TRAVIS, CONFIG)
    setup.emulator.stop_execution(started["pipelineExecutionId"], abandon=True)
    assert setup.states() == ["STARTED"]


def test_no_queue_no_events_and_the_admin_call_sets_and_clears_it(
        make: Any, queue: str) -> None:
    setup = make()
    assert admin(setup.url, "POST", "/events", {"queue_url": None})[0] == 200
    setup.emulator.start_execution(TRAVIS, CONFIG)
    assert setup.events() == []
    status, answer = admin(setup.url, "POST", "/events", {"queue_url": queue})
    assert status == 200 and answer["queue_url"] == queue
    setup.emulator.start_execution(TRAVIS, CONFIG)
    assert setup.states() == ["STARTED"]
    status, answer = admin(setup.url, "GET", "/events")
    assert answer["counts"] == {"recorded": 1, "lost": 0, "duplicated": 0, "sent": 1,
                                "failed": 0, "pending": 0}


@pytest.mark.parametrize(("body", "error"), [
    ({"queue_url": "not a url"}, "queue_url must be an SQS queue URL"),
    ({"loss_rate": 2}, "loss_rate must be a fraction"),
    ({"delay": -1}, "delay must be a number >= 0"),
    ({"duplicate_rate": True}, "duplicate_rate must be a number"),
    ({"abandoned_state": "gone"}, "abandoned_state must be an event state"),
    ({"queue": "x"}, "unknown event settings ['queue']"),
    ([1], "must be a JSON object"),
])
def test_bad_settings_are_refused_with_what_to_send(setup: Setup, body: Any,
                                                    error: str) -> None:
    before = admin(setup.url, "GET", "/events")[1]
    status, answer = admin(setup.url, "POST", "/events", body)
    assert status == 400 and error in answer["error"]
    assert admin(setup.url, "GET", "/events")[1] == before


def test_a_delayed_event_arrives_once_its_time_has_come(make: Any, clock: FakeClock) -> None:
    setup = make(event_delay=60.0)
    setup.emulator.start_execution(TRAVIS, CONFIG)
    assert setup.events() == []
    assert setup.emulator.events.counts()["pending"] == 1
    clock.advance(59)
    assert setup.events() == []
    clock.advance(1)
    assert [e["detail"]["state"] for e in setup.events()] == ["STARTED"]


def test_lost_and_duplicated_events(make: Any) -> None:
    lossy = make(event_loss_rate=1.0)
    lossy.emulator.start_execution(TRAVIS, CONFIG)
    assert lossy.events() == []
    assert lossy.emulator.events.counts()["lost"] == 1

    doubled = make(event_duplicate_rate=1.0)
    doubled.emulator.start_execution(TRAVIS, CONFIG)
    first, second = doubled.events()
    assert first == second  # the same event, its id included, as a redelivery is


def test_the_fates_are_seeded(make: Any) -> None:
    """Two emulators with one seed lose and double the same events; another seed differs."""
    def fates(seed: int) -> list[tuple[int, int]]:
        setup = make(seed=seed, event_loss_rate=0.3, event_duplicate_rate=0.3)
        started = [setup.emulator.start_execution(TRAVIS, CONFIG)["pipelineExecutionId"]
                   for _ in range(20)]
        delivered = [e["detail"]["execution-id"] for e in setup.events()]
        return [(started.index(i), delivered.count(i)) for i in sorted(set(delivered))]

    once = fates(7)
    assert fates(7) == once
    assert {count for _, count in once} == {1, 2} and len(once) < 20  # some lost, some doubled
    assert fates(8) != once


def test_a_queue_that_is_gone_never_breaks_the_codepipeline_api(setup: Setup) -> None:
    setup.sqs.delete_queue(QueueUrl=setup.queue)
    started = setup.emulator.start_execution(TRAVIS, CONFIG)
    job = claim(setup.client)
    setup.client.put_job_success_result(jobId=job["id"])
    assert setup.emulator.events.wait_idle(IDLE)
    assert setup.emulator.events.counts()["failed"] == 2
    assert setup.emulator.execution(started["pipelineExecutionId"])["status"] == "Succeeded"


def test_reset_drops_pending_events_and_restores_the_settings(make: Any,
                                                              clock: FakeClock) -> None:
    setup = make(event_delay=60.0)
    setup.emulator.start_execution(TRAVIS, CONFIG)
    admin(setup.url, "POST", "/events", {"loss_rate": 1.0})
    setup.emulator.reset()
    assert setup.emulator.events.counts()["pending"] == 0
    assert setup.emulator.events.settings()["loss_rate"] == 0.0
    clock.advance(60)
    assert setup.events() == []


@pytest.mark.slow
def test_cpworker_emulator_events_queue_publishes_there() -> None:
    """`cpworker emulator --events-queue NAME` prints the queue's URL and publishes to it."""
    process = subprocess.Popen(
        [*CPWORKER, "emulator", "--port", "0", "--events-queue", "cli-events", "--seed", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        for line in process.stdout:
            found = re.search(r"export (\w+)=(\S+)$", line.strip())
            if found:
                printed[found[1]] = found[2]
            if line.startswith("CodePipeline job API emulator:"):
                printed["cp"] = line.split()[4]
            if "Press Ctrl-C" in line:
                break
        queue_url = printed["CPWORKER_EVENTS_QUEUE"]
        assert queue_url.startswith("http://127.0.0.1:") and queue_url.endswith("/cli-events")
        client = make_client(printed["cp"])
        create_type(client)
        status, started = admin(printed["cp"], "POST", "/executions",
                                {"action_type": TRAVIS, "configuration": CONFIG})
        assert status == 201
        sqs = boto3.client("sqs", endpoint_url=printed["AWS_ENDPOINT_URL_SQS"],
                           region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        answer = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=20)
        [message] = answer["Messages"]
        event = parse(message["Body"])
        assert isinstance(event, ActionEvent) and event.state == "STARTED"
        assert event.pipeline_execution_id == started["pipelineExecutionId"]
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
