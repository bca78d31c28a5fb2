"""A careless action: it echoes its secret Token and the job's artifact credentials in every text
it hands back (summaries, reasons, messages, output variables, run data) and in an exception.

It stands for every action that logs what it was given, or passes a library's error on as is:
the engine's one gate must take the secrets out of all of it, in whatever form a library would
print them (as is, repr, JSON, URL-encoded), before anything is stored, logged or reported.
"""

from __future__ import annotations

import json
from urllib.parse import quote_plus

from engine import Action, Cancelled, Done, Failed, FailureType, InProgress, JobContext, RunDetails
from engine.outcomes import ActionOutcome, RetryLater


class EchoAction(Action):
    name = "echo"
    definition_package = "tests.actions"
    definition_file = "echo.json"
    submit_grace = 0.0
    """Submitting calls nothing outside: nothing can still be in flight after a crash."""

    def submit(self, job: JobContext) -> ActionOutcome:
        return InProgress(RunDetails(f"echo-{_token(job)}", f"started as {_echo(job)}", 0),
                          {"checks": 0, "echoed": _echo(job), "as_json": json.dumps(_token(job))})

    def check(self, job: JobContext) -> ActionOutcome:
        checks = int(str(job.run.get("checks") or 0))
        if checks == 0 and job.attempt == 0:
            # The way requests reports a header it cannot send: the value's repr.
            raise RuntimeError(f"echo could not call out with {_token(job)!r}: {_echo(job)}")
        if checks == 0 and job.attempt == 1:
            return RetryLater(f"echo waits; it was given {_echo(job)} "
                              f"(?token={quote_plus(_token(job))})", after=0.05)
        steps = int(job.configuration.get("Steps") or "2")
        if checks < steps:
            return InProgress(RunDetails(f"echo-{_token(job)}", f"checking with {_echo(job)}",
                                         100 * checks // steps),
                              {"checks": checks + 1, "echoed": _echo(job)})
        if job.configuration["Outcome"] == "pass":
            credentials = job.artifact_credentials
            return Done(RunDetails(f"echo-{_token(job)}", f"passed with {_echo(job)}", 100),
                        {"Token": _token(job), "Echo": _echo(job),
                         "Key": credentials.access_key_id if credentials else "none"},
                        {"final": [_token(job), {"creds": _echo(job)}]})
        return Failed(FailureType.JOB_FAILED, f"echo failed with {_echo(job)} and {_token(job)!r}",
                      RunDetails(f"echo-{_token(job)}", f"failed with {_echo(job)}"))

    def cancel(self, job: JobContext) -> Cancelled:
        return Cancelled(True, f"echo cancelled with {_echo(job)}")


def _token(job: JobContext) -> str:
    return job.configuration["Token"]


def _echo(job: JobContext) -> str:
    """The token and every artifact credential, as a careless log line would show them."""
    credentials = job.artifact_credentials
    if credentials is None:
        return f"token {_token(job)}"
    return (f"token {_token(job)} key {credentials.access_key_id} secret "
            f"{credentials.secret_access_key} session {credentials.session_token}")
