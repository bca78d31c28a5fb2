"""What went wrong talking to GitHub, and what CodePipeline should be told about it.

One exception type carries everything an answer can say (HTTP status, GitHub's `message` and
`errors`, `retry-after` and the `x-ratelimit-*` headers); one function turns it into the
engine's outcome, so the rules of PROTOCOL D live in one place and read as a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.outcomes import Failed, FailureType, RetryLater

SECONDARY_WAIT = 60.0
"""Seconds to wait after a secondary rate limit that names no time: GitHub's REST guide ("Rate
limits for the REST API", exceeding the secondary rate limit) says to wait at least a minute."""

MAX_WAIT = 3600.0
"""No wait is believed beyond an hour: the primary limit's window is an hour, and a longer
retry-after is a misconfigured proxy."""


class GitHubError(Exception):
    """A GitHub API call that did not succeed.

    `status` is None when no HTTP answer came back at all (connection refused, timeout). The
    message names the call (method and path, never a header, so never the token).
    """

    def __init__(
        self,
        operation: str,
        status: int | None,
        message: str,
        *,
        retry_after: float | None = None,
        remaining: int | None = None,
        reset: float | None = None,
        details: str = "",
        configuration: str | None = None,
    ) -> None:
        self.operation = operation
        self.status = status
        self.message = message
        self.retry_after = retry_after
        """The retry-after header, in seconds."""
        self.remaining = remaining
        """x-ratelimit-remaining: 0 means the token's hourly budget is spent."""
        self.reset = reset
        """x-ratelimit-reset: when the budget comes back (epoch seconds)."""
        self.details = details
        """GitHub's `errors` list, flattened: which field or input it refused."""
        self.configuration = configuration
        """The property at fault when the call could not even be sent (ApiUrl, Token):
        waiting cannot fix it, so it is never retried."""
        answer = "no answer" if status is None else f"HTTP {status}"
        super().__init__(f"{operation}: {answer}: {message}"
                         + (f" ({details})" if details else ""))

    @property
    def said(self) -> str:
        """GitHub's own words, with its details: the part of the error worth quoting."""
        return self.message + (f" ({self.details})" if self.details else "")

    @property
    def transient(self) -> bool:
        """Worth the same call again soon: no answer, or a server-side failure."""
        if self.configuration is not None:
            return False
        return self.status is None or self.status >= 500

    @property
    def rate_limited(self) -> bool:
        """GitHub's primary (403/429 with x-ratelimit-remaining 0) or secondary (403/429,
        often with retry-after, and "secondary rate limit" in the message) limit."""
        if self.status == 429:
            return True
        return self.status == 403 and (
            self.remaining == 0 or self.retry_after is not None
            or "rate limit" in self.message.lower())

    def wait(self, now: float) -> float:
        """How long GitHub asks us to wait: retry-after, else until x-ratelimit-reset when the
        budget is spent, else a minute (GitHub's REST guide, in that order)."""
        if self.retry_after is not None:
            return min(max(0.0, self.retry_after), MAX_WAIT)
        if self.remaining == 0 and self.reset is not None:
            return min(max(1.0, self.reset - now + 1.0), MAX_WAIT)
        return SECONDARY_WAIT


@dataclass(frozen=True)
class Where:
    """The repository and workflow a failure is about: every message names them."""

    repository: str
    workflow: str
    ref: str
    api_url: str

    def __str__(self) -> str:
        return f"GitHub workflow {self.workflow} of {self.repository} on {self.ref}"


def outcome_for(error: GitHubError, where: Where, doing: str, now: float) -> Failed | RetryLater:
    """The engine's answer to a failed GitHub call made while `doing` something, at `now`.

    Permanent problems fail the job with the failure type an operator can act on; transient
    ones are retried by the engine (counted, so they end in SystemUnavailable at the time
    budget); rate limits are waited out, uncounted, for as long as GitHub asks.
    """
    if error.configuration is not None:
        return Failed(FailureType.CONFIGURATION_ERROR,
                      f"{where}: could not {doing}: {error.message}. Fix: "
                      f"{_CALL_FIXES.get(error.configuration, _CALL_FIXES['ApiUrl'])}")
    if error.rate_limited:
        after = error.wait(now)
        which = ("the token's hourly budget is spent (x-ratelimit-remaining 0)"
                 if error.remaining == 0 else "GitHub's secondary rate limit")
        return RetryLater(f"{where}: could not {doing}: rate limited, {which}; GitHub said: "
                          f"{error.said} (HTTP {error.status}); trying again in {after:g} s",
                          after=after, counted=False)
    if error.transient:
        return RetryLater(f"{where}: could not {doing}: {error}", counted=True,
                          failure_type=FailureType.SYSTEM_UNAVAILABLE)
    said = f"GitHub said: {error.said} (HTTP {error.status})"
    if error.status in (401, 403):
        return Failed(FailureType.PERMISSION_ERROR,
                      f"{where}: GitHub refused to let the Token {doing}. {said}. "
                      f"Fix: {_permission_fix(error, where)}")
    return Failed(FailureType.CONFIGURATION_ERROR,
                  f"{where}: GitHub would not {doing}. {said}. Fix: {_config_fix(error, where)}")


_CALL_FIXES = {
    "Token": "set the action's Token to the token exactly as GitHub showed it, on one line",
    "ApiUrl": "set the action's ApiUrl to the API's URL, like https://github.example.com/api/v3 "
              "for GitHub Enterprise Server, or leave it empty for github.com",
}
"""What to change when a call could not be sent, by the property at fault."""


def _permission_fix(error: GitHubError, where: Where) -> str:
    if error.status == 401:
        return (f"set the action's Token to a valid, unexpired token for {where.api_url} "
                "(GitHub: Settings, Developer settings, Personal access tokens)")
    return (f"give the token write access to Actions on {where.repository}: a fine-grained "
            "token with the repository selected and the permission \"Actions: Read and write\", "
            "or a classic token with the repo scope (and SSO authorised for the organisation)")


def _config_fix(error: GitHubError, where: Where) -> str:
    text = error.said.lower()
    if error.status == 404:
        return (f"check Owner and Repository ({where.repository}) and Workflow "
                f"({where.workflow}: the file name under .github/workflows/ on the default "
                "branch, or the workflow's id), and that the token can see the repository "
                "(GitHub answers 404 for a private repository it cannot)")
    if error.status == 422 and "workflow_dispatch" in text:
        return (f"add a workflow_dispatch trigger to {where.workflow} (on: workflow_dispatch: "
                "with the inputs cpworker_marker and cpworker_revision, see the README's "
                "\"The GitHub Actions action\") and push it to the default branch")
    if error.status == 422 and "required input" in text:
        return (f"give every required input of {where.workflow} a value in the action's "
                "Inputs property (a JSON object), or a default in the workflow")
    if error.status == 422 and "input" in text:
        return (f"declare every input the action sends under on.workflow_dispatch.inputs of "
                f"{where.workflow}: cpworker_marker and cpworker_revision, and the keys of the "
                "action's Inputs property (or remove the undeclared keys from Inputs)")
    if error.status == 422 and "ref" in text:
        return (f"set the action's Ref to a branch or tag that exists in {where.repository} "
                f"(now {where.ref!r}) and on which the workflow file has a workflow_dispatch "
                "trigger")
    return "check the action's Owner, Repository, Workflow, Ref, Inputs and ApiUrl properties"
