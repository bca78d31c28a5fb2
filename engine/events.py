"""CodePipeline's action events, read from an SQS queue, as hints that shorten the worker's waits.

CodePipeline publishes a "CodePipeline Action Execution State Change" event to EventBridge each
time an action execution changes state; an EventBridge rule with an SQS target delivers each
one as a message whose body is the event's JSON (PROTOCOL.md A2 "Correction (events)"). The
shape is the user guide's, "Monitoring CodePipeline events":
https://docs.aws.amazon.com/codepipeline/latest/userguide/detect-state-changes-cloudwatch-events.html
(the example "Action execution state change message content", also in awsdocs/
aws-codepipeline-user-guide doc_source/detect-state-changes-cloudwatch-events.md): `source`
aws.codepipeline, `detail-type`, `id`, `time`, `region`, and in `detail` the `pipeline`, the
*pipeline* `execution-id`, `stage`, `action`, `state` and the action `type` {owner, category,
provider, version}. No job id, no nonce, no action execution id: an event says "look now",
never what to do to which job.

EventBridge delivers at least once and late (the same page: events are emitted "on an
at-least-once guarantee"; the EventBridge events reference calls CodePipeline's delivery "best
effort"), so this module keeps no state: a duplicate, a stale or a lost event is expected, and
the callbacks it calls must be idempotent. Polling stays the source of truth.

This module knows SQS and the event's shape, nothing of jobs or of the store: the worker hands
it two callbacks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from engine.clock import Clock
from engine.metrics import EVENTS, child

log = logging.getLogger(__name__)

SOURCE = "aws.codepipeline"
DETAIL_TYPE = "CodePipeline Action Execution State Change"
STARTED = "STARTED"
ENDED = frozenset({"ABANDONED", "CANCELED", "FAILED"})
"""Action states after which a worker still holding the job should stop and cancel its run."""

MAX_WAIT_SECONDS = 20
"""SQS's longest long poll (ReceiveMessage WaitTimeSeconds is 0-20)."""
DEFAULT_WAIT_SECONDS = 10
"""A long poll short enough that stop() returns within seconds, long enough that an idle
worker makes six receives a minute (each one is billed)."""
DEFAULT_RETRY_VISIBILITY = 5
"""Seconds a message whose change is not committed yet stays hidden before it comes back."""
DEFAULT_BACKOFF = (1.0, 60.0)
"""First and longest wait between receives while the queue cannot be read."""
_SHOWN = 160
"""Characters of a message body a log line may show."""

TypeId = tuple[str, str, str]
"""(category, provider, version) of a custom action type: the owner is always Custom."""


@dataclass(frozen=True)
class ActionEvent:
    """One action execution's change of state, as CodePipeline published it."""

    state: str
    category: str
    owner: str
    provider: str
    version: str
    pipeline: str
    pipeline_execution_id: str
    stage: str
    action: str
    time: str
    """The event's `time`, ISO 8601 as EventBridge writes it (e.g. 2026-12-01T18:48:17Z)."""
    event_id: str
    region: str = ""

    @property
    def type_id(self) -> TypeId:
        return (self.category, self.provider, self.version)


@dataclass(frozen=True)
class Rejected:
    """A message that is not a well-formed action execution event, and why."""

    reason: str


def parse(body: str) -> ActionEvent | Rejected:
    """The action event in an SQS message body, or why the body is not one."""
    try:
        event = json.loads(body)
    except ValueError:
        return Rejected("not JSON")
    if not isinstance(event, dict):
        return Rejected(f"a JSON {type(event).__name__}, not an event object")
    if event.get("source") != SOURCE:
        return Rejected(f"source {_short(event.get('source'))}, not {SOURCE}")
    if event.get("detail-type") != DETAIL_TYPE:
        return Rejected(f"detail-type {_short(event.get('detail-type'))}, not {DETAIL_TYPE!r}")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return Rejected("no detail object")
    kind = detail.get("type")
    if not isinstance(kind, dict):
        return Rejected("no detail.type object")
    fields: dict[str, str] = {}
    for where, source, key, name in (
        ("", event, "id", "event_id"),
        ("", event, "time", "time"),
        ("detail.", detail, "pipeline", "pipeline"),
        ("detail.", detail, "execution-id", "pipeline_execution_id"),
        ("detail.", detail, "stage", "stage"),
        ("detail.", detail, "action", "action"),
        ("detail.", detail, "state", "state"),
        ("detail.type.", kind, "owner", "owner"),
        ("detail.type.", kind, "category", "category"),
        ("detail.type.", kind, "provider", "provider"),
        ("detail.type.", kind, "version", "version"),
    ):
        value = source.get(key)
        # The guide's example writes type.version as a number (1); the API's is a string.
        if key == "version" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            return Rejected(f"{where}{key} missing or not a string")
        fields[name] = value
    region = event.get("region")
    return ActionEvent(**fields, region=region if isinstance(region, str) else "")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shown(body: str) -> str:
    return repr(body if len(body) <= _SHOWN else body[:_SHOWN] + "...")


