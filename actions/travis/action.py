"""The Travis CI action: build the revision the pipeline releases, follow it, report how it ended.

Each execution triggers one Travis request for the job's revision (the input artifact's commit,
actions.travis.revision) on the configured branch. Travis has no idempotency key (PROTOCOL B9),
so the action makes its own: every request carries `[cpworker:<actionExecutionId>]` in its
message, which Travis shows as the build's commit message. Whenever a submit may have reached
Travis before (a crash, a retried 500), the action looks for that marker first
(actions.travis.lookup) and only triggers when no earlier request can be its own.

A request becomes a build asynchronously. The request id is made durable at once (the first
InProgress), then the build id once it exists; from then on only GET /build/{id} is needed.
POSTs are paced per token (actions.travis.pacing) so that Travis never bans the token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from actions._http import CONNECT_TIMEOUT
from actions.travis.client import TravisClient
from actions.travis.errors import TravisError, outcome_for
from actions.travis.lookup import (
    CLOCK_SKEW,
    Mine,
    NotYet,
    SentLedger,
    Unsure,
    find_request,
    int_or_none,
    place_of,
    timestamp,
)
from actions.travis.pacing import WINDOW, PostPacer, key_for
from actions.travis.revision import Revision, revision_of
from actions.travis.settings import API_URL_ENV, TravisSettings
from actions.travis.target import Target, web_url
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

__all__ = ["API_URL_ENV", "Target", "TravisAction", "TravisSettings", "marker", "web_url"]

MARKER_PREFIX = "cpworker:"
TERMINAL_FAILURES = {
    "failed": "failed",
    "errored": "errored (Travis could not run it: check .travis.yml and the install steps)",
    "canceled": "was canceled on Travis CI",
}
"""Terminal build states other than passed, and how a failure message says each."""

TYPICAL_BUILD_SECONDS = 600.0
"""The progress bar's guess at a build's length; percent stays at 99 until Travis says done."""
PENDING_RECHECK = 10.0
"""Seconds before looking again at pending requests whose messages Travis does not show yet."""
LOOKUP_HORIZON = 24 * 3600.0
"""How far back the marker lookup reads when it does not know when the execution first
submitted: CodePipeline's 24 h custom-action timeout, the longest a submission can go on."""
MAX_MESSAGE = 4000
"""PutJobFailureResult takes 5000 characters; Travis's rejection messages are cut to fit."""


def marker(execution_id: str) -> str:
    """What ties a Travis request to its CodePipeline action execution."""
    return f"[{MARKER_PREFIX}{execution_id}]"


