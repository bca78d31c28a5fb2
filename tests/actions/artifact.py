"""A build that does what Build and Deploy actions do with artifacts: it downloads its input
artifact when it starts and again when it finishes (credentials may have expired in between),
and uploads one output artifact made from it.

Its external system is only S3: a run is the work done in check(), so every difference between
the first and a resumed check shows up in the uploads the emulator counts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from engine import Action, Done, InProgress, JobContext, RunDetails
from engine.outcomes import ActionOutcome


class ArtifactAction(Action):
    name = "artifact-build"
    definition_package = "tests.actions"
    definition_file = "artifact.json"
    submit_grace = 0.0
    """Submitting only reads S3: nothing can still be in flight after a crash."""

    def submit(self, job: JobContext) -> ActionOutcome:
        source = job.input_artifacts[0]["name"]
        with tempfile.TemporaryDirectory() as scratch:
            tree = job.download(str(source), scratch)
            revision = (tree / "revision.txt").read_text().strip()
            files = sorted(p.name for p in tree.iterdir())
        return InProgress(RunDetails(f"build-{job.execution_id[:8]}", "building", 10),
                          {"revision": revision, "files": files})

    def check(self, job: JobContext) -> ActionOutcome:
        source, output = job.input_artifacts[0]["name"], job.output_artifacts[0]["name"]
        with tempfile.TemporaryDirectory() as scratch:
            tree = job.download(str(source), Path(scratch) / "in")
            out = Path(scratch) / "out"
            out.mkdir()
            revision = (tree / "revision.txt").read_text().strip()
            (out / "build.txt").write_text(f"{job.configuration['Project']} built {revision}\n")
            (out / "sources.txt").write_text("\n".join(sorted(p.name for p in tree.iterdir())))
            uploaded = job.upload(str(output), out)
        return Done(RunDetails(f"build-{job.execution_id[:8]}", "built", 100),
                    {"Revision": revision, "ArtifactETag": str(uploaded.etag or "")})
