"""engine.events against moto's SQS over HTTP on 127.0.0.1: the event parser, and the listener's
handling of each kind of message and of a queue that goes away and comes back."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from engine.clock import SystemClock
from engine.devtools.emulator._cp_events import LocalSqs
from engine.events import ActionEvent, EventsListener, Rejected, parse

TRAVIS = ("Test", "Travis", "1")


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll recorded state until `condition()`; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def event(state: Any = "STARTED", *, owner: str = "Custom", provider: str = "Travis",
          version: Any = 1, **changes: Any) -> dict[str, Any]:
    """The user guide's "Action execution state change message content" example, with values
    (detect-state-changes-cloudwatch-events; type.version is a number there)."""
    body: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CodePipeline Action Execution State Change",
        "source": "aws.codepipeline",
        "account": "111111111111",
        "time": "2026-12-01T18:48:17Z",
        "region": "us-east-1",
        "resources": ["arn:aws:codepipeline:us-east-1:111111111111:myPipeline"],
        "detail": {
            "pipeline": "myPipeline",
            "version": "1",
            "execution-id": "8ed4fda0-4a8e-4c53-9c0e-3d5d5ab6f6a1",
            "stage": "Prod",
            "action": "myAction",
            "state": state,
            "type": {"owner": owner, "category": "Test", "provider": provider,
                     "version": version},
        },
    }
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def local_sqs() -> Iterator[LocalSqs]:
    with LocalSqs() as sqs:
        yield sqs


@pytest.fixture
def sqs(local_sqs: LocalSqs) -> Any:
    return boto3.client("sqs", endpoint_url=local_sqs.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture
def queue(local_sqs: LocalSqs) -> str:
    """A queue of this test's own (moto's state is per process, shared by every test)."""
    return local_sqs.create_queue(f"events-{uuid.uuid4().hex[:12]}")


class Recorder:
    """The worker's two callbacks, recording what they were given."""

    def __init__(self, answers: list[bool | Exception] | None = None) -> None:
        self.started: list[ActionEvent] = []
        self.ended: list[ActionEvent] = []
        self.answers = list(answers or [])

    def on_started(self, event: ActionEvent) -> None:
        self.started.append(event)

    def on_ended(self, event: ActionEvent) -> bool:
        self.ended.append(event)
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer


def listener(sqs: Any, queue: str, recorder: Recorder, **kwargs: Any) -> EventsListener:
    settings: dict[str, Any] = {"wait_seconds": 1, "retry_visibility": 1,
                                "backoff": (0.05, 0.2)}
    settings.update(kwargs)
    return EventsListener(sqs, queue, [TRAVIS], recorder.on_started, recorder.on_ended,
                          clock=SystemClock(), **settings)


def state_of(events: EventsListener) -> tuple[bool, bool]:
    """(running, healthy), read afresh each time."""
    return events.running, events.healthy


def left_in(sqs: Any, queue: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages",
                                        "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"])


def send(sqs: Any, queue: str, body: dict[str, Any] | str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody=body if isinstance(body, str)
                     else json.dumps(body))


# --------------------------------------------------------------------- parse


def test_parse_reads_the_documented_event() -> None:
    body = event("FAILED")
    parsed = parse(json.dumps(body))
    assert parsed == ActionEvent(
        state="FAILED", category="Test", owner="Custom", provider="Travis", version="1",
        pipeline="myPipeline", pipeline_execution_id="8ed4fda0-4a8e-4c53-9c0e-3d5d5ab6f6a1",
        stage="Prod", action="myAction", time="2026-12-01T18:48:17Z", event_id=body["id"],
        region="us-east-1")
    assert isinstance(parsed, ActionEvent) and parsed.type_id == TRAVIS


def test_parse_takes_the_version_as_a_string_or_a_number() -> None:
    as_number = parse(json.dumps(event(version=1, id="e")))
    as_string = parse(json.dumps(event(version="1", id="e")))
    assert isinstance(as_number, ActionEvent)
    assert as_number == as_string


def _without(path: tuple[str, ...]) -> str:
    body = event()
    where = body
    for key in path[:-1]:
        where = where[key]
    del where[path[-1]]
    return json.dumps(body)


@pytest.mark.parametrize(("body", "reason"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "a JSON list"),
    (json.dumps(event(source="aws.codebuild")), "source 'aws.codebuild'"),
    (json.dumps(event(**{"detail-type": "CodePipeline Pipeline Execution State Change"})),
     "detail-type 'CodePipeline Pipeline Execution State Change'"),
    (json.dumps(event(detail="STARTED")), "no detail object"),
    (_without(("detail", "type")), "no detail.type object"),
    (_without(("detail", "execution-id")), "detail.execution-id missing"),
    (_without(("detail", "stage")), "detail.stage missing"),
    (_without(("detail", "type", "provider")), "detail.type.provider missing"),
    (_without(("id",)), "id missing"),
    (json.dumps(event(state=None)), "detail.state missing or not a string"),
    (json.dumps(event(version=True)), "detail.type.version missing or not a string"),
    (json.dumps(event(provider="")), "detail.type.provider missing"),
])
def test_parse_rejects_what_is_not_an_action_event(body: str, reason: str) -> None:
    parsed = parse(body)
    assert isinstance(parsed, Rejected)
    assert reason in parsed.reason


