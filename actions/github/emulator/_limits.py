"""GitHub's REST rate limits, as the emulator enforces them: the primary limit and a secondary one.

docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api:

- Primary: a number of requests per hour per user (5,000 for a personal access token; 60 per
  hour per address without one). Every answer carries x-ratelimit-limit, x-ratelimit-remaining,
  x-ratelimit-used, x-ratelimit-reset (UTC epoch seconds) and x-ratelimit-resource ("core"
  for these endpoints). Past the limit: "403 Forbidden or 429 Too Many Requests", with
  x-ratelimit-remaining 0 (docs: troubleshooting-the-rest-api); which one is the setting
  `primary_status`. The message is GitHub's, "API rate limit exceeded for user ID <id>." with
  its request-id sentence (seen verbatim in orgs/community discussion 114738).
- Secondary: "no more than 80 content-generating requests per minute" among others (the docs'
  list); answered 403 or 429 (`secondary_status`) with "You have exceeded a secondary rate
  limit" and, sometimes, retry-after (`secondary_retry_after`, None leaves it out). The
  emulator counts POSTs per token in a sliding minute, and a test can impose the limit at will
  (`impose`), as GitHub may "for undisclosed reasons". The headers still show a healthy
  remaining count: only the body tells a secondary refusal from a permission one.

Everything here is per key: a token, or "ip" for calls without valid credentials.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from actions.github.emulator._model import GitHubError, token_digest

WINDOW = 3600.0
"""The primary limit's window: one hour from the first call of the window."""

SECONDARY_WINDOW = 60.0
"""The content-creation budget counts per minute."""

ANONYMOUS_LIMIT = 60
"""Requests per hour without credentials (per address; every caller here is 127.0.0.1)."""

PRIMARY_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = ("https://docs.github.com/free-pro-team@latest/rest/using-the-rest-api/"
                  "rate-limits-for-the-rest-api#about-secondary-rate-limits")
LIMIT_STATUSES = (403, 429)


@dataclass
class _Bucket:
    reset_at: float
    used: int = 0
    posts: deque[float] = field(default_factory=deque)


