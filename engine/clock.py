"""Injected time.

Everything that asks "what time is it" or "wait a while" goes through a Clock, so tests can
skip an hour of CodePipeline time in a microsecond and nothing reads the wall clock ad hoc.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """The time source the engine and the emulators are given."""

    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds` of this clock's time."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until `event` is set or `timeout` seconds of this clock's time pass."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))


class FakeClock:
    """A clock that only moves when told to; sleeping advances it instead of blocking.

    Thread-safe, because the emulators read it from their request threads while a test
    advances it from the main thread.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward; going backwards is a bug in the test, not a feature."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
