"""Pacing POSTs so that Travis never bans the token: at most 40 in any 30 seconds, per token.

travis-api bans a client (its token; its IP address when it sends none) for an hour once it
has sent 50 POSTs within one 30-second window, and a banned client is refused on every call
(`lib/travis/api/attack.rb`, "spamming_post_requests"; PROTOCOL B8). Every POST counts:
triggering a build and cancelling one alike. The windows are fixed 30-second slices of the
epoch (rack-attack's `Cache#key_and_expiry`), so 49 at the end of one and 49 at the start of
the next pass; a limit over *any* 30 seconds is the safe reading of the rule.

Not a token bucket: a full bucket of B plus its refill over 30 s allows B + rate * 30 POSTs in
30 s, twice the steady rate. A log of the admission times allows exactly LIMIT in any window.
The margin (40 of 50) absorbs POSTs that take a while to arrive (the log holds the moment each
was let out, Travis counts when it arrives) and the few POSTs made around the pacer (a cancel
always goes out, and is counted).

The pacer lives in the worker process and is shared by the action's threads. Two workers using
one token each pace themselves; run them with different tokens, or accept that the limit
applies per process.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

LIMIT = 40
WINDOW = 30.0
"""At most LIMIT POSTs per token and API host in any WINDOW seconds (Travis bans at 50)."""


@dataclass(frozen=True)
class Wait:
    """A POST that must not go out yet: how long to wait, and what the log says."""

    seconds: float
    sent: int
    """POSTs with this token in the last window."""
    queued: int
    """Callers told to wait before this one, whose turns come first."""


def key_for(api_url: str, token: str) -> str:
    """Whom Travis counts: a token, at one API host. Only a digest of the token is kept."""
    host = (urlsplit(api_url).netloc or api_url).lower()
    return f"{host} {hashlib.sha256(token.encode('utf-8')).hexdigest()[:16]}"


class PostPacer:
    """Admission of POSTs per key: now, or after a wait, spread so waiters do not return at once.

    Nothing here sleeps: a caller told to wait gives up its thread and comes back (the action
    returns RetryLater with the wait, so the job's history shows it).
    """

    def __init__(self, limit: int = LIMIT, window: float = WINDOW) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a pacer needs a limit >= 1 and a window > 0")
        self.limit = limit
        self.window = window
        self._sent: dict[str, deque[float]] = {}
        self._turns: dict[str, float] = {}
        """key -> the latest turn handed to a waiting caller."""
        self._lock = threading.Lock()

    def admit(self, key: str, now: float) -> Wait | None:
        """None: send now (and it is counted). Else a Wait, at a turn no other waiter has."""
        with self._lock:
            sent = self._recent(key, now)
            if len(sent) < self.limit:
                sent.append(max(now, sent[-1]) if sent else now)  # kept in order
                return None
            free_at = sent[0] + self.window
            spacing = self.window / self.limit
            last_turn = self._turns.get(key)
            turn = free_at if last_turn is None or last_turn < free_at else last_turn + spacing
            self._turns[key] = turn
            queued = 0 if last_turn is None or last_turn < free_at else \
                round((turn - free_at) / spacing)
            return Wait(max(0.0, turn - now), len(sent), queued)

    def record(self, key: str, now: float) -> None:
        """A POST that goes out whatever the count (a cancel): later ones make room for it."""
        with self._lock:
            sent = self._recent(key, now)
            sent.append(max(now, sent[-1]) if sent else now)

    def sent(self, key: str, now: float) -> int:
        """POSTs counted for `key` in the window before `now`."""
        with self._lock:
            return len(self._recent(key, now))

    def _recent(self, key: str, now: float) -> deque[float]:
        sent = self._sent.setdefault(key, deque())
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if not sent and len(self._sent) > 1024:  # forget idle tokens
            self._sent = {k: v for k, v in self._sent.items() if v or k == key}
            self._turns = {k: t for k, t in self._turns.items() if t > now or k == key}
        return sent
