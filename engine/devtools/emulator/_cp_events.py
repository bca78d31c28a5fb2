"""The CodePipeline emulator's EventBridge side: "CodePipeline Action Execution State Change"
events, delivered to an SQS queue as an EventBridge rule with an SQS target delivers them (the
message body is the event's JSON), so a worker's events listener (engine.events) can be tested
against the emulator end to end.

The event is the user guide's, "Monitoring CodePipeline events"
(https://docs.aws.amazon.com/codepipeline/latest/userguide/detect-state-changes-cloudwatch-events.html;
awsdocs/aws-codepipeline-user-guide doc_source/detect-state-changes-cloudwatch-events.md, the
example "Action execution state change message content"), field for field; PROTOCOL.md A2
"Correction (events)". When CodePipeline emits which state:

- STARTED when the action execution starts (its first job is created), not for continuation
  jobs: those are the same action execution;
- SUCCEEDED when the final success result is accepted; FAILED on a failure result or when a
  job times out;
- ABANDONED when "stop and abandon" drops a running action: the action execution is then
  Abandoned (user guide, "Stop a pipeline execution in CodePipeline",
  https://docs.aws.amazon.com/codepipeline/latest/userguide/pipelines-stop.html). The event's
  state for it is not in the guide's table of action states (STARTED, SUCCEEDED, FAILED,
  CANCELED); ABANDONED is PROTOCOL A2's reading, so it is the setting `abandoned_state` (None:
  no event at all). "Stop and wait" emits nothing at the stop: the action ends as it ends.

EventBridge delivers at least once, late at times, and (as any delivery to a queue that is gone
or denied) not at all: the same guide says "at-least-once", the EventBridge reference calls
CodePipeline's delivery "best effort". So `delay`, `loss_rate` and `duplicate_rate` make an
event late, lost or doubled (a duplicate keeps its event id), drawn from a seeded sequence.

Events are recorded under the emulator's lock (no I/O there) and sent by a thread of their own,
outside it: a slow or failing queue never slows or breaks the CodePipeline API; a failed send is
logged and counted. The queue is reached with boto3 at the endpoint in its URL, signed for the
emulator's region with throwaway credentials: it is meant for moto's server (LocalSqs), never a
real account.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine.clock import Clock
from engine.devtools.emulator._http import Request, Response

if TYPE_CHECKING:
    from engine.devtools.emulator._cp_jobs import Execution
    from engine.devtools.emulator.codepipeline import CodePipelineEmulator

log = logging.getLogger(__name__)

DETAIL_TYPE = "CodePipeline Action Execution State Change"
_WAKE = 0.05
"""Real seconds between looks at a delayed event's due time: on a FakeClock time only moves when
a test moves it, so the sender cannot sleep until then."""
_SETTINGS = ("queue_url", "delay", "loss_rate", "duplicate_rate", "abandoned_state")


def event_time(at: float) -> str:
    """EventBridge's `time`: ISO 8601, UTC, whole seconds, as the guide's examples."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def action_event(execution: Execution, state: str, at: float, *, event_id: str,
                 account_id: str, region: str) -> dict[str, Any]:
    """The event EventBridge delivers, in the guide's shape (see the module docstring)."""
    type_id = execution.action_type.type_id
    version = type_id["version"]
    pipeline_arn = f"arn:aws:codepipeline:{region}:{account_id}:{execution.pipeline_name}"
    return {
        "version": "0",
        "id": event_id,
        "detail-type": DETAIL_TYPE,
        "source": "aws.codepipeline",
        "account": account_id,
        "time": event_time(at),
        "region": region,
        "resources": [pipeline_arn],
        "detail": {
            "pipeline": execution.pipeline_name,
            "version": "1",  # the pipeline structure's version; the emulator has one
            "execution-id": execution.id,
            "stage": execution.stage,
            "action": execution.action,
            "state": state,
            "region": region,
            "type": {
                "owner": "Custom",
                "category": type_id["category"],
                "provider": type_id["provider"],
                # The guide's example writes a number here; the API's version is a string.
                "version": int(version) if version.isdigit() else version,
            },
        },
    }


@dataclass
class _Outgoing:
    due: float
    queue_url: str
    body: str
    copies: int


