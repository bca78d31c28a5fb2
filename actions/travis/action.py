"""The Travis CI action: trigger one build per pipeline run, follow it, report how it ended.

Travis has no idempotency key (PROTOCOL B9), so the action makes its own: every request carries
`[cpworker:<actionExecutionId>]` in its message, which Travis shows as the build's commit
message. Whenever a submit may have reached Travis before (a crash, a retried 500), the action
looks for that marker first and only triggers when no earlier request can be its own.

A request becomes a build asynchronously. The request id is made durable at once (the first
InProgress), then the build id once it exists; from then on only GET /build/{id} is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests

from actions.travis.client import (
    CONNECT_TIMEOUT,
    DEFAULT_API_URL,
    READ_TIMEOUT,
    Endpoint,
    TravisClient,
)
from actions.travis.errors import TravisError, Where, outcome_for
from engine import (
    Action,
    Cancelled,
    Done,
    Failed,
    FailureType,
    InProgress,
    JobContext,
    RetryLater,
    RunDetails,
)
from engine.outcomes import ActionOutcome
from engine.secrets import REDACTED, forms, scrub_outcome

API_URL_ENV = "CPWORKER_TRAVIS_API_URL"
"""The API URL when the action's ApiUrl property is empty (the emulator in tests)."""
CHECK_INTERVAL_ENV = "CPWORKER_CHECK_INTERVAL"
DEFAULT_WEB_URL = "https://app.travis-ci.com/github"

POST_SECONDS = CONNECT_TIMEOUT + READ_TIMEOUT
"""The longest a POST /requests can take to land (or never): its own timeouts."""

MARKER_PREFIX = "cpworker:"
TERMINAL_FAILURES = {
    "failed": "failed",
    "errored": "errored (Travis could not run it: check .travis.yml and the install steps)",
    "canceled": "was canceled on Travis CI",
}
"""Terminal build states other than passed, and how a failure message says each."""
EARLY_STATES = frozenset({"created", "received", "queued"})

TYPICAL_BUILD_SECONDS = 600.0
"""The progress bar's guess at a build's length; percent stays at 99 until Travis says done."""
PENDING_HORIZON = 1800.0
"""A pending request older than this is taken as stuck, not as a submit of ours still landing."""
PENDING_RECHECK = 10.0
"""Seconds before looking again at a pending request whose message Travis does not show yet."""
LOOKUP_PAGES = 3
"""Pages of 100 requests searched for the marker; a crash is found within minutes, not days."""
MAX_MESSAGE = 4000
"""PutJobFailureResult takes 5000 characters; Travis's rejection messages are cut to fit."""


