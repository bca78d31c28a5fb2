"""What every shipped action's HTTP client shares: a pooled session, bounded retries, and the
readers of an answer (its JSON, its Retry-After, a short flat snippet for a message).

The calls, their errors and what an answer means stay with each action (actions.travis.client,
actions.github.client); only the plumbing that would otherwise be written twice lives here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from engine import __version__

USER_AGENT = f"cpworker/{__version__}"
CONNECT_TIMEOUT = 5.0
ATTEMPTS = 3
"""Tries of one repeatable call before its failure goes to the engine, which retries later."""


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call: an API base URL and a token (kept out of repr)."""

    url: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", self.url.rstrip("/"))


class PooledClient:
    """A requests session opened on first use, with as many pooled connections as the engine
    runs effects (none thrown away), and a retry policy for calls that are safe to repeat.
    Thread-safe enough for the engine's effect pool."""

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        timeout: tuple[float, float],
        attempts: int,
        wait_initial: float = 0.5,
        wait_max: float = 4.0,
        sleep: Callable[[float], None] = time.sleep,
        pool_size: int = 16,
    ) -> None:
        self.timeout = timeout
        self.attempts = max(1, attempts)
        # Full jitter: clients retrying the same outage do not come back in step.
        self._wait = wait_random_exponential(multiplier=wait_initial, max=wait_max)
        self._sleep = sleep
        self._pool_size = pool_size
        self._headers = dict(headers)
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                session.headers.update(self._headers)
                self._session = session
            return self._session

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def retrying(self, transient: Callable[[BaseException], bool]) -> Retrying:
        """Up to `attempts` tries of a call while it fails with an error `transient` accepts."""
        return Retrying(stop=stop_after_attempt(self.attempts), wait=self._wait,
                        retry=retry_if_exception(transient), sleep=self._sleep, reraise=True)


def json_body(response: requests.Response) -> Any:
    """The answer's JSON, or None when it says it is something else or is not JSON."""
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Retry-After in seconds, from either of its forms (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - now())


def snippet(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters: enough of an answer for a message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