class RateLimits:
    """Per-key budgets; check() is called once per API call, under the emulator's lock."""

    def __init__(self, *, limit: int = 5000, primary_status: int = 403,
                 secondary_posts: int = 80, secondary_status: int = 403,
                 secondary_retry_after: float | None = 60.0) -> None:
        self.limit = 5000
        self.primary_status = 403
        self.secondary_posts = 80
        self.secondary_status = 403
        self.secondary_retry_after: float | None = 60.0
        self.configure(limit=limit, primary_status=primary_status,
                       secondary_posts=secondary_posts, secondary_status=secondary_status,
                       secondary_retry_after=secondary_retry_after,
                       clear_retry_after=secondary_retry_after is None)
        self._buckets: dict[str, _Bucket] = {}
        self._blocked: dict[str | None, float] = {}
        """key (None: every key) -> until when every call is refused as a secondary limit."""

    def configure(self, *, limit: int | None = None, primary_status: int | None = None,
                  secondary_posts: int | None = None, secondary_status: int | None = None,
                  secondary_retry_after: float | None = None,
                  clear_retry_after: bool = False) -> None:
        """Change the settings; None leaves one as it is (clear_retry_after drops the header).
        Everything is checked before anything changes."""
        for name, value in (("limit", limit), ("secondary_posts", secondary_posts)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
        for name, value in (("primary_status", primary_status),
                            ("secondary_status", secondary_status)):
            if value is not None and value not in LIMIT_STATUSES:
                raise ValueError(f"{name} must be 403 or 429, not {value!r}")
        if secondary_retry_after is not None and (
                isinstance(secondary_retry_after, bool)
                or not isinstance(secondary_retry_after, (int, float))
                or secondary_retry_after < 0):
            raise ValueError("secondary_retry_after must be seconds >= 0, or null for no "
                             f"retry-after header, not {secondary_retry_after!r}")
        if limit is not None:
            self.limit = limit
        if primary_status is not None:
            self.primary_status = primary_status
        if secondary_posts is not None:
            self.secondary_posts = secondary_posts
        if secondary_status is not None:
            self.secondary_status = secondary_status
        if secondary_retry_after is not None:
            self.secondary_retry_after = float(secondary_retry_after)
        elif clear_retry_after:
            self.secondary_retry_after = None

    def settings(self) -> dict[str, Any]:
        return {"rate_limit": self.limit, "primary_status": self.primary_status,
                "secondary_posts_per_minute": self.secondary_posts,
                "secondary_status": self.secondary_status,
                "secondary_retry_after": self.secondary_retry_after}

    def impose(self, token: str | None, seconds: float, now: float) -> None:
        """Refuse every call of `token` (None: of everyone) as a secondary limit for a while."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"seconds must be a number > 0, not {seconds!r}")
        self._blocked[token] = now + float(seconds)

    def check(self, key: str | None, who: str, method: str, now: float,
              request_id: str) -> tuple[dict[str, str], GitHubError | None]:
        """Count one call of `key` (None: no valid credentials) and say whether it may go on.

        Returns the x-ratelimit headers for the answer and, when the call is refused, the error
        (which carries those headers). `who` is how the primary message names the caller.
        """
        limit = self.limit if key is not None else ANONYMOUS_LIMIT
        bucket = self._bucket(key or "ip", now)
        if bucket.used >= limit:
            headers = _headers(limit, bucket)
            return headers, GitHubError(
                self.primary_status,
                f"API rate limit exceeded for {who}. If you reach out to GitHub Support for "
                f"help, please include the request ID {request_id}.", PRIMARY_DOCS, headers)
        bucket.used += 1
        headers = _headers(limit, bucket)
        blocked_until = max(self._blocked.get(key, 0.0) if key else 0.0,
                            self._blocked.get(None, 0.0))
        if blocked_until > now:
            return headers, self.secondary(request_id, headers, blocked_until - now)
        if method == "POST":
            while bucket.posts and bucket.posts[0] <= now - SECONDARY_WINDOW:
                bucket.posts.popleft()
            if len(bucket.posts) >= self.secondary_posts:
                wait = self.secondary_retry_after or SECONDARY_WINDOW
                self._blocked[key] = max(self._blocked.get(key, 0.0), now + wait)
                return headers, self.secondary(request_id, headers, wait)
            bucket.posts.append(now)
        return headers, None

    def secondary(self, request_id: str, headers: dict[str, str],
                  wait: float | None = None) -> GitHubError:
        """The secondary-limit refusal (also what an injected throttle fault answers)."""
        answer = dict(headers)
        if self.secondary_retry_after is not None:
            answer["retry-after"] = str(max(1, round(wait if wait is not None
                                                     else self.secondary_retry_after)))
        return GitHubError(
            self.secondary_status,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you "
            f"try again. If you reach out to GitHub Support for help, please include the "
            f"request ID {request_id}.", SECONDARY_DOCS, answer)

    def usage(self, now: float) -> list[dict[str, Any]]:
        """Each key's window as of now; tokens shown as digests, never as themselves."""
        views = []
        for key in list(self._buckets):
            current = self._bucket(key, now)
            limit = ANONYMOUS_LIMIT if key == "ip" else self.limit
            views.append({"client": "anonymous" if key == "ip" else token_digest(key),
                          "limit": limit, "used": current.used,
                          "remaining": max(limit - current.used, 0),
                          "reset": int(current.reset_at)})
        return views

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            posts = bucket.posts if bucket is not None else deque()
            bucket = _Bucket(reset_at=now + WINDOW, posts=posts)
            self._buckets[key] = bucket
        return bucket


def _headers(limit: int, bucket: _Bucket) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(max(limit - bucket.used, 0)),
        "x-ratelimit-used": str(bucket.used),
        "x-ratelimit-reset": str(int(bucket.reset_at)),
        "x-ratelimit-resource": "core",
    }
