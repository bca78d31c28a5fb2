"""The GitHub Actions action: dispatch a workflow on the revision the pipeline releases, follow
its run, report how it ended.

Each execution dispatches the workflow once (POST .../dispatches) with two inputs of its own:
cpworker_revision, the input artifact's commit, which the workflow checks out, and
cpworker_marker, `cpworker:<actionExecutionId>`, which the workflow's documented `run-name`
shows. GitHub has no idempotency key (PROTOCOL D), so whenever a submit may have dispatched
before (a crash, a 500, a lost answer) the action looks for the marker among the workflow's
runs first (actions.github.lookup) and dispatches only when no run carries it.

Since 2026-02-19 github.com answers a dispatch with `return_run_details: true` by the run's id,
which is made durable at once (the first InProgress). GitHub Enterprise Server 3.20 and older
refuse that field with a 400; the action then remembers, per API URL, that the server lacks
it, dispatches without it, records the dispatch (marker and time) and finds the run by its
marker as it shows up.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from actions._http import CONNECT_TIMEOUT
from actions.github.client import Answer, GitHubClient
from actions.github.errors import GitHubError, outcome_for
from actions.github.lookup import CLOCK_SKEW, Absent, Mine, find_run, iso, marker, run_id_of
from actions.github.report import judge
from actions.github.revision import revision_of
from actions.github.settings import GitHubSettings
from actions.github.target import MARKER_INPUT, REVISION_INPUT, Target
from engine import (
    Action,
    Cancelled,
    Failed,
    FailureType,
    InProgress,
    JobContext,
    RetryLater,
    RunDetails,
)
from engine.outcomes import ActionOutcome
from engine.secrets import REDACTED, forms, scrub_outcome

__all__ = ["GitHubAction"]

LOOKUP_HORIZON = 24 * 3600.0
"""How far back the marker lookup reads when it does not know when the execution first
submitted: CodePipeline's 24 h custom-action timeout, the longest a submission can go on."""
LOW_BUDGET = 100
"""Below this many requests left in the token's hour (x-ratelimit-remaining), checks are
spread over the time until x-ratelimit-reset, so the budget lasts until it resets."""
CANCEL_RECHECK = 10.0
"""Seconds after a gentle cancel before looking whether the run ended (GitHub's runner stops
a cancelled step within about ten seconds: SIGINT, then SIGTERM 7.5 s later)."""
FORCE_CANCEL_AFTER = 60.0
"""Seconds after a gentle cancel when a run that still goes on is force-cancelled."""
MAX_MESSAGE = 4000
"""PutJobFailureResult takes 5000 characters; GitHub's texts are cut to fit."""