class EventPublisher:
    """Records action state changes and sends them to `queue_url` (None: nothing is recorded).

    Settings (the constructor, configure(), `POST /_emulator/events`): `queue_url`; `delay`
    seconds of the emulator's clock before an event is sent; `loss_rate` and `duplicate_rate`
    (0-1) of events never sent or sent twice; `abandoned_state` (see the module docstring).
    """

    def __init__(self, *, clock: Clock, account_id: str, region: str, seed: int = 0,
                 queue_url: str | None = None, delay: float = 0.0, loss_rate: float = 0.0,
                 duplicate_rate: float = 0.0, abandoned_state: str | None = "ABANDONED") -> None:
        self._clock = clock
        self.account_id = account_id
        self.region = region
        self.queue_url: str | None = None
        self.delay = 0.0
        self.loss_rate = 0.0
        self.duplicate_rate = 0.0
        self.abandoned_state: str | None = None
        self._cond = threading.Condition()
        self._outbox: list[_Outgoing] = []
        self._sending = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self.configure(queue_url=queue_url, delay=delay, loss_rate=loss_rate,
                       duplicate_rate=duplicate_rate, abandoned_state=abandoned_state)
        self._initial = self.settings()
        self._reseed(seed)

    def _reseed(self, seed: int) -> None:
        self._rng = random.Random(f"events:{seed}")
        self._counts = dict.fromkeys(("recorded", "lost", "duplicated", "sent", "failed"), 0)

    # ----------------------------------------------------------------- settings

    def configure(self, **settings: Any) -> None:
        """Change some settings; each is checked before any is applied."""
        unknown = sorted(set(settings) - set(_SETTINGS))
        if unknown:
            raise ValueError(f"unknown event settings {unknown}; known: {list(_SETTINGS)}")
        url = settings.get("queue_url", self.queue_url)
        if url is not None and (not isinstance(url, str)
                                or urlsplit(url).scheme not in ("http", "https")
                                or not urlsplit(url).netloc):
            raise ValueError(f"queue_url must be an SQS queue URL (http://host:port/account/"
                             f"name) or null, not {url!r}")
        for key in ("delay", "loss_rate", "duplicate_rate"):
            value = settings.get(key, getattr(self, key))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, not {value!r}")
            if key != "delay" and value > 1:
                raise ValueError(f"{key} must be a fraction of events, 0-1, not {value!r}")
        state = settings.get("abandoned_state", self.abandoned_state)
        if state is not None and not (isinstance(state, str) and re.fullmatch(r"[A-Z_]+", state)):
            raise ValueError(f"abandoned_state must be an event state such as ABANDONED, or "
                             f"null for none, not {state!r}")
        with self._cond:
            for key, value in settings.items():
                setattr(self, key, float(value) if key in ("delay", "loss_rate",
                                                           "duplicate_rate") else value)

    def settings(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _SETTINGS}

    def counts(self) -> dict[str, int]:
        """Events recorded, lost (never sent), duplicated, sent (copies), failed (copies whose
        send failed), and pending (recorded, not sent yet)."""
        with self._cond:
            return {**self._counts, "pending": sum(e.copies for e in self._outbox) + self._sending}

    # ----------------------------------------------------------------- recording

    def action_changed(self, execution: Execution, state: str | None, at: float) -> None:
        """An action execution reached `state` at `at` (None: nothing to publish). Called with
        the emulator's lock held: it only draws the seeded fate of the event and queues it."""
        if self.queue_url is None or state is None:
            return
        with self._cond:
            event_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            lost = self._rng.random() < self.loss_rate
            doubled = self._rng.random() < self.duplicate_rate
            self._counts["recorded"] += 1
            if lost:
                self._counts["lost"] += 1
                log.info("event %s (%s of execution %s) lost, as loss_rate %g drew", event_id,
                         state, execution.id, self.loss_rate)
                return
            self._counts["duplicated"] += doubled
            body = json.dumps(action_event(execution, state, at, event_id=event_id,
                                           account_id=self.account_id, region=self.region))
            self._outbox.append(_Outgoing(self._clock.now() + self.delay, self.queue_url, body,
                                          2 if doubled else 1))
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                                name="codepipeline-emulator-events")
                self._thread.start()
            self._cond.notify_all()

    def abandoned(self, execution: Execution, at: float) -> None:
        """A running action was dropped by "stop and abandon"."""
        self.action_changed(execution, self.abandoned_state, at)

    # ----------------------------------------------------------------- sending

    def _idle(self) -> bool:
        now = self._clock.now()
        return self._sending == 0 and all(e.due > now for e in self._outbox)

    def wait_idle(self, timeout: float) -> bool:
        """Wait (at most `timeout` real seconds) until every event already due has been sent
        or has failed; True when so. Events still delayed on the clock do not count."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = self._clock.now()
                    due = [e for e in self._outbox if e.due <= now]
                    if due:
                        self._outbox = [e for e in self._outbox if e.due > now]
                        self._sending += len(due)
                        break
                    self._cond.wait(_WAKE if self._outbox else None)
            for outgoing in due:
                self._send(outgoing)
                with self._cond:
                    self._sending -= 1
                    self._cond.notify_all()

    def _send(self, outgoing: _Outgoing) -> None:
        for _ in range(outgoing.copies):
            try:
                self._client(outgoing.queue_url).send_message(QueueUrl=outgoing.queue_url,
                                                              MessageBody=outgoing.body)
            except Exception as error:  # a queue that is gone must not stop the others
                code = getattr(error, "response", {}).get("Error", {}).get("Code")
                log.warning("could not publish an event to %s: %s", outgoing.queue_url,
                            code or type(error).__name__)
                with self._cond:
                    self._counts["failed"] += 1
                continue
            with self._cond:
                self._counts["sent"] += 1

    def _client(self, queue_url: str) -> Any:
        parts = urlsplit(queue_url)
        endpoint = f"{parts.scheme}://{parts.netloc}"
        client = self._clients.get(endpoint)
        if client is None:
            import boto3
            from botocore.config import Config

            client = self._clients[endpoint] = boto3.session.Session().client(
                "sqs", endpoint_url=endpoint, region_name=self.region,
                aws_access_key_id="emulator", aws_secret_access_key="emulator",
                config=Config(retries={"total_max_attempts": 2}, connect_timeout=5,
                              read_timeout=10))
        return client

    # ----------------------------------------------------------------- lifecycle

    def reset(self, seed: int) -> None:
        """Drop what is not sent yet, restart the seeded sequence and the constructor's
        settings (the emulator's reset())."""
        with self._cond:
            self._outbox.clear()
            self._reseed(seed)
        self.configure(**self._initial)

    def close(self) -> None:
        """Stop the sending thread; what is not sent yet is dropped."""
        with self._cond:
            self._closed = True
            self._outbox.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)


