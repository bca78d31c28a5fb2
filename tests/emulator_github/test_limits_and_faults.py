"""Rate limits (primary per token per hour, secondary on POSTs per minute or imposed) with
GitHub's headers and messages, and seeded faults."""

from __future__ import annotations

import pytest
import requests

from actions.github.emulator import GitHubEmulator
from engine.clock import FakeClock
from tests.emulator_github.conftest import OTHER, REPO, Api, body

PRIMARY_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY = ("You have exceeded a secondary rate limit. Please wait a few minutes before you "
             "try again.")
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used",
                "x-ratelimit-reset", "x-ratelimit-resource")


def _rate(response: requests.Response) -> tuple[str, ...]:
    return tuple(response.headers[name] for name in RATE_HEADERS)


def test_every_answer_carries_the_rate_headers(api: Api, clock: FakeClock) -> None:
    reset = str(int(clock.now() + 3600))
    assert _rate(api.runs()) == ("5000", "4999", "1", reset, "core")
    assert _rate(api.dispatch(inputs={"bad": "x"})) == ("5000", "4998", "2", reset, "core")
    assert _rate(api.runs(token=OTHER)) == ("5000", "4999", "1", reset, "core")  # per token
    assert _rate(api.runs("octo/public", "plain.yml", token=None)) == (
        "60", "59", "1", reset, "core")
    assert _rate(api.run(1, token="ghp_unknown")) == ("60", "58", "2", reset, "core")
    assert api.runs().headers["x-github-request-id"]


@pytest.mark.parametrize("status", [403, 429])
def test_the_primary_limit(api: Api, clock: FakeClock, emulator: GitHubEmulator,
                           status: int) -> None:
    emulator.configure(rate_limit=3, primary_status=status)
    for _ in range(3):
        assert api.runs().status_code == 200
    refused = api.runs()
    assert refused.status_code == status
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-used"] == "3"
    message = refused.json()["message"]
    assert message.startswith("API rate limit exceeded for user ID ")
    assert "please include the request ID" in message
    assert refused.json()["documentation_url"] == PRIMARY_DOCS
    assert refused.json()["status"] == str(status)
    assert api.dispatch(inputs={"revision": "r"}).status_code == status
    assert emulator.runs() == []  # a refused dispatch does nothing
    assert api.runs(token=OTHER, repo="octo/public", workflow="plain.yml").status_code == 200
    clock.advance(float(refused.headers["x-ratelimit-reset"]) - clock.now())
    assert api.runs().status_code == 200  # a new window


@pytest.mark.parametrize(("status", "retry_after"), [(403, 60.0), (429, None)])
def test_the_secondary_limit_on_posts(api: Api, clock: FakeClock, emulator: GitHubEmulator,
                                      status: int, retry_after: float | None) -> None:
    emulator.configure(secondary_posts_per_minute=3, secondary_status=status,
                       clear_retry_after=retry_after is None)
    for _ in range(3):
        assert api.dispatch(inputs={"revision": "r"}).status_code == 204
    refused = api.dispatch(inputs={"revision": "r"})
    assert refused.status_code == status
    assert refused.json()["message"].startswith(SECONDARY)
    assert refused.headers.get("retry-after") == (None if retry_after is None else "60")
    assert int(refused.headers["x-ratelimit-remaining"]) > 0  # only the body tells
    assert len(emulator.runs()) == 3
    assert api.runs().status_code == status  # the client is held back as a whole
    clock.advance(60)
    assert api.dispatch(inputs={"revision": "r"}).status_code == 204


def test_a_secondary_limit_imposed_by_the_admin(api: Api, clock: FakeClock,
                                                emulator: GitHubEmulator) -> None:
    assert body(api.admin("POST", "/rate-limits/secondary",
                          {"token": "ghp_write_token_1", "seconds": 30}), 200) == {"ok": True}
    refused = api.runs()
    assert refused.status_code == 403 and refused.headers["retry-after"] == "30"
    assert api.runs("octo/public", "plain.yml", token=OTHER).status_code == 200
    clock.advance(30)
    assert api.runs().status_code == 200
    emulator.impose_secondary_limit(seconds=5)
    assert api.runs("octo/public", "plain.yml", token=OTHER).status_code == 403


@pytest.mark.parametrize(("status", "json_body"), [(500, True), (502, False)])
def test_injected_server_errors_do_nothing(api: Api, emulator: GitHubEmulator, status: int,
                                           json_body: bool) -> None:
    body(api.admin("POST", "/faults", {"error_rate": 1.0, "error_status": status}), 200)
    response = api.dispatch(inputs={"revision": "r"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith(
        "application/json" if json_body else "text/html")
    assert emulator.runs() == [] and emulator.faults.counts()["error"] == 1


def test_an_error_after_the_effect(api: Api, emulator: GitHubEmulator) -> None:
    emulator.faults.configure(error_rate=1.0)
    emulator.errors_after_effect = True
    assert api.dispatch(inputs={"revision": "r"}).status_code == 500
    assert emulator.dispatches()[REPO] == 1


def test_an_injected_throttle_is_the_secondary_refusal(api: Api,
                                                       emulator: GitHubEmulator) -> None:
    emulator.faults.configure(throttle_rate=1.0)
    refused = api.dispatch(inputs={"revision": "r"})
    assert refused.status_code == 403 and refused.json()["message"].startswith(SECONDARY)
    assert refused.headers["retry-after"] == "60" and emulator.runs() == []


def test_seeded_faults_repeat(emulator: GitHubEmulator, api: Api) -> None:
    def pattern() -> list[int]:
        emulator.faults.configure(error_rate=0.5, seed=11)
        return [api.runs().status_code for _ in range(12)]

    first = pattern()
    assert first == pattern() and {200, 500} == set(first)


@pytest.mark.parametrize("mode", ["unreachable", "unavailable"])
def test_an_outage_refuses_everything_and_counts_nothing(
        api: Api, emulator: GitHubEmulator, mode: str) -> None:
    emulator.faults.configure(outage=mode)
    if mode == "unreachable":
        with pytest.raises(requests.ConnectionError):
            api.dispatch(inputs={"revision": "r"})
    else:
        assert api.dispatch(inputs={"revision": "r"}).status_code == 503
    assert emulator.runs() == [] and emulator.call_counts() == {}
    assert body(api.admin("GET", "/health"), 200)["ok"] is True  # admin still answers
