"""A GitHub Actions emulator on a loopback port, a fake clock, and a thin `requests` client.

Every test talks real HTTP through `requests`, as the GitHub action's client does, so what
passes here is what a client on the wire would see.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from actions.github.emulator import GitHubEmulator
from engine.clock import FakeClock
from engine.devtools.emulator import EmulatorServer
from engine.devtools.testing import SharedServer

REPO = "octo/app"
OTHER_REPO = "octo/other"
PUBLIC_REPO = "octo/public"
WRITE = "ghp_write_token_1"
READ_ONLY = "ghp_read_token_1"
OTHER = "ghp_other_token_1"
WORKFLOW = "deploy.yml"
RUN_NAME = "Deploy ${{ inputs.revision }} [${{ inputs.marker }}] by ${{ github.actor }}"
WORKFLOWS: dict[str, dict[str, Any]] = {
    WORKFLOW: {"name": "Deploy", "run_name": RUN_NAME,
               "inputs": {"revision": {"required": True}, "marker": {},
                          "environment": {"default": "staging"}}},
    "plain.yml": {"name": "Plain"},
    "push-only.yml": {"name": "CI", "dispatch": False},
}


class Api:
    """Sends GitHub REST calls with the headers a well-behaved client sets."""

    def __init__(self, base_url: str, token: str | None = WRITE) -> None:
        self.base_url = base_url
        self.token = token
        self.session = requests.Session()

    def call(self, method: str, path: str, *, token: str | None = "", body: Any = None,
             params: Mapping[str, str | int] | None = None, scheme: str = "Bearer",
             data: bytes | None = None) -> requests.Response:
        """`token=""` means the default token, None means no Authorization header at all."""
        headers = {"Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        use = self.token if token == "" else token
        if use is not None:
            headers["Authorization"] = f"{scheme} {use}"
        return self.session.request(method, self.base_url + path, json=body, data=data,
                                    params=params, headers=headers, timeout=10)

    def dispatch(self, repo: str = REPO, workflow: str = WORKFLOW, *, ref: str = "main",
                 inputs: Any = None, details: bool | None = None,
                 token: str | None = "", **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"ref": ref, **extra}
        if inputs is not None:
            body["inputs"] = inputs
        if details is not None:
            body["return_run_details"] = details
        return self.call("POST", f"/repos/{repo}/actions/workflows/{workflow}/dispatches",
                         token=token, body=body)

    def runs(self, repo: str = REPO, workflow: str = WORKFLOW, token: str | None = "",
             **params: str | int) -> requests.Response:
        return self.call("GET", f"/repos/{repo}/actions/workflows/{workflow}/runs",
                         token=token, params=params)

    def run(self, run_id: int, repo: str = REPO, token: str | None = "") -> requests.Response:
        return self.call("GET", f"/repos/{repo}/actions/runs/{run_id}", token=token)

    def cancel(self, run_id: int, repo: str = REPO, *, force: bool = False,
               token: str | None = "") -> requests.Response:
        verb = "force-cancel" if force else "cancel"
        return self.call("POST", f"/repos/{repo}/actions/runs/{run_id}/{verb}", token=token)

    def admin(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.session.request(method, self.base_url + "/_emulator" + path, json=body,
                                    timeout=10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> GitHubEmulator:
    github = GitHubEmulator(clock=clock, seed=7, run_delay=3.0, cancel_delay=2.0)
    github.add_repository(REPO, token=WRITE, read_only_tokens=[READ_ONLY], workflows=WORKFLOWS)
    github.add_repository(OTHER_REPO, token=OTHER, workflows={WORKFLOW: WORKFLOWS[WORKFLOW]})
    github.add_repository(PUBLIC_REPO, token=OTHER, private=False,
                          workflows={"plain.yml": {"name": "Plain"}})
    return github


@pytest.fixture
def server(emulator: GitHubEmulator, shared_server: SharedServer) -> Iterator[EmulatorServer]:
    """The session's one loopback server, serving this test's emulator."""
    yield shared_server.plug(emulator)
    shared_server.unplug()


@pytest.fixture
def api(server: EmulatorServer) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.session.close()


def body(response: requests.Response, status: int) -> Any:
    """The JSON of an answer that must have this status."""
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def dispatched(api: Api, clock: FakeClock, **kwargs: Any) -> dict[str, Any]:
    """Dispatch with run details and return the run, read back over the API."""
    kwargs.setdefault("inputs", {"revision": "4f2c8d0", "marker": "cpworker:exec-1"})
    run_id = body(api.dispatch(details=True, **kwargs), 200)["workflow_run_id"]
    run: dict[str, Any] = body(api.run(run_id, repo=kwargs.get("repo", REPO)), 200)
    return run


def github_error(response: requests.Response, status: int, message: str,
                 docs: str = "https://docs.github.com/rest") -> None:
    """GitHub's error shape: message, documentation_url, and the status as a string."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.json() == {"message": message, "documentation_url": docs,
                               "status": str(status)}