# --------------------------------------------------------------------- admin routes


def admin_get(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    """`GET /_emulator/events` -> the settings and the counts."""
    return Response.json(200, {**emulator.events.settings(), "counts": emulator.events.counts()})


def admin_set(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    """`POST /_emulator/events` {"queue_url": URL or null, "delay", "loss_rate",
    "duplicate_rate", "abandoned_state"}: change those given (400 names a bad one)."""
    body = request.json()
    if not isinstance(body, dict):
        raise ValueError("the event settings must be a JSON object")
    emulator.events.configure(**body)
    return admin_get(emulator, request, match)


# --------------------------------------------------------------------- a local SQS


class LocalSqs:
    """moto's SQS on loopback, for the events queue, with no AWS account.

    It runs on the process's one moto server (_cp_s3.MotoServer, on 127.0.0.1 and a free port,
    shared with the artifact store): moto keeps its state per process anyway, so every LocalSqs
    of one process sees the same queues.
    """

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self._endpoint: str | None = None

    def start(self) -> LocalSqs:
        from engine.devtools.emulator._cp_s3 import INSTALL_HINT, MotoServer

        if self._endpoint is None:
            try:
                self._endpoint = MotoServer.acquire()
            except ImportError:
                raise RuntimeError(f"the events queue needs moto's server: {INSTALL_HINT}"
                                   ) from None
        return self

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("LocalSqs.start() first")
        return self._endpoint

    def client(self) -> Any:
        """A boto3 SQS client for this endpoint (throwaway credentials: moto takes any)."""
        import boto3

        return boto3.session.Session().client(
            "sqs", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id="emulator", aws_secret_access_key="emulator")

    def create_queue(self, name: str) -> str:
        """The URL of the queue `name` (created if needed)."""
        return str(self.client().create_queue(QueueName=name)["QueueUrl"])

    def stop(self) -> None:
        if self._endpoint is not None:
            from engine.devtools.emulator._cp_s3 import MotoServer

            self._endpoint = None
            MotoServer.release()

    def __enter__(self) -> LocalSqs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
