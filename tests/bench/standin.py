"""In-process stand-ins for benchmarks: CodePipeline without HTTP, an action that never waits.

They measure the engine (intake, decisions, group commit, scheduling), not a network.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from engine import Action, Done, InProgress, JobContext, RunDetails
from engine.codepipeline import CodePipeline
from engine.outcomes import Acknowledged, ActionOutcome, Refused, Rejected, Reported, RetryLater


class InstantAction(Action):
    """Submits and finishes at once: submit -> running, first check -> done."""

    name = "instant"
    definition_package = "tests.bench"
    definition_file = "instant.json"

    def submit(self, job: JobContext) -> ActionOutcome:
        return InProgress(RunDetails(f"run-{job.job_id}"), {"run": job.job_id}, check_in=0.0)

    def check(self, job: JobContext) -> ActionOutcome:
        return Done(RunDetails(f"run-{job.job_id}", "done", 100))


class InProcessCodePipeline(CodePipeline):
    """The five job-worker calls answered from memory, thread-safe, counting calls."""

    def __init__(self, jobs: int, configuration: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[str] = deque(f"job-{n:07d}" for n in range(jobs))
        self._config = dict(configuration or {"Name": "bench", "Secret": "s3cr3t-value"})
        self.calls: dict[str, int] = {}
        self.results: dict[str, str] = {}
        self._nonce = itertools.count(1)

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def add(self, jobs: int) -> None:
        with self._lock:
            start = len(self.results) + len(self._queue)
            self._queue.extend(f"job-{n:07d}" for n in range(start, start + jobs))

    def _data(self, job_id: str) -> dict[str, Any]:
        return {
            "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Instant",
                             "version": "1"},
            "actionConfiguration": {"configuration": dict(self._config)},
            "pipelineContext": {"pipelineName": "bench", "stage": {"name": "Test"},
                                "action": {"name": "Instant", "actionExecutionId": f"x-{job_id}"},
                                "pipelineExecutionId": f"p-{job_id}"},
            "artifactCredentials": {"accessKeyId": "AKID", "secretAccessKey": "SECRETKEY",
                                    "sessionToken": "TOKEN"},
        }

    def poll(self, type_id: Mapping[str, str], max_batch: int,
             query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        self._count("PollForJobs")
        with self._lock:
            taken = [self._queue.popleft() for _ in range(min(max_batch, len(self._queue)))]
        return [{"id": j, "nonce": str(next(self._nonce)), "accountId": "111111111111",
                 "data": self._data(j)} for j in taken]

    def acknowledge(self, job_id: str, nonce: str | None) -> Acknowledged | Refused | RetryLater:
        self._count("AcknowledgeJob")
        return Acknowledged()

    def job_details(self, job_id: str) -> dict[str, Any]:
        self._count("GetJobDetails")
        return self._data(job_id)

    def _result(self, job_id: str, outcome: str) -> Reported:
        with self._lock:
            self.calls[outcome] = self.calls.get(outcome, 0) + 1
            self.results[job_id] = outcome
        return Reported()

    def report_progress(self, job_id: str, token: str, details: Mapping[str, Any] | None,
                        maybe_landed: bool) -> Reported | Rejected | RetryLater:
        return self._result(job_id, "PutJobSuccessResult+token")

    def report_success(self, job_id: str, details: Mapping[str, Any] | None,
                       variables: Mapping[str, str],
                       maybe_landed: bool) -> Reported | Rejected | RetryLater:
        return self._result(job_id, "PutJobSuccessResult")

    def report_failure(self, job_id: str, failure_type: str, message: str,
                       external_id: str | None,
                       maybe_landed: bool) -> Reported | Rejected | RetryLater:
        return self._result(job_id, "PutJobFailureResult")
