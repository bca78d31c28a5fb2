"""The demo service's emulator, and the demo action's dev tools as entry points name them:
EMULATOR (cpworker.emulators) and SCENARIO (cpworker.sandboxes)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.clock import Clock
from engine.devtools.emulator import App, Request, Response
from engine.devtools.plugins import SandboxExecution, SandboxReport
from engine.machine import JobState


class DemoEmulator:
    """POST /runs starts a run ending `duration` seconds later as its body's "result" says;
    GET /runs/ID shows it; GET /runs lists them."""

    def __init__(self, clock: Clock, duration: float = 1.0) -> None:
        self.clock = clock
        self.duration = duration
        self._runs: list[dict[str, object]] = []
        self._lock = threading.Lock()

    def _shown(self, run: dict[str, object]) -> dict[str, object]:
        ended = self.clock.now() >= float(str(run["ends_at"]))
        return {"id": run["id"], "state": run["result"] if ended else "running"}

    def runs(self) -> list[dict[str, object]]:
        with self._lock:
            return [self._shown(run) for run in self._runs]

    def __call__(self, request: Request) -> Response:
        with self._lock:
            if request.method == "POST" and request.path == "/runs":
                run: dict[str, object] = {
                    "id": len(self._runs) + 1, "result": request.json().get("result", "passed"),
                    "ends_at": self.clock.now() + self.duration}
                self._runs.append(run)
                return Response.json(201, self._shown(run))
            if request.method == "GET" and request.path == "/runs":
                return Response.json(200, [self._shown(run) for run in self._runs])
            if request.method == "GET" and request.path.startswith("/runs/"):
                wanted = request.path.removeprefix("/runs/")
                for run in self._runs:
                    if str(run["id"]) == wanted:
                        return Response.json(200, self._shown(run))
            return Response.json(404, {"error": f"no route {request.method} {request.path}"})


@dataclass(frozen=True)
class DemoEmulatorPlugin:
    title: str = "Demo service"

    def build(self, clock: Clock, seed: int, options: Mapping[str, str]) -> App:
        return DemoEmulator(clock, float(options.get("duration", "1.0")))

    def environment(self, url: str) -> Mapping[str, str]:
        return {"CPWORKER_DEMO_URL": url}


@dataclass(frozen=True)
class DemoScenario:
    action: str = "demo"
    emulator: str | None = "demo"
    emulator_options: Mapping[str, str] = field(default_factory=lambda: {"duration": "1.5"})

    def prepare(self, emulator: App | None) -> Sequence[SandboxExecution]:
        return [SandboxExecution("demo-green", {"Result": "passed"}, JobState.SUCCEEDED,
                                 "a demo run that passes"),
                SandboxExecution("demo-red", {"Result": "failed"}, JobState.FAILED,
                                 "a demo run that fails")]

    def report(self, emulator: App | None, executions: int) -> SandboxReport:
        assert isinstance(emulator, DemoEmulator)
        runs = emulator.runs()
        return SandboxReport([f"Demo runs: {len(runs)} for {executions} executions"],
                             ok=len(runs) == executions)


EMULATOR = DemoEmulatorPlugin()
SCENARIO = DemoScenario()
