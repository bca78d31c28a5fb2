"""The Travis action against the Travis emulator over real HTTP on 127.0.0.1, on a fake clock.

One server serves the whole session (the kit's shared_server) and is pointed at each test's
own emulator (stopping a server costs half a second). Between the client and the emulator sits
`Wire`, which records what really went over HTTP (headers included) and can answer a scripted
response or turn a real answer into a 500: the faults Travis produces that the emulator has no
switch for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from actions.travis import TravisAction, TravisClient
from actions.travis.emulator import TravisEmulator
from engine import FakeClock, JobContext, RunDetails
from engine.devtools.emulator import Request, Response
from engine.devtools.testing import SharedServer
from engine.outcomes import ActionOutcome, Done, InProgress

SLUG = "octo/app"
OWNER, NAME = SLUG.split("/")
BRANCH = "main"
TOKEN = "trv-secret-token-5f3a9c"
READ_ONLY = "trv-read-only-token-77b1"
EXECUTION = "3b1f6a1e-0000-4000-8000-00000000beef"
REVISION = "4f2c8d0e6b1a9c3e5d7f1a2b3c4d5e6f7a8b9c0d"
"""The commit CodePipeline's source action recorded on the job's input artifact."""


@dataclass
class Wire:
    """The emulator behind a recorder; `script` answers the next calls instead of it."""

    app: TravisEmulator | None = None
    seen: list[Request] = field(default_factory=list)
    script: list[Response] = field(default_factory=list)
    fail_after: dict[str, int] = field(default_factory=dict)
    """"METHOD path-suffix" -> how many more such calls reach the emulator and then get a 500."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.seen.append(request)
            scripted = self.script.pop(0) if self.script else None
            late = next((key for key, left in self.fail_after.items() if left > 0
                         and f"{request.method} {request.path}".endswith(key)), None)
            if late is not None:
                self.fail_after[late] -= 1
        if scripted is not None:
            return scripted
        if self.app is None:
            return Response.text(503, "no emulator is plugged in for this test\n")
        answer = self.app(request)
        if late is not None:
            return Response.json(500, {"@type": "error", "error_type": "server_error",
                                       "error_message": "internal server error"})
        return answer

    def calls(self, method: str, suffix: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.seen if r.method == method and r.path.endswith(suffix)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def travis(clock: FakeClock) -> TravisEmulator:
    emulator = TravisEmulator(clock=clock, seed=11)
    emulator.add_repository(SLUG, token=TOKEN, read_only_tokens=[READ_ONLY])
    emulator.add_repository("octo/asleep", token=TOKEN, active=False)
    return emulator


@pytest.fixture
def wire(travis: TravisEmulator, shared_server: SharedServer) -> Iterator[Wire]:
    """This test's emulator behind a fresh recorder, on the session's one server."""
    made = Wire(travis)
    shared_server.plug(made)
    yield made
    shared_server.unplug()


@pytest.fixture
def url(wire: Wire, shared_server: SharedServer) -> str:
    return shared_server.url


def quick_client() -> TravisClient:
    """The real client with its backoff sleeping no wall time."""
    return TravisClient(sleep=lambda _: None, timeout=(2.0, 5.0))


@pytest.fixture
def action(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TravisAction]:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", url)
    made = TravisAction(quick_client())
    yield made
    made.close()


def configuration(**changes: str) -> dict[str, str]:
    config = {"Owner": OWNER, "ProjectName": NAME, "Branch": BRANCH, "APIToken": TOKEN}
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


class Job:
    """Plays the engine around one execution: run data merged from outcomes, as decide() does."""

    def __init__(self, clock: FakeClock, execution_id: str = EXECUTION, *,
                 revision: str | None = REVISION, **config: str) -> None:
        self.clock = clock
        self.execution_id = execution_id
        self.configuration = configuration(**config)
        self.run: dict[str, Any] = {}
        self.details: RunDetails | None = None
        self.input_artifacts: tuple[dict[str, Any], ...] = () if revision is None else (
            {"name": "SourceArtifact", "revision": revision,
             "bucket": "codepipeline-us-east-1-123456789012", "key": "shop/SourceArti/AbC1234"},)

    def context(self, *, attempt: int = 0, resumed: bool = False,
                run: Mapping[str, Any] | None = None,
                deadline: float | None = None) -> JobContext:
        return JobContext(
            job_id="job-1", execution_id=self.execution_id,
            pipeline={"pipeline_name": "shop", "stage": "Test", "action_name": "Travis",
                      "pipeline_execution_id": "pex-1"},
            configuration=self.configuration, run=dict(self.run if run is None else run),
            details=self.details, attempt=attempt, resumed=resumed, clock=self.clock,
            input_artifacts=self.input_artifacts, deadline=deadline,
        )

    def absorb(self, outcome: ActionOutcome) -> ActionOutcome:
        if isinstance(outcome, (InProgress, Done)):
            self.run.update(outcome.data)
            self.details = outcome.details or self.details
        return outcome

    def submit(self, action: TravisAction, **kwargs: Any) -> ActionOutcome:
        return self.absorb(action.submit(self.context(**kwargs)))

    def check(self, action: TravisAction, **kwargs: Any) -> ActionOutcome:
        return self.absorb(action.check(self.context(**kwargs)))


def travis_error(status: int, error_type: str, message: str, **extra: Any) -> Response:
    return Response.json(status, {"@type": "error", "error_type": error_type,
                                  "error_message": message, **extra})