@dataclass(frozen=True)
class Counts:
    """What a listener has done so far."""

    received: int = 0
    deleted: int = 0
    malformed: int = 0
    foreign: int = 0
    started: int = 0
    ended: int = 0
    kept: int = 0
    errors: int = 0


class EventsListener:
    """Long-polls one SQS queue of action events and hands each to the worker's callbacks.

    - a malformed message, or one about an action type not served here (not owner Custom, or
      not one of `action_types`): one log line, deleted;
    - STARTED: `on_started(event)` (a wake-up for the poller), deleted whatever it does;
    - ABANDONED, CANCELED, FAILED: `on_ended(event)`; True ("the change it asks for is
      committed, or there was nothing to do") deletes the message; False ("not yet") leaves it,
      hidden for `retry_visibility` seconds so it comes back soon; an exception is logged and
      leaves it for redelivery too;
    - SUCCEEDED and any other state: deleted, nothing else.

    The callbacks run on the listener's thread and must be idempotent: the same event may come
    twice, late, after polling already found out, or never.

    The queue being unreadable (deleted, unreachable, throttled, access denied, no
    credentials) is never fatal: one line when the trouble starts (and when its kind changes),
    one when it ends, a capped backoff between tries in between.

    stop() returns once the receive in progress returns: within `wait_seconds` (at most 20, the
    longest long poll SQS allows) plus one round trip. The SQS client's read timeout must
    exceed `wait_seconds` (botocore's default is 60 s).
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        action_types: Collection[TypeId],
        on_started: Callable[[ActionEvent], None],
        on_ended: Callable[[ActionEvent], bool],
        *,
        clock: Clock,
        wait_seconds: int = DEFAULT_WAIT_SECONDS,
        retry_visibility: int = DEFAULT_RETRY_VISIBILITY,
        backoff: tuple[float, float] = DEFAULT_BACKOFF,
    ) -> None:
        if not 1 <= wait_seconds <= MAX_WAIT_SECONDS:
            # 0 (a short poll) is SQS's too, but would spin on an empty queue.
            raise ValueError(f"wait_seconds must be 1-{MAX_WAIT_SECONDS} (a long poll), "
                             f"not {wait_seconds}")
        if not 0 <= retry_visibility <= 43200:
            raise ValueError(f"retry_visibility must be 0-43200 s (SQS's range), "
                             f"not {retry_visibility}")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError(f"backoff must be (first, longest) with 0 < first <= longest, "
                             f"not {backoff}")
        self._sqs = sqs
        self.queue_url = queue_url
        self._types = frozenset(action_types)
        self._on_started = on_started
        self._on_ended = on_ended
        self._clock = clock
        self._wait_seconds = wait_seconds
        self._retry_visibility = retry_visibility
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(vars(Counts()), 0)
        self._trouble: str | None = None
        self.last_ok: float | None = None
        """Clock time of the last receive the queue answered; None: not one yet."""

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this events listener was already started")
        self._thread = threading.Thread(target=self._run, name="cpworker-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to end and wait for it (`timeout` None: as long as it takes, which is
        bounded as the class docstring says); True once it has ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def healthy(self) -> bool:
        """The last receive was answered (False before the first one)."""
        return self.last_ok is not None and self._trouble is None

    @property
    def counts(self) -> Counts:
        with self._lock:
            return Counts(**self._counts)

    def _run(self) -> None:
        wait = self._backoff[0]
        while not self._stop.is_set():
            try:
                answered = self.run_once()
            except Exception as error:  # a loop iteration is a unit of failure
                self._count("errors")
                log.error("events queue: unexpected %s: %s; carrying on", type(error).__name__,
                          _short(str(error)))
                answered = False
            if answered:
                wait = self._backoff[0]
                continue
            self._clock.wait(self._stop, wait)
            wait = min(wait * 2, self._backoff[1])

    # ----------------------------------------------------------------- one round

    def run_once(self) -> bool:
        """One ReceiveMessage and what its messages ask for; False: the queue did not answer
        (said once per episode), so the caller should back off."""
        try:
            answer = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                WaitTimeSeconds=self._wait_seconds)
        except (ClientError, BotoCoreError) as error:
            self._count("errors")
            self._troubled(error)
            return False
        self.last_ok = self._clock.now()
        if self._trouble is not None:
            log.info("events queue %s answers again", self.queue_url)
            self._trouble = None
        done: list[Mapping[str, Any]] = []
        for message in answer.get("Messages", []):
            self._count("received")
            if self._handle(message):
                done.append(message)
            if self._stop.is_set():
                break  # the rest come back after their visibility timeout
        self._delete(done)
        return True

    def _handle(self, message: Mapping[str, Any]) -> bool:
        """What one message asks for; True when it may be deleted."""
        body = str(message.get("Body", ""))
        event = parse(body)
        if isinstance(event, Rejected):
            self._count("malformed")
            log.warning("events queue: message %s is not an action execution event (%s), "
                        "deleted: %s", message.get("MessageId"), event.reason, _shown(body))
            return True
        if event.owner != "Custom" or event.type_id not in self._types:
            self._count("foreign")
            log.info("events queue: event %s is about %s/%s/%s/%s, not an action type of this "
                     "worker; deleted (narrow the EventBridge rule to these providers)",
                     event.event_id, event.category, event.owner, event.provider, event.version)
            return True
        if event.state == STARTED:
            self._count("started")
            try:
                self._on_started(event)
            except Exception as error:  # a wake-up missed: polling finds the job anyway
                log.error("events queue: the STARTED handler failed on event %s: %s: %s",
                          event.event_id, type(error).__name__, _short(str(error)))
            return True
        if event.state not in ENDED:
            return True
        self._count("ended")
        try:
            committed = self._on_ended(event)
        except Exception as error:
            log.error("events queue: the %s handler failed on event %s: %s: %s; the message "
                      "comes back", event.state, event.event_id, type(error).__name__,
                      _short(str(error)))
            committed = False
        if committed:
            return True
        self._count("kept")
        self._hide(message)
        return False

    def _hide(self, message: Mapping[str, Any]) -> None:
        """Let a message whose change is not committed yet come back in a few seconds."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=self._retry_visibility)
        except (ClientError, BotoCoreError) as error:  # it comes back at the queue's timeout
            self._count("errors")
            log.warning("events queue: could not shorten the visibility of message %s: %s",
                        message.get("MessageId"), _explain(error))

    def _delete(self, messages: list[Mapping[str, Any]]) -> None:
        if not messages:
            return
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                   for n, m in enumerate(messages)]
        try:
            answer = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as error:  # they come back; handlers are idempotent
            self._count("errors")
            log.warning("events queue: could not delete %d message(s), they will come back: %s",
                        len(entries), _explain(error))
            return
        failed = answer.get("Failed", [])
        self._count("deleted", len(entries) - len(failed))
        if failed:
            self._count("errors")
            log.warning("events queue: %d message(s) not deleted (%s), they will come back",
                        len(failed), _short(failed[0].get("Code")))

    # ----------------------------------------------------------------- bookkeeping

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n
        child(EVENTS, what).inc(n)

    def _troubled(self, error: Exception) -> None:
        kind, explanation = _classify(error)
        if kind != self._trouble:
            log.warning("events queue %s cannot be read: %s; retrying with backoff up to %g s "
                        "(polling goes on meanwhile)", self.queue_url, explanation,
                        self._backoff[1])
        self._trouble = kind


_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "InvalidClientTokenId",
                     "UnrecognizedClientException", "SignatureDoesNotMatch",
                     "ExpiredToken", "KMS.AccessDeniedException"})
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestThrottled",
                        "OverLimit", "TooManyRequestsException"})


def _classify(error: Exception) -> tuple[str, str]:
    """(kind of trouble, what to do about it) for an error of a receive."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _NO_QUEUE:
            return "no-queue", ("the queue does not exist (deleted, or a mistyped URL); create "
                                "it or fix --events-queue")
        if code in _DENIED:
            return "denied", (f"access denied ({code}); grant the worker sqs:ReceiveMessage, "
                              "sqs:DeleteMessage, sqs:ChangeMessageVisibility on the queue")
        if code in _THROTTLED:
            return "throttled", f"throttled ({code})"
        return f"refused:{code}", _explain(error)
    if isinstance(error, NoCredentialsError):
        return "no-credentials", "no AWS credentials found"
    return "unreachable", f"unreachable ({type(error).__name__})"


def _explain(error: Exception) -> str:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "?")
        return f"{code}: {_short(error.response.get('Error', {}).get('Message', ''))}"
    return type(error).__name__
