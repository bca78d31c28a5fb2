"""Travis's rack-attack rules: the one-hour ban for too many POSTs, and the per-minute throttle.

What travis-api configures (travis-ci/travis-api `lib/travis/api/attack.rb`, rack-attack 6.8.0
per its Gemfile.lock) and how rack-attack counts (rack/rack-attack `lib/rack/attack/cache.rb`,
`fail2ban.rb`, `allow2ban.rb`, `configuration.rb`):

- A client is its token when the call carries a valid one, else its IP address
  (`Rack::Attack::Request#identifier`). An invalid token never gets this far: the ScopeCheck
  middleware in front of rack-attack refuses it first (`lib/travis/api/app.rb`, the
  "make sure this is below ScopeCheck" comment).
- "spamming_post_requests": `Allow2Ban.filter(identifier, maxretry: 50, findtime: 30.seconds,
  bantime: 1.hour)` over every POST but three /auth paths. Counts live in fixed windows of
  `findtime` aligned on the epoch (`Cache#key_and_expiry`: the key holds now / period), not in
  a sliding window. The call that brings a window's count to 50 is let through and bans the
  client for the calls after it (`Allow2Ban#fail!`: "we may not block them this time, but
  they're banned for next time"); a banned client is refused on every call, GETs too, until
  the ban expires (`Fail2Ban.filter` checks `banned?` before anything else).
- A refused client gets rack-attack's default blocklist answer, which Travis does not replace:
  403, text/plain, "Forbidden\\n" (`Configuration::DEFAULT_BLOCKLISTED_RESPONSE`).
- "req_token_1min": 2000 calls a minute per client, also in fixed windows; beyond it the
  default throttle answer, 429 text/plain "Retry later\\n" without Retry-After.
- Travis CI Enterprise runs without rack-attack (`use Rack::Attack unless ...
  Travis.config.enterprise`): `ban_posts=0` and `throttle_limit=0` switch the rules off.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from engine.devtools.emulator import Response

BAN_POSTS = 50
BAN_WINDOW = 30.0
BAN_TIME = 3600.0
"""attack.rb's "spamming_post_requests": 50 POSTs in a 30 s window, banned for an hour."""
THROTTLE_LIMIT = 2000
THROTTLE_PERIOD = 60.0
"""attack.rb's "req_token_1min": 2000 calls a minute per client."""

POST_SAFELIST = frozenset({"/auth/handshake", "/auth/post_message", "/auth/post_message/iframe"})


def client_label(identifier: str) -> str:
    """How admin answers name a client: never the token itself, a digest of it."""
    kind, _, value = identifier.partition(":")
    if kind != "token":
        return identifier
    return "token:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


@dataclass
class Attack:
    """The rules, their counters and the bans in force; the emulator holds the lock."""

    ban_posts: int = BAN_POSTS
    ban_window: float = BAN_WINDOW
    ban_time: float = BAN_TIME
    throttle_limit: int = THROTTLE_LIMIT
    throttle_period: float = THROTTLE_PERIOD
    _posts: dict[tuple[str, int], int] = field(default_factory=dict)
    _calls: dict[tuple[str, int], int] = field(default_factory=dict)
    _bans: dict[str, float] = field(default_factory=dict)
    """identifier -> when its ban ends."""
    banned_calls: int = 0
    """Calls refused because their client was banned."""

    def __post_init__(self) -> None:
        self.configure()

    def configure(self, *, ban_posts: int | None = None, ban_window: float | None = None,
                  ban_time: float | None = None, throttle_limit: int | None = None) -> None:
        """Change the rules (all checked before any changes); 0 posts or calls switches one off."""
        posts = self.ban_posts if ban_posts is None else ban_posts
        window = self.ban_window if ban_window is None else ban_window
        time = self.ban_time if ban_time is None else ban_time
        calls = self.throttle_limit if throttle_limit is None else throttle_limit
        for name, count in (("ban_posts", posts), ("throttle_limit", calls)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"{name} must be a whole number >= 0 (0: off), not {count!r}")
        for name, seconds in (("ban_window", window), ("ban_time", time)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ValueError(f"{name} must be a number of seconds > 0, not {seconds!r}")
        self.ban_posts, self.ban_window, self.ban_time = posts, float(window), float(time)
        self.throttle_limit = calls

    def check(self, identifier: str, method: str, path: str, now: float) -> Response | None:
        """The refusal for this call, or None to let it through (counting it)."""
        until = self._bans.get(identifier)
        if until is not None:
            if now < until:
                self.banned_calls += 1
                return Response.text(403, "Forbidden\n")
            del self._bans[identifier]
        if self.ban_posts and method == "POST" and path not in POST_SAFELIST:
            key = (identifier, int(now // self.ban_window))
            self._posts[key] = count = self._posts.get(key, 0) + 1
            if count >= self.ban_posts:
                self._bans[identifier] = now + self.ban_time
        if self.throttle_limit:
            key = (identifier, int(now // self.throttle_period))
            self._calls[key] = count = self._calls.get(key, 0) + 1
            if count > self.throttle_limit:
                return Response.text(429, "Retry later\n")
        self._forget(now)
        return None

    def _forget(self, now: float) -> None:
        """Drop counters of windows that are over (the cache entries' expiry)."""
        if len(self._posts) + len(self._calls) < 1024:
            return
        posts_now, calls_now = int(now // self.ban_window), int(now // self.throttle_period)
        self._posts = {k: v for k, v in self._posts.items() if k[1] >= posts_now}
        self._calls = {k: v for k, v in self._calls.items() if k[1] >= calls_now}

    def bans(self, now: float) -> list[dict[str, Any]]:
        """The bans in force: who (a token as a digest) and until when."""
        return [{"client": client_label(who), "until": until}
                for who, until in sorted(self._bans.items(), key=lambda item: item[1])
                if until > now]

    def is_banned(self, identifier: str, now: float) -> bool:
        until = self._bans.get(identifier)
        return until is not None and now < until

    def settings(self) -> dict[str, Any]:
        return {"ban_posts": self.ban_posts, "ban_window": self.ban_window,
                "ban_time": self.ban_time, "throttle_limit": self.throttle_limit}
