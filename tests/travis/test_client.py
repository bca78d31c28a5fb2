"""The HTTP client on the wire: headers, paths, retries only where repeating is safe, errors."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
import requests

import engine
from actions._http import parse_retry_after
from actions.travis import Endpoint, TravisClient, TravisError
from actions.travis.emulator import TravisEmulator
from engine.devtools.emulator import Response
from engine.metrics import API_CALLS
from tests.travis.conftest import BRANCH, SLUG, TOKEN, Wire, quick_client, travis_error


@pytest.fixture
def client() -> TravisClient:
    return quick_client()


@pytest.fixture
def endpoint(url: str) -> Endpoint:
    return Endpoint(url + "/", TOKEN)


def test_a_request_is_sent_once_with_the_v3_headers_and_an_encoded_slug(
    client: TravisClient, endpoint: Endpoint, wire: Wire, travis: TravisEmulator
) -> None:
    body = client.create_request(endpoint, SLUG, BRANCH, "hello [cpworker:x]")
    assert body["request"]["id"] == travis.requests(SLUG)[0]["id"]
    (sent,) = wire.calls("POST")
    assert sent.path == "/repo/octo%2Fapp/requests"
    assert sent.header("travis-api-version") == "3"
    assert sent.header("authorization") == f"token {TOKEN}"
    assert sent.header("user-agent") == f"cpworker/{engine.__version__}"
    assert sent.json() == {"request": {"branch": BRANCH, "merge_mode": "deep_merge_append",
                                       "message": "hello [cpworker:x]"}}
    assert TOKEN not in sent.path and TOKEN not in repr(sent.query)
    assert TOKEN not in repr(endpoint)


def test_reads_are_retried_on_5xx_and_then_succeed(
    client: TravisClient, endpoint: Endpoint, wire: Wire, travis: TravisEmulator
) -> None:
    request_id = client.create_request(endpoint, SLUG, BRANCH, "m")["request"]["id"]
    wire.script += [travis_error(500, "server_error", "boom"), Response.text(502, "<html>")]
    found = client.get_request(endpoint, SLUG, request_id)
    assert found["id"] == request_id
    assert len(wire.calls("GET")) == 3


def test_reads_give_up_after_three_attempts(
    client: TravisClient, endpoint: Endpoint, wire: Wire, travis: TravisEmulator
) -> None:
    travis.faults.configure(error_rate=1.0)
    with pytest.raises(TravisError) as caught:
        client.get_build(endpoint, 500001)
    assert caught.value.status == 500 and caught.value.transient
    assert travis.call_counts()["GET /build/{id}"] == 3


def test_the_trigger_is_never_retried(
    client: TravisClient, endpoint: Endpoint, travis: TravisEmulator
) -> None:
    travis.errors_after_create = True
    travis.faults.configure(error_rate=1.0)
    with pytest.raises(TravisError) as caught:
        client.create_request(endpoint, SLUG, BRANCH, "m")
    assert caught.value.status == 500
    assert travis.call_counts()["POST /repo/{slug}/requests"] == 1
    assert len(travis.requests(SLUG)) == 1  # the dangerous case: it exists all the same


@pytest.mark.parametrize("retry_after", [None, 7.0])
def test_a_plain_text_429_is_an_error_with_its_retry_after_and_not_retried(
    client: TravisClient, endpoint: Endpoint, travis: TravisEmulator, retry_after: float | None
) -> None:
    travis.retry_after = retry_after
    travis.faults.configure(throttle_rate=1.0)
    with pytest.raises(TravisError) as caught:
        client.get_build(endpoint, 500001)
    error = caught.value
    assert (error.status, error.error_type, error.error_message) == (429, "throttled",
                                                                     "Retry later")
    assert error.retry_after == retry_after
    assert travis.call_counts()["GET /build/{id}"] == 1


def test_a_json_error_keeps_travis_type_message_and_body(
    client: TravisClient, endpoint: Endpoint, travis: TravisEmulator
) -> None:
    with pytest.raises(TravisError) as caught:
        client.create_request(endpoint, "octo/asleep", BRANCH, "m")
    error = caught.value
    assert (error.status, error.error_type) == (406, "repository_inactive")
    assert error.error_message == "cannot create requests on an inactive repository"
    assert isinstance(error.body, dict) and error.body["repository"]["slug"] == "octo/asleep"
    assert not error.transient
    assert "POST /repo/octo%2Fasleep/requests" in str(error)


def test_cancel_is_true_when_accepted_and_false_when_the_build_had_finished(
    client: TravisClient, endpoint: Endpoint, travis: TravisEmulator, clock: engine.FakeClock
) -> None:
    travis.set_schedule(SLUG, start_after=1, finish_after=5)
    client.create_request(endpoint, SLUG, BRANCH, "a")
    clock.advance(2.0)
    build_id = travis.builds(SLUG)[0]["id"]
    assert client.cancel_build(endpoint, build_id) is True
    # Travis queues the cancel (queries/build.rb#cancel): canceled a moment later.
    assert travis.builds(SLUG)[0]["state"] != "canceled"
    clock.advance(travis.cancel_delay)
    assert travis.builds(SLUG)[0]["state"] == "canceled"
    assert client.cancel_build(endpoint, build_id) is False


def test_a_2xx_that_is_not_travis_json_names_the_api_url_as_the_suspect(
    client: TravisClient, endpoint: Endpoint, wire: Wire
) -> None:
    wire.script.append(Response.text(200, "<html>Sign in</html>"))
    with pytest.raises(TravisError) as caught:
        client.get_build(endpoint, 1)
    assert caught.value.error_type == "not_travis" and "ApiUrl" in str(caught.value)


def test_no_answer_at_all_is_a_transient_error_without_the_token() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = quick_client()
    with pytest.raises(TravisError) as caught:
        client.get_build(Endpoint(f"http://127.0.0.1:{port}", TOKEN), 1)
    assert caught.value.status is None and caught.value.transient
    assert caught.value.error_type == "connection_error"
    assert TOKEN not in str(caught.value)


def test_a_slow_answer_is_a_timeout(endpoint: Endpoint, travis: TravisEmulator) -> None:
    travis.faults.configure(latency=0.3)
    client = TravisClient(timeout=(1.0, 0.05), attempts=1)
    with pytest.raises(TravisError) as caught:
        client.get_build(endpoint, 1)
    assert (caught.value.status, caught.value.error_type) == (None, "timeout")
    client.close()
    time.sleep(0.35)  # let the server's late write fail inside this test, not after the run


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("inf") is None
    moment = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    header = format_datetime(moment, usegmt=True)
    assert parse_retry_after(header, now=lambda: moment.timestamp() - 90) == 90.0


def test_one_session_is_reused_and_closed(client: TravisClient) -> None:
    session = client.session
    assert isinstance(session, requests.Session) and client.session is session
    client.close()
    assert client.session is not session


def _calls(operation: str, outcome: str) -> float:
    return float(API_CALLS.labels("travis", operation, outcome)._value.get())


def test_every_call_is_counted_by_path_template_and_outcome(
    client: TravisClient, endpoint: Endpoint, travis: TravisEmulator
) -> None:
    """The action's calls beside CodePipeline's in /metrics: by operation (a path template,
    never an id or a slug) and outcome, throttles apart."""
    post = "POST /repo/{slug}/requests"
    get = "GET /build/{id}"
    before = (_calls(post, "ok"), _calls(get, "throttled"), _calls(get, "unreachable"))
    client.create_request(endpoint, SLUG, BRANCH, "counted [cpworker:x]")
    travis.faults.configure(throttle_rate=1.0)
    with pytest.raises(TravisError):
        client.get_build(endpoint, 500001)
    travis.faults.configure(throttle_rate=0.0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TravisError):
        quick_client().get_build(Endpoint(f"http://127.0.0.1:{port}", TOKEN), 7)
    after = (_calls(post, "ok"), _calls(get, "throttled"), _calls(get, "unreachable"))
    assert after[0] - before[0] == 1 and after[1] - before[1] == 1
    assert after[2] - before[2] == 3  # a read is tried three times before it fails
