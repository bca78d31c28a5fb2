"""The demo action: starts a run on the demo service (POST /runs) and follows it to its end.

It finds the service through CPWORKER_DEMO_URL, read when the worker makes it, and never
imports its emulator."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

from engine import Action, Done, Failed, FailureType, InProgress, JobContext, RunDetails
from engine.outcomes import ActionOutcome


class DemoAction(Action):
    name = "demo"
    definition_package = "tests.plugins.demo_action"
    definition_file = "demo.json"
    check_interval = 0.3
    submit_grace = 2.0

    def __init__(self) -> None:
        self.url = os.environ.get("CPWORKER_DEMO_URL", "http://127.0.0.1:9")

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=2.0) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found

    def submit(self, job: JobContext) -> ActionOutcome:
        run = self._call("POST", "/runs", {"result": job.configuration["Result"]})
        return InProgress(RunDetails(str(run["id"]), f"demo run {run['id']} started", 0),
                          {"run": run["id"]})

    def check(self, job: JobContext) -> ActionOutcome:
        run = self._call("GET", f"/runs/{job.run['run']}")
        details = RunDetails(str(run["id"]), f"demo run {run['id']} {run['state']}")
        if run["state"] == "passed":
            return Done(details)
        if run["state"] == "failed":
            return Failed(FailureType.JOB_FAILED, f"demo run {run['id']} failed", details)
        return InProgress(details, {})
