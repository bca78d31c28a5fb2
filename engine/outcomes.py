"""What an effect reports back to the machine.

Actions return ActionOutcomes (Done, InProgress, RetryLater, Failed); the engine's own CodePipeline
effects return the CodePipeline outcomes below. The machine decides on these types alone, so an
action can be tested by feeding it outcomes, with no network in sight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

JSON = Any
"""A JSON-serialisable value (what the event log can hold)."""


class FailureType(str, Enum):
    """CodePipeline's FailureType enum (PutJobFailureResult.failureDetails.type)."""

    JOB_FAILED = "JobFailed"
    CONFIGURATION_ERROR = "ConfigurationError"
    PERMISSION_ERROR = "PermissionError"
    REVISION_OUT_OF_SYNC = "RevisionOutOfSync"
    REVISION_UNAVAILABLE = "RevisionUnavailable"
    SYSTEM_UNAVAILABLE = "SystemUnavailable"


@dataclass(frozen=True)
class RunDetails:
    """What the console shows about the external run (PutJobSuccessResult.executionDetails)."""

    external_id: str | None = None
    summary: str | None = None
    percent: int | None = None

    def to_json(self) -> dict[str, JSON]:
        return {"external_id": self.external_id, "summary": self.summary, "percent": self.percent}

    @classmethod
    def from_json(cls, data: Mapping[str, JSON] | None) -> RunDetails | None:
        if not data:
            return None
        return cls(data.get("external_id"), data.get("summary"), data.get("percent"))


# --- what an action returns -------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """The external run finished successfully; report success (outputVariables only here)."""

    details: RunDetails | None = None
    output_variables: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, JSON] = field(default_factory=dict)
    uploads: tuple[Mapping[str, JSON], ...] = ()
    """Filled by the engine, not the action: the output artifacts recorded as uploaded for the
    execution (engine.artifacts), so the success event says what was uploaded."""


@dataclass(frozen=True)
class InProgress:
    """The external run goes on.

    `data` is merged into the job's durable run data before anything else happens, so an id
    returned here (a build id, a request id) survives a crash. `check_in` overrides the check
    interval for the next look, in seconds.
    """

    details: RunDetails | None = None
    data: Mapping[str, JSON] = field(default_factory=dict)
    check_in: float | None = None


@dataclass(frozen=True)
class RetryLater:
    """A transient problem: try the same effect again.

    `after` overrides the engine's backoff (a Retry-After, say). With `counted=False` the attempt
    does not use up the retry budget (a rate limit that is known to reset), only the time budget.
    """

    reason: str
    after: float | None = None
    counted: bool = True
    failure_type: FailureType = FailureType.SYSTEM_UNAVAILABLE
    transient: bool = True
    """True (throttling, 5xx, a connection that failed): retried with capped backoff for as long
    as the result can still matter (the state's deadline, engine.decide). False (an exception
    nobody expected, a refusal that will not change): also bounded by the policy's attempts."""


@dataclass(frozen=True)
class Failed:
    """The run failed, or cannot start; report a failure of this type with this message."""

    failure_type: FailureType
    message: str
    details: RunDetails | None = None


ActionOutcome = Done | InProgress | RetryLater | Failed


# --- what the engine's CodePipeline effects return --------------------------------------------


@dataclass(frozen=True)
class Acknowledged:
    """AcknowledgeJob answered InProgress: this worker owns the job."""


@dataclass(frozen=True)
class Refused:
    """CodePipeline will not let this worker have the job (nonce taken, job gone, not running)."""

    reason: str


@dataclass(frozen=True)
class Reported:
    """CodePipeline accepted the result."""

    note: str | None = None


@dataclass(frozen=True)
class Rejected:
    """CodePipeline no longer wants a result for this job (InvalidJobStateException)."""

    reason: str


@dataclass(frozen=True)
class Cancelled:
    """The action tried to cancel its external run; cancelling is best effort."""

    ok: bool
    message: str


@dataclass(frozen=True)
class Deferred:
    """A submission that did not call out, for exactly-once's sake (no I/O happened).

    `until` set: an earlier holder's call may still land until then; wait for it. `until` None:
    the call window passed before the call could start; open a new window first.
    """

    reason: str
    until: float | None = None


@dataclass(frozen=True)
class Expired:
    """A timer with no I/O went off (a continuation that never came).

    `polled`: CodePipeline was polled successfully for the job's action type since the timer
    was due, so a continuation job waiting there would have been taken. While polling fails
    (CodePipeline unreachable), a missing continuation proves nothing.
    """

    polled: bool = True


Outcome = (
    Done | InProgress | RetryLater | Failed | Acknowledged | Refused | Reported | Rejected
    | Cancelled | Expired | Deferred
)