class TravisAction(Action):
    """Runs a Travis CI build of the pipeline's revision as a CodePipeline Test action."""

    name = "travis"
    definition_package = "actions.travis"
    definition_file = "travis.json"

    def __init__(self, client: TravisClient | None = None, pacer: PostPacer | None = None,
                 settings: TravisSettings | None = None) -> None:
        """Made when the worker starts: that is when its settings are read (`settings`, or
        the CPWORKER_TRAVIS_* environment variables)."""
        self.settings = settings or TravisSettings.from_environ(os.environ)
        self.client = client or TravisClient(
            timeout=(CONNECT_TIMEOUT, self.settings.read_timeout))
        self.post_seconds = sum(self.client.timeout)
        """The longest a POST /requests can take to land (or never): its own timeouts."""
        self.submit_grace = self.post_seconds + 1.0
        """A POST /requests sent by a worker that then died lands within its timeouts, or
        never."""
        self.pacer = pacer or PostPacer()
        """Shared by the action's threads: every POST with one token goes through it."""
        self.sent = SentLedger()
        """Requests this process created, so that its own pending ones are told apart."""

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ the interface

    def submit(self, job: JobContext) -> ActionOutcome:
        target = Target.parse(job.configuration, self.settings.api_url)
        if isinstance(target, Failed):
            return target
        return _scrubbed(self._submit(job, target), target.endpoint.token)

    def check(self, job: JobContext) -> ActionOutcome:
        target = Target.parse(job.configuration, self.settings.api_url)
        if isinstance(target, Failed):
            return target
        return _scrubbed(self._check(job, target), target.endpoint.token)

    def find(self, job: JobContext) -> ActionOutcome | None:
        """The request an earlier submit of this execution made, found by its marker; None
        while none shows (a POST may still be landing, or a pending request hides its
        message): the engine then waits out the earlier call before submit() looks again."""
        target = Target.parse(job.configuration, self.settings.api_url)
        if isinstance(target, Failed):
            return target
        revision = revision_of(job, target.where, target.branch_head)
        if isinstance(revision, Failed):
            return None  # submit() says so; nothing of ours can be on Travis
        found = self._find_earlier(job, target, revision)
        if found is None or isinstance(found, RetryLater):
            return None
        return _scrubbed(found, target.endpoint.token)

    def cancel(self, job: JobContext) -> Cancelled:
        target = Target.parse(job.configuration, self.settings.api_url)
        if isinstance(target, Failed):
            return Cancelled(False, target.message)
        outcome = self._cancel(job, target)
        return Cancelled(outcome.ok, _scrub(outcome.message, target.endpoint.token))

    # ------------------------------------------------------------------ submit

    def _submit(self, job: JobContext, target: Target) -> ActionOutcome:
        request_id = int_or_none(job.run.get("request_id"))
        if request_id is not None:
            return self._check(job, target)
        revision = revision_of(job, target.where, target.branch_head)
        if isinstance(revision, Failed):
            return revision
        if job.resumed or job.attempt > 0:
            found = self._find_earlier(job, target, revision)
            if found is not None:
                return found
        now = job.clock.now()
        if job.deadline is not None and now + self.post_seconds > job.deadline:
            # Other workers wait until the deadline for anything this call sends; a POST that
            # could land later might be missed by their lookup and a second build start.
            return RetryLater(f"{target.where}: the lookup took until the end of this "
                              "submission's call window; looking again in a new one before "
                              "triggering a build", counted=False, after=0.0)
        wait = self.pacer.admit(key_for(target.endpoint.url, target.endpoint.token), now)
        if wait is not None:
            queued = f", {wait.queued} trigger(s) queued before this one" if wait.queued else ""
            return RetryLater(
                f"{target.where}: pacing POSTs to Travis: {wait.sent} sent with this token in "
                f"the last {WINDOW:g} s{queued} (Travis bans a token for an hour after 50 in "
                f"30 s); triggering in {wait.seconds:.1f} s",
                after=wait.seconds, counted=False)
        try:
            accepted = self.client.create_request(
                target.endpoint, target.slug, target.branch, self._message(job), revision.sha)
        except TravisError as error:
            return outcome_for(error, target.where, f"trigger a build of {target.slug} "
                                                    f"({revision.label(target.branch)})")
        request = accepted.get("request")
        new_id = int_or_none(request.get("id")) if isinstance(request, dict) else None
        if new_id is None:
            # Accepted, but no id to follow: something Travis-like that is not Travis. Counted,
            # so the next attempt is a resumed one and looks for the marker before re-sending.
            return RetryLater(f"{target.where}: Travis accepted the build request but returned "
                              "no request id; looking it up by marker")
        self.sent.add(place_of(target.endpoint, target.slug), new_id, job.execution_id)
        return _pending(new_id, revision, target)

    def _message(self, job: JobContext) -> str:
        pipeline = job.pipeline
        where = "/".join(str(pipeline.get(k)) for k in ("pipeline_name", "stage", "action_name")
                         if pipeline.get(k))
        execution = pipeline.get("pipeline_execution_id")
        text = f"CodePipeline {where or 'action'}" + (f", execution {execution}"
                                                      if execution else "")
        return f"{text} {marker(job.execution_id)}"

    def _find_earlier(self, job: JobContext, target: Target,
                      revision: Revision) -> ActionOutcome | None:
        """The outcome for a request this execution already made, a wait, or None: submit.

        A pending request whose marker Travis does not show yet might be ours: it is waited
        for rather than risking a second build. Only when every request since the execution's
        first submit is visibly someone else's does the action trigger again.
        """
        now = job.clock.now()
        # The execution's first submit_intended bounds the search: nothing of ours is older.
        # Rows recorded before the engine kept it read back as far as a submission can go on.
        intended = job.intended_at
        start = intended if intended is not None else now - LOOKUP_HORIZON
        try:
            found = find_request(self.client, target.endpoint, target.slug,
                                 marker(job.execution_id), job.execution_id,
                                 since=start - CLOCK_SKEW, now=now, ledger=self.sent)
            if isinstance(found, Mine):
                # Read again on its own: the listing lacks Travis's rejection messages.
                mine = self.client.get_request(target.endpoint, target.slug, found.request_id)
                return self._judge_request(mine, target, job, revision)
        except TravisError as error:
            return outcome_for(error, target.where,
                               "list its requests (to find one this execution may have made)")
        if isinstance(found, NotYet):
            return RetryLater(
                f"{target.where}: an earlier attempt may have reached Travis, and request(s) "
                f"{', '.join(map(str, found.pending[:5]))} are still pending, so Travis shows "
                "neither their branch nor their message yet; waiting for them rather than "
                "triggering a second build", after=PENDING_RECHECK, counted=False)
        if isinstance(found, Unsure):
            return RetryLater(
                f"{target.where}: an earlier attempt may have reached Travis, but {found.read} "
                "requests were made since this execution first submitted and its marker "
                f"{marker(job.execution_id)} is in none of them; not triggering a build while "
                "that cannot be told",
                transient=False)
        return None

    # ------------------------------------------------------------------ check

    def _check(self, job: JobContext, target: Target) -> ActionOutcome:
        build_id = int_or_none(job.run.get("build_id"))
        request_id = int_or_none(job.run.get("request_id"))
        chosen = revision_of(job, target.where, target.branch_head)
        recorded = _sha(job.run.get("revision"))  # what the submit asked Travis for
        revision = chosen if isinstance(chosen, Revision) and chosen.sha == recorded \
            else Revision(recorded)
        try:
            if build_id is not None:
                return self._judge_build(self.client.get_build(target.endpoint, build_id),
                                         target, job, revision)
            if request_id is not None:
                request = self.client.get_request(target.endpoint, target.slug, request_id)
                return self._judge_request(request, target, job, revision)
        except TravisError as error:
            what = f"build {build_id}" if build_id is not None else f"request {request_id}"
            return outcome_for(error, target.where, f"read {what}")
        found = None if isinstance(chosen, Failed) else self._find_earlier(job, target, chosen)
        if found is not None:
            return found
        return Failed(FailureType.SYSTEM_UNAVAILABLE,
                      f"{target.where}: this execution's run data holds no Travis request and "
                      f"none carries its marker {marker(job.execution_id)}. Fix: retry the stage")

    def _judge_request(self, request: Mapping[str, Any], target: Target, job: JobContext,
                       revision: Revision) -> ActionOutcome:
        request_id = int_or_none(request.get("id"))
        builds = [b for b in request.get("builds") or [] if isinstance(b, dict)
                  and int_or_none(b.get("id")) is not None]
        commit = request.get("commit")
        built = _sha(commit.get("sha")) if isinstance(commit, dict) else None
        if builds:
            build = min(builds, key=lambda b: int(b["id"]))
            outcome = self._judge_build(build, target, job, revision, built)
            if isinstance(outcome, InProgress):
                return replace(outcome, data={"request_id": request_id,
                                              "revision": revision.sha, **outcome.data})
            return outcome
        # Only "approved" and "rejected" are known results (PROTOCOL B4, D9); any other result
        # without a build is a refusal too, while an unknown state without one is still waiting.
        result = request.get("result")
        if result not in (None, "approved"):
            if revision.sha and not isinstance(commit, dict):
                # Rejected before Travis had a commit: it could not find the one we asked for.
                return Failed(
                    FailureType.REVISION_UNAVAILABLE,
                    _cut(f"{target.where}: the revision {revision.sha} (input artifact "
                         f"{revision.artifact or '?'}) cannot be built: Travis rejected build "
                         f"request {request_id} ({result}) without finding that commit: "
                         f"{_explain(request)}. Fix: release a commit that is in {target.slug} "
                         "(the pipeline's source must be this repository, and the commit "
                         "pushed to it), or set BuildBranchHead to true to build the branch "
                         "head instead"))
            return Failed(
                FailureType.CONFIGURATION_ERROR,
                _cut(f"{target.where}: Travis rejected build request {request_id} "
                     f"({result}) and started no build: "
                     f"{_explain(request)}. Fix: make the branch buildable on Travis CI (its "
                     ".travis.yml, branch conditions and repository settings), then retry "
                     "the stage"))
        return _pending(request_id, revision, target)

    def _judge_build(self, build: Mapping[str, Any], target: Target, job: JobContext,
                     revision: Revision, built: str | None = None) -> ActionOutcome:
        build_id = int(build["id"])
        number = str(build.get("number") or "?")
        state = str(build.get("state") or "unknown")
        commit = build.get("commit")
        built = (_sha(commit.get("sha")) if isinstance(commit, dict) else None) or built
        data: dict[str, Any] = {"build_id": build_id, "build_number": number}
        if built:
            data["commit"] = built
        url = target.build_url(build_id)
        summary = f"Travis build #{number} {state}" + (f", {built[:7]}" if built else "")
        if revision.sha and built and not _same_commit(revision.sha, built):
            return Failed(
                FailureType.REVISION_OUT_OF_SYNC,
                f"{target.where}: Travis build #{number} is of commit {built[:12]}, not of the "
                f"revision {revision.sha[:12]} the pipeline releases, so its result says nothing "
                f"about that revision ({url}). Fix: check that this Travis accepts the sha of "
                "API-triggered builds, or set BuildBranchHead to true to test the branch head",
                RunDetails(str(build_id), summary, 100))
        if state == "passed":
            variables = {"BuildId": str(build_id), "BuildNumber": number, "BuildUrl": url}
            if built or revision.sha:
                variables["CommitId"] = built or revision.sha or ""
            return Done(RunDetails(str(build_id), summary, 100), variables, data)
        if state in TERMINAL_FAILURES:
            of = f" of {built[:12]}" if built else ""
            return Failed(
                FailureType.JOB_FAILED,
                f"{target.where}: Travis build #{number}{of} {TERMINAL_FAILURES[state]}. See "
                f"{url} for the log; fix the build and release the change again",
                RunDetails(str(build_id), summary, 100))
        percent = _percent(state, timestamp(build.get("started_at")), job.clock.now())
        return InProgress(RunDetails(str(build_id), summary, percent), data)

    # ------------------------------------------------------------------ cancel

    def _cancel(self, job: JobContext, target: Target) -> Cancelled:
        build_id = int_or_none(job.run.get("build_id"))
        request_id = int_or_none(job.run.get("request_id"))
        try:
            if build_id is None and request_id is not None:
                request = self.client.get_request(target.endpoint, target.slug, request_id)
                ids = [int_or_none(b.get("id")) for b in request.get("builds") or []
                       if isinstance(b, dict)]
                build_id = min((i for i in ids if i is not None), default=None)
                if build_id is None:
                    if request.get("result") is None:
                        return Cancelled(False, f"{target.where}: request {request_id} is still "
                                         "pending, so it has no build to cancel yet; one may "
                                         "still start: cancel it on Travis CI if it does")
                    return Cancelled(True, f"{target.where}: request {request_id} started no "
                                     "build; nothing to cancel")
            if build_id is None:
                return Cancelled(True, f"{target.where}: no Travis request was made; nothing "
                                 "to cancel")
            url = target.build_url(build_id)
            # Counted, never held back: a cancel is rare and the pacer keeps room for it.
            self.pacer.record(key_for(target.endpoint.url, target.endpoint.token),
                              job.clock.now())
            if self.client.cancel_build(target.endpoint, build_id):
                # Travis queues the cancel (queries/build.rb#cancel): accepted, not yet done.
                return Cancelled(True, f"{target.where}: Travis accepted the cancel of build "
                                 f"{build_id}; it shows canceled once Travis has handled it, "
                                 f"unless it finished first ({url})")
            return Cancelled(True, f"{target.where}: Travis build {build_id} had already "
                             f"finished ({url})")
        except TravisError as error:
            outcome = outcome_for(error, target.where, "cancel the build")
            text = outcome.message if isinstance(outcome, Failed) else outcome.reason
            return Cancelled(False, text)


# ---------------------------------------------------------------------- helpers


def _pending(request_id: int | None, revision: Revision, target: Target) -> InProgress:
    return InProgress(RunDetails(None, f"Travis request {request_id} pending, "
                                       f"{revision.label(target.branch)}", 0),
                      {"request_id": request_id, "revision": revision.sha})


def _same_commit(requested: str, built: str) -> bool:
    """A full sha and an abbreviation of it are the same commit."""
    a, b = requested.lower(), built.lower()
    return a.startswith(b) or b.startswith(a)


def _sha(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


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
