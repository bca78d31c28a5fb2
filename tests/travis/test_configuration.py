"""Configuration mistakes are not outages: a URL that cannot be called or a token that cannot be
sent fails the job at once as ConfigurationError, naming the property and the fix, never
retried as SystemUnavailable, and never showing the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actions.travis import Endpoint, TravisAction, TravisError
from actions.travis.errors import Where, outcome_for
from engine import Failed, FailureType, FakeClock
from engine.devtools.testing import ActionHarness
from engine.machine import JobState
from engine.secrets import forms
from tests.travis.conftest import BRANCH, SLUG, Job, Wire, configuration, quick_client

NEWLINE_TOKEN = "trv-secret\ninjected-5f3a"
SNOWMAN_TOKEN = "trv-secret-\u2603-5f3a"
NUL_TOKEN = "trv-secret\x00-5f3a"


def _assert_no_token(text: str, token: str) -> None:
    for form in forms(token) | {token}:
        assert form not in text, (form, text)


@pytest.mark.parametrize("changes, prop, complaint", [
    ({"ApiUrl": "http://[::1"}, "ApiUrl", "is not a usable URL (Invalid IPv6 URL)"),
    ({"ApiUrl": "http://127.0.0.1:99999"}, "ApiUrl", "Port out of range"),
    ({"ApiUrl": "http://127.0.0.1:0/api"}, "ApiUrl", "Port out of range"),
    ({"ApiUrl": "http://127.0.0.1:port"}, "ApiUrl", "Port could not be cast"),
    ({"ApiUrl": "http://:4000"}, "ApiUrl", "No host supplied"),
    ({"ApiUrl": "https://travis example.com/api"}, "ApiUrl", "contains invalid character"),
    ({"ApiUrl": "ftp://travis.example.com"}, "ApiUrl", "is not an http(s) URL"),
    ({"APIToken": NEWLINE_TOKEN}, "APIToken", "contains a line break or another control"),
    ({"APIToken": NUL_TOKEN}, "APIToken", "contains a line break or another control"),
    ({"APIToken": SNOWMAN_TOKEN}, "APIToken", "contains a character outside Latin-1"),
    ({"Owner": "oc to"}, "Owner", "must be one name"),
    ({"Owner": "octo?x=1"}, "Owner", "must be one name"),
    ({"ProjectName": ".."}, "ProjectName", "must be one name"),
    ({"ProjectName": "app\u2603"}, "ProjectName", "must be one name"),
    ({"Branch": "main branch"}, "Branch", "is not a git branch name"),
])
def test_a_configuration_mistake_fails_at_once_naming_the_property(
    action: TravisAction, clock: FakeClock, wire: Wire, changes: dict[str, str], prop: str,
    complaint: str,
) -> None:
    job = Job(clock, **changes)
    cancelled = action.cancel(job.context())
    assert not cancelled.ok
    messages = [cancelled.message]
    for outcome in (job.submit(action), job.check(action)):
        assert isinstance(outcome, Failed)
        assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
        messages.append(outcome.message)
    for message in messages:
        assert prop in message and complaint in message and "Fix:" in message, message
        _assert_no_token(message, job.configuration["APIToken"])
    assert wire.seen == []  # nothing was sent


def test_a_bad_url_in_the_environment_is_named_as_such(
    clock: FakeClock, wire: Wire, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", "http://127.0.0.1:70000")
    action = TravisAction(quick_client())
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "the API URL from the environment variable CPWORKER_TRAVIS_API_URL" in \
        outcome.message and "Port out of range" in outcome.message
    action.close()


# --- the client on its own: the same mistakes, if they get past Target.parse -------------------


@pytest.mark.parametrize("token", [NEWLINE_TOKEN, SNOWMAN_TOKEN, "trv-secret\rreturn-5f3a"])
def test_a_token_no_header_can_carry_is_a_configuration_error_without_the_token(
    url: str, wire: Wire, token: str,
) -> None:
    client = quick_client()
    with pytest.raises(TravisError) as caught:
        client.get_build(Endpoint(url, token), 1)
    error = caught.value
    assert error.configuration == "APIToken" and not error.transient
    assert error.__cause__ is None and error.__suppress_context__  # requests' text goes nowhere
    _assert_no_token(str(error), token)
    assert wire.seen == []  # refused before sending, and not retried
    outcome = outcome_for(error, Where(SLUG, BRANCH, url), "read build 1")
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "APIToken" in outcome.message and "Fix: set the action's APIToken" in outcome.message
    _assert_no_token(outcome.message, token)
    client.close()


@pytest.mark.parametrize("api_url", ["http://:4000", "http://127.0.0.1:99999",
                                     "https://travis example.com"])
def test_a_url_that_cannot_be_called_is_a_configuration_error(api_url: str) -> None:
    client = quick_client()
    with pytest.raises(TravisError) as caught:
        client.create_request(Endpoint(api_url, "trv-token-1234"), SLUG, BRANCH, "m")
    assert caught.value.configuration == "ApiUrl" and not caught.value.transient
    outcome = outcome_for(caught.value, Where(SLUG, BRANCH, api_url), "trigger a build")
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "Fix: set the action's ApiUrl" in outcome.message
    client.close()


# --- through the engine --------------------------------------------------------------------------


@pytest.fixture
def harness(url: str, clock: FakeClock, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ActionHarness]:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", url)
    with ActionHarness(TravisAction(quick_client()), tmp_path, clock=clock) as running:
        yield running


@pytest.mark.parametrize("changes", [{"APIToken": NEWLINE_TOKEN}, {"APIToken": SNOWMAN_TOKEN},
                                     {"ApiUrl": "http://127.0.0.1:99999"}])
def test_the_job_fails_once_as_a_configuration_error_without_a_retry(
    harness: ActionHarness, wire: Wire, changes: dict[str, str],
) -> None:
    execution = harness.start(configuration(**changes))
    assert harness.run(execution).state is JobState.FAILED
    [result] = harness.results(execution)
    failure = result["request"]["failureDetails"]
    assert failure["type"] == "ConfigurationError"
    assert "attempt_failed" not in harness.event_types(execution)
    _assert_no_token(failure["message"], configuration(**changes)["APIToken"])
    assert wire.seen == []