def _check_interval_from_env() -> float | None:
    """CPWORKER_CHECK_INTERVAL in seconds, or None (the engine's setting) when unset or bad."""
    raw = os.environ.get(CHECK_INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def marker(execution_id: str) -> str:
    """What ties a Travis request to its CodePipeline action execution."""
    return f"[{MARKER_PREFIX}{execution_id}]"


@dataclass(frozen=True)
class Target:
    """A job's configuration, checked: which repository and branch, on which Travis, as whom."""

    owner: str
    name: str
    branch: str
    endpoint: Endpoint

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def where(self) -> Where:
        return Where(self.slug, self.branch, self.endpoint.url)

    def build_url(self, build_id: object) -> str:
        return f"{web_url(self.endpoint.url)}/{self.owner}/{self.name}/builds/{build_id}"

    @classmethod
    def parse(cls, configuration: Mapping[str, str]) -> Target | Failed:
        """The configuration checked before any call, so that a mistake only the operator can
        fix fails the job at once as ConfigurationError, naming the property and the fix,
        rather than as a network error retried until SystemUnavailable."""
        owner = (configuration.get("Owner") or "").strip()
        name = (configuration.get("ProjectName") or "").strip()
        branch = (configuration.get("Branch") or "").strip()
        token = (configuration.get("APIToken") or "").strip()
        given_url = (configuration.get("ApiUrl") or "").strip()
        env_url = os.environ.get(API_URL_ENV, "").strip()
        api_url = given_url or env_url or DEFAULT_API_URL
        url_source = ("ApiUrl" if given_url else
                      f"the API URL from the environment variable {API_URL_ENV}")
        where = f"Travis repository {owner or '?'}/{name or '?'}, branch {branch or '?'}"
        problems = [f"{prop} is empty" for prop, value in (
            ("Owner", owner), ("ProjectName", name), ("Branch", branch), ("APIToken", token))
            if not value]
        problems += [f"{prop} {value!r} must be one name of letters, digits, '.', '_' and '-' "
                     "(no '/', spaces or other characters)"
                     for prop, value in (("Owner", owner), ("ProjectName", name))
                     if value and not _SLUG_PART.fullmatch(value)]
        if branch and not _BRANCH.fullmatch(branch):
            problems.append(f"Branch {branch!r} is not a git branch name (no spaces or control "
                            "characters)")
        problems += _token_problems(token)
        url_problem = _api_url_problem(api_url, url_source)
        if url_problem:
            problems.append(url_problem)
        if problems:
            return Failed(FailureType.CONFIGURATION_ERROR,
                          f"{where}: the action is configured wrongly: {'; '.join(problems)}. "
                          "Fix: edit the action's properties in the pipeline (Owner and "
                          "ProjectName as in owner/name on Travis CI, APIToken as Travis shows "
                          "it, on one line, ApiUrl like https://travis.example.com/api or empty "
                          "for travis-ci.com)")
        return cls(owner, name, branch, Endpoint(api_url, token))


_SLUG_PART = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,100}")
"""An owner or repository name as GitHub, GitLab and Bitbucket spell them."""
_BRANCH = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\]{1,250}")
"""What git check-ref-format lets through, roughly: no whitespace, control or glob characters."""


def _token_problems(token: str) -> list[str]:
    """Why the token cannot go into an Authorization header (never showing the token)."""
    problems = []
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in token):
        problems.append("APIToken contains a line break or another control character, which "
                        "an HTTP header cannot carry (copy the token again, on one line)")
    if any(ord(c) > 0xFF for c in token):
        problems.append("APIToken contains a character outside Latin-1, which an HTTP header "
                        "cannot carry; Travis tokens are plain letters and digits (copy the "
                        "token again from Travis CI: Account, Settings, API authentication)")
    return problems


def _api_url_problem(api_url: str, source: str) -> str | None:
    """Why `api_url` cannot be called, in the words of the library that would refuse it."""
    try:
        parts = urlsplit(api_url)
        port = parts.port
    except ValueError as error:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        return f"{source} {api_url!r} is not a usable URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{source} {api_url!r} is not an http(s) URL"
    if port == 0:
        return f"{source} {api_url!r} is not a usable URL (Port out of range 1-65535)"
    try:
        requests.PreparedRequest().prepare_url(api_url, None)
    except requests.RequestException as error:  # InvalidURL: no host, a bad character...
        return f"{source} {api_url!r} is not a usable URL ({error})"
    return None


def web_url(api_url: str) -> str:
    """The web UI's base for build links, from the API URL (PROTOCOL B5; not formally specified).

    api.<domain> serves app.<domain>/github (travis-ci.com); an Enterprise API under /api has its
    web UI at the same root; anything else (an emulator) links to travis-ci.com.
    """
    parts = urlsplit(api_url)
    host = parts.hostname or ""
    if host.startswith("api."):
        return f"{parts.scheme}://app.{parts.netloc[4:]}/github"
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        return f"{parts.scheme}://{parts.netloc}{path[:-4]}"
    return DEFAULT_WEB_URL


