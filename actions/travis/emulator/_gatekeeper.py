"""What Travis's gatekeeper does with an API request once its processing delay has passed.

travis-api only stores the request (pending, with no branch, no commit and no message,
`queries/request.rb#create_request`) and queues the payload, sha and message included, for the
gatekeeper (`#schedule`), whose source is not public. The emulator's gatekeeper:

- builds the sha the request names, or the branch's head *as of processing* when it names none
  (the request carries only the branch name, so a branch that moved on between the POST and
  the processing is built at its new head);
- does with a sha the repository does not hold what the repository's `unknown_sha` says
  (_model.UNKNOWN_SHA);
- gives the request its commit, whose message is the one the client sent (PROTOCOL B9: the
  message overrides the commit message) or else the commit's own; `ref` is null, as observed on
  processed API requests (cljs-oss/canary's job reports);
- then rejects it (the schedule's `reject`) or makes its one build.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from actions.travis.emulator._model import BuildRecord, Commit, GitCommit, RequestRecord


class Gatekeeper:
    """Turns due requests into commits and builds; owns the build and commit ids."""

    def __init__(self) -> None:
        self.builds: dict[int, BuildRecord] = {}
        # Far from the request ids (200_001...): a client that mixes up a request id and a
        # build id gets a 404 instead of someone else's build.
        self._build_ids = itertools.count(500_001)
        self._job_ids = itertools.count(800_001)
        self._commit_ids = itertools.count(900_001)

    def process(self, record: RequestRecord) -> None:
        repo = record.repo
        record.processed = True
        source: GitCommit | None
        if record.sha is None:
            source = repo.head(record.branch)
            sha = source.sha
        else:
            source = repo.find_commit(record.sha)
            sha = source.sha if source is not None else record.sha.lower()
            if source is None and repo.unknown_sha == "reject":
                _reject(record, "commit_not_found",
                        f"Could not find commit {record.sha} in {repo.slug}.")
                return
        record.commit = Commit(
            id=next(self._commit_ids),
            sha=sha,
            ref=None,
            message=record.message or (source.message if source else f"Commit {sha[:7]}"),
            committed_at=record.created_at,
        )
        if record.schedule.reject is not None:
            _reject(record, "rejected", record.schedule.reject)
            return
        schedule = record.schedule
        if source is None and repo.unknown_sha == "errored":
            # The build cannot check out a commit that does not exist: it errors at once.
            schedule = replace(schedule, result="errored", start_after=0.0, finish_after=1.0)
        previous = next(
            (b for b in reversed(self.builds.values())
             if b.repo is repo and b.request.branch == record.branch),
            None,
        )
        repo.build_count += 1
        build = BuildRecord(
            id=next(self._build_ids),
            number=repo.build_count,
            job_id=next(self._job_ids),
            request=record,
            commit=record.commit,
            created_at=record.due_at,
            previous_state=None if previous is None else previous.state_at(record.due_at),
            schedule=schedule,
        )
        record.build = build
        self.builds[build.id] = build


def _reject(record: RequestRecord, code: str, text: str) -> None:
    """Processed, no build: Travis's reason goes into `messages` (include=request.messages)
    and into the request's own status text."""
    record.status_message = text
    message: dict[str, Any] = {
        "@type": "message",
        "@representation": "minimal",
        "id": record.id,
        "level": "error",
        "key": "request",
        "code": code,
        "args": {"message": text},
        "src": None,
        "line": None,
    }
    record.messages.append(message)
