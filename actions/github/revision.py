"""Which commit the workflow is asked to check out: the one the pipeline releases.

CodePipeline hands the job its input artifacts, each with the `revision` its source action
recorded (a git commit id for CodeCommit, GitHub, Bitbucket and GitLab sources; an S3 object
version or an image digest for S3 and ECR ones). A workflow dispatch runs on a branch or tag,
never on a commit (PROTOCOL D: `ref` is a branch or tag), and the branch's head may have moved
on since the source action ran; so the commit travels as the input cpworker_revision, which the
documented workflow checks out.
"""

from __future__ import annotations

import re

from actions.github.errors import Where
from engine import Failed, FailureType, JobContext

COMMIT_ID = re.compile(r"[0-9a-fA-F]{7,40}")
"""A git commit id, full or abbreviated (git never abbreviates to fewer than 7 digits)."""


def revision_of(job: JobContext, where: Where) -> str | Failed:
    """The first input artifact's commit id, or why there is none (ConfigurationError)."""
    carried = [(str(a.get("name") or f"#{n + 1}"), a.get("revision"))
               for n, a in enumerate(job.input_artifacts)]
    with_revision = [(name, rev) for name, rev in carried if isinstance(rev, str) and rev]
    for _, rev in with_revision:
        if COMMIT_ID.fullmatch(rev.strip()):
            return rev.strip().lower()
    if not with_revision:
        count = len(carried)
        return Failed(
            FailureType.CONFIGURATION_ERROR,
            f"{where}: the job carries no revision to run the workflow on: it has {count} "
            f"input artifact{'' if count == 1 else 's'} and none names a commit. Fix: give "
            "the action the output of the pipeline's source action as its input artifact")
    name, rev = with_revision[0]
    return Failed(
        FailureType.CONFIGURATION_ERROR,
        f"{where}: the input artifact {name} carries the revision {rev[:80]!r}, which is not a "
        "git commit id (an S3 or ECR source?), and no other input artifact names a commit. "
        "Fix: add the output of the pipeline's git source action (CodeCommit, GitHub, "
        "Bitbucket...) to the action's input artifacts")
