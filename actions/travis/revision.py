"""Which commit the action asks Travis to build: the one the pipeline releases.

CodePipeline hands the job its input artifacts, each with the `revision` its source action
recorded (a git commit id for CodeCommit, GitHub, Bitbucket and GitLab sources; an S3 object
version or an image digest for S3 and ECR ones). Travis's `POST /repo/{slug}/requests` takes a
`sha` beside the branch (travis-api `queries/request.rb`, passed to the gatekeeper unchecked;
PROTOCOL B3): sent, Travis builds that commit; left out, it builds whatever the branch's head is
when it processes the request, which is not necessarily what the pipeline is about to deploy.
So the sha is sent unless the action's BuildBranchHead property asks for the head.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from actions.travis.errors import Where
from engine import Failed, FailureType, JobContext

COMMIT_ID = re.compile(r"[0-9a-fA-F]{7,40}")
"""A git commit id, full or abbreviated (git never abbreviates to fewer than 7 digits)."""


@dataclass(frozen=True)
class Revision:
    """What to build: a commit (and the artifact it came from), or None for the branch head."""

    sha: str | None
    artifact: str | None = None

    def label(self, branch: str) -> str:
        """How a summary names it: a short sha, or the branch head."""
        return f"revision {self.sha[:7]}" if self.sha else f"head of {branch}"


def revision_of(job: JobContext, where: Where, branch_head: bool) -> Revision | Failed:
    """The job's revision to build, or why there is none (ConfigurationError, with the fix)."""
    if branch_head:
        return Revision(None)
    carried = [(str(a.get("name") or f"#{n + 1}"), a.get("revision"))
               for n, a in enumerate(job.input_artifacts)]
    with_revision = [(name, rev) for name, rev in carried if isinstance(rev, str) and rev]
    for name, rev in with_revision:
        if COMMIT_ID.fullmatch(rev.strip()):
            return Revision(rev.strip().lower(), name)
    head = ("or set the action's BuildBranchHead property to true to build whatever the head of "
            f"{where.branch} is when Travis gets to it (the pipeline may then release a "
            "different commit from the one tested)")
    if not with_revision:
        count = len(carried)
        return Failed(
            FailureType.CONFIGURATION_ERROR,
            f"{where}: the job carries no revision to build: it has {count} input "
            f"artifact{'' if count == 1 else 's'} and none names a commit. Fix: give the "
            "action the pipeline's source artifact as an input artifact, so that Travis builds "
            f"the commit the pipeline releases, {head}")
    name, rev = with_revision[0]
    return Failed(
        FailureType.CONFIGURATION_ERROR,
        f"{where}: the input artifact {name} carries the revision {rev[:80]!r}, which is not "
        "a git commit id (an S3 or ECR source?), and no other input artifact names a commit. "
        "Fix: add the output of the pipeline's git source action (CodeCommit, GitHub, "
        f"Bitbucket...) to the action's input artifacts, {head}")
