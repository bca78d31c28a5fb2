"""cpworker's exceptions: one base that names the job, its state and the fix."""

from __future__ import annotations


class CpworkerError(Exception):
    """Base of every error cpworker raises on purpose.

    The message is built from what happened, where (job, state) and what to do about it, so an
    operator reading a log line or a CLI error has all three without a stack trace.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        state: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.job_id = job_id
        self.state = state
        self.fix = fix
        where = ""
        if job_id:
            where = f"job {job_id}" + (f" (state {state})" if state else "") + ": "
        super().__init__(where + message + (f". Fix: {fix}" if fix else ""))


class ConfigurationProblem(CpworkerError):
    """cpworker itself is set up wrongly (a setting, an action definition, a database URL)."""


class UnknownJob(CpworkerError):
    """No job matches what was asked for."""


class AmbiguousJob(CpworkerError):
    """A job-id prefix matches more than one job."""


class ConcurrencyConflict(CpworkerError):
    """Another writer appended to the same job first; the losing batch is not applied."""


class StoreUnavailable(CpworkerError):
    """The state database cannot be used just now (locked, full, restarting, unreachable).

    Transient: nothing of the failed transaction was written, and the same call made later can
    succeed. The worker keeps what it meant to write and retries with backoff.
    """


class StoreFailure(CpworkerError):
    """The state database refuses this worker for good (credentials, missing database,
    privileges, a schema newer than the code): retrying cannot help, so the worker stops."""