class TravisAction(Action):
    """Runs a Travis CI build of a branch as a CodePipeline Test action."""

    name = "travis"
    definition_package = "actions.travis"
    definition_file = "travis.json"
    check_interval = _check_interval_from_env()
    """Read once at import; None leaves it to the engine (whose --check-interval reads the same
    variable, so the two agree unless the flag is given on the command line)."""
    submit_grace = POST_SECONDS + 1.0
    """A POST /requests sent by a worker that then died lands within its timeouts, or never."""

    def __init__(self, client: TravisClient | None = None) -> None:
        self.client = client or TravisClient()

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ the interface

    def submit(self, job: JobContext) -> ActionOutcome:
        target = Target.parse(job.configuration)
        if isinstance(target, Failed):
            return target
        return _scrubbed(self._submit(job, target), target.endpoint.token)

    def check(self, job: JobContext) -> ActionOutcome:
        target = Target.parse(job.configuration)
        if isinstance(target, Failed):
            return target
        return _scrubbed(self._check(job, target), target.endpoint.token)

    def find(self, job: JobContext) -> ActionOutcome | None:
        """The request an earlier submit of this execution made, found by its marker; None
        while none shows (a POST may still be landing, or a pending request hides its
        message): the engine then waits out the earlier call before submit() looks again."""
        target = Target.parse(job.configuration)
        if isinstance(target, Failed):
            return target
        found = self._find_earlier(job, target)
        if found is None or isinstance(found, RetryLater):
            return None
        return _scrubbed(found, target.endpoint.token)

    def cancel(self, job: JobContext) -> Cancelled:
        target = Target.parse(job.configuration)
        if isinstance(target, Failed):
            return Cancelled(False, target.message)
        outcome = self._cancel(job, target)
        return Cancelled(outcome.ok, _scrub(outcome.message, target.endpoint.token))

    # ------------------------------------------------------------------ submit

    def _submit(self, job: JobContext, target: Target) -> ActionOutcome:
        request_id = _int(job.run.get("request_id"))
        if request_id is not None:
            return self._check(job, target)
        if job.resumed or job.attempt > 0:
            found = self._find_earlier(job, target)
            if found is not None:
                return found
        if job.deadline is not None and job.clock.now() + POST_SECONDS > job.deadline:
            # Other workers wait until the deadline for anything this call sends; a POST that
            # could land later might be missed by their lookup and a second build start.
            return RetryLater(f"{target.where}: the lookup took until the end of this "
                              "submission's call window; looking again in a new one before "
                              "triggering a build", counted=False, after=0.0)
        try:
            accepted = self.client.create_request(
                target.endpoint, target.slug, target.branch, self._message(job))
        except TravisError as error:
            return outcome_for(error, target.where, f"trigger a build of {target.slug}")
        request = accepted.get("request")
        new_id = _int(request.get("id")) if isinstance(request, dict) else None
        if new_id is None:
            # Accepted, but no id to follow: something Travis-like that is not Travis. Counted,
            # so the next attempt is a resumed one and looks for the marker before re-sending.
            return RetryLater(f"{target.where}: Travis accepted the build request but returned "
                              "no request id; looking it up by marker")
        return _pending(new_id)

    def _message(self, job: JobContext) -> str:
        pipeline = job.pipeline
        where = "/".join(str(pipeline.get(k)) for k in ("pipeline_name", "stage", "action_name")
                         if pipeline.get(k))
        execution = pipeline.get("pipeline_execution_id")
        text = f"CodePipeline {where or 'action'}" + (f", execution {execution}"
                                                      if execution else "")
        return f"{text} {marker(job.execution_id)}"

    def _find_earlier(self, job: JobContext, target: Target) -> ActionOutcome | None:
        """The outcome for a request this execution already made, a wait, or None: submit.

        Travis shows the marker only once a request is processed (it becomes the commit
        message). A recent request still pending might be ours, so it is waited for rather than
        risking a second build; only when every recent request is visibly someone else's does
        the action trigger again.
        """
        wanted = marker(job.execution_id)
        now = job.clock.now()
        unclear: list[int] = []
        try:
            for page in range(LOOKUP_PAGES):
                requests, is_last = self.client.list_requests(
                    target.endpoint, target.slug, target.branch, offset=page * 100)
                for request in requests:
                    request_id = _int(request.get("id"))
                    if request_id is None:
                        continue
                    if wanted in _texts(request):
                        # Read again on its own: the listing lacks Travis's rejection messages.
                        mine = self.client.get_request(target.endpoint, target.slug, request_id)
                        return self._judge_request(mine, target, job)
                    created = _timestamp(request.get("created_at"))
                    recent = created is None or now - created < PENDING_HORIZON
                    if _message_hidden(request) and recent:
                        unclear.append(request_id)
                if is_last:
                    break
        except TravisError as error:
            return outcome_for(error, target.where,
                               "list its requests (to find one this execution may have made)")
        if unclear:
            return RetryLater(
                f"{target.where}: an earlier attempt may have reached Travis, and request(s) "
                f"{', '.join(map(str, unclear[:5]))} are still pending without showing their "
                "message; waiting for them rather than triggering a second build",
                after=PENDING_RECHECK, counted=False)
        return None

    # ------------------------------------------------------------------ check

    def _check(self, job: JobContext, target: Target) -> ActionOutcome:
        build_id = _int(job.run.get("build_id"))
        request_id = _int(job.run.get("request_id"))
        try:
            if build_id is not None:
                return self._judge_build(self.client.get_build(target.endpoint, build_id),
                                         target, job)
            if request_id is not None:
                request = self.client.get_request(target.endpoint, target.slug, request_id)
                return self._judge_request(request, target, job)
        except TravisError as error:
            what = f"build {build_id}" if build_id is not None else f"request {request_id}"
            return outcome_for(error, target.where, f"read {what}")
        found = self._find_earlier(job, target)
        if found is not None:
            return found
        return Failed(FailureType.SYSTEM_UNAVAILABLE,
                      f"{target.where}: this execution's run data holds no Travis request and "
                      f"none carries its marker {marker(job.execution_id)}. Fix: retry the stage")

    def _judge_request(self, request: Mapping[str, Any], target: Target,
                       job: JobContext) -> ActionOutcome:
        request_id = _int(request.get("id"))
        builds = [b for b in request.get("builds") or [] if isinstance(b, dict)
                  and _int(b.get("id")) is not None]
        if builds:
            build = min(builds, key=lambda b: int(b["id"]))
            outcome = self._judge_build(build, target, job)
            if isinstance(outcome, InProgress):
                return replace(outcome, data={"request_id": request_id, **outcome.data})
            return outcome
        # Only "approved" and "rejected" are known results (PROTOCOL B4, D9); any other result
        # without a build is a refusal too, while an unknown state without one is still waiting.
        result = request.get("result")
        if result not in (None, "approved"):
            return Failed(
                FailureType.CONFIGURATION_ERROR,
                _cut(f"{target.where}: Travis rejected build request {request_id} "
                     f"({result}) and started no build: "
                     f"{_explain(request)}. Fix: make the branch buildable on Travis CI (its "
                     ".travis.yml, branch conditions and repository settings), then retry "
                     "the stage"))
        return _pending(request_id)

    def _judge_build(self, build: Mapping[str, Any], target: Target,
                     job: JobContext) -> ActionOutcome:
        build_id = int(build["id"])
        number = str(build.get("number") or "?")
        state = str(build.get("state") or "unknown")
        data = {"build_id": build_id, "build_number": number}
        url = target.build_url(build_id)
        summary = f"Travis build #{number} {state}"
        if state == "passed":
            return Done(RunDetails(str(build_id), summary, 100),
                        {"BuildId": str(build_id), "BuildNumber": number, "BuildUrl": url},
                        data)
        if state in TERMINAL_FAILURES:
            return Failed(
                FailureType.JOB_FAILED,
                f"{target.where}: Travis build #{number} {TERMINAL_FAILURES[state]}. See {url} "
                "for the log; fix the build and release the change again",
                RunDetails(str(build_id), summary, 100))
        percent = _percent(state, _timestamp(build.get("started_at")), job.clock.now())
        return InProgress(RunDetails(str(build_id), summary, percent), data)

    # ------------------------------------------------------------------ cancel

    def _cancel(self, job: JobContext, target: Target) -> Cancelled:
        build_id = _int(job.run.get("build_id"))
        request_id = _int(job.run.get("request_id"))
        try:
            if build_id is None and request_id is not None:
                request = self.client.get_request(target.endpoint, target.slug, request_id)
                ids = [_int(b.get("id")) for b in request.get("builds") or []
                       if isinstance(b, dict)]
                build_id = min((i for i in ids if i is not None), default=None)
                if build_id is None:
                    if request.get("state") in (None, "pending"):
                        return Cancelled(False, f"{target.where}: request {request_id} is still "
                                         "pending, so it has no build to cancel yet; one may "
                                         "still start: cancel it on Travis CI if it does")
                    return Cancelled(True, f"{target.where}: request {request_id} started no "
                                     "build; nothing to cancel")
            if build_id is None:
                return Cancelled(True, f"{target.where}: no Travis request was made; nothing "
                                 "to cancel")
            url = target.build_url(build_id)
            if self.client.cancel_build(target.endpoint, build_id):
                return Cancelled(True, f"{target.where}: Travis build {build_id} cancelled "
                                 f"({url})")
            return Cancelled(True, f"{target.where}: Travis build {build_id} had already "
                             f"finished ({url})")
        except TravisError as error:
            outcome = outcome_for(error, target.where, "cancel the build")
            text = outcome.message if isinstance(outcome, Failed) else outcome.reason
            return Cancelled(False, text)


