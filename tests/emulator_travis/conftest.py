"""A Travis emulator on a loopback port, a fake clock, and a thin `requests` client for it.

Every test talks real HTTP through the `requests` library, as cpworker's Travis client will, so
what passes here is what a client on the wire would see.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import pytest
import requests

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from engine.devtools.emulator import EmulatorServer
from engine.devtools.testing import SharedServer

SLUG = "octo/app"
OTHER_SLUG = "octo/other"
WRITE = "write-token-1"
READ_ONLY = "read-token-1"
OTHER = "other-token-1"
MARKER = "cpworker:execution-42"


def repo_path(slug: str = SLUG) -> str:
    """Travis wants the slug as one path segment: owner%2Frepo."""
    return "/repo/" + quote(slug, safe="")


class Api:
    """Sends Travis API v3 calls with the headers a well-behaved client sets."""

    def __init__(self, base_url: str, token: str | None = WRITE) -> None:
        self.base_url = base_url
        self.token = token
        self.session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        version: bool = True,
    ) -> requests.Response:
        """`token=""` means the default token, None means no Authorization header at all."""
        sent: dict[str, str] = {"Accept": "application/json"}
        if version:
            sent["Travis-API-Version"] = "3"
        use = self.token if token == "" else token
        if use is not None:
            sent["Authorization"] = f"token {use}"
        sent.update(headers or {})
        return self.session.request(
            method,
            self.base_url + path,
            json=body,
            params=params,
            headers=sent,
            timeout=10,
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def trigger(
        self,
        slug: str = SLUG,
        *,
        message: str | None = MARKER,
        branch: str | None = None,
        token: str | None = "",
        **fields: Any,
    ) -> requests.Response:
        request: dict[str, Any] = {"merge_mode": "deep_merge_append", **fields}
        if message is not None:
            request["message"] = message
        if branch is not None:
            request["branch"] = branch
        return self.call(
            "POST", repo_path(slug) + "/requests", token=token, body={"request": request}
        )

    def request(self, request_id: int, slug: str = SLUG, **kwargs: Any) -> dict[str, Any]:
        response = self.get(f"{repo_path(slug)}/request/{request_id}", **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def build(self, build_id: int) -> dict[str, Any]:
        response = self.get(f"/build/{build_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def cancel(self, build_id: int, token: str | None = "") -> requests.Response:
        return self.call("POST", f"/build/{build_id}/cancel", token=token)

    def admin(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.session.request(method, self.base_url + path, json=body, timeout=10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> TravisEmulator:
    travis = TravisEmulator(clock=clock, seed=7)
    travis.add_repository(SLUG, token=WRITE, read_only_tokens=[READ_ONLY])
    travis.add_repository(OTHER_SLUG, token=OTHER)
    return travis


@pytest.fixture
def server(emulator: TravisEmulator, shared_server: SharedServer) -> Iterator[EmulatorServer]:
    """The session's one loopback server, serving this test's emulator."""
    yield shared_server.plug(emulator)
    shared_server.unplug()


@pytest.fixture
def api(server: EmulatorServer) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.session.close()


def accepted(api: Api, **kwargs: Any) -> dict[str, Any]:
    """Trigger a build and insist on Travis's 202."""
    response = api.trigger(**kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def run_to_build(api: Api, clock: FakeClock, **kwargs: Any) -> dict[str, Any]:
    """Trigger, let the gatekeeper's delay pass, and return the request's one build (minimal)."""
    request_id = accepted(api, **kwargs)["request"]["id"]
    clock.advance(2.0)
    builds: list[dict[str, Any]] = api.request(request_id)["builds"]
    assert len(builds) == 1
    return builds[0]
