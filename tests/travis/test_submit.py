"""submit(): one Travis request per action execution, whatever happened to earlier attempts."""

from __future__ import annotations

import pytest

from actions.travis import DEFAULT_API_URL, Endpoint, TravisAction, marker
from actions.travis.action import Target, TravisSettings
from actions.travis.emulator import TravisEmulator
from engine import Failed, FailureType, FakeClock, InProgress, RetryLater, RunDetails
from engine.devtools.emulator import Response
from engine.errors import ConfigurationProblem
from tests.travis.conftest import (
    BRANCH,
    REVISION,
    SLUG,
    TOKEN,
    Job,
    Wire,
    configuration,
    quick_client,
    travis_error,
)


def test_submit_triggers_once_and_records_the_request_id_at_once(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = Job(clock)
    outcome = job.submit(action)
    (request,) = travis.requests(SLUG)
    assert isinstance(outcome, InProgress)
    assert outcome.data == {"request_id": request["id"], "revision": REVISION}
    assert outcome.details == RunDetails(
        None, f"Travis request {request['id']} pending, revision {REVISION[:7]}", 0)
    assert request["branch"] == BRANCH and request["merge_mode"] == "deep_merge_append"
    assert request["sha"] == REVISION
    assert request["message"] == (f"CodePipeline shop/Test/Travis, execution pex-1 "
                                  f"{marker(job.execution_id)}")


def test_a_resumed_submit_finds_the_processed_request_by_its_marker(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    first = Job(clock).submit(action)
    assert isinstance(first, InProgress)
    clock.advance(3.0)  # processed: the marker now shows as the commit message
    crashed = Job(clock)  # the engine lost the 202: no request id in the run data
    outcome = crashed.submit(action, resumed=True)
    assert isinstance(outcome, InProgress)
    assert outcome.data["request_id"] == first.data["request_id"]
    assert outcome.data["build_id"] == travis.builds(SLUG)[0]["id"]
    assert len(travis.requests(SLUG)) == 1
    assert len(wire.calls("POST")) == 1


def test_a_post_that_could_land_after_the_calls_deadline_is_not_sent(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    """Other workers wait until the deadline for what this call sends; a POST that might land
    later is not started: the engine opens a new window and the action looks again."""
    job = Job(clock)
    late = job.submit(action, resumed=True, deadline=clock.now() + action.post_seconds - 0.5)
    assert isinstance(late, RetryLater) and not late.counted
    assert "call window" in late.reason
    assert wire.calls("POST") == [] and travis.requests(SLUG) == []
    in_time = job.submit(action, resumed=True, deadline=clock.now() + action.post_seconds + 0.5)
    assert isinstance(in_time, InProgress) and len(travis.requests(SLUG)) == 1


def test_find_shows_an_earlier_request_and_never_sends_one(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire, url: str
) -> None:
    job = Job(clock)
    assert action.find(job.context(resumed=True)) is None  # nothing sent yet: nothing found
    first = job.submit(action)
    assert isinstance(first, InProgress)
    # Pending: Travis shows neither branch nor message, so another process (a worker that
    # took over) cannot tell the request apart yet...
    other_process = TravisAction(quick_client())
    assert other_process.find(Job(clock).context(resumed=True)) is None
    # ...while the process that created it knows its id from the 202.
    mine = action.find(Job(clock).context(resumed=True))
    assert isinstance(mine, InProgress) and mine.data["request_id"] == first.data["request_id"]
    clock.advance(3.0)
    found = other_process.find(Job(clock).context(resumed=True))
    assert isinstance(found, InProgress)
    assert found.data["request_id"] == first.data["request_id"]
    assert len(wire.calls("POST")) == 1
    # Listed unfiltered (a pending request is in no branch's list), from a time on.
    listings = wire.calls("GET", "/requests")
    assert listings and all("branch" not in r.query and "from" in r.query for r in listings)
    other_process.close()


def test_someone_elses_requests_do_not_stop_a_resumed_submit(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    Job(clock, execution_id="another-execution").submit(action)
    clock.advance(3.0)
    outcome = Job(clock).submit(action, attempt=1)
    assert isinstance(outcome, InProgress)
    messages = [r["message"] for r in travis.requests(SLUG)]
    assert len(messages) == 2 and marker("another-execution") in messages[0]
    assert marker(Job(clock).execution_id) in messages[1]


def test_a_500_after_the_request_was_created_never_leads_to_a_second_request(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    travis.set_schedule(SLUG, start_after=30, finish_after=60)
    job = Job(clock)
    travis.errors_after_create = True
    travis.faults.configure(error_rate=1.0)
    failed = job.submit(action)
    assert isinstance(failed, RetryLater) and failed.counted
    assert failed.failure_type is FailureType.SYSTEM_UNAVAILABLE
    travis.faults.configure(error_rate=0.0)

    # Still pending: Travis does not show the message yet, so the action waits, uncounted.
    waiting = job.submit(action, attempt=1, resumed=True)
    assert isinstance(waiting, RetryLater) and not waiting.counted
    assert waiting.after is not None and "pending" in waiting.reason

    clock.advance(waiting.after)
    found = job.submit(action, attempt=1, resumed=True)
    assert isinstance(found, InProgress)
    (request,) = travis.requests(SLUG)
    assert found.data["request_id"] == request["id"]
    assert len(wire.calls("POST")) == 1


def test_a_resumed_submit_with_nothing_on_travis_submits(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    outcome = Job(clock).submit(action, resumed=True)
    assert isinstance(outcome, InProgress)
    assert len(travis.requests(SLUG)) == 1
    assert len(wire.calls("GET", "/requests")) == 1


def test_an_old_stuck_pending_request_does_not_block_a_resumed_submit(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, build_delay=10_000.0)
    Job(clock, execution_id="stuck").submit(action)
    clock.advance(3600.0)
    travis.update_repository(SLUG, build_delay=2.0)
    assert isinstance(Job(clock).submit(action, resumed=True), InProgress)
    assert len(travis.requests(SLUG)) == 2


def test_a_submit_with_a_recorded_request_only_looks_at_it(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    job = Job(clock)
    job.submit(action)
    again = job.submit(action, attempt=1, resumed=True)
    assert isinstance(again, InProgress) and again.data["request_id"] == job.run["request_id"]
    assert len(wire.calls("POST")) == 1


# --- what Travis refuses, and what CodePipeline is told ------------------------------------


def test_an_unknown_token_is_a_permission_error(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    outcome = Job(clock, APIToken="trv-nobody-knows-me").submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.PERMISSION_ERROR
    assert "wrong_credentials" in outcome.message and "APIToken" in outcome.message
    assert "trv-nobody-knows-me" not in outcome.message
    assert travis.requests(SLUG) == []


def test_a_read_only_token_is_a_permission_error_that_says_what_access_is_missing(
    action: TravisAction, clock: FakeClock
) -> None:
    outcome = Job(clock, APIToken="trv-read-only-token-77b1").submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.PERMISSION_ERROR
    assert "insufficient_access" in outcome.message and "write access" in outcome.message
    assert f"Travis repository {SLUG}, branch {BRANCH}" in outcome.message


def test_a_401_is_a_permission_error(action: TravisAction, clock: FakeClock, wire: Wire) -> None:
    wire.script.append(travis_error(401, "unauthorized", "bad credentials"))
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.PERMISSION_ERROR


def test_an_unknown_repository_is_a_configuration_error(
    action: TravisAction, clock: FakeClock
) -> None:
    outcome = Job(clock, ProjectName="missing").submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "octo/missing" in outcome.message and "check Owner and ProjectName" in outcome.message


def test_an_inactive_repository_is_a_configuration_error_that_says_activate(
    action: TravisAction, clock: FakeClock
) -> None:
    outcome = Job(clock, ProjectName="asleep").submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "repository_inactive" in outcome.message and "activate octo/asleep" in outcome.message


def test_wrong_params_is_a_configuration_error(
    action: TravisAction, clock: FakeClock, wire: Wire
) -> None:
    wire.script.append(travis_error(400, "wrong_params", "missing branch"))
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "missing branch" in outcome.message


@pytest.mark.parametrize("changes, complaint", [
    ({"Owner": "octo/app"}, "Owner 'octo/app' must be one name"),
    ({"Branch": " "}, "Branch is empty"),
    ({"ApiUrl": "travis.example.com"}, "is not an http(s) URL"),
])
def test_a_malformed_configuration_fails_before_any_call(
    action: TravisAction, clock: FakeClock, wire: Wire, changes: dict[str, str], complaint: str
) -> None:
    outcome = Job(clock, **changes).submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert complaint in outcome.message and "Fix:" in outcome.message
    assert wire.seen == []


def test_a_server_error_is_retried_by_the_engine_as_system_unavailable(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.faults.configure(error_rate=1.0)
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, RetryLater)
    assert outcome.counted and outcome.failure_type is FailureType.SYSTEM_UNAVAILABLE
    assert "HTTP 500" in outcome.reason and SLUG in outcome.reason


def test_the_hourly_request_limit_is_waited_out_without_using_up_attempts(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, request_limit=1)
    Job(clock, execution_id="first").submit(action)
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, RetryLater)
    assert not outcome.counted and outcome.after == 300.0
    assert "limit" in outcome.reason and "request_limit_reached" in outcome.reason
    assert len(travis.requests(SLUG)) == 1


def test_a_plain_429_with_retry_after_waits_that_long_uncounted(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.retry_after = 42
    travis.faults.configure(throttle_rate=1.0)
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, RetryLater)
    assert (outcome.after, outcome.counted) == (42.0, False)


def test_a_plain_429_without_retry_after_waits_a_minute_counted(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.faults.configure(throttle_rate=1.0)
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, RetryLater)
    assert (outcome.after, outcome.counted) == (60.0, True)
    assert "Retry later" in outcome.reason


def test_the_token_never_shows_in_any_outcome(
    action: TravisAction, clock: FakeClock, wire: Wire
) -> None:
    # Even a server that echoes the token back in its error does not get it into a message.
    wire.script += [travis_error(403, "login_required", f"token {TOKEN} is not valid"),
                    travis_error(500, "server_error", f"failed for {TOKEN}"),
                    travis_error(404, "not_found", f"no repo for {TOKEN}")]
    outcomes = [Job(clock).submit(action) for _ in range(3)]
    assert [type(o) for o in outcomes] == [Failed, RetryLater, Failed]
    for outcome in outcomes:
        assert TOKEN not in str(outcome) and TOKEN not in repr(outcome)
        assert "****" in str(outcome)


def test_the_api_url_property_beats_the_environment(
    url: str, travis: TravisEmulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", "http://127.0.0.1:9/nowhere")
    action = TravisAction(quick_client())
    outcome = Job(clock, ApiUrl=url + "/").submit(action)
    assert isinstance(outcome, InProgress) and len(travis.requests(SLUG)) == 1
    action.close()


def test_without_property_or_environment_the_action_talks_to_travis_ci_com(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CPWORKER_TRAVIS_API_URL", raising=False)
    target = Target.parse(configuration())
    assert isinstance(target, Target) and target.endpoint.url == DEFAULT_API_URL
    assert target.build_url(7) == "https://app.travis-ci.com/github/octo/app/builds/7"


def test_settings_are_read_when_the_action_is_made_not_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The module is imported long before (by this test file); what counts is the environment
    when the worker makes its action."""
    monkeypatch.setenv("CPWORKER_TRAVIS_TIMEOUT", "4")
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", "http://127.0.0.1:9/later")
    made = TravisAction()
    assert made.client.timeout[1] == 4.0
    assert made.submit_grace == made.post_seconds + 1.0 == sum(made.client.timeout) + 1.0
    assert made.settings.api_url == "http://127.0.0.1:9/later"
    monkeypatch.delenv("CPWORKER_TRAVIS_TIMEOUT")
    assert TravisAction().client.timeout[1] == 20.0
    made.close()


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan", "301"])
def test_a_bad_timeout_stops_the_action_being_made_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("CPWORKER_TRAVIS_TIMEOUT", raw)
    with pytest.raises(ConfigurationProblem) as caught:
        TravisAction()
    assert "CPWORKER_TRAVIS_TIMEOUT" in str(caught.value) and "fix" in str(caught.value).lower()
    assert TravisSettings.from_environ({"CPWORKER_TRAVIS_TIMEOUT": " 7.5 "}).read_timeout == 7.5


def test_the_grace_follows_the_clients_own_timeouts() -> None:
    """A worker resuming a dead one's submission waits its grace: the POST's own timeouts,
    whatever client the action was given."""
    action = TravisAction(quick_client())
    assert action.submit_grace == sum(action.client.timeout) + 1.0


def test_the_marker_is_found_past_the_first_page_of_requests(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire, url: str
) -> None:
    travis.update_repository(SLUG, request_limit=1000)
    travis.configure(ban_posts=0)  # 106 POSTs at once: as on Travis Enterprise, no rack-attack
    first = Job(clock).submit(action)
    client = quick_client()
    for n in range(105):
        client.create_request(Endpoint(url, TOKEN), SLUG, BRANCH, f"someone else #{n}")
    clock.advance(3.0)
    found = Job(clock).submit(action, resumed=True)
    assert isinstance(first, InProgress) and isinstance(found, InProgress)
    assert found.data["request_id"] == first.data["request_id"]
    assert len(wire.calls("GET", "/requests")) == 2
    client.close()


def test_a_finished_request_without_a_commit_never_blocks_a_submit(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    listing = {"@type": "requests", "@pagination": {"is_last": True}, "requests": [
        {"id": 1, "state": "finished", "result": "rejected", "commit": None, "builds": []}]}
    wire.script.append(Response.json(200, listing))
    assert isinstance(Job(clock).submit(action, resumed=True), InProgress)
    assert len(travis.requests(SLUG)) == 1


def test_a_resumed_submit_that_finds_its_request_rejected_reports_travis_reason(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    travis.set_schedule(SLUG, reject="Branch main not included per configuration.")
    Job(clock).submit(action)
    clock.advance(3.0)
    outcome = Job(clock).submit(action, resumed=True)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "Branch main not included per configuration." in outcome.message
    assert len(wire.calls("POST")) == 1
