"""What went wrong talking to Travis, and what CodePipeline should be told about it.

One exception type carries everything an answer can say (HTTP status, Travis's `error_type` and
`error_message`, a Retry-After); one function turns it into the engine's outcome, so the rules
of PROTOCOL B7/B8 and A4 live in one place and read as a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.outcomes import Failed, FailureType, RetryLater

REQUEST_LIMIT_WAIT = 300.0
"""Seconds to wait after Travis's hourly trigger limit (JSON 429 request_limit_reached).

Travis sends no Retry-After and does not say when the oldest request leaves its one-hour window,
so a slot is looked for every five minutes; a refused POST creates nothing and costs nothing.
"""

THROTTLE_WAIT = 60.0
"""Seconds to wait after a plain-text 429 without Retry-After: rack-attack counts per minute."""

MAX_WAIT = 3600.0
"""No Retry-After is believed beyond an hour: a longer one is a misconfigured proxy."""

BLOCKED_WAIT = 600.0
"""Seconds to wait after rack-attack's plain 403 "Forbidden": Travis bans a client for an hour
after 50 POSTs in 30 s (lib/travis/api/attack.rb) and says neither that nor when it ends, so
the call is tried again every ten minutes, without using up attempts."""


class TravisError(Exception):
    """A Travis API call that did not succeed.

    `status` is None when no HTTP answer came back at all (connection refused, timeout). The
    message names the call (method and path, never a header, so never the token).
    """

    def __init__(
        self,
        operation: str,
        status: int | None,
        error_type: str,
        error_message: str,
        *,
        retry_after: float | None = None,
        body: object = None,
        configuration: str | None = None,
    ) -> None:
        self.operation = operation
        self.configuration = configuration
        """The property at fault when the call could not even be sent (ApiUrl, APIToken):
        waiting cannot fix it, so it is never retried."""
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.retry_after = retry_after
        self.body = body
        """The decoded JSON error body (for extra members such as max_requests), or None."""
        answer = "no answer" if status is None else f"HTTP {status}"
        super().__init__(f"{operation}: {answer} {error_type}: {error_message}")

    @property
    def transient(self) -> bool:
        """Worth the same call again soon: no answer, or a server-side failure."""
        if self.configuration is not None:
            return False
        return self.status is None or self.status >= 500

    @property
    def throttled(self) -> bool:
        return self.status == 429


@dataclass(frozen=True)
class Where:
    """The repository and branch a failure is about: every message names them."""

    slug: str
    branch: str
    api_url: str

    def __str__(self) -> str:
        return f"Travis repository {self.slug}, branch {self.branch}"


def outcome_for(error: TravisError, where: Where, doing: str) -> Failed | RetryLater:
    """The engine's answer to a failed Travis call made while `doing` something.

    Permanent problems fail the job with the failure type an operator can act on; transient ones
    are retried by the engine (counted, so its bounded retries end in SystemUnavailable); Travis's
    hourly limit is waited out inside the job's time budget.
    """
    if error.configuration is not None:
        return Failed(FailureType.CONFIGURATION_ERROR,
                      f"{where}: could not {doing}: {error.error_message}. Fix: "
                      f"{_CALL_FIXES.get(error.configuration, _CALL_FIXES['ApiUrl'])}")
    said = f"Travis said: {error.error_message} ({error.error_type}, {_status(error)})"
    if error.status == 403 and error.error_type == "blocked":
        return RetryLater(
            f"{where}: could not {doing}: Travis refuses every call from this token (or this "
            f"host's address) with a plain 'Forbidden', as it does for an hour after more than "
            f"50 POSTs in 30 seconds. {said}; trying again in {BLOCKED_WAIT:g} s",
            after=BLOCKED_WAIT, counted=False, failure_type=FailureType.SYSTEM_UNAVAILABLE)
    if error.status in (401, 403):
        return Failed(FailureType.PERMISSION_ERROR,
                      f"{where}: Travis refused to let the APIToken {doing}. {said}. "
                      f"Fix: {_permission_fix(error, where)}")
    if error.status == 429:
        return _throttled(error, where, doing, said)
    if error.transient:
        return RetryLater(f"{where}: could not {doing}: {error}", counted=True,
                          failure_type=FailureType.SYSTEM_UNAVAILABLE)
    return Failed(FailureType.CONFIGURATION_ERROR,
                  f"{where}: Travis would not {doing}. {said}. Fix: {_config_fix(error, where)}")


_CALL_FIXES = {
    "APIToken": "set the action's APIToken to the token exactly as Travis CI shows it, on one "
                "line (Travis: Account, Settings, API authentication)",
    "ApiUrl": "set the action's ApiUrl to the Travis API's URL, like "
              "https://travis.example.com/api, or leave it empty for travis-ci.com",
}
"""What to change when a call could not be sent, by the property at fault."""


def _throttled(error: TravisError, where: Where, doing: str, said: str) -> RetryLater:
    if error.error_type == "request_limit_reached":
        # Travis's own hourly trigger limit: it resets, so waiting is not an error (not counted);
        # only the job's time budget ends the wait.
        window = _per_seconds(error)
        after = min(error.retry_after or REQUEST_LIMIT_WAIT, window or MAX_WAIT, MAX_WAIT)
        return RetryLater(
            f"{where}: could not {doing}: the repository reached its limit of API-triggered "
            f"builds. {said}; trying again in {after:g} s (raise the repository's API build "
            "limit in Travis, or trigger less often)",
            after=after, counted=False, failure_type=FailureType.SYSTEM_UNAVAILABLE,
        )
    if error.retry_after is not None:
        # A throttle that says when it ends will end: wait it out without using up attempts.
        after = min(error.retry_after, MAX_WAIT)
        return RetryLater(f"{where}: could not {doing}: throttled by the Travis API ({said}); "
                          f"Retry-After {after:g} s", after=after, counted=False)
    # Rack-attack's bare "Retry later": Travis's own throttle resets within a minute, but a plain
    # 429 may also come from a proxy that never relents, so these attempts count and end in
    # SystemUnavailable after the engine's retry budget rather than spinning for a day.
    return RetryLater(f"{where}: could not {doing}: throttled by the Travis API ({said}); too many "
                      "calls with this token", after=THROTTLE_WAIT, counted=True)


def _per_seconds(error: TravisError) -> float | None:
    if isinstance(error.body, dict):
        value = error.body.get("per_seconds")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _status(error: TravisError) -> str:
    return "no answer" if error.status is None else f"HTTP {error.status}"


def _permission_fix(error: TravisError, where: Where) -> str:
    if error.error_type == "repo_migrated":
        return ("the repository moved to travis-ci.com: use https://api.travis-ci.com as the "
                "action's ApiUrl (or leave it empty) and a travis-ci.com token")
    if error.error_type == "forbidden":
        return ("something in front of Travis answered a bare 403 page; check the action's "
                "ApiUrl and APIToken, and any proxy between the worker and Travis")
    if error.error_type == "insufficient_access":
        return (f"the token's Travis user needs write access to {where.slug} (to trigger and "
                "cancel builds); use a token of a user with push rights")
    # wrong_credentials ("access denied", v3/access_control.rb or the ScopeCheck middleware),
    # login_required, 401: the token itself.
    return (f"set the action's APIToken to a valid Travis API token for {where.api_url} "
            "(Travis: Account, Settings, API authentication, or `travis token --com`)")


def _config_fix(error: TravisError, where: Where) -> str:
    if error.status == 404:
        return (f"check Owner and ProjectName ({where.slug}), that the token's user can see "
                f"the repository, and that {where.api_url} is the right Travis (ApiUrl)")
    if error.error_type == "repository_inactive" or error.status == 406:
        return f"activate {where.slug} on Travis CI (repository settings), then retry the stage"
    return "check the action's Owner, ProjectName, Branch and ApiUrl properties"