class GitHubAction(Action):
    """Runs a GitHub Actions workflow on the pipeline's revision as a CodePipeline action."""

    name = "github"
    definition_package = "actions.github"
    definition_file = "github.json"

    def __init__(self, client: GitHubClient | None = None,
                 settings: GitHubSettings | None = None) -> None:
        """Made when the worker starts: that is when its settings are read (`settings`, or
        the CPWORKER_GITHUB_* environment variables)."""
        self.settings = settings or GitHubSettings.from_environ(os.environ)
        self.client = client or GitHubClient(
            timeout=(CONNECT_TIMEOUT, self.settings.read_timeout))
        self.post_seconds = sum(self.client.timeout)
        """The longest a dispatch can take to land (or never): its own timeouts."""
        self.run_delay = self.settings.run_delay
        self.submit_grace = self.post_seconds + self.run_delay + 1.0
        """A dispatch sent by a worker that then died lands within its timeouts or never, and
        its run shows in the run list within run_delay after that: only then may a lookup that
        finds no marker be trusted, and another worker dispatch."""
        self.give_up_after = max(4 * self.run_delay, 300.0)
        """How long after a dispatch without run details a run carrying the marker may still
        show up; later, the workflow's run-name does not show the marker (or GitHub dropped
        the dispatch), and waiting longer cannot help."""
        self._no_run_details: set[str] = set()
        """API URLs that refused return_run_details (GitHub Enterprise Server <= 3.20); in
        memory, per process: a restarted worker asks once more and learns it again."""
        self._cancels: OrderedDict[tuple[str, str, int], float] = OrderedDict()
        """Runs this process asked GitHub to cancel, and when (clock time)."""
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def run_details_refused(self, api_url: str) -> bool:
        """Whether this process learnt that the server at `api_url` lacks return_run_details."""
        with self._lock:
            return api_url in self._no_run_details

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
        """The run an earlier submit of this execution dispatched, found by its marker; None
        while none shows (a dispatch may still be landing, or its run not listed yet): the
        engine then waits out the earlier call and the run's delay before submit() looks
        again."""
        target = Target.parse(job.configuration, self.settings.api_url)
        if isinstance(target, Failed):
            return target
        revision = revision_of(job, target.where)
        if isinstance(revision, Failed):
            return None  # submit() says so; nothing of ours can be on GitHub
        found = self._find_earlier(job, target, revision)
        if found is None or isinstance(found, RetryLater):
            return None
        return _scrubbed(found, target.endpoint.token)

    # A RetryLater in cancelling and timing_out is retried (engine.decide._retry: bounded by
    # the attempts, then the report goes on), which is how the cancel looks again later: for
    # the run of a dispatch that does not show yet, and for a run that goes on after its cancel.
    def cancel(self, job: JobContext) -> Cancelled | RetryLater:
        target = Target.parse(job.configuration, self.settings.api_url)
        if isinstance(target, Failed):
            return Cancelled(False, target.message)
        outcome = self._cancel(job, target)
        if isinstance(outcome, RetryLater):
            return replace(outcome, reason=_scrub(outcome.reason, target.endpoint.token))
        return Cancelled(outcome.ok, _scrub(outcome.message, target.endpoint.token))

    # ------------------------------------------------------------------ submit

    def _submit(self, job: JobContext, target: Target) -> ActionOutcome:
        if _int(job.run.get("run_id")) is not None or job.run.get("dispatched_at") is not None:
            return self._check(job, target)
        revision = revision_of(job, target.where)
        if isinstance(revision, Failed):
            return revision
        if job.resumed or job.attempt > 0:
            found = self._find_earlier(job, target, revision)
            if found is not None:
                return found
        return self._dispatch(job, target, revision)

    def _dispatch(self, job: JobContext, target: Target, revision: str) -> ActionOutcome:
        now = job.clock.now()
        if job.deadline is not None and now + self.post_seconds > job.deadline:
            # Other workers wait until the deadline for anything this call sends; a dispatch
            # that could land later might be missed by their lookup and a second run start.
            return RetryLater(f"{target.where}: the lookup took until the end of this "
                              "submission's call window; looking again in a new one before "
                              "dispatching", counted=False, after=0.0)
        url = target.endpoint.url
        details = not self.run_details_refused(url)
        inputs = {**target.inputs, MARKER_INPUT: marker(job.execution_id),
                  REVISION_INPUT: revision}
        try:
            answer = self.client.dispatch(target.endpoint, target.repo, target.ref, inputs,
                                          details)
        except GitHubError as error:
            if details and error.status == 400 and "return_run_details" in error.said:
                # GitHub Enterprise Server 3.20 and older reject the field ('"return_run_details"
                # is not a permitted key.', benc-uk/workflow-dispatch#86 on GHES 3.19). A 400 is
                # the answer to a body the server could not validate, given before it creates
                # anything (GitHub REST docs, "Troubleshooting the REST API": 400 and 422 are
                # refused requests), so no run was started and dispatching again is safe.
                with self._lock:
                    self._no_run_details.add(url)
                return self._dispatch(job, target, revision)
            if error.transient:
                # No answer or a 5xx: the dispatch may have been carried out. The next attempt
                # is counted as resumed and looks for the marker, once the run can show.
                return RetryLater(
                    f"{target.where}: the dispatch may have reached GitHub ({error}); looking "
                    f"for its run by marker in {self.run_delay:g} s before dispatching again",
                    after=self.run_delay, counted=True)
            return outcome_for(error, target.where, f"dispatch the workflow on {target.ref}",
                               job.clock.now())
        data: dict[str, Any] = {"marker": marker(job.execution_id), "revision": revision,
                                "dispatched_at": now}
        run_id = _int(answer.body.get("workflow_run_id"))
        if run_id is not None:
            html_url = answer.body.get("html_url")
            url_shown = html_url if isinstance(html_url, str) else target.run_url(run_id)
            data.update(run_id=run_id, html_url=url_shown)
            return InProgress(RunDetails(str(run_id), f"GitHub run {run_id} dispatched on "
                                         f"{target.ref}, revision {revision[:7]}: {url_shown}",
                                         0), data)
        if details:
            # A server that took the field but gave no run id will not give one next time.
            with self._lock:
                self._no_run_details.add(url)
        return InProgress(RunDetails(None, f"GitHub workflow {target.repo.workflow} dispatched "
                                     f"on {target.ref}, revision {revision[:7]}; waiting for "
                                     "its run to show", 0), data,
                          check_in=self._soon())

    def _find_earlier(self, job: JobContext, target: Target,
                      revision: str | None) -> ActionOutcome | None:
        """The outcome for a run this execution already dispatched, a wait, or None: dispatch.

        Only when no run since the execution's first submit carries the marker does the
        action dispatch again.
        """
        now = job.clock.now()
        # The execution's first submit_intended bounds the search: nothing of ours is older.
        intended = job.intended_at
        start = intended if intended is not None else now - LOOKUP_HORIZON
        try:
            found = find_run(self.client, target.endpoint, target.repo, job.execution_id,
                             since=start - CLOCK_SKEW)
        except GitHubError as error:
            return outcome_for(error, target.where, "list the workflow's runs (to find one "
                               "this execution may have dispatched)", now)
        if isinstance(found, Mine):
            return self._judged(found.run, target, job, revision)
        if isinstance(found, Absent):
            return None
        return RetryLater(
            f"{target.where}: an earlier attempt may have dispatched the workflow, but "
            f"{found.read} runs were dispatched since this execution first submitted and its "
            f"marker {marker(job.execution_id)} is in none of those read; not dispatching "
            "while that cannot be told", transient=False)

    def _judged(self, run: dict[str, Any], target: Target, job: JobContext,
                revision: str | None, answer: Answer | None = None) -> ActionOutcome:
        outcome = judge(run, target, job.execution_id, revision, job.clock.now())
        if isinstance(outcome, InProgress):
            data = {"marker": marker(job.execution_id), "revision": revision, **outcome.data}
            wait = self._paced(answer, job.clock.now()) if answer is not None else None
            return replace(outcome, data=data, check_in=wait)
        return outcome

    # ------------------------------------------------------------------ check

    def _check(self, job: JobContext, target: Target) -> ActionOutcome:
        now = job.clock.now()
        run_id = _int(job.run.get("run_id"))
        recorded = job.run.get("revision")
        revision = recorded if isinstance(recorded, str) and recorded else None
        if run_id is not None:
            try:
                answer = self.client.get_run(target.endpoint, target.repo, run_id)
            except GitHubError as error:
                dispatched = job.run.get("dispatched_at")
                if error.status == 404 and isinstance(dispatched, (int, float)) and (
                        now - dispatched < self.give_up_after):
                    # The dispatch named this run, so it exists; GitHub may not serve it yet.
                    return InProgress(RunDetails(str(run_id), f"GitHub run {run_id} "
                                                 "dispatched; waiting for GitHub to show it",
                                                 0), check_in=self._soon())
                return outcome_for(error, target.where, f"read run {run_id}", now)
            return self._judged(answer.body, target, job, revision, answer)
        dispatched = job.run.get("dispatched_at")
        if isinstance(dispatched, (int, float)) and not isinstance(dispatched, bool):
            return self._await_run(job, target, float(dispatched), revision)
        chosen = revision_of(job, target.where)
        found = None if isinstance(chosen, Failed) else self._find_earlier(job, target, chosen)
        if found is not None:
            return found
        return Failed(FailureType.SYSTEM_UNAVAILABLE,
                      f"{target.where}: this execution's run data holds no dispatch and no "
                      f"run carries its marker {marker(job.execution_id)}. Fix: retry the "
                      "stage")

    def _await_run(self, job: JobContext, target: Target, dispatched: float,
                   revision: str | None) -> ActionOutcome:
        """A dispatch without run details: its run, found by marker once it shows."""
        now = job.clock.now()
        try:
            found = find_run(self.client, target.endpoint, target.repo, job.execution_id,
                             since=dispatched - CLOCK_SKEW)
        except GitHubError as error:
            return outcome_for(error, target.where, "list the workflow's runs (to find the "
                               "one this execution dispatched)", now)
        if isinstance(found, Mine):
            return self._judged(found.run, target, job, revision)
        if not isinstance(found, Absent):
            return RetryLater(f"{target.where}: {found.read} runs were dispatched since this "
                              f"execution's dispatch and its marker {marker(job.execution_id)} "
                              "is in none of those read", transient=False)
        waited = now - dispatched
        if waited < self.give_up_after:
            return InProgress(RunDetails(None, f"GitHub workflow {target.repo.workflow} "
                                         f"dispatched on {target.ref} {waited:.0f} s ago; "
                                         "waiting for its run to show", 0),
                              check_in=self._soon())
        hint = (f" {found.unmarked} run(s) dispatched since show no cpworker marker at all, so "
                "the workflow's run-name most likely does not show it." if found.unmarked
                else "")
        return Failed(
            FailureType.CONFIGURATION_ERROR,
            f"{target.where}: dispatched at {iso(dispatched)}, but no run showing the marker "
            f"{marker(job.execution_id)} appeared within {self.give_up_after:g} s.{hint} Fix: "
            "give the workflow a run-name that shows ${{ inputs.cpworker_marker }} (see the "
            "README's \"The GitHub Actions action\"), cancel any run this dispatch started on "
            f"GitHub ({target.run_url('')[:-1]}), and retry the stage")

    def _soon(self) -> float:
        """When to look again for a dispatched run that does not show yet."""
        return max(1.0, self.run_delay / 3)

    @staticmethod
    def _paced(answer: Answer, now: float) -> float | None:
        """A later next check when the token's hourly budget runs low: what is left, spread
        until it resets (x-ratelimit-remaining, x-ratelimit-reset)."""
        if answer.remaining is None or answer.reset is None or answer.remaining >= LOW_BUDGET:
            return None
        left = max(1.0, answer.reset - now + 1.0)
        return left if answer.remaining == 0 else left / answer.remaining

    # ------------------------------------------------------------------ cancel

    def _cancel(self, job: JobContext, target: Target) -> Cancelled | RetryLater:
        """Cancel, look again a little later, and force-cancel what still runs a while after.

        A gentle cancel (202) is queued: the run ends once its jobs stop, and a job with an
        always() condition, or a runner that does not answer, keeps it going; GitHub's answer
        to that is force-cancel ("use it when the run is not responding to cancel", REST docs,
        "Force cancel a workflow run"). The look-again is the engine's retry of the cancel
        (counted, so bounded by --max-attempts). When the gentle cancel went out is kept in
        this process (a cancel's outcome carries no run data): a worker that restarts
        meanwhile sends it once more, which GitHub takes as the same request, and waits again.
        """
        now = job.clock.now()
        run_id = _int(job.run.get("run_id"))
        try:
            if run_id is None:
                dispatched = job.run.get("dispatched_at")
                if not isinstance(dispatched, (int, float)):
                    return Cancelled(True, f"{target.where}: no workflow was dispatched; "
                                     "nothing to cancel")
                found = find_run(self.client, target.endpoint, target.repo, job.execution_id,
                                 since=float(dispatched) - CLOCK_SKEW)
                if not isinstance(found, Mine):
                    if now - dispatched < self.give_up_after:
                        # Once, when it must show (its dispatch landed within its timeouts):
                        # every look uses up one of the cancel's attempts.
                        after = max(self._soon(), dispatched + self.submit_grace - now)
                        return RetryLater(
                            f"{target.where}: the workflow was dispatched at "
                            f"{iso(float(dispatched))} and no run showing "
                            f"{marker(job.execution_id)} is listed yet; looking again in "
                            f"{after:g} s to cancel it", after=after, counted=True)
                    return Cancelled(True, f"{target.where}: no run showing "
                                     f"{marker(job.execution_id)} appeared since the dispatch "
                                     f"at {iso(float(dispatched))}; nothing to cancel")
                run_id = run_id_of(found.run)
                assert run_id is not None  # find_run skips runs without an id
            url = target.run_url(run_id)
            key = (target.endpoint.url, target.repository, run_id)
            done = _conclusion(self.client.get_run(target.endpoint, target.repo, run_id))
            with self._lock:
                sent = self._cancels.get(key)
            if done is not None:
                how = "was cancelled" if sent is not None else "had already finished"
                return Cancelled(True, f"{target.where}: run {run_id} {how} ({done}; {url})")
            if sent is None:
                if not self.client.cancel_run(target.endpoint, target.repo, run_id):
                    # 409: GitHub will not cancel it gently; force-cancel what still runs.
                    return self._force(target, run_id, url, "refused to cancel it gently (409)")
                with self._lock:
                    self._cancels[key] = now
                    while len(self._cancels) > 4096:
                        self._cancels.popitem(last=False)
                return RetryLater(
                    f"{target.where}: GitHub accepted the cancel of run {run_id} ({url}); "
                    f"looking again in {CANCEL_RECHECK:g} s, and force-cancelling it if it "
                    f"still runs {FORCE_CANCEL_AFTER:g} s after the cancel",
                    after=CANCEL_RECHECK, counted=True)
            left = sent + FORCE_CANCEL_AFTER - now
            if left > 0:
                return RetryLater(
                    f"{target.where}: run {run_id} still runs {now - sent:g} s after its "
                    f"cancel ({url}); force-cancelling it if it still runs {left:g} s from now",
                    after=left, counted=True)
            return self._force(target, run_id, url,
                               f"still ran {now - sent:g} s after its cancel")
        except GitHubError as error:
            outcome = outcome_for(error, target.where, "cancel the run", now)
            text = outcome.message if isinstance(outcome, Failed) else outcome.reason
            return Cancelled(False, text)

    def _force(self, target: Target, run_id: int, url: str, why: str) -> Cancelled:
        done = _conclusion(self.client.get_run(target.endpoint, target.repo, run_id))
        if done is not None:
            return Cancelled(True, f"{target.where}: run {run_id} ended ({done}; {url})")
        if self.client.cancel_run(target.endpoint, target.repo, run_id, force=True):
            return Cancelled(True, f"{target.where}: run {run_id} {why}, so it was "
                             f"force-cancelled ({url})")
        return Cancelled(False, f"{target.where}: run {run_id} {why}, and GitHub refused to "
                         f"force-cancel it too (409); cancel it on GitHub ({url})")


# ---------------------------------------------------------------------- helpers


def _conclusion(answer: Answer) -> str | None:
    """A completed run's conclusion ("unknown" when it names none); None while it runs."""
    if answer.body.get("status") != "completed":
        return None
    return str(answer.body.get("conclusion") or "unknown")


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
    """`text` without the token in any form a library prints it in (engine.secrets.forms),
    and cut to what CodePipeline takes."""
    if token:
        for form in sorted(forms(token) | {token}, key=len, reverse=True):
            text = text.replace(form, REDACTED)
    return _cut(text)


def _scrubbed(outcome: ActionOutcome, token: str) -> ActionOutcome:
    """The outcome with the token masked in every text it carries, whatever put it there.

    The engine scrubs every outcome too; this keeps the action safe on its own (its tests,
    another engine) and costs a few replaces per outcome.
    """
    return scrub_outcome(outcome, lambda text: _scrub(text, token))