# ---------------------------------------------------------------------- helpers


def _pending(request_id: int | None) -> InProgress:
    return InProgress(RunDetails(None, f"Travis request {request_id} pending", 0),
                      {"request_id": request_id})


def _texts(request: Mapping[str, Any]) -> str:
    """Where a request's marker can show: its commit message, and its own message."""
    commit = request.get("commit")
    texts = [commit.get("message") if isinstance(commit, dict) else None, request.get("message")]
    return "\n".join(t for t in texts if isinstance(t, str))


def _message_hidden(request: Mapping[str, Any]) -> bool:
    """A request whose marker cannot be seen yet but may still show: not processed, no commit.

    A finished request without a commit message will never show one; it is not waited for.
    """
    commit = request.get("commit")
    has_message = isinstance(commit, dict) and isinstance(commit.get("message"), str)
    return not has_message and request.get("state") != "finished"


def _explain(request: Mapping[str, Any]) -> str:
    """Travis's own reasons for a rejection (include=request.messages), as one line."""
    said: list[str] = []
    for item in request.get("messages") or []:
        if not isinstance(item, dict):
            continue
        args = item.get("args")
        args = args if isinstance(args, dict) else {}
        text = args.get("message")
        if not isinstance(text, str):
            detail = ", ".join(f"{k}={v}" for k, v in args.items())
            text = " ".join(str(p) for p in (item.get("key"), item.get("code"), detail) if p)
        said.append(f"{item.get('level') or 'error'}: {text}")
    return "; ".join(said[:10]) or "Travis gave no reason"


def _percent(state: str, started_at: float | None, now: float) -> int:
    """A progress estimate: 5 while waiting for a runner, then elapsed against a typical build."""
    if state != "started" or started_at is None:
        return 5
    share = max(0.0, now - started_at) / TYPICAL_BUILD_SECONDS
    return min(99, 10 + int(share * 89))


def _timestamp(value: object) -> float | None:
    """Travis's UTC time stamps (2024-05-01T12:00:00Z, with or without milliseconds)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _scrub(text: str, token: str) -> str:
    """`text` without the token in any form a library prints it in (engine.secrets.forms)."""
    if not token:
        return text
    for form in sorted(forms(token) | {token}, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def _scrubbed(outcome: ActionOutcome, token: str) -> ActionOutcome:
    """The outcome with the token masked in every text it carries, whatever put it there.

    The engine scrubs every outcome too; this keeps the action safe on its own (its tests,
    another engine) and costs a few replaces per outcome.
    """
    return scrub_outcome(outcome, lambda text: _scrub(text, token))
