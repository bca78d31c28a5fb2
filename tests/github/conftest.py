"""The GitHub action against the GitHub emulator over real HTTP on 127.0.0.1, on a fake clock.

One server serves the whole session (the kit's shared_server) and is pointed at each test's
own emulator. Between the client and the emulator sits `Wire`, which records what really went
over HTTP (headers and bodies included) and can answer a scripted response instead: the
answers GitHub gives that the emulator has no switch for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from actions.github import MARKER_INPUT, REVISION_INPUT, GitHubAction, GitHubClient
from actions.github.emulator import GitHubEmulator
from actions.github.emulator.fixtures import github_emulator  # noqa: F401 - a fixture
from actions.github.settings import GitHubSettings
from engine import FakeClock, JobContext, RunDetails
from engine.devtools.emulator import Request, Response
from engine.devtools.testing import SharedServer
from engine.outcomes import ActionOutcome, Done, InProgress

REPO = "octo/app"
OWNER, NAME = REPO.split("/")
WORKFLOW = "deploy.yml"
REF = "main"
TOKEN = "ghp_secret_token_5f3a9c71"
READ_ONLY = "ghp_read_only_token_77b1"
EXECUTION = "3b1f6a1e-0000-4000-8000-00000000beef"
REVISION = "4f2c8d0e6b1a9c3e5d7f1a2b3c4d5e6f7a8b9c0d"
"""The commit CodePipeline's source action recorded on the job's input artifact."""
RUN_NAME = f"Deploy ${{{{ inputs.{REVISION_INPUT} }}}} [${{{{ inputs.{MARKER_INPUT} }}}}]"
"""The run-name the README documents."""
RUN_DELAY = 3.0
"""Seconds the emulator takes to list a run; the action is told the same (its settings)."""
WORKFLOWS: dict[str, dict[str, Any]] = {
    WORKFLOW: {"name": "Deploy", "run_name": RUN_NAME,
               "inputs": {REVISION_INPUT: {"required": True}, MARKER_INPUT: {},
                          "environment": {"default": "staging"}}},
    "no-run-name.yml": {"name": "Plain",
                        "inputs": {REVISION_INPUT: {"required": True}, MARKER_INPUT: {}}},
    "push-only.yml": {"name": "CI", "dispatch": False},
    "bare.yml": {"name": "Bare"},
}


@dataclass
class Wire:
    """The emulator behind a recorder; `script` answers the next calls instead of it."""

    app: GitHubEmulator | None = None
    seen: list[Request] = field(default_factory=list)
    script: list[Response] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.seen.append(request)
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            return scripted
        if self.app is None:
            return Response.text(503, "no emulator is plugged in for this test\n")
        return self.app(request)

    def calls(self, method: str, suffix: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.seen if r.method == method and r.path.endswith(suffix)]

    def bodies(self, suffix: str = "/dispatches") -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.calls("POST", suffix)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def github(clock: FakeClock) -> GitHubEmulator:
    emulator = GitHubEmulator(clock=clock, seed=11, run_delay=RUN_DELAY, cancel_delay=2.0)
    emulator.add_repository(REPO, token=TOKEN, read_only_tokens=[READ_ONLY],
                            workflows=WORKFLOWS)
    return emulator


@pytest.fixture
def wire(github: GitHubEmulator, shared_server: SharedServer) -> Iterator[Wire]:
    """This test's emulator behind a fresh recorder, on the session's one server."""
    made = Wire(github)
    shared_server.plug(made)
    yield made
    shared_server.unplug()


@pytest.fixture
def url(wire: Wire, shared_server: SharedServer) -> str:
    return shared_server.url


def quick_client() -> GitHubClient:
    """The real client with its backoff sleeping no wall time."""
    return GitHubClient(sleep=lambda _: None, timeout=(2.0, 5.0))


def make_action(url: str) -> GitHubAction:
    return GitHubAction(quick_client(), GitHubSettings(api_url=url, run_delay=RUN_DELAY))


@pytest.fixture
def action(url: str) -> Iterator[GitHubAction]:
    made = make_action(url)
    yield made
    made.close()


def ghes(github: GitHubEmulator) -> None:
    """The emulator as GitHub Enterprise Server 3.20 and older: no return_run_details."""
    github.configure(return_run_details_supported=False)


def configuration(**changes: str | None) -> dict[str, str]:
    config: dict[str, str | None] = {"Owner": OWNER, "Repository": NAME, "Workflow": WORKFLOW,
                                     "Ref": REF, "Token": TOKEN}
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


class Job:
    """Plays the engine around one execution: run data merged from outcomes, as decide() does."""

    def __init__(self, clock: FakeClock, execution_id: str = EXECUTION, *,
                 revision: str | None = REVISION, intended_at: float | None = None,
                 config: Mapping[str, str | None] | None = None,
                 **more: str | None) -> None:
        self.clock = clock
        self.execution_id = execution_id
        self.configuration = configuration(**{**(config or {}), **more})
        self.run: dict[str, Any] = {}
        self.details: RunDetails | None = None
        self.intended_at = clock.now() if intended_at is None else intended_at
        self.input_artifacts: tuple[dict[str, Any], ...] = () if revision is None else (
            {"name": "SourceArtifact", "revision": revision,
             "bucket": "codepipeline-us-east-1-123456789012", "key": "shop/SourceArti/AbC1234"},)

    def context(self, *, attempt: int = 0, resumed: bool = False,
                run: Mapping[str, Any] | None = None,
                deadline: float | None = None) -> JobContext:
        return JobContext(
            job_id="job-1", execution_id=self.execution_id,
            pipeline={"pipeline_name": "shop", "stage": "Test", "action_name": "GitHub",
                      "pipeline_execution_id": "pex-1"},
            configuration=self.configuration, run=dict(self.run if run is None else run),
            details=self.details, attempt=attempt, resumed=resumed, clock=self.clock,
            input_artifacts=self.input_artifacts, deadline=deadline,
            intended_at=self.intended_at,
        )

    def absorb(self, outcome: ActionOutcome) -> ActionOutcome:
        if isinstance(outcome, (InProgress, Done)):
            self.run.update(outcome.data)
            self.details = outcome.details or self.details
        return outcome

    def submit(self, action: GitHubAction, **kwargs: Any) -> ActionOutcome:
        return self.absorb(action.submit(self.context(**kwargs)))

    def check(self, action: GitHubAction, **kwargs: Any) -> ActionOutcome:
        return self.absorb(action.check(self.context(**kwargs)))


def github_error(status: int, message: str, **headers: str) -> Response:
    return Response.json(status, {"message": message, "documentation_url": "https://docs.github"
                                  ".com/rest", "status": str(status)}, headers=headers)