def test_the_listener_refuses_settings_outside_sqs_ranges(sqs: Any) -> None:
    with pytest.raises(ValueError, match="wait_seconds must be 1-20"):
        listener(sqs, "http://127.0.0.1:1/q", Recorder(), wait_seconds=21)
    with pytest.raises(ValueError, match="wait_seconds must be 1-20"):
        listener(sqs, "http://127.0.0.1:1/q", Recorder(), wait_seconds=0)
    with pytest.raises(ValueError, match="backoff"):
        listener(sqs, "http://127.0.0.1:1/q", Recorder(), backoff=(0.0, 1.0))


# --------------------------------------------------------------------- the listener


def test_malformed_foreign_and_succeeded_are_deleted_started_wakes(
        sqs: Any, queue: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.events")
    recorder = Recorder()
    ours = event("STARTED")
    for body in ("x" * 5000, event("STARTED", owner="AWS"), event("STARTED", provider="Other"),
                 event("SUCCEEDED"), event("RESUMED"), ours):
        send(sqs, queue, body)
    events = listener(sqs, queue, recorder)
    wait_until("six messages handled", lambda: events.run_once() and events.counts.received >= 6)

    counts = events.counts
    assert (counts.received, counts.malformed, counts.foreign, counts.started) == (6, 1, 2, 1)
    assert counts.deleted == 6 and counts.kept == 0 and counts.errors == 0
    assert [e.event_id for e in recorder.started] == [ours["id"]]
    assert recorder.ended == []
    assert left_in(sqs, queue) == 0
    assert events.healthy
    malformed = [r.getMessage() for r in caplog.records if "not an action execution" in
                 r.getMessage()]
    assert len(malformed) == 1
    assert "\n" not in malformed[0] and len(malformed[0]) < 400  # the body is cut short


def test_an_ended_action_stays_queued_until_its_change_is_committed(
        sqs: Any, queue: str) -> None:
    recorder = Recorder(answers=[False, RuntimeError("database away"), True])
    failed = event("ABANDONED")
    send(sqs, queue, failed)
    events = listener(sqs, queue, recorder)

    events.run_once()
    assert [e.event_id for e in recorder.ended] == [failed["id"]]
    assert events.counts.kept == 1 and events.counts.deleted == 0
    assert left_in(sqs, queue) == 1
    wait_until("the message handled three times",
               lambda: events.run_once() and len(recorder.ended) >= 3)
    assert [e.state for e in recorder.ended] == ["ABANDONED"] * 3
    assert (events.counts.kept, events.counts.deleted, events.counts.ended) == (2, 1, 3)
    assert left_in(sqs, queue) == 0


@pytest.mark.parametrize("state", ["CANCELED", "FAILED"])
def test_canceled_and_failed_end_an_action_too(sqs: Any, queue: str, state: str) -> None:
    recorder = Recorder()
    send(sqs, queue, event(state))
    events = listener(sqs, queue, recorder)
    wait_until("the event handled", lambda: events.run_once() and events.counts.received >= 1)
    assert [e.state for e in recorder.ended] == [state]
    assert left_in(sqs, queue) == 0


def test_a_queue_that_goes_away_is_waited_for(
        sqs: Any, local_sqs: LocalSqs, queue: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.events")
    recorder = Recorder()
    events = listener(sqs, queue, recorder)
    events.start()
    try:
        send(sqs, queue, event("STARTED"))
        wait_until("the first wake-up", lambda: len(recorder.started) == 1)
        sqs.delete_queue(QueueUrl=queue)
        wait_until("several failed receives", lambda: events.counts.errors >= 4)
        assert state_of(events) == (True, False)
        troubles = [r for r in caplog.records if "cannot be read" in r.getMessage()]
        assert len(troubles) == 1
        assert "does not exist" in troubles[0].getMessage()

        name = queue.rsplit("/", 1)[1]
        assert local_sqs.create_queue(name) == queue
        send(sqs, queue, event("STARTED"))
        wait_until("the wake-up after the queue came back", lambda: len(recorder.started) == 2)
        assert state_of(events) == (True, True)
        assert len([r for r in caplog.records if "answers again" in r.getMessage()]) == 1
        assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 1
    finally:
        assert events.stop(timeout=15)
    assert state_of(events) == (False, True)


def test_an_unreachable_endpoint_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.events")
    with socket_closed() as port:
        dead = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}",
                            region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing",
                            config=Config(retries={"total_max_attempts": 1}))
        events = listener(dead, f"http://127.0.0.1:{port}/123456789012/q", Recorder())
        assert events.run_once() is False
        assert events.run_once() is False
    assert events.counts.errors == 2
    lines = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(lines) == 1 and "unreachable" in lines[0]


class socket_closed:
    """A loopback port nothing listens on (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        pass


def test_stop_ends_an_idle_listener(sqs: Any, queue: str) -> None:
    events = listener(sqs, queue, Recorder())
    events.start()
    wait_until("a first answered receive", lambda: events.last_ok is not None)
    stopped = threading.Event()

    def stop() -> None:
        events.stop()
        stopped.set()

    threading.Thread(target=stop, daemon=True).start()
    assert stopped.wait(15), "stop() did not return after the long poll in progress"
    assert not events.running
