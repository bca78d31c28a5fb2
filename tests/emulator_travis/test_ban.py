"""rack-attack as travis-api configures it (lib/travis/api/attack.rb): the ban and the throttle."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from engine.devtools.emulator import EmulatorServer
from tests.emulator_travis.conftest import OTHER, OTHER_SLUG, SLUG, WRITE, Api, repo_path


def aligned(clock: FakeClock, window: float = 30.0) -> None:
    """Move to the start of a fixed 30 s window (rack-attack counts in epoch-aligned ones)."""
    clock.advance(window - clock.now() % window)


def test_the_fiftieth_post_in_a_window_gets_through_and_bans_the_token_for_an_hour(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.update_repository(SLUG, request_limit=1000)
    aligned(clock)
    for n in range(50):
        response = api.trigger()
        assert response.status_code == 202, (n, response.text)
        clock.advance(0.5)
    assert emulator.is_banned(WRITE)
    refused = api.trigger()
    assert (refused.status_code, refused.text) == (403, "Forbidden\n")
    assert refused.headers["Content-Type"].startswith("text/plain")
    # Banned means every call, reads too, until the hour is over.
    assert api.get(repo_path() + "/requests").status_code == 403
    assert len(emulator.requests()) == 50
    # Another token is another client.
    assert api.trigger(slug=OTHER_SLUG, token=OTHER).status_code == 202
    (ban,) = emulator.bans()
    assert ban["client"].startswith("token:") and WRITE not in ban["client"]
    assert WRITE not in api.admin("GET", "/_emulator/bans").text
    clock.advance(3600.0)
    assert not emulator.is_banned(WRITE)
    assert api.trigger().status_code == 202


def test_windows_are_fixed_so_two_halves_of_fifty_do_not_ban(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.update_repository(SLUG, request_limit=1000)
    aligned(clock)
    clock.advance(29.0)
    for _ in range(49):
        assert api.trigger().status_code == 202
    clock.advance(1.0)  # the next window
    for _ in range(49):
        assert api.trigger().status_code == 202
    assert not emulator.is_banned(WRITE)


def test_ban_rules_are_settings_and_can_be_switched_off(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.update_repository(SLUG, request_limit=1000)
    emulator.configure(ban_posts=3, ban_time=10.0)
    aligned(clock)
    for _ in range(3):
        assert api.trigger().status_code == 202
    assert api.trigger().status_code == 403
    clock.advance(10.0)
    emulator.configure(ban_posts=0)
    for _ in range(10):
        assert api.trigger().status_code == 202
    assert emulator.bans() == []


def test_posts_to_cancel_count_too_and_a_wrong_token_is_refused_before_it_counts(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.configure(ban_posts=2, wrong_token="text")
    aligned(clock)
    for _ in range(5):  # ScopeCheck refuses an unknown token before rack-attack sees it
        assert api.trigger(token="nobody").status_code == 403
    assert emulator.bans() == []
    assert api.cancel(999_999).status_code == 404
    assert api.trigger().status_code == 202  # the second POST: banned from now on
    assert api.get("/user").status_code == 403
    assert emulator.is_banned(WRITE) and not emulator.is_banned(None)


def test_more_than_the_minute_s_calls_are_throttled_with_retry_later(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.configure(throttle_limit=5)
    aligned(clock, 60.0)
    for _ in range(5):
        assert api.get("/user").status_code == 200
    throttled = api.get("/user")
    assert (throttled.status_code, throttled.text) == (429, "Retry later\n")
    assert "Retry-After" not in throttled.headers
    clock.advance(60.0)
    assert api.get("/user").status_code == 200


def test_a_body_shorter_than_its_content_length_is_refused(
    server: EmulatorServer, emulator: TravisEmulator
) -> None:
    """Not read as {} (which would trigger a build of the default branch with no message)."""
    address = urlsplit(server.url)
    body = b'{"request": {"message": "cut'
    head = (f"POST {repo_path()}/requests HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Travis-API-Version: 3\r\nAuthorization: token {WRITE}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + 40}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((address.hostname, address.port or 80), timeout=10) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)  # the client stops sending: the rest never comes
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert emulator.requests() == []
